//! Protocol codecs: pure code that turns bytes into typed verdicts and back: HTTP/1.1 ([`h1`]),
//! the PROXY protocol ([`proxy_protocol`]), gRPC's fields ([`grpc`]), W3C Trace Context
//! ([`trace_context`]), the HTTP/2 settings read off backends' connections ([`h2_settings`])
//! and the quiet resets made loud there ([`h2_resets`]).

pub mod grpc;
pub mod h1;
pub mod h2_resets;
pub mod h2_settings;
pub mod proxy_protocol;
pub mod trace_context;

/// An HTTP/2 frame header (RFC 9113 §4.1), as the watchers over a backend's frames read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2FrameHeader {
    /// The payload's length.
    pub length: usize,
    /// The frame type.
    pub kind: u8,
    /// The flags.
    pub flags: u8,
    /// The stream, its reserved bit cleared.
    pub stream: u32,
}

impl H2FrameHeader {
    /// The header in `bytes`.
    pub(crate) fn parse(bytes: &[u8; 9]) -> Self {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        Self {
            length,
            kind: bytes[3],
            flags: bytes[4],
            stream,
        }
    }
}

/// One HTTP/2 frame's bytes (RFC 9113 §4.1): the tests of the watchers over a backend's frames
/// write what they feed with it.
#[cfg(test)]
pub(crate) fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut bytes = length.to_be_bytes()[1..].to_vec();
    bytes.extend([kind, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}
