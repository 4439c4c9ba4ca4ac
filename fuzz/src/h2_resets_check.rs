//! The quiet-reset watcher over a backend's HTTP/2 bytes: any bytes, split anywhere, never panic,
//! come out as the same bytes as when read whole, and differ from what went in only where an
//! RST_STREAM's code (its last byte, 0 or 8: NO_ERROR or CANCEL) became INTERNAL_ERROR (2). The
//! first byte of the input chooses the size of the pieces.

use lb_proxy::proto::h2_resets::{MAX_TRACKED, ResetWatch};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = bytes.to_vec();
    let mut watch = ResetWatch::new();
    watch.feed(&mut whole);
    assert!(watch.open_streams() <= MAX_TRACKED);
    let piece = usize::from(piece % 16) + 1;
    let mut pieces = bytes.to_vec();
    let mut split = ResetWatch::new();
    for chunk in pieces.chunks_mut(piece) {
        split.feed(chunk);
    }
    assert_eq!(pieces, whole, "pieces of {piece}");
    assert_eq!(
        split.open_streams(),
        watch.open_streams(),
        "pieces of {piece}"
    );
    for (before, after) in bytes.iter().zip(&whole) {
        assert!(
            before == after || (matches!(*before, 0 | 8) && *after == 2),
            "only codes change"
        );
    }
}
