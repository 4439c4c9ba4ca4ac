//! Distributed tracing: W3C Trace Context in and out, spans exported with OpenTelemetry over
//! OTLP/HTTP (protobuf), when `tracing` is on.
//!
//! The request path pays for tracing only when it is on: [`Switch::get`] is one relaxed atomic
//! load while it is off. On, each request gets an [`Active`] trace ([`Tracer::begin`]: the
//! parent a trusted client sent, or a new trace; the sampling decision), each attempt a span id
//! of its own and the `traceparent` naming it ([`Active::attempt`]), and when the response ends
//! the request's facts (the access log's [`Record`], which the request path gathers anyway) go
//! into a bounded queue ([`Tracer::submit`]) — never waited on: a full queue drops and counts
//! (`lb_tracing_spans_dropped_total`). The spans themselves are built and sent on the exporter's
//! own thread ([`export`]).
//!
//! # Layout
//! - [`span`]: a request's trace, and its spans as OpenTelemetry's `SpanData`.
//! - [`export`]: the queue's thread: batches, the OTLP exporter, its HTTP client.

pub(crate) mod export;
pub(crate) mod span;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderMap;
use lb_core::config::{TracingConfig, TrustParent};

use crate::metrics::TracingMetrics;
use crate::proto::trace_context::{self, TraceParent};
pub(crate) use span::{Active, Finished};

/// The live tracer, if any: set at start and by a reload that changes `tracing`.
#[derive(Debug, Default)]
pub(crate) struct Switch {
    /// Whether a tracer is set: read first, so that tracing off costs one load.
    on: AtomicBool,
    tracer: ArcSwapOption<Tracer>,
    /// The exporters' threads, the live one's and those of tracers a reload replaced that are
    /// still sending what they held: waited for at shutdown.
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Switch {
    /// The tracer, when tracing is on.
    #[inline]
    pub(crate) fn get(&self) -> Option<Arc<Tracer>> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        self.tracer.load_full()
    }

    /// Whether tracing is on.
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Puts `tracer` in place (or none). The one it replaces sends what it holds and stops once
    /// the requests that use it are over.
    pub(crate) fn set(&self, tracer: Option<Started>) {
        let on = tracer.is_some();
        let tracer = tracer.map(|Started(tracer, thread)| {
            if let Ok(mut threads) = self.threads.lock() {
                threads.retain(|thread| !thread.is_finished());
                threads.push(thread);
            }
            Arc::new(tracer)
        });
        self.tracer.store(tracer);
        self.on.store(on, Ordering::Relaxed);
    }

    /// Stops tracing at shutdown, once the requests are over: the exporters send what they
    /// hold, waited for up to `bound` (a collector that is down does not hold the exit).
    pub(crate) async fn stop(&self, bound: Duration) {
        self.set(None);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let running = match self.threads.lock() {
                Ok(mut threads) => {
                    threads.retain(|thread| !thread.is_finished());
                    !threads.is_empty()
                }
                Err(_) => false,
            };
            if !running || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A tracer and its exporter's thread, just started.
#[derive(Debug)]
pub(crate) struct Started(Tracer, JoinHandle<()>);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// The OTLP exporter refused its settings.
    #[error("tracing: the OTLP exporter cannot be built: {0}")]
    Exporter(String),
    /// The exporter's thread or runtime could not start.
    #[error("tracing: the exporter's thread cannot start: {0}")]
    Thread(#[from] std::io::Error),
}

/// The request path's side of tracing.
#[derive(Debug)]
pub(crate) struct Tracer {
    /// Into the exporter's bounded queue.
    queue: SyncSender<Finished>,
    /// Trace ids whose last 63 bits are below this are sampled (OpenTelemetry's
    /// `TraceIdRatioBased`, so that every service sampling by ratio agrees on a trace).
    threshold: u64,
    trust: TrustParent,
    metrics: TracingMetrics,
}

impl Tracer {
    /// Builds the exporter for `config` and starts its thread.
    ///
    /// # Errors
    /// The exporter refuses its settings, or the thread cannot start.
    pub(crate) fn start(
        config: &TracingConfig,
        metrics: TracingMetrics,
    ) -> Result<Started, TracingError> {
        let (queue, receiver) = sync_channel(config.queue_size);
        let thread = export::spawn(config, receiver, metrics.clone())?;
        let tracer = Tracer {
            queue,
            threshold: threshold(config.sampling_ratio),
            trust: config.trust_parent,
            metrics,
        };
        Ok(Started(tracer, thread))
    }

    /// A request's trace: the parent from its `traceparent` when the client is trusted with one
    /// (`trusted`: in `server.trusted_proxies`) and it is valid, with its sampled flag and its
    /// `tracestate`; otherwise a new trace, sampled by the ratio.
    pub(crate) fn begin(self: &Arc<Self>, headers: &HeaderMap, trusted: bool) -> Active {
        let parent = match self.trust.trusts(trusted) {
            true => trace_context::traceparent_of(
                headers.get_all("traceparent").iter().map(|v| v.as_bytes()),
            )
            .ok()
            .flatten(),
            false => None,
        };
        let (trace_id, sampled, tracestate) = match parent {
            Some(TraceParent {
                trace_id, flags, ..
            }) => {
                let state = trace_context::tracestate_of(
                    headers.get_all("tracestate").iter().map(|v| v.as_bytes()),
                );
                (trace_id, flags & trace_context::SAMPLED != 0, state)
            }
            None => {
                let trace_id = new_trace_id();
                (trace_id, sampled_by_ratio(&trace_id, self.threshold), None)
            }
        };
        Active::new(
            self.clone(),
            trace_id,
            parent.map(|parent| parent.parent_id),
            sampled,
            tracestate,
        )
    }

    /// Queues a finished request's spans for export; never waits. A full queue (the collector
    /// is slow, stalled or down) or a stopped exporter drops them, counted.
    pub(crate) fn submit(&self, finished: Finished) {
        let spans = finished.span_count();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(finished)
        {
            self.metrics.dropped.inc_by(spans);
        }
    }
}

/// The sampling threshold of `ratio`, as OpenTelemetry's `TraceIdRatioBased` computes it.
fn threshold(ratio: f64) -> u64 {
    (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64
}

/// Whether a new trace is sampled: its id's last 63 bits under the threshold.
fn sampled_by_ratio(trace_id: &[u8; 16], threshold: u64) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    (u64::from_be_bytes(low) >> 1) < threshold
}

/// A random trace id (never all zeros).
fn new_trace_id() -> [u8; 16] {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A random span id (never all zeros).
pub(crate) fn new_span_id() -> [u8; 8] {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_samples_its_share_of_trace_ids() {
        let sampled = |ratio: f64| {
            let threshold = threshold(ratio);
            (0..10_000u64)
                .filter(|i| {
                    let mut id = [0u8; 16];
                    id[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
                    sampled_by_ratio(&id, threshold)
                })
                .count()
        };
        assert_eq!(sampled(0.0), 0);
        assert_eq!(sampled(1.0), 10_000);
        let quarter = sampled(0.25);
        assert!((2_300..=2_700).contains(&quarter), "{quarter}");
    }

    /// The endpoint `tracing` in `yaml` names, when the configuration takes it.
    fn accepted(endpoint: &str) -> Option<TracingConfig> {
        let yaml = format!(
            "backends:\n  - address: 127.0.0.1:9001\ntracing:\n  endpoint: {}\n",
            serde_json::to_string(endpoint).ok()?
        );
        let config = lb_core::config::parse(&yaml, lb_core::config::Format::Yaml, "t.yaml");
        config.ok().map(|config| config.tracing)
    }

    #[test]
    fn every_endpoint_the_configuration_takes_the_exporter_takes() {
        for endpoint in [
            "http://127.0.0.1:4318/v1/traces",
            "https://collector.internal/v1/traces",
            "http://[::1]:4318/v1/traces",
            "http://otel:4318/v1/traces?tenant=a",
            "http://otel",
        ] {
            let config = accepted(endpoint).expect(endpoint);
            let started = Tracer::start(&config, TracingMetrics::default());
            assert!(started.is_ok(), "{endpoint}: {started:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn no_endpoint_the_configuration_takes_is_refused_by_the_exporter(
            tail in "[a-z0-9:/?&=%.@\\[\\]_~!$'()*+,;-]{0,24}",
            scheme in proptest::sample::select(vec!["http://", "https://"]),
        ) {
            let endpoint = format!("{scheme}{tail}");
            if let Some(config) = accepted(&endpoint) {
                let started = Tracer::start(&config, TracingMetrics::default());
                proptest::prop_assert!(started.is_ok(), "{}: {:?}", endpoint, started.err());
            }
        }
    }

    #[test]
    fn new_ids_are_never_zero() {
        for _ in 0..1000 {
            assert_ne!(new_trace_id(), [0; 16]);
            assert_ne!(new_span_id(), [0; 8]);
        }
    }
}
