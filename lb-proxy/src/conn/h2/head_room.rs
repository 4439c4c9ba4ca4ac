//! The request heads one connection's streams hold at once (`server.http2.max_buffered_head_bytes`).
//!
//! A stream's head is decoded in full before the stream is accepted, and held until its backend
//! answers: the request path keeps the client's fields and the head written for the backend
//! (which a retry sends again). On HTTP/1.1 a connection carries one request at a time, so it
//! holds one head of at most `server.max_header_bytes`. An HTTP/2 connection carries up to
//! `max_concurrent_streams`, so without a bound a client that opens a hundred streams with
//! large heads and never ends their bodies (or sends them to a slow endpoint) makes the
//! balancer hold a hundred heads, about 18 MB per connection with 60 KB heads (security.md
//! H17). A stream whose head does not fit what the connection's other streams left is refused
//! with `REFUSED_STREAM`, which tells the client that nothing was done and that it may send
//! the request again; its head is dropped at once. The room is measured as HTTP/2 measures a
//! header list, and comes back when the stream's backend answers (or the stream ends first).

use bytes::Bytes;
use h2::Reason;
use h2::server::SendResponse;
use http::Request;

use crate::metrics::Metrics;

/// What HTTP/2 adds to each field's name and value when it counts a header list (RFC 9113
/// §6.5.2, SETTINGS_MAX_HEADER_LIST_SIZE).
const PER_FIELD: usize = 32;

/// The size of `request`'s head as HTTP/2 counts a header list, its pseudo-header fields
/// among them.
pub(super) fn head_bytes<B>(request: &Request<B>) -> u64 {
    let uri = request.uri();
    let method = ":method".len() + request.method().as_str().len() + PER_FIELD;
    let scheme = uri
        .scheme_str()
        .map_or(0, |s| ":scheme".len() + s.len() + PER_FIELD);
    let authority =
        (uri.authority()).map_or(0, |a| ":authority".len() + a.as_str().len() + PER_FIELD);
    let path = (uri.path_and_query()).map_or(0, |p| ":path".len() + p.as_str().len() + PER_FIELD);
    let fields: usize = (request.headers().iter())
        .map(|(name, value)| name.as_str().len() + value.len() + PER_FIELD)
        .sum();
    (method + scheme + authority + path + fields) as u64
}

/// Refuses a stream whose head found no room, and counts it.
#[cold]
pub(super) fn refuse(respond: &mut SendResponse<Bytes>, bytes: u64, metrics: &Metrics) {
    tracing::debug!(
        bytes,
        "an HTTP/2 stream was refused: its connection's room for request heads is taken"
    );
    metrics.http2.refused_stream();
    respond.send_reset(Reason::REFUSED_STREAM);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_counted_as_http2_counts_a_header_list() {
        let request = Request::get("https://example.com/a?b")
            .header("accept", "*/*")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        let expected = (":method".len() + 3 + 32)
            + (":scheme".len() + 5 + 32)
            + (":authority".len() + 11 + 32)
            + (":path".len() + 4 + 32)
            + (6 + 3 + 32)
            + 2 * (6 + 3 + 32);
        assert_eq!(head_bytes(&request), expected as u64);
        // A request without scheme or authority (as h2 hands over only for CONNECT): the
        // fields it has.
        let bare = Request::get("/").body(()).unwrap();
        assert_eq!(head_bytes(&bare), (7 + 3 + 32 + 5 + 1 + 32) as u64);
    }
}
