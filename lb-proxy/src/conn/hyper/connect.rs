//! `CONNECT` on an HTTP/2 stream. A plain one is refused by the codec's rules (the balancer
//! opens no TCP tunnels); an extended one for `websocket` (RFC 8441, advertised by
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` wherever HTTP/2 is served) is forwarded as the HTTP/1.1
//! upgrade request ([`crate::proxy::websocket`]), and when the backend switches (`101`) the
//! stream answers `200` and carries the tunnel ([`crate::conn::tunnel`]) on a task of its own:
//! the same idle timeout (the stream's own timer), in-flight slot, shutdown grace and
//! `lb_upgraded_connections` as a tunnel over HTTP/1.1. Any other answer is relayed as it is,
//! save a `2xx` that did not switch, which on a `CONNECT` stream would open a tunnel to
//! nothing: it becomes `502`.

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::ProxyService;
use super::stall::Watched;
use crate::conn::timed_io::TimedIo;
use crate::conn::tunnel::{self, TunnelClient};
use crate::metrics::MethodLabel;
use crate::proxy::body::ToClient;
use crate::proxy::{HyperUpgrade, handle_hyper, respond, websocket};

/// The client's end of a tunnel on an HTTP/2 stream, with its own idle timer.
type StreamIo = TimedIo<TokioIo<hyper::upgrade::Upgraded>>;

impl TunnelClient for StreamIo {
    fn time_as_tunnel(&mut self, idle_timeout: Duration) {
        TimedIo::time_as_tunnel(self, idle_timeout);
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        TimedIo::poll_idle(self, cx)
    }
}

/// Answers a `CONNECT` stream.
pub(super) async fn serve(
    service: &ProxyService,
    mut request: Request<Incoming>,
) -> Response<Watched> {
    let shared = &*service.shared;
    let Some(protocol) = request.extensions_mut().remove::<hyper::ext::Protocol>() else {
        let reply = handle_hyper(shared, &service.client, request, HyperUpgrade::No).await;
        return service.respond(reply.into_response(false));
    };
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
    let (mut parts, body) = request.into_parts();
    let nonce: [u8; 16] = rand::random();
    let has_body = !body.is_end_stream();
    if let Err(refused) = websocket::to_upgrade(&mut parts, protocol.as_str(), has_body, nonce) {
        let status = refused.status();
        let text = format!("{} {refused}\n", status.as_str());
        let method = MethodLabel::of(&Method::CONNECT);
        let reply = respond::refuse(shared, &respond::none_label(), method, status, text);
        return service.respond(reply.into_response(false));
    }
    let request = Request::from_parts(parts, body);
    let upgrade = HyperUpgrade::ExtendedConnect;
    let mut reply = handle_hyper(shared, &service.client, request, upgrade).await;
    if reply.status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(on_upgrade) = on_upgrade
        && let Some(backend) = reply.body.take_upgraded()
    {
        let shared = service.shared.clone();
        let conn = service.conn.clone();
        service.tracker.spawn(async move {
            let stream = match on_upgrade.await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%error, "the HTTP/2 stream was not handed over");
                    return;
                }
            };
            let idle_timeout = shared.runtime.load().config.server.upgrade_idle_timeout;
            let _open = conn.tunnel_opened(idle_timeout);
            let mut io = TimedIo::new(TokioIo::new(stream), idle_timeout, None);
            tunnel::run(&mut io, &mut BytesMut::new(), backend, &shared).await;
        });
        let mut response = reply.into_response(false);
        *response.status_mut() = StatusCode::OK;
        websocket::strip_switch_fields(response.headers_mut());
        *response.body_mut() = ToClient::Fixed(None);
        return response.map(Watched::plain);
    }
    if reply.status.is_success() || reply.status == StatusCode::SWITCHING_PROTOCOLS {
        tracing::debug!(status = %reply.status, "a WebSocket request over HTTP/2 was answered without a switch");
        let mut response = Response::new(Watched::plain(ToClient::Fixed(Some(
            bytes::Bytes::from_static(
                b"502 bad gateway: the backend did not switch to WebSocket\n",
            ),
        ))));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        return response;
    }
    service.respond(reply.into_response(false))
}
