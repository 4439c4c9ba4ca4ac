//! Why the balancer closed an HTTP/2 connection, read from the `GOAWAY` frame it wrote.
//!
//! h2 closes a connection whose client misbehaves with `GOAWAY` and a reason code, most often
//! `ENHANCE_YOUR_CALM`, and says which rule tripped in the frame's debug data only
//! (`too_many_resets`, `too_many_continuations`...): the error the connection ends with keeps
//! the code but drops the data. So the connection's writes pass through [`GoawayTap`], which
//! follows the frame headers of what the server sends (skipping every payload by its length)
//! and keeps the first `GOAWAY` with an error code. It is the balancer's own output, framed by
//! h2: the tap reads frame headers only, and on an HTTP/1 connection (hyper's, on an h2c
//! listener) it turns itself off at the first write.

/// A frame header's length (RFC 9113 §4.1).
const HEADER: usize = 9;
/// `GOAWAY` (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;
/// `SETTINGS`: what an HTTP/2 server writes first.
const SETTINGS: u8 = 0x4;
/// Debug data kept: enough for h2's names.
const DEBUG_KEPT: usize = 64;
/// `ENHANCE_YOUR_CALM` (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Follows the frames of a server's writes.
#[derive(Debug, Default)]
pub(crate) struct GoawayTap {
    state: State,
    header: [u8; HEADER],
    /// Bytes of `header` filled.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    remaining: usize,
    /// The payload of a `GOAWAY` being read (error code, then debug data).
    goaway: Option<Vec<u8>>,
    /// The first `GOAWAY` with an error code: why the connection was closed.
    pub(crate) closed: Option<&'static str>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing written yet.
    #[default]
    First,
    /// HTTP/2 frames.
    Frames,
    /// Not HTTP/2 (an HTTP/1 connection), or a reason was found: nothing more to follow.
    Off,
}

impl GoawayTap {
    /// Whether the tap still reads writes; one branch per write once it is off.
    pub(crate) fn is_on(&self) -> bool {
        self.state != State::Off
    }

    /// Follows `bytes`, the next bytes the server wrote.
    pub(crate) fn wrote(&mut self, mut bytes: &[u8]) {
        if self.state == State::First && !bytes.is_empty() {
            // HTTP/1 answers start with "HTTP/" ('P' at offset 3); an HTTP/2 server with its
            // SETTINGS frame, whose type byte is there.
            self.state = match bytes.get(3) {
                Some(&SETTINGS) | None if !bytes.starts_with(b"HTT") => State::Frames,
                _ => State::Off,
            };
        }
        while self.state == State::Frames && !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                if let Some(payload) = &mut self.goaway {
                    let room = (8 + DEBUG_KEPT).saturating_sub(payload.len());
                    payload.extend_from_slice(&bytes[..take.min(room)]);
                }
                self.remaining -= take;
                bytes = &bytes[take..];
                if self.remaining == 0 {
                    self.end_frame();
                }
                continue;
            }
            let take = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < HEADER {
                return;
            }
            self.have = 0;
            let [a, b, c, kind, ..] = self.header;
            self.remaining = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            self.goaway = (kind == GOAWAY).then(Vec::new);
            if self.remaining == 0 {
                self.end_frame();
            }
        }
    }

    fn end_frame(&mut self) {
        let Some(payload) = self.goaway.take() else {
            return;
        };
        if let Some(reason) = close_reason(&payload) {
            self.closed = Some(reason);
            self.state = State::Off;
        }
    }
}

/// The `reason` of `lb_http2_connections_closed_total` for a `GOAWAY` payload (last stream
/// id, error code, debug data); `None` for a graceful one (`NO_ERROR`) or a malformed one.
fn close_reason(payload: &[u8]) -> Option<&'static str> {
    let code = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
    if code == 0 {
        return None;
    }
    let debug = &payload[8..];
    let has = |name: &[u8]| debug.windows(name.len()).any(|window| window == name);
    Some(match code {
        // h2's names for the rules that trip it (h2 0.4: proto/streams, codec/framed_read).
        ENHANCE_YOUR_CALM if has(b"too_many_resets") || has(b"too_many_internal_resets") => {
            "rapid_reset"
        }
        ENHANCE_YOUR_CALM if has(b"too_many_continuations") => "continuation_flood",
        ENHANCE_YOUR_CALM if has(b"header_list_way_too_large") => "header_list_too_large",
        ENHANCE_YOUR_CALM if has(b"too_many_data_frames") => "data_flood",
        _ => "protocol_error",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn goaway(code: u32, debug: &[u8]) -> Vec<u8> {
        let mut payload = 7u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(debug);
        frame(GOAWAY, 0, &payload)
    }

    /// What a server might write: SETTINGS, HEADERS, DATA, then `last`.
    fn conversation(last: &[u8]) -> Vec<u8> {
        let mut out = frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]);
        out.extend(frame(0x1, 1, &[0x88]));
        // A DATA payload that looks like a GOAWAY must be skipped, not read.
        out.extend(frame(
            0x0,
            1,
            &goaway(ENHANCE_YOUR_CALM, b"too_many_resets"),
        ));
        out.extend_from_slice(last);
        out
    }

    fn tapped(chunks: &[&[u8]]) -> Option<&'static str> {
        let mut tap = GoawayTap::default();
        for chunk in chunks {
            tap.wrote(chunk);
        }
        tap.closed
    }

    #[test]
    fn each_rule_is_named_by_its_goaway() {
        for (debug, reason) in [
            (&b"too_many_resets"[..], Some("rapid_reset")),
            (b"too_many_internal_resets", Some("rapid_reset")),
            (b"too_many_continuations", Some("continuation_flood")),
            (b"header_list_way_too_large", Some("header_list_too_large")),
            (b"too_many_data_frames", Some("data_flood")),
            (b"", Some("protocol_error")),
        ] {
            let bytes = conversation(&goaway(ENHANCE_YOUR_CALM, debug));
            assert_eq!(tapped(&[&bytes]), reason, "{debug:?}");
        }
        // PROTOCOL_ERROR, COMPRESSION_ERROR...
        for code in [1, 9] {
            let bytes = conversation(&goaway(code, b""));
            assert_eq!(tapped(&[&bytes]), Some("protocol_error"));
        }
    }

    #[test]
    fn graceful_closes_and_http1_are_not_counted() {
        assert_eq!(tapped(&[&conversation(&goaway(0, b""))]), None);
        assert_eq!(tapped(&[&conversation(&[])]), None);
        let mut tap = GoawayTap::default();
        tap.wrote(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(!tap.is_on());
        tap.wrote(&goaway(ENHANCE_YOUR_CALM, b"too_many_resets"));
        assert_eq!(tap.closed, None);
    }

    proptest! {
        /// However the writes split the frames, the tap reads the same.
        #[test]
        fn splits_do_not_matter(cuts in proptest::collection::vec(0usize..200, 0..12)) {
            let bytes = conversation(&goaway(ENHANCE_YOUR_CALM, b"too_many_continuations"));
            let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut % bytes.len()).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&bytes[start..cut]);
                start = cut;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(tapped(&chunks), Some("continuation_flood"));
        }
    }
}
