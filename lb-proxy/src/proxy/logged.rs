//! The request path with the access log or tracing on: the request's facts are gathered into a
//! [`Record`] before [`super::serve`] runs, each attempt adds its own, and the line is written
//! (and the request's spans queued for export) when the response ends — at once for the
//! balancer's own short answers, when the body is dropped ([`super::body::Completion`]) for a
//! backend's, with the bytes sent and the full duration. A request whose client leaves before
//! the answer is logged with status 499, as nginx does.
//!
//! With tracing on, the request's trace begins here ([`crate::trace::Tracer::begin`]): the
//! client's `traceparent` and `tracestate` are read (from a client trusted with them) and
//! removed from the request, and each attempt sends the one `traceparent` naming its own span
//! ([`crate::trace::Active::attempt`]). The trace id goes into the log line.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::Method;

use super::body::{BodyFault, ToClient};
use super::reply::Reply;
use super::{ClientInfo, ClientRequest, serve};
use crate::access_log::{AccessLog, Record};
use crate::clock;
use crate::runtime::Shared;
use crate::trace::Active;

/// The status logged for a request whose client went away before its answer.
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// A record on its way to the log, and what completes it.
#[derive(Debug)]
pub(crate) struct Logged {
    /// The line's facts.
    pub record: Record,
    /// Where it goes; `None` when only tracing is on.
    pub log: Option<Arc<AccessLog>>,
    /// Counts the request body's bytes as they arrive; `None` without a body.
    pub body: Option<Arc<BodyFault>>,
    /// The request's trace, when tracing is on.
    pub trace: Option<Box<Active>>,
}

impl Logged {
    /// Writes the line: `bytes_out` sent, the request over at `now`.
    pub(crate) fn finish(mut self: Box<Self>, bytes_out: u64, now: Instant) {
        let record = &mut self.record;
        record.bytes_out = bytes_out;
        record.duration = now.saturating_duration_since(record.started);
        if let Some(body) = &self.body {
            record.bytes_in = body.received();
        }
        let Logged {
            record, log, trace, ..
        } = *self;
        if let Some(log) = log {
            log.emit(&record);
        }
        if let Some(trace) = trace {
            (*trace).finish(record);
        }
    }
}

/// Logs its record as the client's departure if the request is dropped before its answer.
struct Pending(Option<Box<Logged>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut logged) = self.0.take() {
            logged.record.status = CLIENT_CLOSED;
            logged.finish(0, clock::now());
        }
    }
}

/// [`serve`], with the request's access-log record and trace.
pub(crate) async fn logged(
    shared: &Shared,
    client: &Arc<ClientInfo>,
    mut request: ClientRequest,
) -> Reply {
    let started = clock::now();
    let runtime = shared.runtime.load();
    let parts = &request.parts;
    let tls = client.edge.as_ref().and_then(|edge| edge.tls.as_ref());
    let client_ip = client.address(&parts.headers, &runtime.config.server.trusted_proxies);
    let mut record = Record::new(SystemTime::now(), started, client_ip, parts.version);
    record.request = Some((parts.method.clone(), parts.uri.clone()));
    record.tls_version = tls.map(|tls| tls.version);
    record.sni = tls.and_then(|tls| tls.sni.clone());
    drop(runtime);
    let trace = shared.tracing.get().map(|tracer| {
        let scheme = if client.proto() == b"https" {
            "https"
        } else {
            "http"
        };
        let headers = &mut request.parts.headers;
        let mut trace = tracer.begin(headers, client.trusted);
        // Exactly one `traceparent` goes upstream, the attempt's: the client's are not sent on.
        headers.remove("traceparent");
        headers.remove("tracestate");
        trace.describe(&request.parts, scheme);
        record.trace_id = Some(trace.trace_id());
        Box::new(trace)
    });
    let mut pending = Pending(Some(Box::new(Logged {
        record,
        log: shared.access_log.current(),
        body: None,
        trace,
    })));
    let mut reply = {
        let logged = pending.0.as_deref_mut();
        serve(shared, client, request, logged).await
    };
    let Some(mut logged) = pending.0.take() else {
        return reply;
    };
    logged.record.status = reply.status.as_u16();
    match &mut reply.body {
        ToClient::Proxied { completion, .. } => completion.log = Some(logged),
        ToClient::Fixed(text) => {
            let head =
                matches!(&logged.record.request, Some((method, _)) if method == Method::HEAD);
            let sent = match head {
                true => 0,
                false => text.as_ref().map_or(0, |text| text.len() as u64),
            };
            logged.finish(sent, clock::now());
        }
    }
    reply
}
