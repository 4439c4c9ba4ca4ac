//! Response bodies and the byte-level helpers clients use to verify them.
//!
//! One concrete body enum instead of a boxed `dyn Body`: the `GET /` hot path then hands hyper a
//! refcounted clone of a precomputed `Bytes` and allocates nothing for the body. `/bytes/{n}` and
//! `/echo/body` stream in chunks so multi-MiB transfers never hold the whole payload in memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Period of the `/bytes/{n}` pattern: byte `i` of the body is `i % 251`. A prime period makes a
/// dropped, duplicated or reordered chunk (chunks are powers of two long) show up as a mismatch.
pub const PATTERN_PERIOD: u64 = 251;

/// Size of each chunk `/bytes/{n}` yields.
const CHUNK: usize = 64 * 1024;

const PATTERN_LEN: usize = CHUNK + PATTERN_PERIOD as usize;

/// `PATTERN[i] == i % 251`, long enough that any chunk of the pattern, whatever its phase, is one
/// zero-copy slice of this static.
static PATTERN: [u8; PATTERN_LEN] = build_pattern();

const fn build_pattern() -> [u8; PATTERN_LEN] {
    let mut out = [0u8; PATTERN_LEN];
    let mut i = 0;
    while i < PATTERN_LEN {
        out[i] = (i as u64 % PATTERN_PERIOD) as u8;
        i += 1;
    }
    out
}

/// The byte at offset `i` of every `/bytes/{n}` response.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PATTERN_PERIOD) as u8
}

/// Streaming FNV-1a (64-bit), the checksum `/count` reports.
///
/// Not cryptographic: it only has to catch corrupted or truncated transfers in tests, and it needs no
/// dependency. See <http://www.isthe.com/chongo/tech/comp/fnv/>.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self(Self::OFFSET_BASIS)
    }

    /// Feeds `data`; feeding a buffer in pieces gives the same result as feeding it whole.
    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a 64 of `data` in one call.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.update(data);
    h.finish()
}

/// Every response body the backend produces.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// A complete body (possibly empty), yielded as one frame.
    Full(Option<Bytes>),
    /// The deterministic pattern, bytes `offset..end`, streamed in `CHUNK`-sized slices.
    Pattern { offset: u64, end: u64 },
    /// The request body, streamed straight back.
    Echo(Incoming),
    /// A gRPC call's answer, trailers included.
    Grpc(tonic::body::Body),
}

impl ResponseBody {
    pub(crate) fn empty() -> Self {
        Self::Full(None)
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(bytes))
        }
    }

    pub(crate) fn pattern(len: u64) -> Self {
        Self::Pattern {
            offset: 0,
            end: len,
        }
    }
}

impl From<&'static str> for ResponseBody {
    fn from(s: &'static str) -> Self {
        Self::full(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for ResponseBody {
    fn from(s: String) -> Self {
        Self::full(Bytes::from(s))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            Self::Pattern { offset, end } => {
                if *offset >= *end {
                    return Poll::Ready(None);
                }
                // Bounded by CHUNK, so the cast cannot truncate.
                let len = (*end - *offset).min(CHUNK as u64) as usize;
                let start = (*offset % PATTERN_PERIOD) as usize;
                *offset += len as u64;
                let chunk = Bytes::from_static(&PATTERN[start..start + len]);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Self::Echo(incoming) => Pin::new(incoming).poll_frame(cx).map_err(Into::into),
            Self::Grpc(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(data) => data.is_none(),
            Self::Pattern { offset, end } => offset >= end,
            Self::Echo(incoming) => incoming.is_end_stream(),
            Self::Grpc(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Pattern { offset, end } => SizeHint::with_exact(end.saturating_sub(*offset)),
            Self::Echo(incoming) => incoming.size_hint(),
            Self::Grpc(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn fnv_known_vectors() {
        // Reference values from the FNV authors' test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fnv_is_incremental() {
        let mut h = Fnv1a64::new();
        h.update(b"foo");
        h.update(b"bar");
        assert_eq!(h.finish(), fnv1a64(b"foobar"));
    }

    #[tokio::test]
    async fn pattern_body_has_exact_length_and_pattern() {
        for len in [0u64, 1, 250, 251, 252, CHUNK as u64, CHUNK as u64 * 3 + 17] {
            let body = ResponseBody::pattern(len);
            assert_eq!(body.size_hint().exact(), Some(len));
            let bytes = body.collect().await.expect("infallible").to_bytes();
            assert_eq!(bytes.len() as u64, len);
            assert!(
                bytes
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern_byte(i as u64)),
                "pattern mismatch for len {len}"
            );
        }
    }

    #[tokio::test]
    async fn full_body_yields_once() {
        let body = ResponseBody::from("hi");
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(2));
        let bytes = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(&bytes[..], b"hi");
        assert!(ResponseBody::empty().is_end_stream());
    }
}
