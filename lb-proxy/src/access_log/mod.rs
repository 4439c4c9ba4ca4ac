//! The access log: one line per request, written off the request path.
//!
//! The request path gathers a [`Record`] (only when the log is on: off, it costs a branch per
//! request), formats it into a buffer of its own when the response ends, and *tries* to send it
//! into a bounded channel; a writer thread ([`sink`]) drains the channel into stdout, stderr, a
//! file or syslog. When the channel is full (the sink stalls, or lines come faster than it
//! takes them), the line is dropped and counted in `lb_access_log_dropped_total`: a stalled sink
//! costs the request path no time and holds at most `access_log.buffer` lines of memory.
//!
//! # Layout
//! - [`record`]: what a line says.
//! - [`format`]: JSON and combined, pure.
//! - [`sink`]: the writer thread, its targets, syslog's framing and the file's reopen.

pub(crate) mod format;
pub(crate) mod record;
pub(crate) mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use lb_core::config::{AccessLogConfig, AccessLogFormat, SampleConfig};

use crate::metrics::AccessLogMetrics;
pub(crate) use record::{AttemptEnd, Record};
pub(crate) use sink::Message;

/// The room a line is formatted into at first; longer lines grow it.
const LINE_CAPACITY: usize = 512;

/// The request path's side of the access log.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// Into the writer's bounded channel.
    lines: SyncSender<Message>,
    format: AccessLogFormat,
    sample: SampleConfig,
    /// Requests seen by `sample.one_in`.
    seen: AtomicU64,
    /// Raised by `SIGUSR1`; the writer reopens its file before its next line.
    reopen: Arc<AtomicBool>,
    metrics: AccessLogMetrics,
}

impl AccessLog {
    /// Opens `config`'s target and starts its writer thread.
    ///
    /// # Errors
    /// The target cannot be opened (a file in a missing directory, a socket that cannot be
    /// made), or the thread cannot start.
    pub(crate) fn start(
        config: &AccessLogConfig,
        metrics: AccessLogMetrics,
    ) -> std::io::Result<AccessLog> {
        let sink = sink::Sink::open(&config.target)?;
        let (lines, receiver) = sync_channel(config.buffer);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = (reopen.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("lb-access-log".to_owned())
            .spawn(move || sink::run(receiver, sink, writer.0, writer.1))?;
        Ok(AccessLog {
            lines,
            format: config.format,
            sample: config.sample,
            seen: AtomicU64::new(0),
            reopen,
            metrics,
        })
    }

    /// Waits, up to `limit`, until the writer has written and flushed every line sent before
    /// (at exit, so that the last requests' lines are not lost with the process). Whether it
    /// did.
    pub(crate) async fn flush(&self, limit: Duration) -> bool {
        let (done, written) = tokio::sync::oneshot::channel();
        let deadline = crate::clock::now() + limit;
        let mut ask = Message::Flush(done);
        // The channel may be full behind a slow sink: try again until the deadline.
        loop {
            match self.lines.try_send(ask) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if crate::clock::now() < deadline => {
                    ask = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => return false,
            }
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        matches!(tokio::time::timeout_at(deadline, written).await, Ok(Ok(())))
    }

    /// Asks the writer to reopen its file (logrotate renamed it).
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Writes `record`'s line unless sampling leaves it out; never waits.
    pub(crate) fn emit(&self, record: &Record) {
        if self.sample.errors_only && record.status < 400 && record.status != 0 {
            return;
        }
        if self.sample.one_in > 1
            && !(self.seen.fetch_add(1, Ordering::Relaxed))
                .is_multiple_of(u64::from(self.sample.one_in))
        {
            return;
        }
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        match self.format {
            AccessLogFormat::Json => format::json(record, &mut line),
            AccessLogFormat::Combined => format::combined(record, &mut line),
        }
        // Full: the sink is slow or stalled. Disconnected: the writer is gone (its thread
        // panicked), and nothing is written any more. Either way the line is dropped, counted.
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.lines.try_send(Message::Line(line))
        {
            self.metrics.dropped.inc();
        }
    }
}
