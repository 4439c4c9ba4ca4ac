//! A response onto its HTTP/2 stream: the head, then the body as the stream's window lets it
//! go, then trailers (gRPC's status among them) or the end of the stream.
//!
//! The body is pulled only when the stream can take more (h2 holds what it was given until
//! the client's window opens), so a client that reads slowly slows its backend instead of
//! filling the balancer's memory; one that never reads is found by the connection's
//! [`StallWatch`], which counts the body as waiting from each frame handed over until the
//! stream asks for the next.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, ready};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::Body;

use super::stall::{StallWatch, Watched};
use crate::proto::h1::date::date_value;
use crate::proxy::body::ToClient;
use crate::proxy::reply::is_connection_specific;

/// Sends `response`, whose fields are HTTP/2's ([`crate::proxy::reply::Reply::into_h2_response`],
/// [`prepare_fields`]), on the stream of `respond`.
pub(super) async fn respond(
    respond: &mut SendResponse<Bytes>,
    response: Response<ToClient>,
    stall: &Arc<StallWatch>,
) {
    let (head, body) = response.into_parts();
    let end = body.is_end_stream();
    let Some(mut stream) = send_head(respond, Response::from_parts(head, ()), end) else {
        return;
    };
    if !end {
        pump(&mut stream, stall.watch(body)).await;
    }
}

/// Sends a response head; the stream for its body, unless `end`.
pub(super) fn send_head(
    respond: &mut SendResponse<Bytes>,
    head: Response<()>,
    end: bool,
) -> Option<SendStream<Bytes>> {
    match respond.send_response(head, end) {
        Ok(stream) => (!end).then_some(stream),
        Err(error) => {
            tracing::debug!(%error, "an HTTP/2 response head could not be sent");
            respond.send_reset(Reason::INTERNAL_ERROR);
            None
        }
    }
}

/// The fields of an HTTP/2 response built from another than a reply's (a WebSocket's switch,
/// or its refusal): none of HTTP/1's connection-specific ones (RFC 9113 §8.2.2: h2 refuses a
/// head with them), a `Date` when there is none, and the body's length when it is known and
/// the fields do not state one.
pub(super) fn prepare_fields(headers: &mut HeaderMap, length: Option<u64>) {
    if headers.keys().any(is_connection_specific) {
        strip_connection_specific(headers);
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date_value());
    }
    if let Some(length) = length
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

#[cold]
fn strip_connection_specific(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = (headers.keys())
        .filter(|name| is_connection_specific(name))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Sends `body` on `stream` as its window lets it go; the stream ends with the body's last
/// frame, its trailers, or a reset when the body fails (the client must not take a cut-off
/// body for a whole one).
///
/// The first frame is handed over without asking for room: h2 holds it until the window
/// opens, and one frame per stream is bounded by the streams a connection may open. Most
/// bodies are that one frame, which so costs no capacity round. While it is awaited, a reset
/// of the stream is watched for, as the room asked for later frames watches for one.
async fn pump(stream: &mut SendStream<Bytes>, mut body: Watched) {
    let mut sent = false;
    std::future::poll_fn(|cx| {
        loop {
            if sent {
                // Room for one byte means the data handed over before has gone out: h2 frames
                // each chunk within the window itself.
                stream.reserve_capacity(1);
                if stream.capacity() == 0 {
                    loop {
                        match ready!(stream.poll_capacity(cx)) {
                            Some(Ok(0)) => {}
                            Some(Ok(_)) => break,
                            Some(Err(_)) | None => return Poll::Ready(()),
                        }
                    }
                } else if stream.poll_reset(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            let polled = Pin::new(&mut body).poll_frame(cx);
            let Poll::Ready(frame) = polled else {
                if !sent && stream.poll_reset(cx).is_ready() {
                    return Poll::Ready(());
                }
                return Poll::Pending;
            };
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = body.is_end_stream();
                        if stream.send_data(data, end).is_err() || end {
                            return Poll::Ready(());
                        }
                        sent = true;
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            stream.reserve_capacity(0);
                            let _ = stream.send_trailers(trailers);
                        }
                        return Poll::Ready(());
                    }
                },
                Some(Err(error)) => {
                    tracing::debug!(%error, "an HTTP/2 response body failed; the stream is reset");
                    stream.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(());
                }
                None => {
                    let _ = stream.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_specific_fields_are_dropped_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("content-type", "text/plain"),
            ("date", "Mon, 07 Dec 2026 07:00:00 GMT"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        prepare_fields(&mut headers, Some(5));
        let mut names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "content-type", "date"]);
        assert_eq!(headers["content-length"], "5");
        assert_eq!(headers["date"], "Mon, 07 Dec 2026 07:00:00 GMT");
    }

    #[test]
    fn a_date_is_added_and_a_stated_length_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        prepare_fields(&mut headers, Some(5));
        assert_eq!(headers["content-length"], "7");
        let date = headers["date"].to_str().unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    }
}
