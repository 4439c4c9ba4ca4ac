//! Phase two's branch for a backend that speaks HTTP/2 (`protocol: h2c` or `h2`): the request
//! head the codec wrote for HTTP/1.1 (forwarding fields, request id, rewrites all applied) is put
//! in HTTP/2's form, with the body that will be sent, and sent on one of the backend's streams
//! ([`crate::upstream::h2`]). [`request_parts`] is the translation: pure, and tested here.
//!
//! A WebSocket upgrade becomes an extended `CONNECT` (RFC 8441), sent only on a connection
//! whose backend turned it on (otherwise nothing is sent: [`SendFailure::NoWebSocket`]); the
//! backend's `2xx` becomes the `101` the client's handshake expects, and the stream carries the
//! tunnel. Any other answer is an ordinary response.

use http::header::HeaderValue;
use http::uri::Scheme;
use http::{HeaderMap, Request, Version};

use super::body::ToBackend;
use super::prepare::Prepared;
use super::websocket;
use crate::proto::h1::response::ResponseHead;
use crate::upstream::backend::Backend;
use crate::upstream::h2::{H2Pool, H2Request, H2Send};
use crate::upstream::{ExchangeError, ResponseBody, SendFailure};

/// Sends `prepared` (with the upstream `head` of this attempt) on a stream to `backend`.
pub(crate) async fn send(
    http2: &H2Pool,
    backend: &Backend,
    prepared: &mut Prepared,
    head: &[u8],
) -> Result<(ResponseHead, ResponseBody), SendFailure> {
    let (mut parts, websocket_key) = request_parts(head, http2.scheme(), prepared.te_trailers)?;
    // The connection first: a connect that fails leaves the body to the next attempt.
    let slot = http2.reserve(&backend.pool, backend.addr).await?;
    if websocket_key.is_some() && !slot.extended_connect() {
        if slot.first_websocket_refusal() {
            tracing::warn!(
                backend = %backend.name(),
                "the backend does not take WebSocket over HTTP/2 (it sent no SETTINGS_ENABLE_CONNECT_PROTOCOL): upgrades to it are answered 502"
            );
        }
        return Err(SendFailure::NoWebSocket);
    }
    if let Some(grpc) = &mut prepared.grpc_retry {
        if grpc.sent > 0 {
            let previous = crate::proto::grpc::previous_attempts(&parts.headers, grpc.sent);
            (parts.headers).insert(crate::proto::grpc::GRPC_PREVIOUS_ATTEMPTS, previous);
        }
        grpc.sent += 1;
    }
    let body = match prepared.to_backend.take_upload() {
        // Sent once, unless it is a replayed body (a gRPC call that may be retried).
        Some(body) => H2Send::Streaming(Some(body)),
        None => match &prepared.to_backend {
            ToBackend::Buffered(bytes) => H2Send::Buffered(bytes.clone()),
            _ => H2Send::Empty,
        },
    };
    let request = H2Request {
        parts,
        body,
        deadline: prepared.grpc_deadline,
    };
    let (head, body) = http2
        .send(&backend.pool, backend.addr, slot, request)
        .await?;
    if let Some(key) = websocket_key
        && body.is_tunnel()
    {
        let accept = websocket::accept_for(key.as_bytes());
        return Ok((head.into_switch(b"websocket", &accept), body));
    }
    match prepared.grpc_retry {
        None => Ok((head, body)),
        Some(retry) => super::grpc::judge(retry, head, body, &prepared.to_backend),
    }
}

/// The request for an HTTP/2 backend from the serialised HTTP/1.1 head the request path wrote
/// (its fields already filtered and forwarded): `Host` becomes `:authority`, and the fields
/// HTTP/2 forbids (RFC 9113 §8.2.2) are left out; `te: trailers` is added when the client asked
/// for trailers. A WebSocket upgrade (the head carries `Upgrade` only for a well-formed one)
/// becomes an extended `CONNECT`, and the client's `Sec-WebSocket-Key` comes back with it.
pub(crate) fn request_parts(
    head: &[u8],
    scheme: &Scheme,
    te_trailers: bool,
) -> Result<(http::request::Parts, Option<HeaderValue>), ExchangeError> {
    let bad = || ExchangeError::Http2Head;
    let mut fields = vec![httparse::EMPTY_HEADER; head.split(|b| *b == b'\n').count()];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad()),
    }
    let method =
        http::Method::from_bytes(parsed.method.ok_or_else(bad)?.as_bytes()).map_err(|_| bad())?;
    let target = parsed.path.ok_or_else(bad)?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + 1);
    let (mut authority, mut upgrade) = (None, None);
    for field in parsed.headers.iter() {
        let name = http::HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad())?;
        if name == http::header::HOST {
            authority = Some(field.value);
            continue;
        }
        if name == http::header::UPGRADE {
            upgrade = Some(field.value);
        }
        if hop_by_hop(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(field.value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    if te_trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let authority =
        http::uri::Authority::try_from(authority.ok_or_else(bad)?).map_err(|_| bad())?;
    let uri = http::Uri::builder()
        .scheme(scheme.clone())
        .authority(authority)
        .path_and_query(if target == "*" { "/" } else { target })
        .build()
        .map_err(|_| bad())?;
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_2;
    parts.headers = headers;
    let websocket_key =
        upgrade.and_then(|upgrade| websocket::to_extended_connect(&mut parts, upgrade));
    Ok((parts, websocket_key))
}

/// Fields HTTP/2 forbids: connection-specific ones (RFC 9113 §8.2.2).
fn hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    *name == CONNECTION
        || *name == TRANSFER_ENCODING
        || *name == UPGRADE
        || *name == TE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http1_head_becomes_an_http2_request() {
        let head = b"POST /svc/Method?x=1 HTTP/1.1\r\nhost: api.example\r\ncontent-type: application/grpc\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-forwarded-for: 10.0.0.1\r\n\r\n";
        let (parts, websocket_key) = request_parts(head, &Scheme::HTTP, true).unwrap();
        assert_eq!(websocket_key, None, "no handshake: a plain request");
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.uri.to_string(), "http://api.example/svc/Method?x=1");
        assert_eq!(parts.version, Version::HTTP_2);
        let names: Vec<&str> = parts.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "content-length", "x-forwarded-for", "te"]
        );
        assert_eq!(parts.headers["te"], "trailers");
    }

    #[test]
    fn a_websocket_upgrade_head_becomes_an_extended_connect() {
        let head = b"GET /ws?room=2 HTTP/1.1\r\nhost: chat.example\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
        let (parts, websocket_key) = request_parts(head, &Scheme::HTTPS, false).unwrap();
        assert_eq!(websocket_key.unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(parts.method, http::Method::CONNECT);
        assert_eq!(parts.uri.to_string(), "https://chat.example/ws?room=2");
        let protocol = parts.extensions.get::<hyper::ext::Protocol>().unwrap();
        assert_eq!(protocol.as_str(), "websocket");
        let names: Vec<&str> = parts.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["sec-websocket-version"]);
    }

    #[test]
    fn a_head_without_host_is_refused() {
        let head = b"GET / HTTP/1.1\r\naccept: */*\r\n\r\n";
        assert!(request_parts(head, &Scheme::HTTPS, false).is_err());
        assert!(request_parts(b"GET / HTTP/1.1\r\n", &Scheme::HTTP, false).is_err());
    }
}
