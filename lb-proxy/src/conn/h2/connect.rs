//! `CONNECT` on an HTTP/2 stream. A plain one is refused by the codec's rules (the balancer
//! opens no TCP tunnels); an extended one for `websocket` (RFC 8441, advertised by
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` wherever HTTP/2 is served) is forwarded as the HTTP/1.1
//! upgrade request ([`crate::proxy::websocket`]), and when the backend switches (`101`) the
//! stream answers `200` and carries the tunnel ([`crate::conn::tunnel`]): the same idle timeout
//! (the stream's own timer), in-flight slot, shutdown grace and `lb_upgraded_connections` as a
//! tunnel over HTTP/1.1. Any other answer is relayed as it is, save a `2xx` that did not
//! switch, which on a `CONNECT` stream would open a tunnel to nothing: it becomes `502`.

use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Response, StatusCode};

use super::stream::until_reset;
use super::stream_io::StreamIo;
use super::{H2Conn, send};
use crate::conn::timed_io::TimedIo;
use crate::conn::tunnel;
use crate::metrics::MethodLabel;
use crate::proxy::body::ToClient;
use crate::proxy::body::budget::BudgetHold;
use crate::proxy::{ParsedUpgrade, handle_parsed, respond, websocket};

/// What a WebSocket's `2xx` without a switch becomes.
const NOT_SWITCHED: &[u8] = b"502 bad gateway: the backend did not switch to WebSocket\n";

/// Answers a `CONNECT` stream, and carries its tunnel when one opens.
pub(super) async fn serve(
    conn: &Arc<H2Conn>,
    mut parts: http::request::Parts,
    recv: RecvStream,
    mut responder: SendResponse<Bytes>,
    head_room: BudgetHold,
) {
    let (shared, client) = (&*conn.shared, &conn.client);
    let Some(protocol) = parts.extensions.remove::<h2::ext::Protocol>() else {
        let answer = pin!(handle_parsed(
            shared,
            client,
            parts,
            None,
            ParsedUpgrade::No
        ));
        let answered = until_reset(&mut responder, answer).await;
        drop(head_room);
        if let Some(reply) = answered {
            send::respond(&mut responder, reply.into_h2_response(false), &conn.stall).await;
        }
        return;
    };
    let nonce: [u8; 16] = rand::random();
    // The stream's data is the tunnel's; a request that states a body of its own is refused.
    let has_body = (parts.headers.get(http::header::CONTENT_LENGTH))
        .is_some_and(|length| length.as_bytes() != b"0");
    if let Err(refused) = websocket::to_upgrade(&mut parts, protocol.as_str(), has_body, nonce) {
        drop(head_room);
        let status = refused.status();
        let text = format!("{} {refused}\n", status.as_str());
        let method = MethodLabel::of(&Method::CONNECT);
        let reply = respond::refuse(shared, &respond::none_label(), method, status, text);
        send::respond(&mut responder, reply.into_h2_response(false), &conn.stall).await;
        return;
    }
    let answer = pin!(handle_parsed(
        shared,
        client,
        parts,
        None,
        ParsedUpgrade::ExtendedConnect
    ));
    let answered = until_reset(&mut responder, answer).await;
    // The head went with the request path: a tunnel that opens holds none of it.
    drop(head_room);
    let Some(mut reply) = answered else {
        return;
    };
    if reply.status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(backend) = reply.body.take_upgraded()
    {
        let (mut head, _) = reply.into_h2_response(false).into_parts();
        head.status = StatusCode::OK;
        websocket::strip_switch_fields(&mut head.headers);
        // A 2xx to CONNECT states no length (RFC 9110 §9.3.6): the tunnel's bytes follow.
        head.headers.remove(http::header::CONTENT_LENGTH);
        let Some(stream) = send::send_head(&mut responder, Response::from_parts(head, ()), false)
        else {
            return;
        };
        let idle_timeout = shared.runtime.load().config.server.upgrade_idle_timeout;
        let _open = conn.conn.tunnel_opened(idle_timeout);
        let io = StreamIo::new(stream, recv, conn.stall.clone());
        let mut io = TimedIo::new(io, idle_timeout, None);
        tunnel::run(&mut io, &mut BytesMut::new(), backend, shared).await;
        return;
    }
    let mut response = reply.into_h2_response(false);
    if response.status().is_success() || response.status() == StatusCode::SWITCHING_PROTOCOLS {
        tracing::debug!(status = %response.status(), "a WebSocket request over HTTP/2 was answered without a switch");
        response = Response::new(ToClient::Fixed(Some(Bytes::from_static(NOT_SWITCHED))));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        send::prepare_fields(response.headers_mut(), Some(NOT_SWITCHED.len() as u64));
    }
    send::respond(&mut responder, response, &conn.stall).await;
}
