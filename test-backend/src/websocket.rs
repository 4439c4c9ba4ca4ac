//! `/ws`: a WebSocket echo (RFC 6455), for the balancer's upgrade tests and the demo. A valid
//! handshake is answered `101`; then every text and binary message comes back as it was sent,
//! pings are answered, and a close is echoed before the connection ends. A request to `/ws`
//! that is no valid handshake gets `426 Upgrade Required`. Over HTTP/2 the handshake is an
//! extended `CONNECT` with `:protocol websocket` (RFC 8441), answered `200`, and the stream
//! carries the messages.

use http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::Shared;
use crate::body::ResponseBody;

/// Whether a comma-separated field holds `token`, without regard to case.
fn lists(request: &Request<Incoming>, name: http::header::HeaderName, token: &str) -> bool {
    (request.headers().get_all(name).iter()).any(|value| {
        (value.to_str().unwrap_or(""))
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    })
}

/// Answers a WebSocket handshake on `/ws` and echoes the connection's messages.
pub(crate) fn upgrade(shared: &Shared, mut request: Request<Incoming>) -> Response<ResponseBody> {
    if request.version() == http::Version::HTTP_2 {
        return over_http2(shared, request);
    }
    let key = request.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let version_13 = request
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|version| version == "13");
    let valid = request.method() == Method::GET
        && lists(&request, CONNECTION, "upgrade")
        && lists(&request, UPGRADE, "websocket")
        && version_13;
    let Some(key) = key.filter(|_| valid) else {
        let mut refused = shared.respond(
            StatusCode::UPGRADE_REQUIRED,
            HeaderValue::from_static("text/plain; charset=utf-8"),
            "a WebSocket handshake is required here\n".into(),
        );
        (refused.headers_mut()).insert(UPGRADE, HeaderValue::from_static("websocket"));
        return refused;
    };
    spawn_echo(hyper::upgrade::on(&mut request));
    let accept = derive_accept_key(key.as_bytes());
    let mut response = shared.respond(
        StatusCode::SWITCHING_PROTOCOLS,
        HeaderValue::from_static("text/plain"),
        ResponseBody::empty(),
    );
    let headers = response.headers_mut();
    headers.remove(http::header::CONTENT_TYPE);
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The echo over the connection or stream `upgrading` hands over.
fn spawn_echo(upgrading: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let upgraded = match upgrading.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "WebSocket upgrade failed");
                return;
            }
        };
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None);
        echo(socket.await).await;
    });
}

/// RFC 8441 §5: an extended `CONNECT` for `websocket` with version 13 is answered `200` and
/// its stream echoes; anything else on `/ws` over HTTP/2 is `426`, as over HTTP/1.1 (hyper
/// refuses an extended `CONNECT` itself when the setting is off).
fn over_http2(shared: &Shared, mut request: Request<Incoming>) -> Response<ResponseBody> {
    let websocket = request.method() == Method::CONNECT
        && (request.extensions().get::<hyper::ext::Protocol>())
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
        && (request.headers().get("sec-websocket-version")).is_some_and(|v| v == "13");
    if !websocket {
        return shared.respond(
            StatusCode::UPGRADE_REQUIRED,
            HeaderValue::from_static("text/plain; charset=utf-8"),
            "a WebSocket extended CONNECT is required here\n".into(),
        );
    }
    spawn_echo(hyper::upgrade::on(&mut request));
    let mut response = shared.respond(
        StatusCode::OK,
        HeaderValue::from_static("text/plain"),
        ResponseBody::empty(),
    );
    response.headers_mut().remove(http::header::CONTENT_TYPE);
    response
}

/// Sends back every data message until the peer closes (tungstenite answers pings and the
/// close itself).
async fn echo<S>(mut socket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    while let Some(message) = socket.next().await {
        let Ok(message) = message else { return };
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}
