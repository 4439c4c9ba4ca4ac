//! Quiet resets of unfinished responses on a backend's HTTP/2 connection, made loud.
//!
//! RFC 9113 §8.1 lets a server reset a stream with NO_ERROR *after* it sent a complete response
//! (a frame with END_STREAM), to tell the client to stop sending a request body it does not
//! need. hyper 1.12's client takes any RST_STREAM(NO_ERROR) for that and ends the response body
//! cleanly, also when the response had not ended: a body of undeclared length that the backend
//! cut off with NO_ERROR reached the client as if whole (a chunked body got its last chunk, an
//! HTTP/2 stream its END_STREAM). A declared length is checked on our side; no length was not.
//! The stream of a tunnel (WebSocket over HTTP/2, RFC 8441) is read by hyper's upgraded stream,
//! which takes RST_STREAM(CANCEL) as a clean end too, where RFC 8441 §5 makes it the tunnel's
//! abort (a TCP reset): the client's side would have been closed as if the backend had ended it.
//!
//! [`ResetWatch`] follows the frames a backend sends, across reads split anywhere, keeps the
//! streams whose response has begun (HEADERS) and not ended (END_STREAM, on HEADERS or DATA),
//! and rewrites the code of an RST_STREAM(NO_ERROR) or RST_STREAM(CANCEL) on such a stream to
//! INTERNAL_ERROR in the bytes themselves, before hyper reads them: the body then fails as any
//! cut-off body does (for a body hyper already failed on CANCEL), and a tunnel is aborted. A
//! reset after the response's END_STREAM, the case the RFC allows, passes unchanged.
//!
//! It validates nothing (h2 reads the same bytes and closes a connection whose frames are
//! malformed) and never fails. It keeps at most [`MAX_TRACKED`] streams: past that the oldest
//! (the lowest id: a client's stream ids only grow) is forgotten, its quiet reset then passing
//! as hyper takes it, so that streams the balancer itself cancelled, whose end the backend never
//! sends, cannot grow it. They are kept sorted in a vector, which the growing ids fill at its
//! end: a lookup is a binary search, and a busy connection allocates nothing per stream.

use super::H2FrameHeader;

/// A frame header's size (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;
const TYPE_DATA: u8 = 0x0;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_RST_STREAM: u8 = 0x3;
const FLAG_END_STREAM: u8 = 0x1;
/// An RST_STREAM payload: the error code (RFC 9113 §6.4).
const RESET_PAYLOAD: usize = 4;
/// The codes (RFC 9113 §7, their last byte) hyper takes for a clean end of a stream.
const NO_ERROR: u8 = 0x0;
const CANCEL: u8 = 0x8;
/// The code a quiet reset of an unfinished response is given.
const INTERNAL_ERROR: u8 = 0x2;
/// Streams tracked at most per connection: far above the streams one connection carries at once
/// (`upstream.http2.max_streams_per_connection`, and the backend's own limit).
pub const MAX_TRACKED: usize = 1024;

/// Where the watcher is in the backend's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// In a frame header, this many bytes of it read.
    Header(usize),
    /// In a payload to pass over, this many bytes of it left.
    Skip(usize),
    /// In an RST_STREAM's code on `stream`, `read` bytes of it read, `high_zero` while its
    /// first three bytes read were all 0.
    Code {
        stream: u32,
        read: usize,
        high_zero: bool,
    },
}

/// Follows the frames a backend sends and makes quiet resets of unfinished responses loud.
#[derive(Debug, Clone)]
pub struct ResetWatch {
    position: Position,
    header: [u8; FRAME_HEADER],
    /// Streams whose response began and has not ended, sorted.
    open: Vec<u32>,
}

impl Default for ResetWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl ResetWatch {
    /// A watcher at the start of the backend's first frame.
    pub fn new() -> Self {
        Self {
            position: Position::Header(0),
            header: [0; FRAME_HEADER],
            open: Vec::new(),
        }
    }

    /// Reads the next bytes the backend sent, rewriting in place the code of each quiet reset of
    /// an unfinished response; returns the last stream so rewritten, if any.
    pub fn feed(&mut self, mut bytes: &mut [u8]) -> Option<u32> {
        let mut rewritten = None;
        while !bytes.is_empty() {
            let taken = match self.position {
                // A whole header in hand (the common case): no piece to gather.
                Position::Header(0) if bytes.len() >= FRAME_HEADER => {
                    self.header = *bytes.first_chunk().unwrap_or(&[0; FRAME_HEADER]);
                    self.position = self.after_header();
                    FRAME_HEADER
                }
                Position::Header(read) => {
                    let take = (FRAME_HEADER - read).min(bytes.len());
                    self.header[read..read + take].copy_from_slice(&bytes[..take]);
                    self.position = match read + take {
                        FRAME_HEADER => self.after_header(),
                        read => Position::Header(read),
                    };
                    take
                }
                Position::Skip(left) => {
                    let take = left.min(bytes.len());
                    self.position = next(left - take);
                    take
                }
                Position::Code {
                    stream,
                    read,
                    high_zero,
                } => {
                    let take = (RESET_PAYLOAD - read).min(bytes.len());
                    let high = (RESET_PAYLOAD - 1 - read).min(take);
                    let high_zero = high_zero && bytes[..high].iter().all(|&byte| byte == 0);
                    if read + take < RESET_PAYLOAD {
                        self.position = Position::Code {
                            stream,
                            read: read + take,
                            high_zero,
                        };
                    } else {
                        // The code's last byte is in this piece: it is the one rewritten, so
                        // the code's first bytes may have gone to hyper in an earlier read.
                        let quiet = high_zero && matches!(bytes[take - 1], NO_ERROR | CANCEL);
                        if self.forget(stream) && quiet {
                            bytes[take - 1] = INTERNAL_ERROR;
                            rewritten = Some(stream);
                        }
                        self.position = Position::Header(0);
                    }
                    take
                }
            };
            bytes = &mut std::mem::take(&mut bytes)[taken..];
        }
        rewritten
    }

    /// Streams whose response began and has not ended.
    pub fn open_streams(&self) -> usize {
        self.open.len()
    }

    /// Takes the frame header just read into account; where its frame continues.
    fn after_header(&mut self) -> Position {
        let H2FrameHeader {
            length,
            kind,
            flags,
            stream,
        } = H2FrameHeader::parse(&self.header);
        if stream == 0 {
            return next(length);
        }
        let ends = flags & FLAG_END_STREAM != 0;
        match kind {
            TYPE_HEADERS if ends => {
                self.forget(stream);
            }
            TYPE_HEADERS => self.begin(stream),
            TYPE_DATA if ends => {
                self.forget(stream);
            }
            TYPE_RST_STREAM if length == RESET_PAYLOAD => {
                return Position::Code {
                    stream,
                    read: 0,
                    high_zero: true,
                };
            }
            _ => {}
        }
        next(length)
    }

    /// A response began on `stream` (again, for a final head after an interim one).
    fn begin(&mut self, stream: u32) {
        // The usual case: a new stream, above every one kept.
        if self.open.len() < MAX_TRACKED && self.open.last().is_none_or(|&last| last < stream) {
            self.open.push(stream);
            return;
        }
        let Err(mut at) = self.open.binary_search(&stream) else {
            return;
        };
        if self.open.len() == MAX_TRACKED {
            if at == 0 {
                // Older than every stream kept: it would be the one forgotten.
                return;
            }
            self.open.remove(0);
            at -= 1;
        }
        self.open.insert(at, stream);
    }

    /// `stream` ended; whether it was open.
    fn forget(&mut self, stream: u32) -> bool {
        if self.open.last() == Some(&stream) {
            self.open.pop();
            return true;
        }
        match self.open.binary_search(&stream) {
            Ok(at) => {
                self.open.remove(at);
                true
            }
            Err(_) => false,
        }
    }
}

/// Within a payload with `left` bytes to pass over, or at the next frame's header.
fn next(left: usize) -> Position {
    match left {
        0 => Position::Header(0),
        left => Position::Skip(left),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::h2_frame as frame;
    use proptest::prelude::*;

    fn headers(stream: u32, end: bool) -> Vec<u8> {
        frame(TYPE_HEADERS, 0x4 | u8::from(end), stream, &[0x88])
    }

    fn data(stream: u32, end: bool, payload: &[u8]) -> Vec<u8> {
        frame(TYPE_DATA, u8::from(end), stream, payload)
    }

    fn reset(stream: u32, code: u32) -> Vec<u8> {
        frame(TYPE_RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    /// A row: its name, the frames the backend sends, the stream whose reset is rewritten.
    type Case = (&'static str, Vec<Vec<u8>>, Option<u32>);

    /// The bytes after a feed, and the streams rewritten.
    fn fed(watch: &mut ResetWatch, bytes: &[u8]) -> (Vec<u8>, Option<u32>) {
        let mut bytes = bytes.to_vec();
        let rewritten = watch.feed(&mut bytes);
        (bytes, rewritten)
    }

    #[test]
    fn a_quiet_reset_before_the_end_becomes_internal_error_and_after_it_passes() {
        let open = |stream| headers(stream, false);
        let end = |stream| headers(stream, true);
        let cases: &[Case] = &[
            (
                "cut mid-body",
                vec![open(1), data(1, false, b"0123"), reset(1, 0)],
                Some(1),
            ),
            ("cut after the head", vec![open(3), reset(3, 0)], Some(3)),
            (
                "cut after an interim head",
                vec![open(5), open(5), reset(5, 0)],
                Some(5),
            ),
            (
                "after DATA with END_STREAM",
                vec![open(1), data(1, true, b"ok"), reset(1, 0)],
                None,
            ),
            (
                "after a head with END_STREAM",
                vec![end(1), reset(1, 0)],
                None,
            ),
            (
                "after trailers",
                vec![open(1), data(1, false, b"x"), end(1), reset(1, 0)],
                None,
            ),
            (
                "before any head (hyper fails the request)",
                vec![reset(7, 0)],
                None,
            ),
            (
                "CANCEL before the end (a tunnel's abort)",
                vec![open(1), data(1, false, b"ws"), reset(1, 0x8)],
                Some(1),
            ),
            (
                "CANCEL after the end",
                vec![open(1), data(1, true, b"ok"), reset(1, 0x8)],
                None,
            ),
            ("with an error code", vec![open(1), reset(1, 0x1)], None),
            ("REFUSED_STREAM", vec![open(1), reset(1, 0x7)], None),
            ("INTERNAL_ERROR", vec![open(1), reset(1, 0x2)], None),
            (
                "a code whose last byte is 0",
                vec![open(1), reset(1, 0x100)],
                None,
            ),
            (
                "a code whose last byte is 8",
                vec![open(1), reset(1, 0x0100_0008)],
                None,
            ),
            (
                "another stream ended",
                vec![open(1), open(3), data(3, true, b""), reset(1, 0)],
                Some(1),
            ),
            ("on stream 0", vec![open(1), reset(0, 0)], None),
        ];
        for (name, frames, expected) in cases {
            let bytes = frames.concat();
            let mut watch = ResetWatch::new();
            let (after, rewritten) = fed(&mut watch, &bytes);
            assert_eq!(rewritten, *expected, "{name}");
            let mut wanted = bytes;
            if expected.is_some() {
                *wanted.last_mut().unwrap() = INTERNAL_ERROR;
            }
            assert_eq!(
                after, wanted,
                "{name}: only the code's last byte may change"
            );
            assert_eq!(watch.position, Position::Header(0), "{name}");
        }
    }

    #[test]
    fn an_ended_or_reset_stream_is_forgotten() {
        let mut watch = ResetWatch::new();
        let bytes = [headers(1, false), headers(3, false), headers(5, false)].concat();
        fed(&mut watch, &bytes);
        assert_eq!(watch.open_streams(), 3);
        fed(&mut watch, &[data(1, true, b"x"), reset(3, 0x8)].concat());
        assert_eq!(watch.open_streams(), 1);
        let (_, rewritten) = fed(&mut watch, &reset(3, 0));
        assert_eq!(rewritten, None, "a stream is cut once");
    }

    #[test]
    fn streams_past_the_bound_forget_the_oldest() {
        let mut watch = ResetWatch::new();
        let bytes: Vec<u8> = (0..=MAX_TRACKED as u32)
            .flat_map(|index| headers(2 * index + 1, false))
            .collect();
        fed(&mut watch, &bytes);
        assert_eq!(watch.open_streams(), MAX_TRACKED);
        assert_eq!(
            fed(&mut watch, &reset(1, 0)).1,
            None,
            "the oldest was forgotten"
        );
        assert_eq!(fed(&mut watch, &reset(3, 0)).1, Some(3));
    }

    /// A frame a backend may send on streams 1, 3 or 5, or any other frame.
    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        let stream = prop_oneof![Just(1u32), Just(3), Just(5)];
        prop_oneof![
            (stream.clone(), any::<bool>()).prop_map(|(stream, end)| headers(stream, end)),
            (
                stream.clone(),
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(stream, end, payload)| data(stream, end, &payload)),
            (stream, prop_oneof![Just(0u32), Just(0x8), any::<u32>()])
                .prop_map(|(stream, code)| reset(stream, code)),
            (
                0u8..10,
                any::<u8>(),
                any::<u32>(),
                prop::collection::vec(any::<u8>(), 0..30)
            )
                .prop_map(|(kind, flags, stream, payload)| frame(kind, flags, stream, &payload)),
        ]
    }

    proptest! {
        /// Frames split anywhere: the same bytes out and the same streams rewritten as whole.
        #[test]
        fn any_split_rewrites_as_whole(
            frames in prop::collection::vec(any_frame(), 0..16),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let bytes: Vec<u8> = frames.concat();
            let mut whole = bytes.clone();
            let mut watch = ResetWatch::new();
            watch.feed(&mut whole);
            let mut pieces = bytes.clone();
            let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut split = ResetWatch::new();
            let mut from = 0;
            for point in points.into_iter().chain([bytes.len()]) {
                split.feed(&mut pieces[from..point]);
                from = point;
            }
            prop_assert_eq!(&pieces, &whole);
            prop_assert_eq!(split.open_streams(), watch.open_streams());
            prop_assert_eq!(split.position, Position::Header(0));
            // Only codes are rewritten, each from NO_ERROR or CANCEL to INTERNAL_ERROR in its
            // last byte.
            for (before, after) in bytes.iter().zip(&whole) {
                let quiet = matches!(*before, NO_ERROR | CANCEL);
                prop_assert!(before == after || (quiet && *after == INTERNAL_ERROR));
            }
        }

        /// Any bytes: no panic, the tracked streams stay bounded, and whole or byte by byte agree.
        #[test]
        fn any_bytes_whole_or_byte_by_byte_agree(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut whole = bytes.clone();
            let mut watch = ResetWatch::new();
            watch.feed(&mut whole);
            let mut single = bytes.clone();
            let mut split = ResetWatch::new();
            for index in 0..single.len() {
                split.feed(&mut single[index..index + 1]);
            }
            prop_assert_eq!(single, whole);
            prop_assert!(watch.open_streams() <= MAX_TRACKED);
        }
    }
}
