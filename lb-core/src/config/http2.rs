//! `server.http2`: the limits of HTTP/2 client connections (served by hyper: `h2` by ALPN on a
//! TLS listener, or cleartext prior knowledge under `server.h2c`).
//! Defaults follow Envoy's guidance for an edge proxy: 100 concurrent streams, a 64 KiB stream
//! window and a 1 MiB connection window, so one client cannot make the balancer buffer much or
//! hold many backend requests. The rapid-reset caps (CVE-2023-44487) bound the streams a client
//! may open and reset before the balancer has even accepted them, and the streams the balancer
//! itself had to reset for a client's protocol errors; past either, the connection is closed
//! with GOAWAY. The header list (and so a CONTINUATION flood) is bounded by
//! `server.max_header_bytes`, and CONTINUATION frames to what that list needs (h2 allows
//! `max(5, 1.25 × max_header_bytes / 16 KiB)` of them per header block). A client that takes
//! none of a response's data (a zero flow-control window, or a socket it never reads) for
//! `stalled_response_timeout` has its connection closed: otherwise it would hold the backend
//! request and the balancer's buffers for as long as it likes. Each such close is counted; the
//! log names the client of at most `logged_closes_per_second` of them, so that clients cannot
//! fill the log (or a journal's rate limit) at the price of a connection a line. The small
//! request bodies the balancer reads in full before it picks a backend (so that a retry can
//! send them again) are held to `max_buffered_body_bytes` per connection: without it, each of
//! a connection's streams could hold one, and one connection as much memory as a hundred
//! HTTP/1.1 connections. The request heads of a connection's streams are held to
//! `max_buffered_head_bytes` in all for the same reason: each may be up to
//! `server.max_header_bytes`, and a stream's head is held until its backend answers.

use std::time::Duration;

use serde::Serialize;

use super::duration;
use super::node::Node;
use super::walk::{Problem, Section, Walker, int};

/// Largest HTTP/2 flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Smallest window accepted: the protocol's initial value. Less only slows every stream.
pub const MIN_WINDOW: u32 = 65_535;

/// `server.http2`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Http2Config {
    /// Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Flow-control window of each stream: request body bytes a client may send ahead.
    pub initial_stream_window_bytes: u32,
    /// Flow-control window of a whole connection.
    pub initial_connection_window_bytes: u32,
    /// Streams a client may open and reset before they are accepted; more closes the
    /// connection (rapid reset).
    pub max_pending_reset_streams: usize,
    /// Streams the balancer may reset for a client's protocol errors; more closes the
    /// connection.
    pub max_local_error_reset_streams: usize,
    /// A response with data to send that the client takes none of for this long (its
    /// flow-control window stays shut, or it does not read its socket) closes the connection.
    #[serde(serialize_with = "duration::serialize")]
    pub stalled_response_timeout: Duration,
    /// Connections closed for what their client did that are logged (`info`, with the client's
    /// address) in any one second; the rest are counted only. 0: none is logged.
    pub logged_closes_per_second: u32,
    /// Bytes of small request bodies one connection's streams may hold at once, read in full
    /// before a backend is picked so that a retry can send them again; a body that does not
    /// fit streams through instead (and is not retried).
    pub max_buffered_body_bytes: u64,
    /// Bytes of request heads (as HTTP/2 counts a header list: each field's name and value
    /// and 32 more) one connection's streams may hold at once, from a head's arrival until
    /// its backend answers; a stream whose head does not fit is refused (`REFUSED_STREAM`,
    /// which a client may retry). At least `server.max_header_bytes`, so that a connection
    /// with no other stream in flight takes any head the size limit admits.
    pub max_buffered_head_bytes: u64,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            initial_stream_window_bytes: 64 * 1024,
            initial_connection_window_bytes: 1024 * 1024,
            max_pending_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            stalled_response_timeout: Duration::from_secs(60),
            logged_closes_per_second: 10,
            max_buffered_body_bytes: 1024 * 1024,
            max_buffered_head_bytes: 1024 * 1024,
        }
    }
}

/// A window size: [`MIN_WINDOW`]..=[`MAX_WINDOW`].
fn window(node: &Node) -> Result<u32, Problem> {
    let value: u32 = int(i128::from(MIN_WINDOW))(node)?;
    if value > MAX_WINDOW {
        return Err(Problem::new(format!(
            "must be at most {MAX_WINDOW} (2^31 - 1), found {value}"
        )));
    }
    Ok(value)
}

/// Reads `server.http2`.
pub(crate) fn http2(w: &mut Walker<'_>, s: &Section<'_>) -> Http2Config {
    const FIELDS: [&str; 9] = [
        "max_concurrent_streams",
        "initial_stream_window_bytes",
        "initial_connection_window_bytes",
        "max_pending_reset_streams",
        "max_local_error_reset_streams",
        "stalled_response_timeout",
        "logged_closes_per_second",
        "max_buffered_body_bytes",
        "max_buffered_head_bytes",
    ];
    let d = Http2Config::default();
    let h = w.section(s.get("http2"), &s.field("http2"), &FIELDS);
    Http2Config {
        max_concurrent_streams: w
            .get(
                &h,
                "max_concurrent_streams",
                d.max_concurrent_streams,
                int(1),
            )
            .value,
        initial_stream_window_bytes: w
            .get(
                &h,
                "initial_stream_window_bytes",
                d.initial_stream_window_bytes,
                window,
            )
            .value,
        initial_connection_window_bytes: w
            .get(
                &h,
                "initial_connection_window_bytes",
                d.initial_connection_window_bytes,
                window,
            )
            .value,
        max_pending_reset_streams: w
            .get(
                &h,
                "max_pending_reset_streams",
                d.max_pending_reset_streams,
                int(1),
            )
            .value,
        max_local_error_reset_streams: w
            .get(
                &h,
                "max_local_error_reset_streams",
                d.max_local_error_reset_streams,
                int(1),
            )
            .value,
        stalled_response_timeout: w
            .get(
                &h,
                "stalled_response_timeout",
                d.stalled_response_timeout,
                super::walk::duration(true),
            )
            .value,
        logged_closes_per_second: w
            .get(
                &h,
                "logged_closes_per_second",
                d.logged_closes_per_second,
                int(0),
            )
            .value,
        max_buffered_body_bytes: w
            .get(
                &h,
                "max_buffered_body_bytes",
                d.max_buffered_body_bytes,
                int(0),
            )
            .value,
        max_buffered_head_bytes: w
            .get(
                &h,
                "max_buffered_head_bytes",
                d.max_buffered_head_bytes,
                int(0),
            )
            .value,
    }
}

/// `server.http2.max_buffered_head_bytes` must hold one head of `server.max_header_bytes`:
/// with less, HTTP/2 would refuse heads that HTTP/1.1 takes, on every connection.
pub(crate) fn check_head_room(w: &mut Walker<'_>, s: &Section<'_>, server: &super::ServerConfig) {
    let room = server.http2.max_buffered_head_bytes;
    let largest = server.max_header_bytes as u64;
    if room >= largest {
        return;
    }
    let pos = match s.get("http2").map(|node| &node.node) {
        Some(Node::Map(entries)) => (entries.iter())
            .find(|(key, _)| matches!(&key.node, Node::Str(name) if name == "max_buffered_head_bytes"))
            .and_then(|(_, value)| value.pos),
        _ => None,
    };
    let problem = Problem::new(format!(
        "must be at least server.max_header_bytes ({largest}), found {room}"
    ))
    .hint("a connection must have room for one head of the largest size accepted");
    w.report(pos, "server.http2.max_buffered_head_bytes", problem);
}
