//! The HTTP/2 SETTINGS watcher over a backend's bytes: any bytes, split anywhere, never panic,
//! and report SETTINGS and the last value of each setting read (SETTINGS_MAX_CONCURRENT_STREAMS,
//! SETTINGS_ENABLE_CONNECT_PROTOCOL) exactly as the same bytes read whole. The first byte of the
//! input chooses the size of the pieces.

use lb_proxy::proto::h2_settings::{SettingsSeen, SettingsWatch};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let whole = SettingsWatch::new().feed(bytes);
    let piece = usize::from(piece % 16) + 1;
    let mut watch = SettingsWatch::new();
    let mut last: Option<SettingsSeen> = None;
    for chunk in bytes.chunks(piece) {
        if let Some(seen) = watch.feed(chunk) {
            last = Some(last.unwrap_or_default().then(seen));
        }
    }
    assert_eq!(whole, last, "pieces of {piece}");
}
