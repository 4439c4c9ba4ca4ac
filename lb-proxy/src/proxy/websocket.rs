//! WebSocket over HTTP/2 (RFC 8441): an extended `CONNECT` with `:protocol websocket` becomes,
//! towards the backend, the HTTP/1.1 upgrade request RFC 6455 defines, so that any WebSocket
//! backend serves it unchanged: `GET` on the stream's `:path`, `Upgrade: websocket` (with
//! `Connection: upgrade`, which the head writer adds for every upgrade), and a fresh
//! `Sec-WebSocket-Key`, which RFC 8441 §5 leaves out of HTTP/2. `Sec-WebSocket-Version`,
//! `-Protocol` and `-Extensions` pass as the client sent them. The backend's `101` becomes the
//! stream's `200` without the fields that only HTTP/1.1 uses (`Sec-WebSocket-Accept`
//! among them).
//!
//! Towards an HTTP/2 backend (`protocol: h2c` or `h2`) it goes the other way: the upgrade
//! request becomes an extended `CONNECT` ([`to_extended_connect`]), sent only when the backend
//! turned it on, and the backend's `2xx` becomes the client's `101`, whose
//! `Sec-WebSocket-Accept` the balancer computes from the client's key ([`accept_for`]).

use base64::Engine as _;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// `Sec-WebSocket-Key`.
const KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// `Sec-WebSocket-Accept`: the answer to the key the balancer made up, meaningless to the
/// HTTP/2 client.
const ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// RFC 6455 §1.3: what a server appends to the client's key before hashing it.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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

/// Turns the HTTP/2 form of an HTTP/1.1 WebSocket upgrade request (`upgrade`: its `Upgrade`
/// value, which the HTTP/2 form has lost) into the extended `CONNECT` of RFC 8441 §5 for an
/// HTTP/2 backend: `:protocol websocket` on the same `:path`, the other `Sec-WebSocket-*`
/// fields as sent, no `Sec-WebSocket-Key` (HTTP/2 has none; the balancer answers the key
/// itself). Returns the client's key; `None`, and the request unchanged, when this is no
/// WebSocket handshake: another protocol, not `GET`, or not exactly one key.
pub(crate) fn to_extended_connect(
    parts: &mut http::request::Parts,
    upgrade: &[u8],
) -> Option<HeaderValue> {
    if parts.method != Method::GET || !upgrade.trim_ascii().eq_ignore_ascii_case(b"websocket") {
        return None;
    }
    let mut keys = parts.headers.get_all(KEY).iter();
    let key = keys.next()?.clone();
    if keys.next().is_some() {
        return None;
    }
    parts.headers.remove(KEY);
    parts.method = Method::CONNECT;
    (parts.extensions).insert(hyper::ext::Protocol::from_static("websocket"));
    Some(key)
}

/// RFC 6455 §4.2.2: the `Sec-WebSocket-Accept` that answers `key`, base64 of the SHA-1 of the
/// key and the protocol's GUID.
pub(crate) fn accept_for(key: &[u8]) -> Vec<u8> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(ACCEPT_GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(context.finish());
    accept.into_bytes()
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

    /// RFC 6455 §1.3's own example.
    #[test]
    fn the_accept_value_is_rfc_6455s() {
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn upgrade_get(keys: &[&'static str]) -> http::request::Parts {
        let mut builder = http::Request::builder()
            .uri("http://example.com/chat?room=1")
            .version(http::Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "chat");
        for key in keys {
            builder = builder.header("sec-websocket-key", *key);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_websocket_upgrade_becomes_an_extended_connect_for_an_http2_backend() {
        let mut parts = upgrade_get(&["dGhlIHNhbXBsZSBub25jZQ=="]);
        let key = to_extended_connect(&mut parts, b" WebSocket ").unwrap();
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(parts.method, Method::CONNECT);
        let protocol = parts.extensions.get::<hyper::ext::Protocol>().unwrap();
        assert_eq!(protocol.as_str(), "websocket");
        assert_eq!(parts.uri, "http://example.com/chat?room=1");
        assert!(!parts.headers.contains_key("sec-websocket-key"));
        assert_eq!(parts.headers["sec-websocket-version"], "13");
        assert_eq!(parts.headers["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn no_extended_connect_without_a_websocket_handshake() {
        let cases: [(&[&'static str], &[u8]); 4] = [
            (&["a2V5"], b"h2c"),
            (&["a2V5"], b"websocket, foo"),
            (&[], b"websocket"),
            (&["a2V5", "b3RoZXI="], b"websocket"),
        ];
        for (keys, upgrade) in cases {
            let mut parts = upgrade_get(keys);
            assert_eq!(to_extended_connect(&mut parts, upgrade), None, "{keys:?}");
            assert_eq!(parts.method, Method::GET);
            assert!(parts.extensions.get::<hyper::ext::Protocol>().is_none());
            assert_eq!(
                parts.headers.get_all("sec-websocket-key").iter().count(),
                keys.len()
            );
        }
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
