//! The two HTTP/2 settings the balancer reads off a backend's connection for itself:
//! SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2), the streams the backend lets one
//! connection carry at once, and SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3), whether it
//! takes WebSocket as extended `CONNECT`. hyper's client obeys the first (streams past it wait
//! inside h2) but does not tell, so the pool would keep giving such a connection streams that
//! only queue there rather than open another connection; the second must be known before an
//! extended `CONNECT` is sent, and read here it is known as soon as the SETTINGS frame is
//! (the same read that settles a new connection).
//!
//! [`SettingsWatch`] follows the frames of the bytes a backend sends, across reads split
//! anywhere, looking only at frame headers and at the payload of SETTINGS frames on stream 0
//! without ACK. It validates nothing: h2 reads the same bytes and closes a connection whose
//! frames are malformed; a SETTINGS frame whose length is not a multiple of 6 (h2 refuses it)
//! is skipped here. It never fails and keeps no more than one frame header, one setting and what the SETTINGS
//! frame being read set so far.

use super::H2FrameHeader;

/// A frame header's size (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;
/// One setting in a SETTINGS payload: identifier (16 bits), value (32 bits).
const SETTING: usize = 6;
const TYPE_SETTINGS: u8 = 0x4;
const FLAG_ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// Where the watcher is in the backend's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// In a frame header, this many bytes of it read.
    Header(usize),
    /// In a payload to pass over, this many bytes of it left.
    Skip(usize),
    /// In a SETTINGS payload, this many bytes of it left (a multiple of 6 at each setting's
    /// start).
    Settings(usize),
}

/// What the SETTINGS frames that ended in some bytes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsSeen {
    /// The last SETTINGS_MAX_CONCURRENT_STREAMS among them, if any set it.
    pub max_concurrent_streams: Option<u32>,
    /// The last SETTINGS_ENABLE_CONNECT_PROTOCOL among them, if any set it: whether its value
    /// is 1 (any value but 0 and 1 is h2's to refuse).
    pub enable_connect_protocol: Option<bool>,
}

impl SettingsSeen {
    /// What `self` and then `later` said together: each setting's last value.
    pub fn then(self, later: SettingsSeen) -> SettingsSeen {
        SettingsSeen {
            max_concurrent_streams: later.max_concurrent_streams.or(self.max_concurrent_streams),
            enable_connect_protocol: later
                .enable_connect_protocol
                .or(self.enable_connect_protocol),
        }
    }

    /// Takes one setting into account.
    fn set(&mut self, id: u16, value: u32) {
        match id {
            SETTINGS_MAX_CONCURRENT_STREAMS => self.max_concurrent_streams = Some(value),
            SETTINGS_ENABLE_CONNECT_PROTOCOL => self.enable_connect_protocol = Some(value == 1),
            _ => {}
        }
    }
}

/// Follows the frames a backend sends and reports its SETTINGS frames.
#[derive(Debug, Clone)]
pub struct SettingsWatch {
    position: Position,
    /// The frame header, or the setting, read so far.
    partial: [u8; FRAME_HEADER],
    /// Bytes of the current setting read (within a SETTINGS payload).
    setting_read: usize,
    /// What the SETTINGS frame being read set so far.
    frame_seen: Option<SettingsSeen>,
}

impl Default for SettingsWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SettingsWatch {
    /// A watcher at the start of the backend's first frame (a backend's connection opens with
    /// its SETTINGS frame; it sends no preface).
    pub fn new() -> Self {
        Self {
            position: Position::Header(0),
            partial: [0; FRAME_HEADER],
            setting_read: 0,
            frame_seen: None,
        }
    }

    /// Reads the next bytes the backend sent; `Some` when a SETTINGS frame (not an ACK) ended
    /// in them, with the last value of each setting read they set.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<SettingsSeen> {
        let mut found: Option<SettingsSeen> = None;
        while !bytes.is_empty() {
            match self.position {
                Position::Header(read) => {
                    let take = (FRAME_HEADER - read).min(bytes.len());
                    self.partial[read..read + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    self.position = match read + take {
                        FRAME_HEADER => self.after_header(),
                        read => Position::Header(read),
                    };
                    if read + take == FRAME_HEADER && self.empty_settings() {
                        found.get_or_insert_default();
                    }
                }
                Position::Skip(left) => {
                    let take = left.min(bytes.len());
                    bytes = &bytes[take..];
                    self.position = next(left - take, Position::Skip);
                }
                Position::Settings(left) => {
                    let take = (SETTING - self.setting_read).min(bytes.len());
                    let read = self.setting_read;
                    self.partial[read..read + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    self.setting_read += take;
                    if self.setting_read == SETTING {
                        self.setting_read = 0;
                        let id = u16::from_be_bytes([self.partial[0], self.partial[1]]);
                        let value = &self.partial[2..SETTING];
                        let value = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                        // A frame is reported once its last setting is read, and only then.
                        let frame_seen = self.frame_seen.get_or_insert_default();
                        frame_seen.set(id, value);
                        if left == take {
                            let frame_seen = self.frame_seen.take().unwrap_or_default();
                            found = Some(found.unwrap_or_default().then(frame_seen));
                        }
                    }
                    self.position = next(left - take, Position::Settings);
                }
            }
        }
        found
    }

    /// Whether the frame header just read is a whole SETTINGS frame with no setting in it.
    fn empty_settings(&self) -> bool {
        self.position == Position::Header(0) && self.is_settings() == Some(0)
    }

    /// The payload length of the frame header read, if it is the connection's SETTINGS.
    fn is_settings(&self) -> Option<usize> {
        let H2FrameHeader {
            length,
            kind,
            flags,
            stream,
        } = H2FrameHeader::parse(&self.partial);
        let settings =
            kind == TYPE_SETTINGS && flags & FLAG_ACK == 0 && stream == 0 && length % SETTING == 0;
        settings.then_some(length)
    }

    /// Where a frame whose header was just read continues.
    fn after_header(&self) -> Position {
        let length = H2FrameHeader::parse(&self.partial).length;
        match self.is_settings() {
            Some(length) => next(length, Position::Settings),
            None => next(length, Position::Skip),
        }
    }
}

/// `within(left)`, or the next frame's header once nothing is left.
fn next(left: usize, within: fn(usize) -> Position) -> Position {
    match left {
        0 => Position::Header(0),
        left => within(left),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::h2_frame as frame;
    use proptest::prelude::*;

    /// The limit a feed reported.
    fn limit(seen: Option<SettingsSeen>) -> Option<u32> {
        seen.and_then(|seen| seen.max_concurrent_streams)
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = (entries.iter())
            .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
            .collect();
        frame(TYPE_SETTINGS, 0, 0, &payload)
    }

    #[test]
    fn reads_the_limit_from_the_backends_settings_and_from_later_ones() {
        let mut watch = SettingsWatch::new();
        let first = settings(&[(0x4, 65_535), (0x3, 100), (0x5, 16_384)]);
        assert_eq!(limit(watch.feed(&first)), Some(100));
        let ack = frame(TYPE_SETTINGS, FLAG_ACK, 0, &[]);
        let window = frame(0x8, 0, 0, &1000u32.to_be_bytes());
        let data = frame(0x0, 0, 1, &[0x3, 0, 0, 0, 0, 7]);
        let later = settings(&[(0x3, 7), (0x3, 2)]);
        let bytes = [ack, window, data.clone(), later, data].concat();
        assert_eq!(limit(watch.feed(&bytes)), Some(2), "the last value wins");
        let other = watch.feed(&settings(&[(0x4, 1)]));
        assert_eq!(other, Some(SettingsSeen::default()));
        let empty = watch.feed(&settings(&[]));
        assert_eq!(empty, Some(SettingsSeen::default()));
    }

    #[test]
    fn reads_whether_the_backend_takes_extended_connect() {
        let mut watch = SettingsWatch::new();
        let on = watch.feed(&settings(&[(0x3, 100), (0x8, 1)]));
        let expected = SettingsSeen {
            max_concurrent_streams: Some(100),
            enable_connect_protocol: Some(true),
        };
        assert_eq!(on, Some(expected));
        let off = watch.feed(&settings(&[(0x8, 0)])).unwrap();
        assert_eq!(off.enable_connect_protocol, Some(false));
        // A value h2 refuses (the connection closes) turns nothing on.
        let bad = watch.feed(&settings(&[(0x8, 2)])).unwrap();
        assert_eq!(bad.enable_connect_protocol, Some(false));
    }

    #[test]
    fn a_settings_frame_is_reported_once_whole() {
        let bytes = settings(&[(0x3, 5), (0x8, 1)]);
        let mut watch = SettingsWatch::new();
        let (head, tail) = bytes.split_at(bytes.len() - 1);
        assert_eq!(watch.feed(head), None, "its last setting is not read yet");
        let seen = watch.feed(tail).unwrap();
        assert_eq!(seen.max_concurrent_streams, Some(5));
        assert_eq!(seen.enable_connect_protocol, Some(true));
    }

    #[test]
    fn ignores_what_is_not_the_connections_settings() {
        let mut watch = SettingsWatch::new();
        let acked = frame(TYPE_SETTINGS, FLAG_ACK, 0, &[0, 3, 0, 0, 0, 1]);
        let on_a_stream = frame(TYPE_SETTINGS, 0, 3, &[0, 3, 0, 0, 0, 1]);
        let ragged = frame(TYPE_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1, 0]);
        // A DATA frame whose payload looks like a SETTINGS frame.
        let lookalike = frame(0x0, 0, 1, &settings(&[(0x3, 1)]));
        let bytes = [acked, on_a_stream, ragged, lookalike].concat();
        assert_eq!(watch.feed(&bytes), None);
        assert_eq!(
            limit(watch.feed(&settings(&[(0x3, 9)]))),
            Some(9),
            "still in step"
        );
    }

    /// h2's own server, built with a limit and with or without extended `CONNECT`, is read as
    /// h2 means it: the bytes it writes after a client's preface, taken in whatever pieces the
    /// pipe gives, report that limit and that choice.
    #[tokio::test]
    async fn reads_what_h2s_own_server_sends() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        for (limit, connect) in [0u32, 1, 2, 100, 250, u32::MAX >> 1]
            .into_iter()
            .zip([true, false, true, false, false, true])
        {
            let (mut client, server) = tokio::io::duplex(64);
            let serve = tokio::spawn(async move {
                let mut builder = h2::server::Builder::new();
                builder
                    .max_concurrent_streams(limit)
                    .initial_window_size(1 << 20);
                if connect {
                    builder.enable_connect_protocol();
                }
                let mut connection = builder.handshake::<_, bytes::Bytes>(server).await?;
                while connection.accept().await.is_some() {}
                Ok::<_, h2::Error>(())
            });
            client
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
            client.write_all(&settings(&[])).await.unwrap();
            let mut watch = SettingsWatch::new();
            let mut seen = None;
            let mut buffer = [0u8; 7];
            while seen.is_none() {
                let read = client.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the server closed before its SETTINGS");
                seen = watch.feed(&buffer[..read]);
            }
            let seen = seen.unwrap();
            assert_eq!(seen.max_concurrent_streams, Some(limit));
            // h2 sends the setting only to turn it on.
            assert_eq!(seen.enable_connect_protocol.unwrap_or(false), connect);
            serve.abort();
        }
    }

    /// A frame a backend may send: its bytes, and what it says if it is the connection's
    /// SETTINGS.
    fn any_frame() -> impl Strategy<Value = (Vec<u8>, Option<SettingsSeen>)> {
        let entries = prop::collection::vec((0u16..10, prop_oneof![0u32..3, any::<u32>()]), 0..6);
        prop_oneof![
            entries.prop_map(|entries| {
                let last = |wanted: u16| (entries.iter().rev()).find(|(id, _)| *id == wanted);
                let seen = SettingsSeen {
                    max_concurrent_streams: last(3).map(|(_, value)| *value),
                    enable_connect_protocol: last(8).map(|(_, value)| *value == 1),
                };
                (settings(&entries), Some(seen))
            }),
            // Any other frame (a SETTINGS type drawn becomes CONTINUATION).
            (
                0u8..10,
                any::<u8>(),
                any::<u32>(),
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(kind, flags, stream, payload)| {
                    let kind = if kind == TYPE_SETTINGS { 0x9 } else { kind };
                    (frame(kind, flags, stream, &payload), None)
                }),
        ]
    }

    proptest! {
        /// Frames split anywhere: SETTINGS are reported when sent, and each setting reported is
        /// the last value sent.
        #[test]
        fn any_split_reports_the_last_values_sent(
            frames in prop::collection::vec(any_frame(), 0..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let bytes: Vec<u8> = frames.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
            let expected = (frames.iter().filter_map(|(_, seen)| *seen))
                .reduce(SettingsSeen::then);
            let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut watch = SettingsWatch::new();
            let (mut last, mut from): (Option<SettingsSeen>, usize) = (None, 0);
            for point in points.into_iter().chain([bytes.len()]) {
                if let Some(seen) = watch.feed(&bytes[from..point]) {
                    last = Some(last.unwrap_or_default().then(seen));
                }
                from = point;
            }
            prop_assert_eq!(last, expected);
            prop_assert_eq!(watch.position, Position::Header(0));
        }

        /// Any bytes: no panic, and the same answer whole or byte by byte.
        #[test]
        fn any_bytes_whole_or_byte_by_byte_agree(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let whole = SettingsWatch::new().feed(&bytes);
            let mut watch = SettingsWatch::new();
            let mut last: Option<SettingsSeen> = None;
            for byte in &bytes {
                if let Some(seen) = watch.feed(std::slice::from_ref(byte)) {
                    last = Some(last.unwrap_or_default().then(seen));
                }
            }
            prop_assert_eq!(whole, last);
        }
    }
}
