//! WebSocket over HTTP/2 (RFC 8441): an extended `CONNECT` with `:protocol websocket` becomes,
//! towards the backend, the HTTP/1.1 upgrade request RFC 6455 defines, so that any WebSocket
//! backend serves it unchanged: `GET` on the stream's `:path`, `Upgrade: websocket` (with
//! `Connection: upgrade`, which the head writer adds for every upgrade), and a fresh
//! `Sec-WebSocket-Key`, which RFC 8441 §5 leaves out of HTTP/2. `Sec-WebSocket-Version`,
//! `-Protocol` and `-Extensions` pass as the client sent them. The backend's `101` becomes the
//! stream's `200` without the fields that only HTTP/1.1 uses (`Sec-WebSocket-Accept`
//! among them).

use base64::Engine as _;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// `Sec-WebSocket-Key`.
const KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// `Sec-WebSocket-Accept`: the answer to the key the balancer made up, meaningless to the
/// HTTP/2 client.
const ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// Why an extended `CONNECT` is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// A `:protocol` other than `websocket` (RFC 8441 registers only that one here).
    #[error("only the websocket protocol is supported over extended CONNECT")]
    Protocol,
    /// The stream carries a body: a WebSocket handshake has none.
    #[error("an extended CONNECT carries no request body")]
    Body,
}

impl Refused {
    /// The status that answers it.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refused::Protocol => StatusCode::NOT_IMPLEMENTED,
            Refused::Body => StatusCode::BAD_REQUEST,
        }
    }
}

/// Turns the head of an extended `CONNECT` for `protocol` into the HTTP/1.1 WebSocket upgrade
/// request sent to the backend; `nonce` makes its `Sec-WebSocket-Key`.
pub(crate) fn to_upgrade(
    parts: &mut http::request::Parts,
    protocol: &str,
    has_body: bool,
    nonce: [u8; 16],
) -> Result<(), Refused> {
    if !protocol.eq_ignore_ascii_case("websocket") {
        return Err(Refused::Protocol);
    }
    if has_body {
        return Err(Refused::Body);
    }
    parts.method = Method::GET;
    let headers = &mut parts.headers;
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    // Base64 is always a valid field value.
    if let Ok(key) = HeaderValue::from_str(&key) {
        headers.insert(KEY, key);
    }
    Ok(())
}

/// The fields of a backend's `101` that have no meaning on an HTTP/2 stream: the upgrade's
/// own (hyper drops `Connection` and `Upgrade` from HTTP/2 answers anyway) and the accept
/// value of a key the client never sent.
pub(crate) fn strip_switch_fields(headers: &mut http::HeaderMap) {
    headers.remove(ACCEPT);
    headers.remove(header::UPGRADE);
    headers.remove(header::CONNECTION);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> http::request::Parts {
        let (parts, ()) = http::Request::builder()
            .method(Method::CONNECT)
            .version(http::Version::HTTP_2)
            .uri("https://example.com/chat?room=1")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat")
            .header("sec-websocket-key", "client-sent-this")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn a_websocket_connect_becomes_an_upgrade_get() {
        let mut parts = connect();
        to_upgrade(&mut parts, "websocket", false, [7; 16]).unwrap();
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri.path_and_query().unwrap(), "/chat?room=1");
        assert_eq!(parts.headers["upgrade"], "websocket");
        // The balancer's own key: 16 bytes in base64, in place of anything the client sent.
        assert_eq!(
            parts.headers["sec-websocket-key"],
            "BwcHBwcHBwcHBwcHBwcHBw=="
        );
        assert_eq!(parts.headers.get_all("sec-websocket-key").iter().count(), 1);
        assert_eq!(parts.headers["sec-websocket-version"], "13");
        assert_eq!(parts.headers["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn other_protocols_and_bodies_are_refused() {
        let mut parts = connect();
        assert_eq!(
            to_upgrade(&mut parts, "connect-udp", false, [0; 16]),
            Err(Refused::Protocol)
        );
        assert_eq!(parts.method, Method::CONNECT);
        assert_eq!(Refused::Protocol.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(
            to_upgrade(&mut parts, "WebSocket", true, [0; 16]),
            Err(Refused::Body)
        );
        assert!(to_upgrade(&mut parts, "WebSocket", false, [0; 16]).is_ok());
    }

    #[test]
    fn the_switch_fields_do_not_reach_the_stream() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_switch_fields(&mut headers);
        let left: Vec<_> = headers.keys().map(|name| name.as_str()).collect();
        assert_eq!(left, ["sec-websocket-protocol", "sec-websocket-extensions"]);
    }
}
