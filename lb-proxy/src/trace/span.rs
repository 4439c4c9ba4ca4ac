//! One request's trace: its ids, each attempt's span, and at the end its spans as
//! OpenTelemetry's `SpanData` — one SERVER span for the request and one CLIENT child per
//! attempt, with the attributes the OpenTelemetry HTTP semantic conventions name
//! (`http.request.method`, `url.path`, `url.scheme`, `http.response.status_code`,
//! `server.address`/`server.port`, `client.address`, `network.protocol.version`,
//! `user_agent.original`, `error.type`, `http.request.resend_count`) and the balancer's own
//! (`lb.route`, `lb.pool`, `lb.backend`, `lb.attempt`, `lb.retry.reason`, `lb.request_id`).
//!
//! The request path only notes ids and instants ([`Active`]); the attributes are built on the
//! exporter's thread ([`Finished::into_spans`]), from the access log's [`Record`] the request
//! path gathers anyway.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Version};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::{Tracer, new_span_id};
use crate::access_log::{AttemptEnd, Record};
use crate::proto::trace_context::{SAMPLED, TraceParent, stamp_head};

/// A request's trace while the request runs.
#[derive(Debug)]
pub(crate) struct Active {
    tracer: Arc<Tracer>,
    trace: Trace,
}

/// What the spans are made of, besides the record.
#[derive(Debug)]
pub(crate) struct Trace {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The request's (server) span id.
    span_id: [u8; 8],
    /// The trusted caller's span, when there is one.
    parent: Option<[u8; 8]>,
    /// Whether the spans are exported (and the flag sent on).
    sampled: bool,
    /// The caller's `tracestate`, validated, sent on to every attempt.
    tracestate: Option<Box<[u8]>>,
    /// The host the client asked for, and the port (explicit or the scheme's).
    server: Option<(Box<str>, u16)>,
    /// `http` or `https`.
    scheme: &'static str,
    /// The client's `User-Agent`.
    user_agent: Option<HeaderValue>,
    /// One per attempt, in order.
    attempts: Vec<AttemptSpan>,
}

/// One attempt's span.
#[derive(Debug)]
struct AttemptSpan {
    span_id: [u8; 8],
    /// When the attempt started (its record has how long it took).
    start: Instant,
    /// The backend's address.
    backend: SocketAddr,
}

impl Active {
    /// A request's trace; `sampled` decides whether its spans are exported.
    pub(super) fn new(
        tracer: Arc<Tracer>,
        trace_id: [u8; 16],
        parent: Option<[u8; 8]>,
        sampled: bool,
        tracestate: Option<Vec<u8>>,
    ) -> Active {
        Active {
            tracer,
            trace: Trace {
                trace_id,
                span_id: new_span_id(),
                parent,
                sampled,
                tracestate: tracestate.map(Vec::into_boxed_slice),
                server: None,
                scheme: "http",
                user_agent: None,
                attempts: Vec::new(),
            },
        }
    }

    /// The trace id.
    pub(crate) fn trace_id(&self) -> [u8; 16] {
        self.trace.trace_id
    }

    /// Notes what the request asked for: its `Host` (or target authority), the listener's
    /// scheme, the client's `User-Agent`.
    pub(crate) fn describe(&mut self, parts: &http::request::Parts, scheme: &'static str) {
        let trace = &mut self.trace;
        trace.scheme = scheme;
        let authority = (parts.uri.authority().map(|a| a.as_str().to_owned()))
            .or_else(|| (parts.headers.get(http::header::HOST)?.to_str().ok()).map(str::to_owned));
        trace.server = authority.and_then(|authority| {
            let authority: http::uri::Authority = authority.parse().ok()?;
            let port = match (authority.port_u16(), scheme) {
                (Some(port), _) => port,
                (None, "https") => 443,
                (None, _) => 80,
            };
            Some((authority.host().into(), port))
        });
        trace.user_agent = parts.headers.get(http::header::USER_AGENT).cloned();
    }

    /// An attempt on `backend` starts at `now`: its span gets a new id, and `head` (the
    /// upstream request head) gets the one `traceparent` naming it, and the `tracestate`.
    #[cold]
    pub(crate) fn attempt(&mut self, head: Bytes, backend: SocketAddr, now: Instant) -> Bytes {
        let trace = &mut self.trace;
        let span_id = new_span_id();
        trace.attempts.push(AttemptSpan {
            span_id,
            start: now,
            backend,
        });
        let parent = TraceParent {
            trace_id: trace.trace_id,
            parent_id: span_id,
            flags: if trace.sampled { SAMPLED } else { 0 },
        };
        Bytes::from(stamp_head(&head, &parent, trace.tracestate.as_deref()))
    }

    /// The request is over: its spans go to the exporter when sampled.
    pub(crate) fn finish(self, record: Record) {
        let Active { tracer, trace } = self;
        if trace.sampled {
            tracer.submit(Finished { trace, record });
        }
    }
}

/// A finished request on its way to the exporter.
#[derive(Debug)]
pub(crate) struct Finished {
    trace: Trace,
    record: Record,
}

impl Finished {
    /// Its spans: the server span and one per attempt.
    pub(crate) fn span_count(&self) -> u64 {
        1 + self.trace.attempts.len() as u64
    }

    /// The spans, as OpenTelemetry exports them.
    pub(crate) fn into_spans(self, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
        let Finished { trace, record } = self;
        let trace_id = TraceId::from_bytes(trace.trace_id);
        let state = (trace.tracestate.as_deref())
            .and_then(|state| std::str::from_utf8(state).ok())
            .and_then(|state| TraceState::from_str(state).ok())
            .unwrap_or_default();
        let server_id = SpanId::from_bytes(trace.span_id);
        let context =
            |span_id, state| SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, state);
        let at = |instant: Instant| at(&record, instant);
        let end = record.time + record.duration;
        let method = record.request.as_ref().map(|(method, _)| method);
        let name = span_name(method);

        let mut attributes = Vec::with_capacity(16);
        push_method(&mut attributes, method);
        if let Some((_, uri)) = &record.request {
            attributes.push(KeyValue::new("url.path", uri.path().to_owned()));
        }
        attributes.push(KeyValue::new("url.scheme", trace.scheme));
        if let Some((host, port)) = &trace.server {
            attributes.push(KeyValue::new("server.address", host.to_string()));
            attributes.push(KeyValue::new("server.port", i64::from(*port)));
        }
        attributes.push(KeyValue::new("client.address", record.client.to_string()));
        attributes.push(KeyValue::new("network.protocol.name", "http"));
        attributes.push(KeyValue::new(
            "network.protocol.version",
            protocol_version(record.version),
        ));
        if let Some(agent) = trace.user_agent.as_ref().and_then(|a| a.to_str().ok()) {
            attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
        }
        if record.status != 0 {
            let status = i64::from(record.status);
            attributes.push(KeyValue::new("http.response.status_code", status));
        }
        if let Some(route) = &record.route {
            attributes.push(KeyValue::new("lb.route", route.to_string()));
        }
        if let Some(pool) = &record.pool {
            attributes.push(KeyValue::new("lb.pool", pool.to_string()));
        }
        if let Some(id) = record.request_id.as_ref().and_then(|id| id.to_str().ok()) {
            attributes.push(KeyValue::new("lb.request_id", id.to_owned()));
        }
        attributes.push(KeyValue::new("lb.attempts", record.attempts.len() as i64));
        let status = match record.status {
            500.. => {
                // The last attempt's failure names the error; a status of the backend's or of
                // the balancer's own is named by its code.
                let error = match record.attempts.last().map(|attempt| attempt.end) {
                    Some(AttemptEnd::Failure(kind)) => Cow::Borrowed(kind),
                    _ => Cow::Owned(record.status.to_string()),
                };
                attributes.push(KeyValue::new("error.type", error));
                Status::error("")
            }
            CLIENT_CLOSED => {
                attributes.push(KeyValue::new("error.type", "client_closed"));
                Status::Unset
            }
            // The head said success, but the backend cut the body off: the client has a
            // truncated response.
            _ if record.body_failed => {
                attributes.push(KeyValue::new("error.type", "body_failed"));
                Status::error("body_failed")
            }
            _ => Status::Unset,
        };
        out.push(SpanData {
            span_context: context(server_id, state.clone()),
            parent_span_id: trace.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: trace.parent.is_some(),
            span_kind: SpanKind::Server,
            name: name.clone(),
            start_time: record.time,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: scope.clone(),
        });

        for (index, span) in trace.attempts.iter().enumerate() {
            let logged = record.attempts.get(index);
            let start = at(span.start);
            let span_end = match logged {
                Some(logged) => start + logged.duration,
                None => end.max(start),
            };
            let mut attributes = Vec::with_capacity(12);
            push_method(&mut attributes, method);
            attributes.push(KeyValue::new(
                "server.address",
                span.backend.ip().to_string(),
            ));
            attributes.push(KeyValue::new("server.port", i64::from(span.backend.port())));
            attributes.push(KeyValue::new("network.protocol.name", "http"));
            attributes.push(KeyValue::new("network.protocol.version", "1.1"));
            attributes.push(KeyValue::new("lb.attempt", index as i64 + 1));
            if index > 0 {
                attributes.push(KeyValue::new("http.request.resend_count", index as i64));
            }
            if let Some(pool) = &record.pool {
                attributes.push(KeyValue::new("lb.pool", pool.to_string()));
            }
            let status = match logged {
                Some(logged) => {
                    attributes.push(KeyValue::new("lb.backend", logged.backend.to_string()));
                    if let Some(reason) = logged.retried {
                        attributes.push(KeyValue::new("lb.retry.reason", reason));
                    }
                    match logged.end {
                        AttemptEnd::Status(code) => {
                            attributes
                                .push(KeyValue::new("http.response.status_code", i64::from(code)));
                            if code >= 500 {
                                attributes.push(KeyValue::new("error.type", code.to_string()));
                                Status::error("")
                            } else {
                                Status::Unset
                            }
                        }
                        AttemptEnd::Failure(kind) => {
                            attributes.push(KeyValue::new("error.type", kind));
                            Status::error(kind)
                        }
                    }
                }
                // The client left while the attempt was under way.
                None => {
                    attributes.push(KeyValue::new("error.type", "client_closed"));
                    Status::error("client_closed")
                }
            };
            out.push(SpanData {
                span_context: context(SpanId::from_bytes(span.span_id), state.clone()),
                parent_span_id: server_id,
                parent_span_is_remote: false,
                span_kind: SpanKind::Client,
                name: name.clone(),
                start_time: start,
                end_time: span_end,
                attributes,
                dropped_attributes_count: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status,
                instrumentation_scope: scope.clone(),
            });
        }
    }
}

/// The status the access log gives a request whose client left before its answer (nginx's).
const CLIENT_CLOSED: u16 = 499;

/// `instant` on the wall clock: the request's arrival, plus the time since.
fn at(record: &Record, instant: Instant) -> SystemTime {
    record.time + instant.saturating_duration_since(record.started)
}

/// The methods the semantic conventions name; any other is `_OTHER`.
const KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

fn known(method: &Method) -> bool {
    KNOWN_METHODS.contains(method)
}

/// `{method}`, or `HTTP` for a method the conventions do not name (a client's made-up method
/// would otherwise make a span name of every value).
fn span_name(method: Option<&Method>) -> Cow<'static, str> {
    match method {
        Some(method) if known(method) => Cow::Owned(method.as_str().to_owned()),
        _ => Cow::Borrowed("HTTP"),
    }
}

fn push_method(attributes: &mut Vec<KeyValue>, method: Option<&Method>) {
    let Some(method) = method else {
        return;
    };
    if known(method) {
        attributes.push(KeyValue::new(
            "http.request.method",
            method.as_str().to_owned(),
        ));
    } else {
        attributes.push(KeyValue::new("http.request.method", "_OTHER"));
        let original = method.as_str().to_owned();
        attributes.push(KeyValue::new("http.request.method_original", original));
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    const TICK: Duration = Duration::from_millis(1);

    use super::*;
    use crate::access_log::AttemptEnd;

    fn trace(attempts: usize, started: Instant) -> Trace {
        Trace {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent: Some([9; 8]),
            sampled: true,
            tracestate: Some(b"k=v".to_vec().into_boxed_slice()),
            server: Some(("shop.test".into(), 80)),
            scheme: "http",
            user_agent: None,
            attempts: (0..attempts)
                .map(|i| AttemptSpan {
                    span_id: [i as u8 + 2; 8],
                    start: started + TICK * i as u32,
                    backend: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                })
                .collect(),
        }
    }

    fn value(span: &SpanData, key: &str) -> Option<String> {
        (span.attributes.iter())
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[test]
    fn a_retried_request_is_one_server_span_with_a_child_per_attempt() {
        let started = crate::clock::now();
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut record = Record::new(SystemTime::now(), started, client, Version::HTTP_11);
        record.request = Some((Method::GET, "/a?secret=1".parse().unwrap()));
        record.status = 502;
        record.duration = TICK * 10;
        let backend = Arc::new("b1".to_owned());
        record.attempt(
            backend.clone(),
            AttemptEnd::Failure("connect_refused"),
            TICK,
        );
        record.retried("connect_refused");
        record.attempt(backend, AttemptEnd::Status(502), TICK);
        let finished = Finished {
            trace: trace(2, started),
            record,
        };
        assert_eq!(finished.span_count(), 3);
        let mut spans = Vec::new();
        finished.into_spans(&InstrumentationScope::builder("lb").build(), &mut spans);
        let [server, first, second] = &spans[..] else {
            panic!("{spans:?}")
        };
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(server.parent_span_id, SpanId::from_bytes([9; 8]));
        assert!(server.parent_span_is_remote);
        assert_eq!(value(server, "url.path").as_deref(), Some("/a"));
        assert_eq!(value(server, "error.type").as_deref(), Some("502"));
        assert!(matches!(server.status, Status::Error { .. }));
        assert_eq!(server.span_context.trace_state().header(), "k=v");
        for (child, attempt) in [(first, "1"), (second, "2")] {
            assert_eq!(child.span_kind, SpanKind::Client);
            assert_eq!(child.parent_span_id, server.span_context.span_id());
            assert_eq!(value(child, "lb.attempt").as_deref(), Some(attempt));
            assert!(child.start_time >= server.start_time && child.end_time <= server.end_time);
        }
        assert_eq!(
            value(first, "error.type").as_deref(),
            Some("connect_refused")
        );
        assert_eq!(
            value(first, "lb.retry.reason").as_deref(),
            Some("connect_refused")
        );
        assert_eq!(
            value(second, "http.request.resend_count").as_deref(),
            Some("1")
        );
        assert_ne!(first.span_context.span_id(), second.span_context.span_id());
    }

    #[test]
    fn a_body_the_backend_cut_off_is_the_server_spans_error() {
        let started = crate::clock::now();
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (failed, error) in [(true, Some("body_failed")), (false, None)] {
            let mut record = Record::new(SystemTime::now(), started, client, Version::HTTP_11);
            record.request = Some((Method::GET, "/download".parse().unwrap()));
            record.status = 200;
            record.body_failed = failed;
            record.attempt(Arc::new("b1".to_owned()), AttemptEnd::Status(200), TICK);
            let finished = Finished {
                trace: trace(1, started),
                record,
            };
            let mut spans = Vec::new();
            finished.into_spans(&InstrumentationScope::builder("lb").build(), &mut spans);
            let server = &spans[0];
            assert_eq!(value(server, "error.type").as_deref(), error);
            assert_eq!(matches!(server.status, Status::Error { .. }), failed);
        }
    }

    #[test]
    fn an_unknown_method_is_other_and_names_no_span() {
        let mut attributes = Vec::new();
        let method = Method::from_bytes(b"BREW").unwrap();
        push_method(&mut attributes, Some(&method));
        assert_eq!(attributes[0].value.to_string(), "_OTHER");
        assert_eq!(attributes[1].value.to_string(), "BREW");
        assert_eq!(span_name(Some(&method)), "HTTP");
        assert_eq!(span_name(Some(&Method::POST)), "POST");
    }
}
