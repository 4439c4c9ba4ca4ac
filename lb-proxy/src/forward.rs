//! The request path: snapshot → pick → guard → forward → record → retry or answer.
//!
//! Outcomes of an attempt are classified once ([`classify`]) into lb-core's
//! [`FailureKind`](lb_core::retry::FailureKind); lb-core decides whether to retry and how long to
//! wait; [`failure_response`] maps what is left to the client's status in one place.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use lb_core::balance::{Balancer, PickContext};
use lb_core::retry::{AttemptFailure, FailureKind, GiveUpReason, RetryDecision, is_idempotent};

use crate::backend::{Backend, EligibleView};
use crate::body::{BackendBody, BodyFault, ClientBody, Completion, LimitedBody, UpstreamBody};
use crate::headers::{
    X_FORWARDED_FOR, add_forwarded, connection_names_no_header, encode_forwarded_head,
    strip_hop_by_hop,
};
use crate::idle::{Activity, BusyGuard};
use crate::metrics::{MethodLabel, RequestLabels, RetryLabels};
use crate::runtime::{Runtime, Shared};
use crate::upstream::{Outgoing, SendFailure, h1};
use crate::validate::{Rejection, check_head};

/// Bodies up to this size with a known length are read before the first attempt so that a
/// retry can send them again; larger or chunked bodies stream through and are never retried.
pub const REPLAY_BUFFER_BYTES: u64 = 64 * 1024;

/// What a connection knows about its client, computed once per connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// The peer's socket address.
    pub peer: SocketAddr,
    /// The peer's IP, ready for `X-Forwarded-For`.
    pub forwarded_for: HeaderValue,
    /// Whether the peer is in `server.trusted_proxies`: its `X-Forwarded-For` is then believed
    /// and appended to; otherwise it is replaced and the peer is the client.
    pub trusted: bool,
    /// What is in flight on the connection, for its idle release.
    pub activity: Activity,
}

impl ClientInfo {
    /// Describes the client at `peer`, trusted when it lies in one of `trusted_proxies`.
    pub fn new(peer: SocketAddr, trusted_proxies: &[lb_core::net::Cidr]) -> Self {
        let forwarded_for = HeaderValue::from_bytes(IpText::new(peer.ip()).as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            forwarded_for,
            trusted: lb_core::net::is_trusted(trusted_proxies, peer.ip()),
            activity: Activity::default(),
        }
    }

    /// The client's address for a request with these headers: the peer, or for a trusted peer
    /// the right-most untrusted address of `X-Forwarded-For` ([`lb_core::net::client_address`]).
    pub fn address(
        &self,
        headers: &http::HeaderMap,
        trusted_proxies: &[lb_core::net::Cidr],
    ) -> IpAddr {
        if !self.trusted {
            return self.peer.ip();
        }
        let lines = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|line| line.to_str().ok());
        lb_core::net::client_address(self.peer.ip(), lines, trusted_proxies)
    }
}

/// An IP address as text, on the stack: formatting into a `String` cost a few reallocations
/// per client connection.
struct IpText {
    bytes: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            bytes: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut cursor = std::io::Cursor::new(&mut text.bytes[..]);
                // 45 bytes hold the longest form ("ffff:...:255.255.255.255").
                let _ = write!(cursor, "{v6}");
                text.len = cursor.position() as usize;
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Proxies one client request to a backend and returns the response to send.
pub async fn handle(
    shared: &Shared,
    client: &Arc<ClientInfo>,
    request: Request<Incoming>,
) -> Response<ClientBody> {
    let (parts, body) = request.into_parts();
    let body = (!body.is_end_stream()).then_some(body);
    handle_parts(shared, client, parts, body).await
}

/// [`handle`] for a request in parts; `body` is `None` when the request has none.
///
/// Written as a function returning an `async move` block rather than an `async fn`: an
/// `async fn` moves its arguments into locals, and the request's parts (224 bytes) then took
/// their room twice in every request's future.
#[allow(clippy::manual_async_fn)] // see above: an `async fn` would hold its arguments twice
pub fn handle_parts<'a>(
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    mut parts: http::request::Parts,
    body: Option<Incoming>,
) -> impl Future<Output = Response<ClientBody>> + 'a {
    async move {
        let started = Instant::now();
        let runtime = shared.runtime.load_full();
        let method = MethodLabel::of(&parts.method);
        let version = parts.version;
        if let Err(rejection) = check_head(&parts, runtime.config.server.max_uri_bytes) {
            return refuse_and_close(shared, method, version, rejection);
        }
        let limit = runtime.config.server.max_request_body_bytes;
        let declared_length = content_length(&parts.headers);
        if declared_length.is_some_and(|length| length > limit) {
            return refuse_and_close(shared, method, version, TOO_LARGE);
        }

        // Only a request with a body needs to learn whether that body failed: no allocation otherwise.
        let fault: Option<Arc<BodyFault>> = body.is_some().then(Default::default);
        let (mut upstream_body, replayable) = match body {
            None => (Some(UpstreamBody::Empty), true),
            Some(body) if declared_length.is_some_and(|length| length <= REPLAY_BUFFER_BYTES) => {
                let read = tokio::time::timeout(
                    runtime.config.server.request_timeout,
                    LimitedBody::new(body, limit, fault.clone().unwrap_or_default()).collect(),
                )
                .await;
                match read {
                    Ok(Ok(collected)) => (
                        Some(UpstreamBody::Buffered(Some(collected.to_bytes()))),
                        true,
                    ),
                    Ok(Err(_)) if fault.as_ref().is_some_and(|fault| fault.too_large()) => {
                        return refuse_and_close(shared, method, version, TOO_LARGE);
                    }
                    Ok(Err(_)) => {
                        return refuse_and_close(shared, method, version, BAD_BODY);
                    }
                    Err(_) => {
                        return refuse_and_close(shared, method, version, BODY_TIMEOUT);
                    }
                }
            }
            Some(body) => (
                Some(UpstreamBody::Streaming(
                    LimitedBody::new(body, limit, fault.clone().unwrap_or_default())
                        .holding(BusyGuard::new(client)),
                )),
                false,
            ),
        };
        let request_bytes = declared_length.unwrap_or(0);

        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        let path_and_query = parts.uri.path_and_query().cloned();
        let target = path_and_query
            .as_ref()
            .map_or("/", |target| target.as_str());
        let idempotent = is_idempotent(parts.method.as_str());
        let deadline =
            tokio::time::Instant::from_std(started + runtime.config.server.request_timeout);
        let max_attempts = runtime.retry.max_attempts();
        let expect_body = parts.method != http::Method::HEAD;
        let trusted_proxies = &runtime.config.server.trusted_proxies;
        let streaming = matches!(upstream_body, Some(UpstreamBody::Streaming(_)));
        let connection_lines = || {
            parts
                .headers
                .get_all(header::CONNECTION)
                .into_iter()
                .map(HeaderValue::as_bytes)
        };
        // A body known up front goes out with a head serialised once: every attempt writes the same
        // bytes. Usually that head is written straight from the client's headers; when the client
        // names headers in `Connection`, or the body streams through hyper's client, the map is
        // rewritten first.
        let (client_ip, head) = if !streaming && connection_names_no_header(connection_lines()) {
            let client_ip = client.address(&parts.headers, trusted_proxies);
            let head = encode_forwarded_head(
                &parts.method,
                target,
                &parts.headers,
                &client.forwarded_for,
                client.trusted,
                "http",
            );
            (client_ip, Some(head))
        } else {
            strip_hop_by_hop(&mut parts.headers);
            // Room for the three X-Forwarded-* headers at once: a fresh connection's map is sized
            // to the client's headers and would otherwise grow twice.
            parts.headers.reserve(3);
            let client_ip = client.address(&parts.headers, trusted_proxies);
            add_forwarded(
                &mut parts.headers,
                &client.forwarded_for,
                client.trusted,
                "http",
            );
            let head = (!streaming).then(|| h1::encode_head(&parts.method, target, &parts.headers));
            (client_ip, head)
        };
        let serialized = head.map(|head| match upstream_body.as_ref() {
            Some(UpstreamBody::Buffered(Some(bytes))) => (head, bytes.clone()),
            _ => (head, bytes::Bytes::new()),
        });

        runtime.budget.deposit(started);
        let mut tried: Vec<usize> = Vec::new();
        let mut refusals = 0usize;
        let mut attempt: u32 = 1;
        let mut last_failure: Option<(Arc<Backend>, FailureKind)> = None;
        loop {
            let now = Instant::now();
            let Some(backend) = pick(&runtime, client_ip, &tried, now) else {
                return match last_failure {
                    Some((backend, kind)) => {
                        failure_response(shared, &backend, method, kind, started)
                    }
                    None => no_backend(shared, method),
                };
            };
            // Eligibility was judged a moment ago; a racing request may have taken the last slot or
            // the last probe. Such refusals are bounded so a saturated fleet answers 503 at once.
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
            // Written inside the call: a future kept in a local first and then moved into the
            // timeout took its room twice in the request's future.
            let result = tokio::time::timeout_at(deadline, async {
                match &serialized {
                    Some((head, body)) => backend
                        .pool
                        .send(
                            backend.addr,
                            Outgoing {
                                head,
                                body,
                                expect_body,
                                idempotent,
                            },
                            now,
                        )
                        .await
                        .map(|(parts, body)| (parts, BackendBody::Own(body))),
                    None => {
                        let body = upstream_body.take().unwrap_or(UpstreamBody::Empty);
                        let mut upstream = Request::new(body);
                        *upstream.method_mut() = parts.method.clone();
                        *upstream.uri_mut() = upstream_uri(path_and_query.as_ref());
                        *upstream.version_mut() = Version::HTTP_11;
                        *upstream.headers_mut() = std::mem::take(&mut parts.headers);
                        // Boxed: a streamed upload is rare, and its exchange (hyper's client)
                        // would otherwise take room in every request's future.
                        let response =
                            Box::pin(backend.pool.send_streaming(backend.addr, upstream, now))
                                .await?;
                        let (parts, body) = response.into_parts();
                        Ok((parts, BackendBody::Hyper(body)))
                    }
                }
            })
            .await;
            let now = Instant::now();
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
                        let rejection = if fault.too_large() {
                            TOO_LARGE
                        } else {
                            BAD_BODY
                        };
                        return refuse_and_close(shared, method, version, rejection);
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
                    None => failure_response(shared, &backend, method, kind, started),
                };
            };
            // The slot is free during the backoff; an unread body makes its connection unusable,
            // so both are dropped.
            drop(kept);
            if !wait_backoff(backoff, deadline).await {
                return failure_response(
                    shared,
                    &backend,
                    method,
                    FailureKind::ResponseTimeout,
                    started,
                );
            }
            tried.push(backend.index);
            attempt += 1;
            last_failure = Some((backend, kind));
        }
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
        SendFailure::Exchange(_) | SendFailure::Streaming(_) => FailureKind::ResetBeforeResponse,
    }
}

/// The request target sent upstream: origin-form, since the connection is to the backend itself.
fn upstream_uri(path_and_query: Option<&http::uri::PathAndQuery>) -> Uri {
    match path_and_query {
        Some(path_and_query) => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path_and_query.clone());
            Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
        }
        None => Uri::from_static("/"),
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
}

fn proxied(
    mut parts: http::response::Parts,
    body: BackendBody,
    slot: crate::backend::InFlight,
    method: MethodLabel,
    started: Instant,
    request_bytes: u64,
) -> Response<ClientBody> {
    strip_hop_by_hop(&mut parts.headers);
    let metrics = &slot.backend().metrics;
    metrics.count_request(method, parts.status.as_u16());
    metrics.request_size.observe(request_bytes as f64);
    let completion = Completion {
        in_flight: slot,
        started,
        sent: 0,
        complete: false,
        connection: None,
    };
    Response::from_parts(parts, ClientBody::proxied(body, completion))
}

/// The one place a failed exchange becomes the client's status.
fn failure_response(
    _shared: &Shared,
    backend: &Backend,
    method: MethodLabel,
    kind: FailureKind,
    started: Instant,
) -> Response<ClientBody> {
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
    backend
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    plain(status, text)
}

fn no_backend(shared: &Shared, method: MethodLabel) -> Response<ClientBody> {
    shared.metrics.no_backend.inc();
    refuse(
        shared,
        method,
        StatusCode::SERVICE_UNAVAILABLE,
        "503 service unavailable: no backend available\n",
    )
}

const TOO_LARGE: Rejection = Rejection {
    status: StatusCode::PAYLOAD_TOO_LARGE,
    text: "413 payload too large\n",
};
const BAD_BODY: Rejection = Rejection {
    status: StatusCode::BAD_REQUEST,
    text: "400 bad request body\n",
};
const BODY_TIMEOUT: Rejection = Rejection {
    status: StatusCode::REQUEST_TIMEOUT,
    text: "408 request body timeout\n",
};

/// Refuses a request the client got wrong and, on HTTP/1, closes the connection after the
/// answer: what is left of an unread or malformed body must never be parsed as a next request.
fn refuse_and_close(
    shared: &Shared,
    method: MethodLabel,
    version: Version,
    rejection: Rejection,
) -> Response<ClientBody> {
    let mut response = refuse(shared, method, rejection.status, rejection.text);
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// An answer given without a backend; counted under `backend="none"`.
fn refuse(
    shared: &Shared,
    method: MethodLabel,
    status: StatusCode,
    text: &'static str,
) -> Response<ClientBody> {
    shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            status: status.as_u16(),
            backend: none_label(),
        })
        .inc();
    plain(status, text)
}

fn none_label() -> Arc<String> {
    static NONE: std::sync::OnceLock<Arc<String>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::new("none".to_owned())).clone()
}

/// A short plain-text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<ClientBody> {
    let mut response = Response::new(ClientBody::fixed(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_formats_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.99.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
