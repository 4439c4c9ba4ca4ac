//! Phase one: before any backend is picked. The declared body is held to
//! `server.max_request_body_bytes`; a small body with a known length is read in full, so that a
//! retry can send it again; the upstream head is written once by the codec, with the framing of
//! the body that will be sent.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use lb_core::retry::is_idempotent;

use super::body::{BodyFault, LimitedBody, ToBackend};
use super::reply::Reply;
use super::respond::{self, BAD_BODY, BODY_TIMEOUT, TOO_LARGE};
use super::{ClientInfo, ClientRequest};
use crate::metrics::MethodLabel;
use crate::proto::h1::framing::{Framing, request_framing, writes_length};
use crate::proto::h1::write::{Forwarded, FramingField, UpstreamHead, write_request_head};
use crate::runtime::{Runtime, Shared};

/// Bodies up to this size with a known length are read before the first attempt so that a
/// retry can send them again; larger or chunked bodies stream through and are never retried.
pub(crate) const REPLAY_BUFFER_BYTES: u64 = 64 * 1024;

/// A request ready for its attempts.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The method, as a metrics label.
    pub method: MethodLabel,
    /// The request's head as received: kept to write the upstream head per attempt when the
    /// client named no host.
    pub parts: http::request::Parts,
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
}

impl Prepared {
    /// The upstream head for an attempt on `authority` (used as `Host` when the client named
    /// none).
    pub fn head_for(&self, client: &ClientInfo, authority: &[u8]) -> Bytes {
        match &self.head {
            Some(head) => head.clone(),
            None => encode(&self.parts, None, authority, self.framing_field, client),
        }
    }
}

/// Checks the body's limit, reads a small body, and writes the upstream head.
pub(crate) async fn prepare(
    shared: &Shared,
    runtime: &Runtime,
    client: &Arc<ClientInfo>,
    request: ClientRequest,
    started: Instant,
) -> Result<Prepared, Reply> {
    let ClientRequest { parts, meta, body } = request;
    let method = MethodLabel::of(&parts.method);
    let server = &runtime.config.server;
    let declared_length = match meta.body {
        Framing::Length(length) => Some(length),
        _ => None,
    };
    let refuse = |status, text| respond::refuse(shared, method, status, text).closing();
    if declared_length.is_some_and(|length| length > server.max_request_body_bytes) {
        return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE));
    }
    // Only a request with a body needs to learn whether that body failed.
    let fault: Option<Arc<BodyFault>> = body.is_some().then(Default::default);
    let (to_backend, replayable) = match body {
        None => (ToBackend::Empty, true),
        Some(body) => {
            let limit = server.max_request_body_bytes;
            let limited = LimitedBody::new(body, limit, fault.clone().unwrap_or_default());
            if declared_length.is_some_and(|length| length <= REPLAY_BUFFER_BYTES) {
                let read = buffer_body(limited, server.request_timeout, &fault);
                match Box::pin(read).await {
                    Ok(bytes) => (ToBackend::Buffered(bytes), true),
                    Err((status, text)) => return Err(refuse(status, text)),
                }
            } else {
                (ToBackend::Streaming(limited), false)
            }
        }
    };
    let (framing, request_bytes) = match &to_backend {
        ToBackend::Empty => (Framing::NONE, 0),
        ToBackend::Buffered(bytes) => (Framing::Length(bytes.len() as u64), bytes.len() as u64),
        ToBackend::Streaming(body) => (
            request_framing(body.size_hint().exact()),
            declared_length.unwrap_or(0),
        ),
    };
    let framing_field = match framing {
        Framing::Length(length) if writes_length(&parts.method, meta.declares_body, framing) => {
            FramingField::Length(length)
        }
        Framing::Chunked => FramingField::Chunked,
        _ => FramingField::None,
    };
    let head = meta.host.as_ref().map(|host| {
        encode(
            &parts,
            Some(host.as_bytes()),
            host.as_bytes(),
            framing_field,
            client,
        )
    });
    Ok(Prepared {
        method,
        client_ip: client.address(&parts.headers, &server.trusted_proxies),
        idempotent: is_idempotent(parts.method.as_str()),
        expect_body: parts.method != Method::HEAD,
        deadline: tokio::time::Instant::from_std(started + server.request_timeout),
        parts,
        to_backend,
        framing,
        framing_field,
        replayable,
        head,
        request_bytes,
        fault,
        started,
    })
}

/// The upstream head: origin-form target, `host` as `Host`, the client's host (if it named one)
/// as `X-Forwarded-Host`.
fn encode(
    parts: &http::request::Parts,
    client_host: Option<&[u8]>,
    host: &[u8],
    framing: FramingField,
    client: &ClientInfo,
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
            proto: b"http",
        },
    }))
}

/// Reads a small body in full, within `timeout`, so that a retry can send it again; on failure,
/// the client's status and text.
async fn buffer_body(
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
