//! The exporter's thread: it drains the bounded queue the request path fills, makes batches
//! (at most `tracing.batch_size` requests, sent at the latest `tracing.batch_interval` after the
//! first of them finished), builds their spans and hands them to OpenTelemetry's OTLP exporter
//! (HTTP, protobuf; its own retries with backoff, all within `tracing.export_timeout`).
//!
//! Why a thread of our own, not the SDK's batch span processor: the request path then builds
//! no span and no attribute (it queues the facts it gathered for the access log anyway), the
//! queue's drops are ours to count (the processor does not expose them), and a collector that
//! stalls holds one thread, never the runtime the requests run on.
//!
//! The HTTP client is `ureq` (already linked for JWKS fetches, with the same rustls): an export
//! is a blocking POST on this thread, bounded by the export timeout; `https://` collectors work
//! without a second TLS stack. Proxies from the environment are not used: the collector is
//! reached directly, as configured.

use std::pin::Pin;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

use super::{Finished, TracingError};
use crate::clock;
use crate::metrics::TracingMetrics;
use lb_core::config::TracingConfig;

/// The most bytes of a collector's answer read (it is a small protobuf status).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Builds the exporter for `config` and starts the thread that feeds it from `queue`. The
/// thread exports what is left and stops when the queue's sender is dropped (the tracer is).
///
/// # Errors
/// The exporter refuses its settings, or the thread or its timer runtime cannot start.
pub(super) fn spawn(
    config: &TracingConfig,
    queue: Receiver<Finished>,
    metrics: TracingMetrics,
) -> Result<std::thread::JoinHandle<()>, TracingError> {
    let client = UreqClient::new(config.export_timeout);
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.export_timeout)
        .build()
        .map_err(|error| TracingError::Exporter(error.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    exporter.set_resource(&resource);
    // The exporter's retries sleep on tokio's timer when there is a runtime: a small one of
    // its own, on this thread only.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let batching = Batching {
        size: config.batch_size,
        interval: config.batch_interval,
    };
    let thread = std::thread::Builder::new()
        .name("lb-trace-export".to_owned())
        .spawn(move || {
            let scope = InstrumentationScope::builder("lb")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            let mut failing = false;
            while let Some((batch, more)) = batching.next(&queue) {
                let count: u64 = batch.iter().map(Finished::span_count).sum();
                let mut spans: Vec<SpanData> = Vec::with_capacity(count as usize);
                for finished in batch {
                    finished.into_spans(&scope, &mut spans);
                }
                match runtime.block_on(exporter.export(spans)) {
                    Ok(()) => {
                        metrics.exported.inc_by(count);
                        if std::mem::take(&mut failing) {
                            tracing::info!("tracing: the collector accepts spans again");
                        }
                    }
                    Err(error) => {
                        metrics.failed.inc_by(count);
                        // Said once when exports start failing, not once per batch.
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(%error, "tracing: span export failed; spans are counted in lb_tracing_spans_failed_total until it recovers");
                        }
                    }
                }
                if !more {
                    break;
                }
            }
            let _ = exporter.shutdown();
        })?;
    Ok(thread)
}

/// How requests are grouped into exports.
#[derive(Debug, Clone, Copy)]
struct Batching {
    size: usize,
    interval: Duration,
}

impl Batching {
    /// The next batch: waits for a first request, then takes more until the batch is full or
    /// `interval` has passed since the first arrived. `None` when the queue is closed and
    /// empty; the flag is false when it closed while the batch was made (the last batch).
    fn next(&self, queue: &Receiver<Finished>) -> Option<(Vec<Finished>, bool)> {
        let first = queue.recv().ok()?;
        let deadline = clock::now() + self.interval;
        let mut batch = Vec::with_capacity(self.size.min(64));
        batch.push(first);
        while batch.len() < self.size {
            let left = deadline.saturating_duration_since(clock::now());
            match queue.recv_timeout(left) {
                Ok(finished) => batch.push(finished),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return Some((batch, false)),
            }
        }
        Some((batch, true))
    }
}

/// OpenTelemetry's HTTP client trait over a ureq agent: one blocking POST per export.
#[derive(Debug)]
struct UreqClient(ureq::Agent);

impl UreqClient {
    fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("lb/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        UreqClient(agent)
    }

    fn post(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, body.to_vec());
        let mut answer = self.0.run(request)?;
        let body = (answer.body_mut().with_config())
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()?;
        let (parts, _) = answer.into_parts();
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}

impl HttpClient for UreqClient {
    // `async_trait`'s form, written out: the POST is made when called (this thread exists for
    // it), and the future is ready at once.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let answer = self.post(request);
        Box::pin(std::future::ready(answer))
    }
}
