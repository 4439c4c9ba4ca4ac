//! Phase four: the reply. A backend's response becomes the client's with the request's slot
//! and metrics riding on its body; a failed exchange becomes the client's status in one place
//! ([`failure_reply`]); the balancer's own refusals are counted under `backend="none"`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use lb_core::retry::FailureKind;

use super::body::{Completion, ToClient};
use super::reply::{Reply, ReplyHead};
use crate::clock;
use crate::metrics::{MethodLabel, RequestLabels, RouteHandles};
use crate::proto::h1::request::RequestError;
use crate::proto::h1::response::ResponseHead;
use crate::runtime::Shared;
use crate::upstream::ResponseBody;
use crate::upstream::backend::InFlight;

/// The answer to a body over `server.max_request_body_bytes`.
pub(crate) const TOO_LARGE: &str = "413 payload too large\n";
/// The answer to a body whose framing failed.
pub(crate) const BAD_BODY: &str = "400 bad request body\n";
/// The answer to a small body not read within `server.request_timeout`.
pub(crate) const BODY_TIMEOUT: &str = "408 request body timeout\n";
/// The answer to a WebSocket upgrade for an HTTP/2 backend without extended `CONNECT`.
pub(crate) const NO_WEBSOCKET: &str = "502 bad gateway: the backend does not take WebSocket over HTTP/2 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)\n";

/// A backend's response, passed on; the slot and the metrics ride on its body until its end.
/// `route` holds the metric handles of the route on this backend.
pub(crate) fn proxied(
    head: ResponseHead,
    body: ResponseBody,
    slot: InFlight,
    method: MethodLabel,
    started: Instant,
    request_bytes: u64,
    route: &Arc<RouteHandles>,
) -> Reply {
    let backend = slot.backend();
    route.count_request(method, head.status.as_u16());
    // A drained or removed backend's clients reconnect, and land elsewhere.
    let close = backend.leaving();
    backend.metrics.request_size.observe(request_bytes as f64);
    let completion = Completion {
        in_flight: slot,
        started,
        sent: 0,
        connection: None,
        route: route.clone(),
        log: None,
    };
    Reply {
        status: head.status,
        head: ReplyHead::Backend(head),
        body: ToClient::proxied(body, completion),
        close,
        extra: None,
        request_id: None,
    }
}

/// The one place a failed exchange becomes the client's status.
pub(crate) fn failure_reply(
    handles: &RouteHandles,
    method: MethodLabel,
    kind: FailureKind,
    started: Instant,
) -> Reply {
    let (status, text) = match kind {
        FailureKind::ResponseTimeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "504 gateway timeout: the backend did not answer in time\n",
        ),
        FailureKind::ConnectTimeout | FailureKind::ConnectRefused => (
            StatusCode::BAD_GATEWAY,
            "502 bad gateway: could not connect to a backend\n",
        ),
        FailureKind::ResetBeforeResponse => (
            StatusCode::BAD_GATEWAY,
            "502 bad gateway: the backend closed the connection without a valid response\n",
        ),
        FailureKind::Status(_) | FailureKind::GrpcStatus(_) => {
            (StatusCode::BAD_GATEWAY, "502 bad gateway\n")
        }
    };
    handles.count_request(method, status.as_u16());
    let elapsed = clock::now().saturating_duration_since(started);
    handles.duration.observe(elapsed.as_secs_f64());
    Reply::local(status, Bytes::from_static(text.as_bytes()))
}

/// No backend is eligible (or the queue gave up): 503, with `Retry-After` when the wait was
/// for a slot.
pub(crate) fn no_backend(shared: &Shared, route: &Arc<String>, method: MethodLabel) -> Reply {
    shared.metrics.no_backend.inc();
    refuse(
        shared,
        route,
        method,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 service unavailable: no backend available\n",
    )
}

/// The answer to a request head the codec refused; the connection closes after it.
pub(crate) fn refuse_request(shared: &Shared, method: &Method, error: RequestError) -> Reply {
    let status = error.status();
    let reason = status.canonical_reason().unwrap_or("").to_ascii_lowercase();
    let text = format!("{} {reason}: {error}\n", status.as_str());
    let route = none_label();
    refuse(
        shared,
        &route,
        MethodLabel::of(method),
        status,
        Bytes::from(text),
    )
    .closing()
}

/// An answer given without a backend; counted under `backend="none"` and its route (`none`
/// before routing).
pub(crate) fn refuse(
    shared: &Shared,
    route: &Arc<String>,
    method: MethodLabel,
    status: StatusCode,
    text: impl Into<Bytes>,
) -> Reply {
    let labels = RequestLabels {
        method,
        status: status.as_u16(),
        backend: none_label(),
        route: route.clone(),
    };
    shared.metrics.requests.get_or_create(&labels).inc();
    Reply::local(status, text)
}

/// `none`: the label of no backend, and of no route.
pub(crate) fn none_label() -> Arc<String> {
    static NONE: std::sync::OnceLock<Arc<String>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::new("none".to_owned())).clone()
}
