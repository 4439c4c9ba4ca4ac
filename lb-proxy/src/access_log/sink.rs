//! Where lines go, on a thread of its own: the request path never writes. A file, a syslog
//! socket or a pipe may block (a full disk, a syslog daemon that stopped reading); only this
//! thread waits then, the bounded channel in front of it fills, and further lines are dropped
//! and counted by the sender.
//!
//! Lines are written as they come and flushed whenever the channel is empty, so a quiet daemon's
//! log is complete on disk. A reopen (`SIGUSR1`, after logrotate renamed the file) takes effect
//! before the next line is written; no line is lost across it: every line goes to the old file
//! or to the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use lb_core::config::{AccessLogTarget, SyslogConfig, SyslogDestination};

use super::format::rfc3339;
use crate::metrics::AccessLogMetrics;

/// How long a syslog send may block before it counts as a write error: a stalled syslog daemon
/// then costs this thread a second per line, never a request anything.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the writer wakes without lines, to take a reopen.
const TICK: Duration = Duration::from_millis(200);
/// Write errors are logged at most once in this long (each is counted).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// What the request path and the daemon send the writer.
#[derive(Debug)]
pub(crate) enum Message {
    /// A formatted line.
    Line(Vec<u8>),
    /// Flush what came before, then say so.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// An opened target.
pub(crate) enum Sink {
    /// The standard output.
    Stdout,
    /// The standard error.
    Stderr,
    /// A file, appended to, and the path it is reopened from.
    File(BufWriter<File>, PathBuf),
    /// Syslog over a Unix datagram socket or UDP.
    Syslog(Syslog),
}

impl Sink {
    /// Opens `target`: a file is created when missing (its directory must exist).
    ///
    /// # Errors
    /// The file cannot be opened, or the socket made.
    pub(crate) fn open(target: &AccessLogTarget) -> io::Result<Sink> {
        Ok(match target {
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::Stderr => Sink::Stderr,
            AccessLogTarget::File(path) => Sink::File(open_file(path)?, path.clone()),
            AccessLogTarget::Syslog(config) => Sink::Syslog(Syslog::new(config)?),
        })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().write_all(line),
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::File(file, _) => file.write_all(line),
            Sink::Syslog(syslog) => syslog.send(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().flush(),
            Sink::Stderr => Ok(()),
            Sink::File(file, _) => file.flush(),
            Sink::Syslog(_) => Ok(()),
        }
    }

    /// Reopens a file by its path (the old one was renamed away); other targets stay.
    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File(file, path) = self {
            file.flush()?;
            *file = open_file(path)?;
        }
        Ok(())
    }
}

fn open_file(path: &Path) -> io::Result<BufWriter<File>> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, file))
}

/// RFC 5424 syslog: each line is one message, `<PRI>1 TIME HOST APP PID - - LINE`, severity
/// informational.
pub(crate) struct Syslog {
    socket: SyslogSocket,
    /// `<PRI>1 `, fixed per facility.
    priority: String,
    /// ` HOST APP PID - - `, fixed per process.
    fields: String,
    message: Vec<u8>,
}

enum SyslogSocket {
    Unix(UnixDatagram, PathBuf, bool),
    Udp(UdpSocket),
}

impl Syslog {
    fn new(config: &SyslogConfig) -> io::Result<Syslog> {
        let socket = match &config.destination {
            SyslogDestination::Socket(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_write_timeout(Some(SEND_TIMEOUT))?;
                // Not connected yet is fine: syslog may start after us; each send tries again.
                let connected = socket.connect(path).is_ok();
                SyslogSocket::Unix(socket, path.clone(), connected)
            }
            SyslogDestination::Address(address) => {
                let any: std::net::SocketAddr = match address {
                    std::net::SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                    std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = UdpSocket::bind(any)?;
                socket.set_write_timeout(Some(SEND_TIMEOUT))?;
                socket.connect(address)?;
                SyslogSocket::Udp(socket)
            }
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b)))
            .unwrap_or_else(|| "-".to_owned());
        Ok(Syslog {
            socket,
            priority: format!("<{}>1 ", u16::from(config.facility) * 8 + 6),
            fields: format!(" {host} {} {} - - ", config.app_name, std::process::id()),
            message: Vec::with_capacity(1024),
        })
    }

    fn send(&mut self, line: &[u8]) -> io::Result<()> {
        self.message.clear();
        self.message.extend_from_slice(self.priority.as_bytes());
        rfc3339(SystemTime::now(), &mut self.message);
        self.message.extend_from_slice(self.fields.as_bytes());
        self.message
            .extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        match &mut self.socket {
            SyslogSocket::Unix(socket, path, connected) => {
                if !*connected {
                    socket.connect(&*path)?;
                    *connected = true;
                }
                let sent = socket.send(&self.message);
                if sent.is_err() {
                    // The daemon may have restarted with a new socket: connect again next time.
                    *connected = matches!(
                        sent.as_ref().map_err(io::Error::kind),
                        Err(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
                    );
                }
                sent.map(drop)
            }
            SyslogSocket::Udp(socket) => socket.send(&self.message).map(drop),
        }
    }
}

/// Writes lines from `lines` to `sink` until every sender is gone; a raised `reopen` reopens a
/// file before the next line.
pub(crate) fn run(
    lines: Receiver<Message>,
    mut sink: Sink,
    reopen: Arc<AtomicBool>,
    metrics: AccessLogMetrics,
) {
    let mut errors = ErrorLog::default();
    let mut dirty = false;
    loop {
        if reopen.swap(false, Ordering::AcqRel) {
            match sink.reopen() {
                Ok(()) => tracing::info!("access log reopened"),
                Err(error) => {
                    metrics.write_errors.inc();
                    tracing::error!(%error, "access log: cannot reopen the file");
                }
            }
        }
        let line = match dirty {
            // Lines waiting are written before the flush.
            true => match lines.try_recv() {
                Ok(line) => Ok(line),
                Err(_) => {
                    if let Err(error) = sink.flush() {
                        errors.failed(&metrics, &error);
                    }
                    dirty = false;
                    continue;
                }
            },
            false => lines.recv_timeout(TICK),
        };
        match line {
            Ok(Message::Line(line)) => {
                match sink.write(&line) {
                    Ok(()) => drop(metrics.lines.inc()),
                    Err(error) => errors.failed(&metrics, &error),
                };
                dirty = true;
            }
            Ok(Message::Flush(done)) => {
                if let Err(error) = sink.flush() {
                    errors.failed(&metrics, &error);
                }
                dirty = false;
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = sink.flush();
                return;
            }
        }
    }
}

/// Counts every write error and logs one in [`ERROR_LOG_EVERY`].
#[derive(Default)]
struct ErrorLog {
    last: Option<std::time::Instant>,
    since: u64,
}

impl ErrorLog {
    fn failed(&mut self, metrics: &AccessLogMetrics, error: &io::Error) {
        metrics.write_errors.inc();
        self.since += 1;
        let now = crate::clock::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= ERROR_LOG_EVERY)
        {
            tracing::warn!(%error, errors = self.since, "access log: lines could not be written");
            self.last = Some(now);
            self.since = 0;
        }
    }
}
