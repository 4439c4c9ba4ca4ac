//! The chunked transfer coding (RFC 9112 §7.1): a decoder with one explicit state per place in
//! the grammar, and the encoder's pieces.
//!
//! The decoder reads framing bytes one at a time, so a chunk line split across any number of
//! reads decodes the same, and hands chunk data out as views of the read buffer without a copy.
//! It is strict where leniency would let a peer hide a message: line ends are CRLF (a bare LF
//! is an error), the size is hexadecimal digits only (no sign, no `0x`), whitespace is allowed
//! only between the size and its extensions (as hyper allows), and extensions and trailers are
//! bounded. Trailer fields are checked for syntax and dropped: the balancer does not forward
//! trailers.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (size, whitespace and extensions), in bytes.
pub const MAX_SIZE_LINE_BYTES: usize = 4096;
/// Most bytes of chunk extensions in one body, over all its chunks (hyper allows 16 KiB too):
/// one-byte chunks with long extensions would otherwise cost far more than their data.
pub const MAX_EXTENSION_BYTES: usize = 16 * 1024;
/// Largest trailer section, in bytes.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The chunk size is not hexadecimal digits.
    #[error("invalid chunk size")]
    InvalidSize,
    /// The chunk size does not fit 64 bits.
    #[error("chunk size too large")]
    SizeOverflow,
    /// A chunk-size line or the body's extensions are too long.
    #[error("chunk extensions too long")]
    ExtensionTooLong,
    /// A chunk extension holds a control character.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// A line does not end in CRLF, or chunk data is not followed by CRLF.
    #[error("chunk line not ended by CRLF")]
    InvalidLineEnd,
    /// A trailer line is not a field.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section is too long.
    #[error("trailer section too long")]
    TrailersTooLong,
}

/// Where the decoder is in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the chunk size's hex digits; `digits` read so far.
    Size { size: u64, digits: u32 },
    /// After the size, whitespace before `;` or the line end.
    SizeSpace { size: u64 },
    /// Inside the chunk extensions, until CR.
    Extension { size: u64 },
    /// The CR of the chunk-size line was read; LF must follow.
    SizeLf { size: u64 },
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After chunk data: CR must follow.
    DataCr,
    /// After chunk data and CR: LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field's name.
    TrailerName,
    /// Inside a trailer field's value, until CR.
    TrailerValue,
    /// The CR of a trailer line was read; LF must follow.
    TrailerLf,
    /// The CR of the final empty line was read; LF must follow.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Chunk data, a view of the buffer.
    Data(Bytes),
    /// Every buffered byte was consumed; more are needed.
    NeedMore,
    /// The last chunk and the trailers were read: the body is complete.
    End,
}

/// A chunked body decoder; feed it the bytes that follow the head.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current chunk-size line.
    line_bytes: usize,
    /// Bytes of extensions over the whole body.
    extension_bytes: usize,
    /// Bytes of the trailer section.
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
            line_bytes: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing bytes from the front of `buffer` and returns the next piece of data, or
    /// [`Decoded::NeedMore`] once the buffer is used up, or [`Decoded::End`]. Bytes after the
    /// end of the body stay in `buffer`.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            if self.state == State::Done {
                return Ok(Decoded::End);
            }
            if let State::Data(left) = self.state {
                if buffer.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                let data = buffer.split_to(take).freeze();
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                return Ok(Decoded::Data(data));
            }
            let Some(&byte) = buffer.first() else {
                return Ok(Decoded::NeedMore);
            };
            buffer.advance(1);
            self.state = self.step(byte)?;
        }
    }

    /// The state after one framing byte.
    fn step(&mut self, byte: u8) -> Result<State, ChunkedError> {
        use State::*;
        if matches!(
            self.state,
            Size { .. } | SizeSpace { .. } | Extension { .. } | SizeLf { .. }
        ) {
            self.line_bytes += 1;
            if self.line_bytes > MAX_SIZE_LINE_BYTES {
                return Err(ChunkedError::ExtensionTooLong);
            }
        }
        if matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf
        ) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > MAX_TRAILER_BYTES {
                return Err(ChunkedError::TrailersTooLong);
            }
        }
        let next = match self.state {
            Size { size, digits } => match hex_value(byte) {
                Some(value) => {
                    if size > u64::MAX >> 4 {
                        return Err(ChunkedError::SizeOverflow);
                    }
                    Size {
                        size: size << 4 | u64::from(value),
                        digits: digits + 1,
                    }
                }
                None if digits == 0 => return Err(ChunkedError::InvalidSize),
                None => after_size(size, byte)?,
            },
            SizeSpace { size } => after_size(size, byte)?,
            Extension { size } => match byte {
                b'\r' => SizeLf { size },
                b'\t' | b' '..=b'~' | 0x80..=0xff => {
                    self.extension_bytes += 1;
                    if self.extension_bytes > MAX_EXTENSION_BYTES {
                        return Err(ChunkedError::ExtensionTooLong);
                    }
                    Extension { size }
                }
                _ => return Err(ChunkedError::InvalidExtension),
            },
            SizeLf { size } => {
                if byte != b'\n' {
                    return Err(ChunkedError::InvalidLineEnd);
                }
                self.line_bytes = 0;
                if size == 0 { TrailerStart } else { Data(size) }
            }
            DataCr if byte == b'\r' => DataLf,
            DataLf if byte == b'\n' => Size { size: 0, digits: 0 },
            DataCr | DataLf => return Err(ChunkedError::InvalidLineEnd),
            TrailerStart => match byte {
                b'\r' => EndLf,
                _ if is_tchar(byte) => TrailerName,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            TrailerName => match byte {
                b':' => TrailerValue,
                _ if is_tchar(byte) => TrailerName,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            TrailerValue => match byte {
                b'\r' => TrailerLf,
                b'\t' | b' '..=b'~' | 0x80..=0xff => TrailerValue,
                _ => return Err(ChunkedError::InvalidTrailer),
            },
            TrailerLf if byte == b'\n' => TrailerStart,
            EndLf if byte == b'\n' => Done,
            TrailerLf | EndLf => return Err(ChunkedError::InvalidLineEnd),
            Data(_) | Done => unreachable!("data and the end are handled by decode"),
        };
        Ok(next)
    }
}

/// After the size's digits: whitespace, the extensions, or the line end.
fn after_size(size: u64, byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::SizeSpace { size }),
        b';' => Ok(State::Extension { size }),
        b'\r' => Ok(State::SizeLf { size }),
        _ => Err(ChunkedError::InvalidSize),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A token character (RFC 9110 §5.6.2).
pub fn is_tchar(byte: u8) -> bool {
    matches!(byte,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// The line that ends a chunked body: the last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// What follows a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// Appends the size line of a chunk of `length` bytes (which must not be 0: that is the last
/// chunk, [`LAST_CHUNK`]).
pub fn push_chunk_size(out: &mut Vec<u8>, length: usize) {
    debug_assert!(length > 0, "an empty chunk would end the body");
    super::write::push_hex(out, length as u64);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
