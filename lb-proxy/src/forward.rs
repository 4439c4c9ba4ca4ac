//! The request path: prepare (limits, body) → attempt (pick, admit, send) → settle (classify,
//! breaker, retry decision) → answer.
//!
//! Outcomes of an attempt are classified once ([`classify`]) into lb-core's
//! [`FailureKind`](lb_core::retry::FailureKind); lb-core decides whether to retry and how long to
//! wait; [`failure_reply`] maps what is left to the client's status in one place. The request
//! head sent upstream is written by the codec ([`crate::proto::h1::write`]) from the body that
//! is actually sent.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use lb_core::balance::{Balancer, PickContext};
use lb_core::retry::{AttemptFailure, FailureKind, GiveUpReason, RetryDecision, is_idempotent};

use crate::backend::{Backend, EligibleView};
use crate::body::{BodyFault, Completion, FromClient, LimitedBody, ToBackend, ToClient};
use crate::client::ClientInfo;
use crate::clock;
use crate::metrics::{MethodLabel, RequestLabels, RetryLabels};
use crate::proto::h1::framing::{Framing, request_framing, writes_length};
use crate::proto::h1::request::{self, Limits, RequestError, RequestMeta};
use crate::proto::h1::response::ResponseHead;
use crate::proto::h1::write::{Forwarded, FramingField, UpstreamHead, write_request_head};
use crate::reply::{Reply, ReplyHead};
use crate::runtime::{Runtime, Shared};
use crate::upstream::{Outgoing, ResponseBody, SendFailure, UploadBody};

/// Bodies up to this size with a known length are read before the first attempt so that a
/// retry can send them again; larger or chunked bodies stream through and are never retried.
pub const REPLAY_BUFFER_BYTES: u64 = 64 * 1024;

/// A request as the request path takes it: its head, what the codec's rules concluded, and its
/// body (`None` when it has none).
#[derive(Debug)]
pub struct ClientRequest {
    /// Method, target, version and fields as received.
    pub parts: http::request::Parts,
    /// Host, framing, keep-alive.
    pub meta: RequestMeta,
    /// The body.
    pub body: Option<FromClient>,
}

/// The limits of request heads under `config`.
pub fn limits(server: &lb_core::config::ServerConfig) -> Limits {
    Limits {
        max_head_bytes: server.max_header_bytes,
        max_target_bytes: server.max_uri_bytes,
    }
}

/// A request hyper parsed (h2c, HTTP/2): the codec's rules, then the request path.
pub async fn handle_hyper(
    shared: &Shared,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
) -> Reply {
    let (parts, body) = request.into_parts();
    let body = (!body.is_end_stream()).then_some(body);
    let framing = match &body {
        None => Framing::NONE,
        Some(body) => body
            .size_hint()
            .exact()
            .map_or(Framing::Chunked, Framing::Length),
    };
    let limits = limits(&shared.runtime.load().config.server);
    match request::check_parts(&parts, &limits, framing) {
        Err(error) => refuse_request(shared, &parts.method, error),
        Ok(meta) => {
            let body = body.map(FromClient::Hyper);
            let request = ClientRequest { parts, meta, body };
            handle(shared, client, request).await
        }
    }
}

/// The answer to a request head the codec refused; the connection closes after it.
pub fn refuse_request(shared: &Shared, method: &Method, error: RequestError) -> Reply {
    let status = error.status();
    let text = format!(
        "{} {}: {error}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("").to_ascii_lowercase()
    );
    refuse(shared, MethodLabel::of(method), status, Bytes::from(text)).closing()
}

/// Proxies one request to a backend and returns the reply to send.
///
/// Written as a function returning an `async move` block: an `async fn` would hold its
/// arguments twice in the request's future (docs/performance.md, item 20).
#[allow(clippy::manual_async_fn)] // see above
pub fn handle<'a>(
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    request: ClientRequest,
) -> impl Future<Output = Reply> + 'a {
    async move {
        let started = clock::now();
        let runtime = shared.runtime.load_full();
        let ClientRequest { parts, meta, body } = request;
        let method = MethodLabel::of(&parts.method);
        let server = &runtime.config.server;
        let declared_length = match meta.body {
            Framing::Length(length) => Some(length),
            _ => None,
        };
        if declared_length.is_some_and(|length| length > server.max_request_body_bytes) {
            return refuse(shared, method, StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE).closing();
        }
        // Only a request with a body needs to learn whether that body failed.
        let fault: Option<Arc<BodyFault>> = body.is_some().then(Default::default);
        let (mut to_backend, replayable) = match body {
            None => (ToBackend::Empty, true),
            Some(body) => {
                let limited = LimitedBody::new(
                    body,
                    server.max_request_body_bytes,
                    fault.clone().unwrap_or_default(),
                );
                if declared_length.is_some_and(|length| length <= REPLAY_BUFFER_BYTES) {
                    match Box::pin(buffer_body(limited, server.request_timeout, &fault)).await {
                        Ok(bytes) => (ToBackend::Buffered(bytes), true),
                        Err((status, text)) => {
                            return refuse(shared, method, status, text).closing();
                        }
                    }
                } else {
                    (ToBackend::Streaming(limited), false)
                }
            }
        };
        let request_bytes = match &to_backend {
            ToBackend::Buffered(bytes) => bytes.len() as u64,
            _ => declared_length.unwrap_or(0),
        };
        let framing = match &to_backend {
            ToBackend::Empty => Framing::NONE,
            ToBackend::Buffered(bytes) => Framing::Length(bytes.len() as u64),
            ToBackend::Streaming(body) => request_framing(body.size_hint().exact()),
        };
        let framing_field = match framing {
            Framing::Length(length)
                if writes_length(&parts.method, meta.declares_body, framing) =>
            {
                FramingField::Length(length)
            }
            Framing::Chunked => FramingField::Chunked,
            _ => FramingField::None,
        };
        let target = match parts.uri.path_and_query() {
            Some(target) => target.as_str().as_bytes(),
            None => b"/",
        };
        let client_host = meta.host.as_ref().map(|host| host.as_bytes());
        // The head is written once, unless the client named no host: then each attempt's
        // backend address is its `Host`.
        let encode = |host: &[u8]| {
            Bytes::from(write_request_head(&UpstreamHead {
                method: &parts.method,
                target,
                host,
                client_host,
                headers: &parts.headers,
                framing: framing_field,
                forwarded: Forwarded {
                    peer: client.forwarded_for.as_bytes(),
                    append: client.trusted,
                    proto: b"http",
                },
            }))
        };
        let fixed_head = client_host.map(encode);
        let client_ip = client.address(&parts.headers, &server.trusted_proxies);
        let idempotent = is_idempotent(parts.method.as_str());
        let deadline = tokio::time::Instant::from_std(started + server.request_timeout);
        let max_attempts = runtime.retry.max_attempts();
        let expect_body = parts.method != Method::HEAD;

        runtime.budget.deposit(started);
        let mut tried: Vec<usize> = Vec::new();
        let mut refusals = 0usize;
        let mut attempt: u32 = 1;
        let mut last_failure: Option<(Arc<Backend>, FailureKind)> = None;
        loop {
            let now = clock::now();
            let Some(backend) = pick(&runtime, client_ip, &tried, now) else {
                return match last_failure {
                    Some((backend, kind)) => failure_reply(&backend, method, kind, started),
                    None => no_backend(shared, method),
                };
            };
            // Eligibility was judged a moment ago; a racing request may have taken the last
            // slot or the last probe. Such refusals are bounded so a saturated fleet answers
            // 503 at once.
            let reserved = backend.try_reserve().map(|slot| (slot, backend.admit(now)));
            let Some((slot, attempt_permit)) = reserved.filter(|(_, permit)| !permit.is_rejected())
            else {
                refusals += 1;
                if refusals > runtime.backends.len() {
                    return no_backend(shared, method);
                }
                tried.push(backend.index);
                continue;
            };

            let may_retry = replayable && attempt < max_attempts;
            let per_backend_head;
            let head: &[u8] = match &fixed_head {
                Some(head) => head,
                None => {
                    per_backend_head = encode(backend.authority.as_str().as_bytes());
                    &per_backend_head
                }
            };
            // Written inside the call: a future kept in a local first and then moved into the
            // timeout took its room twice in the request's future.
            let result = tokio::time::timeout_at(deadline, async {
                if let ToBackend::Streaming(_) = &to_backend {
                    // Sent once: a streamed body is never replayed.
                    let ToBackend::Streaming(body) =
                        std::mem::replace(&mut to_backend, ToBackend::Empty)
                    else {
                        unreachable!("matched above");
                    };
                    let body: UploadBody = Box::pin(body.map_err(Into::into));
                    // Boxed: a streamed upload is rare, and its exchange would otherwise take
                    // room in every request's future.
                    let send = backend.pool.send_streaming(
                        backend.addr,
                        head,
                        body,
                        framing,
                        expect_body,
                        now,
                    );
                    return Box::pin(send).await;
                }
                let body = match &to_backend {
                    ToBackend::Buffered(bytes) => &bytes[..],
                    _ => &[][..],
                };
                let outgoing = Outgoing {
                    head,
                    body,
                    expect_body,
                    idempotent,
                };
                backend.pool.send(backend.addr, outgoing, now).await
            })
            .await;
            let now = clock::now();
            // A backend's 5xx that may be retried is kept: it is the answer if no retry happens.
            let (kind, kept) = match result {
                Ok(Ok((response, body))) => {
                    let status = response.status;
                    let kind = FailureKind::Status(status.as_u16());
                    let retry_wanted = status.is_server_error()
                        && runtime
                            .retry
                            .retry_on()
                            .iter()
                            .any(|condition| kind.matches(condition));
                    attempt_permit.record(!status.is_server_error(), now);
                    if !retry_wanted || !may_retry {
                        return proxied(response, body, slot, method, started, request_bytes);
                    }
                    (kind, Some((response, body, slot)))
                }
                Ok(Err(error)) => {
                    // The client's body failed, not the backend: no breaker failure, no retry.
                    if let Some(fault) = &fault
                        && (fault.too_large() || fault.malformed())
                    {
                        drop(attempt_permit);
                        let (status, text) = if fault.too_large() {
                            (StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)
                        } else {
                            (StatusCode::BAD_REQUEST, BAD_BODY)
                        };
                        return refuse(shared, method, status, text).closing();
                    }
                    let kind = classify(&error);
                    tracing::debug!(backend = %backend.name(), %error, kind = kind.label(), "attempt failed");
                    attempt_permit.record(false, now);
                    drop(slot);
                    (kind, None)
                }
                Err(_elapsed) => {
                    attempt_permit.record(false, now);
                    drop(slot);
                    (FailureKind::ResponseTimeout, None)
                }
            };
            let retry = if may_retry {
                decide(
                    shared, &runtime, &backend, attempt, kind, idempotent, replayable, now,
                )
            } else {
                None
            };
            let Some(backoff) = retry else {
                return match kept {
                    Some((response, body, slot)) => {
                        proxied(response, body, slot, method, started, request_bytes)
                    }
                    None => failure_reply(&backend, method, kind, started),
                };
            };
            // The slot is free during the backoff; an unread body makes its connection unusable,
            // so both are dropped.
            drop(kept);
            if !wait_backoff(backoff, deadline).await {
                return failure_reply(&backend, method, FailureKind::ResponseTimeout, started);
            }
            tried.push(backend.index);
            attempt += 1;
            last_failure = Some((backend, kind));
        }
    }
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

/// Picks an eligible backend, preferring one not yet tried for this request.
fn pick(runtime: &Runtime, client: IpAddr, tried: &[usize], now: Instant) -> Option<Arc<Backend>> {
    let view = EligibleView {
        backends: &runtime.backends,
        now,
    };
    let mut rng = rand::rng();
    let context = PickContext {
        client: Some(client),
        exclude: tried,
    };
    let index = runtime
        .selector
        .pick(&view, &context, &mut rng)
        .or_else(|| {
            if tried.is_empty() {
                None
            } else {
                let again = PickContext {
                    client: Some(client),
                    exclude: &[],
                };
                runtime.selector.pick(&view, &again, &mut rng)
            }
        })?;
    runtime.backends.get(index).cloned()
}

/// Asks lb-core whether to retry; counts the retry or the budget refusal.
#[allow(clippy::too_many_arguments)]
fn decide(
    shared: &Shared,
    runtime: &Runtime,
    backend: &Backend,
    attempt: u32,
    kind: FailureKind,
    idempotent: bool,
    replayable: bool,
    now: Instant,
) -> Option<Duration> {
    let failure = AttemptFailure {
        attempt,
        kind,
        idempotent,
        body_replayable: replayable,
    };
    match runtime
        .retry
        .decide(&failure, &runtime.budget, now, &mut rand::rng())
    {
        RetryDecision::Retry { backoff } => {
            shared
                .metrics
                .retries
                .get_or_create(&RetryLabels {
                    backend: backend.metrics.name.clone(),
                    reason: kind.label(),
                })
                .inc();
            Some(backoff)
        }
        RetryDecision::GiveUp(GiveUpReason::BudgetExhausted) => {
            shared.metrics.retry_budget_exhausted.inc();
            None
        }
        RetryDecision::GiveUp(_) => None,
    }
}

/// Sleeps the backoff unless it would pass the request's deadline.
async fn wait_backoff(backoff: Duration, deadline: tokio::time::Instant) -> bool {
    let wake = tokio::time::Instant::now() + backoff;
    if wake >= deadline {
        return false;
    }
    tokio::time::sleep_until(wake).await;
    true
}

/// Classifies a failed exchange once: connect refused, connect timeout, or a failure after the
/// request may have been sent (reset, closed, malformed response).
pub fn classify(failure: &SendFailure) -> FailureKind {
    match failure {
        SendFailure::Connect(kind) => *kind,
        SendFailure::Exchange(_) => FailureKind::ResetBeforeResponse,
    }
}

fn proxied(
    head: ResponseHead,
    body: ResponseBody,
    slot: crate::backend::InFlight,
    method: MethodLabel,
    started: Instant,
    request_bytes: u64,
) -> Reply {
    let metrics = &slot.backend().metrics;
    metrics.count_request(method, head.status.as_u16());
    metrics.request_size.observe(request_bytes as f64);
    let completion = Completion {
        in_flight: slot,
        started,
        sent: 0,
        connection: None,
    };
    Reply {
        status: head.status,
        head: ReplyHead::Backend(head),
        body: ToClient::proxied(body, completion),
        close: false,
    }
}

/// The one place a failed exchange becomes the client's status.
fn failure_reply(
    backend: &Backend,
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
        FailureKind::Status(_) => (StatusCode::BAD_GATEWAY, "502 bad gateway\n"),
    };
    backend.metrics.count_request(method, status.as_u16());
    backend.metrics.duration.observe(
        clock::now()
            .saturating_duration_since(started)
            .as_secs_f64(),
    );
    Reply::local(status, Bytes::from_static(text.as_bytes()))
}

fn no_backend(shared: &Shared, method: MethodLabel) -> Reply {
    shared.metrics.no_backend.inc();
    refuse(
        shared,
        method,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 service unavailable: no backend available\n",
    )
}

const TOO_LARGE: &str = "413 payload too large\n";
const BAD_BODY: &str = "400 bad request body\n";
const BODY_TIMEOUT: &str = "408 request body timeout\n";

/// An answer given without a backend; counted under `backend="none"`.
fn refuse(
    shared: &Shared,
    method: MethodLabel,
    status: StatusCode,
    text: impl Into<Bytes>,
) -> Reply {
    shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            status: status.as_u16(),
            backend: none_label(),
        })
        .inc();
    Reply::local(status, text)
}

fn none_label() -> Arc<String> {
    static NONE: std::sync::OnceLock<Arc<String>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::new("none".to_owned())).clone()
}
