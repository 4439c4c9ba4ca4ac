//! The request path, as named phases that read top-down:
//! [`route`] (the path normalised, the route found) → [`policy`] (a route's limit, auth,
//! answer, rewrites; only for routes that have one) →
//! [`prepare`] (limits, the body, the upstream head) → [`attempt`] (pick, admit, send) →
//! [`settle`] (classify, breaker, retry decision) → [`respond`] (the reply, or the failure's
//! status in one place).
//!
//! The decisions are lb-core's: which backend, whether to retry and how long to wait, when a
//! breaker opens. The request head sent upstream is written by the codec
//! ([`crate::proto::h1::write`]) from the body that is actually sent.
//!
//! # Layout
//! - [`client`]: what a connection knows of its client (the connection builds it).
//! - [`edge`]: the redirect listener's 308 and TLS's 421, answered before any backend.
//! - [`body`]: the bodies by direction, and the pipe our HTTP/1 loop feeds.
//! - [`reply`]: what the request path answers.
//! - [`logged`]: the request path with the access log or tracing on.
//! - [`request_id`]: the id every request carries.
//! - [`http2`]: the attempt on a backend that speaks HTTP/2.
//! - [`grpc`]: gRPC calls: their deadline, and the balancer's own failures as gRPC statuses.
//! - [`websocket`]: WebSocket over HTTP/2 (RFC 8441) as the HTTP/1.1 upgrade backends know.

pub(crate) mod attempt;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod edge;
pub(crate) mod grpc;
pub(crate) mod http2;
pub(crate) mod logged;
pub(crate) mod policy;
pub(crate) mod prepare;
pub(crate) mod reply;
pub(crate) mod request_id;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod settle;
pub(crate) mod websocket;

use std::sync::Arc;

use futures_util::future::Either;
use http::StatusCode;
use http_body::Body as _;

use crate::clock;
use crate::metrics::MethodLabel;
use crate::proto::h1::framing::Framing;
use crate::proto::h1::request::{self, Limits, RequestMeta};
use crate::runtime::Shared;
use body::{BodyFault, FromClient, ToBackend};
pub(crate) use client::ClientInfo;
use reply::Reply;

/// A request as the request path takes it: its head, what the codec's rules concluded, and its
/// body (`None` when it has none).
#[derive(Debug)]
pub(crate) struct ClientRequest {
    /// Method, target, version and fields as received.
    pub parts: http::request::Parts,
    /// Host, framing, keep-alive.
    pub meta: RequestMeta,
    /// The body.
    pub body: Option<FromClient>,
}

/// The limits of request heads under `server`.
pub(crate) fn limits(server: &lb_core::config::ServerConfig) -> Limits {
    Limits {
        max_head_bytes: server.max_header_bytes,
        max_target_bytes: server.max_uri_bytes,
    }
}

/// Proxies one request to a backend and returns the reply to send.
pub(crate) fn handle<'a>(
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    request: ClientRequest,
) -> impl Future<Output = Reply> + Send + 'a {
    serve(shared, client, request, None)
}

/// The request path: `log`, when the access log is on, gathers the request's facts (`None`
/// takes the log's path when the log is on).
///
/// A function returning an `async move` block: an `async fn` would hold its arguments twice in
/// the request's future (docs/performance.md, item 21).
#[allow(clippy::manual_async_fn)] // see above
pub(crate) fn serve<'a>(
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    mut request: ClientRequest,
    mut log: Option<&'a mut logged::Logged>,
) -> impl Future<Output = Reply> + Send + 'a {
    async move {
        // With the access log or tracing on, the request runs again inside
        // [`logged::logged`], boxed: off, the request's future holds no room for theirs.
        if log.is_none() && (shared.access_log.is_on() || shared.tracing.is_on()) {
            return Box::pin(logged::logged(shared, client, request)).await;
        }
        if let Some(edge) = &client.edge
            && let Some(reply) = edge::intercept(shared, edge, &request)
        {
            return reply;
        }
        let started = clock::now();
        let runtime = shared.runtime.load_full();
        let server = &runtime.config.server;
        // Boxed at once: it lives across the request's awaits, and the reply carries it.
        let request_id = (runtime.request_id.as_ref()).map(|name| {
            let id = request_id::resolve(&request.parts.headers, name, client.trusted);
            Box::new((name.clone(), id))
        });
        if let (Some(logged), Some(field)) = (log.as_deref_mut(), &request_id) {
            logged.record.request_id = Some(field.1.clone());
        }
        // Every answer leaves this block, so that each carries the request id.
        let mut reply = 'answer: {
            let route = match route::find(&runtime, &mut request) {
                Ok(index) => &runtime.routes[index],
                Err(why) => break 'answer route::refusal(shared, &request, why),
            };
            if let Some(logged) = log.as_deref_mut() {
                logged.record.route = Some(route.name.clone());
            }
            let mut response_fields = None;
            if route.local_limit_only {
                if let Some(refused) = policy::limit_only(shared, &runtime, route, client, &request)
                {
                    break 'answer refused;
                }
            } else if route.has_policy {
                // Boxed: most routes have no policy, and its future would take room in every
                // request's.
                match Box::pin(policy::apply(shared, &runtime, route, client, &mut request)).await {
                    Ok(fields) => response_fields = fields,
                    Err(reply) => break 'answer reply,
                }
            }
            // Validation gives every route without an answer of its own a pool.
            let Some(pool) = route.pool.and_then(|index| runtime.pools.get(index)) else {
                let method = MethodLabel::of(&request.parts.method);
                let text = "500 internal error: the route has no pool\n";
                let status = StatusCode::INTERNAL_SERVER_ERROR;
                break 'answer respond::refuse(shared, &route.name, method, status, text).closing();
            };
            // Only a request with a body needs to learn whether that body failed.
            let fault: Option<Arc<BodyFault>> = request.body.is_some().then(Default::default);
            if let Some(logged) = log.as_deref_mut() {
                logged.record.pool = Some(pool.state.name.clone());
                logged.body = fault.clone();
            }
            let refuse = |request: &ClientRequest, status, text| {
                let method = MethodLabel::of(&request.parts.method);
                respond::refuse(shared, &route.name, method, status, text).closing()
            };
            // The room a buffered body takes on its HTTP/2 connection, held while it is.
            let _held;
            let to_backend = match prepare::take_body(server, &mut request, &fault) {
                Ok(prepare::Body::Ready(body)) => body,
                // Boxed: most requests have no body to read first.
                Ok(prepare::Body::Buffer(body, hold)) => {
                    _held = hold;
                    match Box::pin(prepare::buffer(body, server.request_timeout, &fault)).await {
                        Ok(bytes) => ToBackend::Buffered(bytes),
                        Err((status, text)) => break 'answer refuse(&request, status, text),
                    }
                }
                Err(prepare::TooLarge) => {
                    let status = StatusCode::PAYLOAD_TOO_LARGE;
                    break 'answer refuse(&request, status, respond::TOO_LARGE);
                }
            };
            let id = request_id.as_deref();
            let mut prepared =
                prepare::prepare(server, client, &request, to_backend, fault, started, id);
            if pool.http2 {
                let retry = &pool.config.retry;
                prepare::http2_hints(&mut prepared, &request.parts.headers, retry);
            }
            // Borrowed, not moved: the prepared request is large, and moving it costs a copy.
            let reply = attempt::attempts(shared, pool, route, client, &mut prepared, log).await;
            match response_fields {
                None => reply,
                Some(fields) => with_fields(reply, fields),
            }
        };
        // The balancer's own failure to a gRPC call is answered as gRPC answers.
        if matches!(reply.head, reply::ReplyHead::Local)
            && reply.status.as_u16() >= 400
            && crate::proto::grpc::is_grpc(&request.parts.headers)
        {
            reply = grpc::from_local(reply);
        }
        reply.request_id = request_id;
        reply
    }
}

/// `reply` with a route's response field changes on top of its own.
#[cold]
fn with_fields(mut reply: Reply, fields: Box<reply::Extra>) -> Reply {
    match &mut reply.extra {
        None => reply.extra = Some(fields),
        Some(extra) => {
            extra.remove.extend(fields.remove);
            extra.add.extend(fields.add);
        }
    }
    reply
}

/// What another parser than ours would do with a request that asks to switch protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParsedUpgrade {
    /// Nothing: the request is an ordinary one.
    No,
    /// An HTTP/1.1 connection hyper would hand over: a well-formed upgrade request is
    /// forwarded as one.
    Http1,
    /// An HTTP/2 extended `CONNECT` already rewritten into a WebSocket upgrade request
    /// ([`websocket::to_upgrade`]): its stream becomes the tunnel.
    ExtendedConnect,
}

/// A request hyper parsed (HTTP/1 on an h2c listener): the codec's rules, then the request
/// path.
pub(crate) async fn handle_hyper(
    shared: &Shared,
    client: &Arc<ClientInfo>,
    request: http::Request<hyper::body::Incoming>,
    upgrade: ParsedUpgrade,
) -> Reply {
    let (parts, body) = request.into_parts();
    let body = (!body.is_end_stream()).then_some(FromClient::Hyper(body));
    handle_parsed(shared, client, parts, body, upgrade).await
}

/// A request whose head another parser took (hyper's, or h2's on an HTTP/2 stream): the
/// codec's rules, then the request path. `body`: `None` when the request has none.
///
/// The rules run before the future is made: the future is then the request path's own, and
/// does not hold the head a second time beside it.
pub(crate) fn handle_parsed<'a>(
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    parts: http::request::Parts,
    body: Option<FromClient>,
    upgrade: ParsedUpgrade,
) -> impl Future<Output = Reply> + Send + 'a {
    let framing = match &body {
        None => Framing::NONE,
        Some(body) => body
            .size_hint()
            .exact()
            .map_or(Framing::Chunked, Framing::Length),
    };
    let limits = limits(&shared.runtime.load().config.server);
    match request::check_parts(&parts, &limits, framing) {
        Err(error) => Either::Left(std::future::ready(respond::refuse_request(
            shared,
            &parts.method,
            error,
        ))),
        Ok(mut meta) => {
            meta.upgrade = match upgrade {
                ParsedUpgrade::No => false,
                ParsedUpgrade::Http1 => meta.upgrade,
                // The rewrite made it one: an HTTP/2 head never passes the HTTP/1.1 rule.
                ParsedUpgrade::ExtendedConnect => true,
            };
            let request = ClientRequest { parts, meta, body };
            Either::Right(handle(shared, client, request))
        }
    }
}
