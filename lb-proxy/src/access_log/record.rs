//! What one request's access-log line says, gathered as the request goes: the request's own
//! facts when it arrives, each attempt as it settles, the answer, and the bytes and duration
//! when its response ends.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    /// The backend answered with this status.
    Status(u16),
    /// No answer: the failure's kind (`connect_refused`, `response_timeout`, ...).
    Failure(&'static str),
}

/// One attempt on one backend.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRecord {
    /// The backend's name.
    pub backend: Arc<String>,
    /// How it ended.
    pub end: AttemptEnd,
    /// From the send to the response head (or the failure).
    pub duration: Duration,
    /// Why it was retried, when another attempt followed.
    pub retried: Option<&'static str>,
}

/// One request's line, before it is written.
#[derive(Debug)]
pub(crate) struct Record {
    /// When the request's head was read, on the wall clock.
    pub time: SystemTime,
    /// The same moment on the monotonic clock, for the duration.
    pub started: Instant,
    /// The client's address, after the trust rules (`X-Forwarded-For` from trusted proxies,
    /// the PROXY header).
    pub client: IpAddr,
    /// The method and the request target as received (never rewritten); `None` for a head the
    /// codec refused, whose request line is not to be trusted.
    pub request: Option<(Method, Uri)>,
    /// The protocol version.
    pub version: Version,
    /// The status sent; 0 until known.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// The backend failed to deliver the response body whole after its head was sent: the
    /// client's response was cut off.
    pub body_failed: bool,
    /// From arrival to the response's end.
    pub duration: Duration,
    /// The route, once matched.
    pub route: Option<Arc<String>>,
    /// The pool, once chosen.
    pub pool: Option<Arc<String>>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The request id.
    pub request_id: Option<HeaderValue>,
    /// The TLS version, on a TLS listener.
    pub tls_version: Option<&'static str>,
    /// The SNI name the client sent, on a TLS listener.
    pub sni: Option<Box<str>>,
    /// The trace id, when tracing is on.
    pub trace_id: Option<[u8; 16]>,
}

impl Record {
    /// A record of a request that arrived at `started` (`time` on the wall clock) from
    /// `client`, with nothing else known yet.
    pub fn new(time: SystemTime, started: Instant, client: IpAddr, version: Version) -> Self {
        Record {
            time,
            started,
            client,
            request: None,
            version,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            body_failed: false,
            duration: Duration::ZERO,
            route: None,
            pool: None,
            attempts: Vec::new(),
            request_id: None,
            tls_version: None,
            sni: None,
            trace_id: None,
        }
    }

    /// The backend that gave the answer: the last attempt's.
    pub fn backend(&self) -> Option<&Arc<String>> {
        self.attempts.last().map(|attempt| &attempt.backend)
    }

    /// Records an attempt.
    pub fn attempt(&mut self, backend: Arc<String>, end: AttemptEnd, duration: Duration) {
        self.attempts.push(AttemptRecord {
            backend,
            end,
            duration,
            retried: None,
        });
    }

    /// The last attempt was retried, for `reason`.
    pub fn retried(&mut self, reason: &'static str) {
        if let Some(last) = self.attempts.last_mut() {
            last.retried = Some(reason);
        }
    }
}
