//! Message framing (RFC 9112 §6): the one `Content-Length` parser, the transfer-coding rules,
//! and the [`Framing`] of a body in either direction.
//!
//! The balancer reads a message's framing from what its sender declared, and writes the framing
//! of what it forwards from the body it actually sends: no header a peer sent can remove or
//! change the framing of the message the balancer writes.

use http::{StatusCode, Version};

use super::write::FramingField;

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Framing {
    /// No body.
    pub const NONE: Framing = Framing::Length(0);

    /// Whether there is no body at all.
    pub fn is_empty(self) -> bool {
        self == Framing::NONE
    }
}

/// Why a `Content-Length` is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentLengthError {
    /// Not a decimal number of at most 19 digits.
    #[error("invalid Content-Length")]
    Invalid,
    /// Lines or list members that disagree.
    #[error("differing Content-Length values")]
    Differing,
}

/// Longest accepted `Content-Length` in digits: every 19-digit number fits a `u64`.
const MAX_LENGTH_DIGITS: usize = 19;

/// The `Content-Length` of a head from all its lines: every line and every comma-separated member
/// must be the same decimal number (RFC 9110 §8.6 allows a list of identical values); leading
/// zeros are allowed and normalised away. `None` when there is no line.
pub fn content_length<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<u64>, ContentLengthError> {
    let mut length = None;
    for line in lines {
        for member in line.split(|&byte| byte == b',') {
            let digits = member.trim_ascii();
            if digits.is_empty()
                || digits.len() > MAX_LENGTH_DIGITS
                || !digits.iter().all(u8::is_ascii_digit)
            {
                return Err(ContentLengthError::Invalid);
            }
            let value = digits
                .iter()
                .fold(0u64, |total, digit| total * 10 + u64::from(digit - b'0'));
            if length.is_some_and(|known| known != value) {
                return Err(ContentLengthError::Differing);
            }
            length = Some(value);
        }
    }
    Ok(length)
}

/// What the `Transfer-Encoding` lines of a head declare, over all lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferCodings {
    /// A `Transfer-Encoding` line was present.
    pub present: bool,
    /// How often `chunked` was listed.
    pub chunked: u32,
    /// Whether the last coding listed is `chunked`.
    pub chunked_last: bool,
    /// A coding other than `chunked` was listed.
    pub other: bool,
}

impl TransferCodings {
    /// Adds one `Transfer-Encoding` line (empty list members are ignored, RFC 9110 §5.6.1).
    pub fn read(&mut self, line: &[u8]) {
        self.present = true;
        for coding in line.split(|&byte| byte == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
                self.chunked_last = true;
            } else {
                self.other = true;
                self.chunked_last = false;
            }
        }
    }

    /// Exactly one coding, `chunked`: the only transfer coding the balancer forwards.
    pub fn is_chunked_only(&self) -> bool {
        self.present && self.chunked == 1 && !self.other
    }
}

/// The framing of the request body the balancer sends upstream, from the body it has: its
/// length when its size is known (buffered, or a declared length streamed through), chunked
/// when it streams with no known size.
pub fn request_framing(size: Option<u64>) -> Framing {
    match size {
        Some(length) => Framing::Length(length),
        None => Framing::Chunked,
    }
}

/// Whether an upstream request's length is written as a field. `client_framed` is whether the
/// client's request declared a body (a `Content-Length` or `Transfer-Encoding`). A request that
/// declared none gets no framing field, except `POST`, `PUT` and `PATCH`, which get
/// `Content-Length: 0`: their content has a meaning, so its absence is stated (RFC 9110 §8.6).
pub fn writes_length(method: &http::Method, client_framed: bool, framing: Framing) -> bool {
    match framing {
        Framing::Length(0) => {
            client_framed
                || matches!(
                    *method,
                    http::Method::POST | http::Method::PUT | http::Method::PATCH
                )
        }
        Framing::Length(_) => true,
        Framing::Chunked | Framing::UntilClose => false,
    }
}

/// How a reply is framed towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFraming {
    /// How the body is written.
    pub body: Framing,
    /// The framing field of the head.
    pub field: FramingField,
    /// The connection must close after the body (it is delimited by the close).
    pub close: bool,
}

/// The framing of a reply to a client that sent `version`, for a body of `body_size` (`None`:
/// no body left; `Some(None)`: its size is not known). No body for HEAD, 1xx, 204 and 304; a
/// HEAD response states the length the backend `declared` (or its own body's); a body of
/// unknown size is chunked for HTTP/1.1 and delimited by the close for HTTP/1.0.
pub fn client_framing(
    head_request: bool,
    status: StatusCode,
    version: Version,
    body_size: Option<Option<u64>>,
    declared: Option<u64>,
) -> ClientFraming {
    let plain = |body, field| ClientFraming {
        body,
        field,
        close: false,
    };
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return plain(Framing::NONE, FramingField::None);
    }
    if head_request {
        let stated = declared.or(body_size.flatten().filter(|&size| size > 0));
        return plain(
            Framing::NONE,
            stated.map_or(FramingField::None, FramingField::Length),
        );
    }
    match body_size {
        None => plain(Framing::NONE, FramingField::Length(0)),
        Some(Some(length)) => plain(Framing::Length(length), FramingField::Length(length)),
        Some(None) if version == Version::HTTP_11 => plain(Framing::Chunked, FramingField::Chunked),
        Some(None) => ClientFraming {
            body: Framing::UntilClose,
            field: FramingField::None,
            close: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_accepts_one_number_in_any_repetition() {
        let ok: &[(&[&str], Option<u64>)] = &[
            (&[], None),
            (&["5"], Some(5)),
            (&["005"], Some(5)),
            (&[" 7 "], Some(7)),
            (&["5, 5"], Some(5)),
            (&["5", "5,05"], Some(5)),
            (&["0"], Some(0)),
            (&["9999999999999999999"], Some(9_999_999_999_999_999_999)),
        ];
        for (lines, want) in ok {
            let got = content_length(lines.iter().map(|line| line.as_bytes()));
            assert_eq!(got, Ok(*want), "{lines:?}");
        }
        let bad: &[(&[&str], ContentLengthError)] = &[
            (&["5", "6"], ContentLengthError::Differing),
            (&["5, 6"], ContentLengthError::Differing),
            (&["+5"], ContentLengthError::Invalid),
            (&["-5"], ContentLengthError::Invalid),
            (&["0x5"], ContentLengthError::Invalid),
            (&["5a"], ContentLengthError::Invalid),
            (&[""], ContentLengthError::Invalid),
            (&["5,"], ContentLengthError::Invalid),
            (&["1 2"], ContentLengthError::Invalid),
            (&["18446744073709551616"], ContentLengthError::Invalid),
            (&["00000000000000000005"], ContentLengthError::Invalid),
        ];
        for (lines, want) in bad {
            let got = content_length(lines.iter().map(|line| line.as_bytes()));
            assert_eq!(got, Err(*want), "{lines:?}");
        }
    }

    #[test]
    fn transfer_codings_are_counted_over_every_line() {
        let read = |lines: &[&str]| {
            let mut codings = TransferCodings::default();
            for line in lines {
                codings.read(line.as_bytes());
            }
            codings
        };
        assert!(read(&["chunked"]).is_chunked_only());
        assert!(read(&["Chunked ,"]).is_chunked_only());
        assert!(!read(&["gzip, chunked"]).is_chunked_only());
        assert!(read(&["gzip, chunked"]).chunked_last);
        assert!(!read(&["chunked, gzip"]).chunked_last);
        assert_eq!(read(&["chunked", "chunked"]).chunked, 2);
        assert!(!read(&[""]).is_chunked_only());
        assert!(!read(&[]).present);
    }

    #[test]
    fn client_framing_follows_the_status_method_and_version() {
        let v11 = Version::HTTP_11;
        let ok = StatusCode::OK;
        let frame = |head, status, version, size, declared| {
            let framing = client_framing(head, status, version, size, declared);
            (framing.body, framing.field, framing.close)
        };
        use FramingField as F;
        assert_eq!(
            frame(false, ok, v11, Some(Some(5)), Some(5)),
            (Framing::Length(5), F::Length(5), false)
        );
        assert_eq!(
            frame(false, ok, v11, Some(None), None),
            (Framing::Chunked, F::Chunked, false)
        );
        assert_eq!(
            frame(false, ok, Version::HTTP_10, Some(None), None),
            (Framing::UntilClose, F::None, true)
        );
        assert_eq!(
            frame(false, ok, v11, None, Some(42)),
            (Framing::NONE, F::Length(0), false)
        );
        assert_eq!(
            frame(true, ok, v11, None, Some(42)),
            (Framing::NONE, F::Length(42), false)
        );
        assert_eq!(
            frame(true, ok, v11, Some(Some(7)), None),
            (Framing::NONE, F::Length(7), false)
        );
        assert_eq!(
            frame(true, ok, v11, None, None),
            (Framing::NONE, F::None, false)
        );
        for status in [
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::CONTINUE,
        ] {
            assert_eq!(
                frame(false, status, v11, Some(Some(5)), Some(5)),
                (Framing::NONE, F::None, false)
            );
        }
    }

    #[test]
    fn upstream_framing_comes_from_the_body_sent() {
        use http::Method;
        assert_eq!(request_framing(Some(0)), Framing::NONE);
        assert_eq!(request_framing(Some(9)), Framing::Length(9));
        assert_eq!(request_framing(None), Framing::Chunked);
        assert!(!writes_length(&Method::GET, false, Framing::NONE));
        assert!(writes_length(&Method::POST, false, Framing::NONE));
        assert!(writes_length(&Method::GET, true, Framing::NONE));
        assert!(writes_length(&Method::GET, false, Framing::Length(9)));
        assert!(!writes_length(&Method::POST, true, Framing::Chunked));
    }
}
