//! Phase one: before any backend is picked. The declared body is held to
//! `server.max_request_body_bytes` ([`take_body`]); a small body with a known length is read in
//! full, so that a retry can send it again ([`buffer`]); the upstream head is written once by
//! the codec, with the framing of the body that will be sent ([`prepare`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use lb_core::retry::is_idempotent;

use super::body::budget::BudgetHold;
use super::body::replay::Replay;
use super::body::{BodyFault, LimitedBody, ToBackend};
use super::respond::{BAD_BODY, BODY_TIMEOUT, TOO_LARGE};
use super::{ClientInfo, ClientRequest};
use crate::metrics::MethodLabel;
use crate::proto::h1::framing::{Framing, request_framing, writes_length};
use crate::proto::h1::request::RequestMeta;
use crate::proto::h1::write::{Forwarded, FramingField, UpstreamHead, write_request_head};
use lb_core::config::{RetryConfig, ServerConfig};

/// Bodies up to this size with a known length are read before the first attempt so that a
/// retry can send them again; larger or chunked bodies stream through and are never retried.
pub(crate) const REPLAY_BUFFER_BYTES: u64 = 64 * 1024;

/// A request ready for its attempts.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The method, as a metrics label.
    pub method: MethodLabel,
    /// The request's head as received, kept only when the client named no host: the upstream
    /// head is then written per attempt, with the backend's address as `Host`. Boxed: it is
    /// rare, and the prepared request is moved and should stay small.
    pub unhosted: Option<Box<http::request::Parts>>,
    /// The body to send.
    pub to_backend: ToBackend,
    /// How that body is framed upstream.
    pub framing: Framing,
    /// The framing field of the upstream head.
    pub framing_field: FramingField,
    /// Whether the body can be sent again.
    pub replayable: bool,
    /// The upstream head, when it is the same for every backend.
    pub head: Option<Bytes>,
    /// Bytes of the request body, for metrics.
    pub request_bytes: u64,
    /// The client's address, for `ip_hash`.
    pub client_ip: IpAddr,
    /// Whether the method is idempotent.
    pub idempotent: bool,
    /// False for HEAD, whose response has no body.
    pub expect_body: bool,
    /// Raised when the client's body fails; `None` without a body.
    pub fault: Option<Arc<BodyFault>>,
    /// When the request arrived.
    pub started: Instant,
    /// Arrival plus `server.request_timeout`.
    pub deadline: tokio::time::Instant,
    /// A well-formed upgrade request (its head carries `Upgrade`): a `101` answers it.
    pub upgrade: bool,
    /// The client sent `te: trailers`, which an HTTP/2 backend is sent (only learnt when the
    /// pool has one).
    pub te_trailers: bool,
    /// A gRPC call's own deadline (`grpc-timeout`), which also bounds `deadline`; only learnt
    /// when the pool has an HTTP/2 backend.
    pub grpc_deadline: Option<tokio::time::Instant>,
    /// A gRPC call its pool may retry after a gRPC status (`retry.retry_on`); only learnt when
    /// the pool has an HTTP/2 backend.
    pub grpc_retry: Option<super::grpc::GrpcRetry>,
}

impl Prepared {
    /// The upstream head for an attempt on `authority` (used as `Host` when the client named
    /// none).
    pub fn head_for(&self, client: &ClientInfo, authority: &[u8]) -> Bytes {
        match (&self.head, &self.unhosted) {
            (Some(head), _) => head.clone(),
            // Only HTTP/1.0 names no host, and it has no upgrades; the request id is among the
            // kept parts' fields.
            (None, Some(parts)) => encode(
                parts,
                None,
                authority,
                self.framing_field,
                client,
                false,
                None,
            ),
            (None, None) => unreachable!("a request has a head or keeps its parts"),
        }
    }
}

/// The client's body, as the request will send it.
pub(crate) enum Body {
    /// Ready to send: nothing, or a body that streams through.
    Ready(ToBackend),
    /// A small body with a known length, to be read in full first ([`buffer`]) so that a retry
    /// can send it again; with the room it takes on its HTTP/2 connection, to be held until the
    /// attempts are over.
    Buffer(LimitedBody, Option<BudgetHold>),
}

/// A declared body over `server.max_request_body_bytes`: refused before anything is sent.
#[derive(Debug)]
pub(crate) struct TooLarge;

/// Holds the body to `server.max_request_body_bytes` and decides how it is sent. `fault` learns
/// whether the client's side of it failed.
pub(crate) fn take_body(
    server: &ServerConfig,
    request: &mut ClientRequest,
    fault: &Option<Arc<BodyFault>>,
) -> Result<Body, TooLarge> {
    let declared = declared_length(&request.meta);
    if declared.is_some_and(|length| length > server.max_request_body_bytes) {
        return Err(TooLarge);
    }
    let Some(body) = request.body.take() else {
        return Ok(Body::Ready(ToBackend::Empty));
    };
    // A small body is read in full, unless its HTTP/2 connection's other bodies hold all the
    // room it may have (`server.http2.max_buffered_body_bytes`): it then streams through.
    let buffered = match declared {
        Some(length) if length <= REPLAY_BUFFER_BYTES => match body.buffer_budget() {
            None => Some(None),
            Some(budget) => budget.reserve(length).map(Some),
        },
        _ => None,
    };
    let limit = server.max_request_body_bytes;
    let limited = LimitedBody::new(body, limit, fault.clone().unwrap_or_default());
    Ok(match buffered {
        Some(hold) => Body::Buffer(limited, hold),
        None => Body::Ready(ToBackend::Streaming(limited)),
    })
}

/// The length the request declared for its body.
fn declared_length(meta: &RequestMeta) -> Option<u64> {
    match meta.body {
        Framing::Length(length) => Some(length),
        _ => None,
    }
}

/// Writes the upstream head once (unless the client named no host), with the framing of the
/// body that will be sent, and gathers what every attempt needs.
pub(crate) fn prepare(
    server: &ServerConfig,
    client: &ClientInfo,
    request: &ClientRequest,
    to_backend: ToBackend,
    fault: Option<Arc<BodyFault>>,
    started: Instant,
    request_id: Option<&(HeaderName, HeaderValue)>,
) -> Prepared {
    let ClientRequest { parts, meta, .. } = request;
    // A replayed body can be sent again only while its copy is kept: `may_replay` says.
    let replayable = matches!(to_backend, ToBackend::Empty | ToBackend::Buffered(_));
    let (framing, request_bytes) = match &to_backend {
        ToBackend::Empty => (Framing::NONE, 0),
        ToBackend::Buffered(bytes) => (Framing::Length(bytes.len() as u64), bytes.len() as u64),
        ToBackend::Replayed(_) => (Framing::Chunked, declared_length(meta).unwrap_or(0)),
        ToBackend::Streaming(body) => (
            request_framing(body.size_hint().exact()),
            declared_length(meta).unwrap_or(0),
        ),
    };
    let framing_field = match framing {
        Framing::Length(length) if writes_length(&parts.method, meta.declares_body, framing) => {
            FramingField::Length(length)
        }
        Framing::Chunked => FramingField::Chunked,
        _ => FramingField::None,
    };
    let head = (meta.host.as_ref()).map(|host| {
        let host = host.as_bytes();
        // A route may send another `Host` upstream; the client's goes in X-Forwarded-Host.
        let upstream = match parts.extensions.get::<super::policy::UpstreamHost>() {
            Some(rewritten) => rewritten.0.as_bytes(),
            None => host,
        };
        encode(
            parts,
            Some(host),
            upstream,
            framing_field,
            client,
            meta.upgrade,
            request_id,
        )
    });
    Prepared {
        method: MethodLabel::of(&parts.method),
        client_ip: client.address(&parts.headers, &server.trusted_proxies),
        idempotent: is_idempotent(parts.method.as_str()),
        expect_body: parts.method != Method::HEAD,
        deadline: tokio::time::Instant::from_std(started + server.request_timeout),
        unhosted: head.is_none().then(|| unhosted(parts, request_id)),
        to_backend,
        framing,
        framing_field,
        replayable,
        head,
        request_bytes,
        fault,
        started,
        upgrade: meta.upgrade,
        te_trailers: false,
        grpc_deadline: None,
        grpc_retry: None,
    }
}

/// What a request to a pool with an HTTP/2 backend carries beyond its head: whether the client
/// accepts trailers, the call's `grpc-timeout` as a deadline (which `deadline` is cut to), and,
/// for a gRPC call to a pool whose `retry_on` lists gRPC statuses, the statuses, with its
/// streamed body kept (up to `retry.replay_buffer_bytes`) so that it can be sent again.
#[cold]
pub(crate) fn http2_hints(prepared: &mut Prepared, headers: &http::HeaderMap, retry: &RetryConfig) {
    prepared.te_trailers = crate::proto::grpc::accepts_trailers(headers);
    if let Some(timeout) = crate::proto::grpc::timeout(headers) {
        let at = tokio::time::Instant::from_std(prepared.started + timeout);
        prepared.deadline = prepared.deadline.min(at);
        prepared.grpc_deadline = Some(at);
    }
    let statuses = retry.grpc_statuses();
    if statuses != 0 && crate::proto::grpc::is_grpc(headers) {
        prepared.grpc_retry = Some(super::grpc::GrpcRetry { statuses, sent: 0 });
        if let Some(body) = prepared.to_backend.take_streaming() {
            // On HTTP/2 the copy takes room from the connection's budget for bodies as it
            // grows: one that finds none is dropped (no retry after a status), as one that
            // outgrows `replay_buffer_bytes` is.
            let room = body.buffer_budget().and_then(|budget| budget.reserve(0));
            let replay = Replay::holding(body, retry.replay_buffer_bytes, room);
            prepared.to_backend = ToBackend::Replayed(replay);
        }
    }
}

/// The request's parts, kept to write its head per attempt, with the request id among its
/// fields (in place of the client's).
#[cold]
fn unhosted(
    parts: &http::request::Parts,
    request_id: Option<&(HeaderName, HeaderValue)>,
) -> Box<http::request::Parts> {
    let mut parts = Box::new(parts.clone());
    if let Some((name, value)) = request_id {
        parts.headers.insert(name.clone(), value.clone());
    }
    parts
}

/// The upstream head: origin-form target, `host` as `Host`, the client's host (if it named one)
/// as `X-Forwarded-Host`; the client's `Upgrade` when `upgrade`; the request id.
fn encode(
    parts: &http::request::Parts,
    client_host: Option<&[u8]>,
    host: &[u8],
    framing: FramingField,
    client: &ClientInfo,
    upgrade: bool,
    request_id: Option<&(HeaderName, HeaderValue)>,
) -> Bytes {
    let target = match parts.uri.path_and_query() {
        Some(target) => target.as_str().as_bytes(),
        None => b"/",
    };
    Bytes::from(write_request_head(&UpstreamHead {
        method: &parts.method,
        target,
        host,
        client_host,
        headers: &parts.headers,
        framing,
        forwarded: Forwarded {
            peer: client.forwarded_for.as_bytes(),
            append: client.trusted,
            proto: client.proto(),
        },
        upgrade: match upgrade {
            true => (parts.headers.get(http::header::UPGRADE)).map(|value| value.as_bytes()),
            false => None,
        },
        request_id: request_id.map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
        join_cookies: parts.version == http::Version::HTTP_2,
    }))
}

/// Reads a small body in full, within `timeout`, so that a retry can send it again; on failure,
/// the client's status and text.
pub(crate) async fn buffer(
    body: LimitedBody,
    timeout: Duration,
    fault: &Option<Arc<BodyFault>>,
) -> Result<Bytes, (StatusCode, &'static str)> {
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) if fault.as_ref().is_some_and(|fault| fault.too_large()) => {
            Err((StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE))
        }
        Ok(Err(_)) => Err((StatusCode::BAD_REQUEST, BAD_BODY)),
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT)),
    }
}
