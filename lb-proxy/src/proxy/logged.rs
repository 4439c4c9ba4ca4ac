//! The request path with the access log on: the request's facts are gathered into a
//! [`Record`] before [`super::serve`] runs, each attempt adds its own, and the line is written
//! when the response ends — at once for the balancer's own short answers, when the body is
//! dropped ([`super::body::Completion`]) for a backend's, with the bytes sent and the full
//! duration. A request whose client leaves before the answer is logged with status 499, as
//! nginx does.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::Method;

use super::body::{BodyFault, ToClient};
use super::reply::Reply;
use super::{ClientInfo, ClientRequest, serve};
use crate::access_log::{AccessLog, Record};
use crate::clock;
use crate::runtime::Shared;

/// The status logged for a request whose client went away before its answer.
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// A record on its way to the log, and what completes it.
#[derive(Debug)]
pub(crate) struct Logged {
    /// The line's facts.
    pub record: Record,
    /// Where it goes.
    pub log: Arc<AccessLog>,
    /// Counts the request body's bytes as they arrive; `None` without a body.
    pub body: Option<Arc<BodyFault>>,
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
        self.log.emit(&self.record);
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

/// [`serve`], with the request's access-log record.
pub(crate) async fn logged(
    shared: &Shared,
    log: Arc<AccessLog>,
    client: &Arc<ClientInfo>,
    request: ClientRequest,
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
    let mut pending = Pending(Some(Box::new(Logged {
        record,
        log,
        body: None,
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
