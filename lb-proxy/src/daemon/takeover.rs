//! Restarts that drop nothing: a new `lb` process takes the listening sockets over from the
//! running one through a Unix socket (`--upgrade-socket PATH`), as HAProxy and Pingora do.
//!
//! The sockets are passed, not re-bound: both processes then hold the same listening socket
//! and its one accept queue, so no connection the kernel queued is lost (closing a
//! `SO_REUSEPORT` twin would drop its queue). The exchange:
//! 1. the new process connects and sends `TAKE\n`;
//! 2. the old one answers `lb-takeover 1 <roles>\n` with the sockets (`SCM_RIGHTS`), in the
//!    order of the roles (`proxy`, `redirect`, `metrics`, `admin`);
//! 3. the new process starts serving on them and sends `READY\n`;
//! 4. the old one stops accepting and drains within `server.shutdown_grace` (a hard deadline),
//!    then exits. If the new process fails before `READY`, the old one keeps serving.
//!
//! Only a process of the same user may take the sockets (checked with `SO_PEERCRED`), and the
//! socket file is made readable by its owner only.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::control::Control;
use crate::shutdown::Shutdown;

/// How long each step of the exchange may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the old process waits for the new one to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const GREETING: &str = "lb-takeover 1";

/// Listening sockets taken over from a previous process, by role.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The proxy's listener.
    pub proxy: Option<std::net::TcpListener>,
    /// The redirect to HTTPS's listener.
    pub redirect: Option<std::net::TcpListener>,
    /// The metrics endpoint's listener.
    pub metrics: Option<std::net::TcpListener>,
    /// The admin API's listener.
    pub admin: Option<std::net::TcpListener>,
}

/// Why a takeover failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// The exchange on the upgrade socket failed.
    #[error("takeover on {}: {source}", path.display())]
    Io {
        /// The upgrade socket.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The running process answered something else than the protocol.
    #[error("takeover on {}: unexpected answer {answer:?}", path.display())]
    Protocol {
        /// The upgrade socket.
        path: PathBuf,
        /// What it said.
        answer: String,
    },
}

/// The Unix socket a running daemon offers its listeners on.
#[derive(Debug, Clone)]
pub struct UpgradeSocket {
    path: PathBuf,
}

/// A takeover in progress: the sockets, and the line back to the old process.
#[derive(Debug)]
pub struct Takeover {
    inherited: Inherited,
    handoff: Handoff,
}

impl Takeover {
    /// The sockets (for [`super::StartOptions::inherited`]), and the line back to the old
    /// process.
    pub fn into_parts(self) -> (Inherited, Handoff) {
        (self.inherited, self.handoff)
    }
}

/// The line back to the process that handed its sockets over.
#[derive(Debug)]
pub struct Handoff {
    stream: UnixStream,
}

impl Handoff {
    /// Tells the old process this one serves: it stops accepting and drains.
    ///
    /// # Errors
    /// The old process went away (this process then serves alone).
    pub fn ready(mut self) -> std::io::Result<()> {
        self.stream.write_all(b"READY\n")
    }
}

impl UpgradeSocket {
    /// The upgrade socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the listeners over from the process serving on this socket; `None` when no
    /// process does (no socket file, or nobody listening on it): then this process binds its
    /// own.
    ///
    /// # Errors
    /// A process answered but the exchange failed.
    pub fn take_over(&self) -> Result<Option<Takeover>, TakeoverError> {
        let io = |source| TakeoverError::Io {
            path: self.path.clone(),
            source,
        };
        let mut stream = match UnixStream::connect(&self.path) {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(io(error)),
        };
        stream.set_read_timeout(Some(STEP_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(STEP_TIMEOUT)).map_err(io)?;
        stream.write_all(b"TAKE\n").map_err(io)?;
        let (line, fds) = receive_fds(&stream).map_err(io)?;
        let protocol = |answer: &str| TakeoverError::Protocol {
            path: self.path.clone(),
            answer: answer.to_owned(),
        };
        let roles = line.strip_prefix(GREETING).ok_or_else(|| protocol(&line))?;
        let roles: Vec<&str> = roles.split_whitespace().collect();
        if roles.len() != fds.len() {
            return Err(protocol(&line));
        }
        let mut inherited = Inherited::default();
        for (role, fd) in roles.into_iter().zip(fds) {
            let listener = std::net::TcpListener::from(fd);
            match role {
                "proxy" => inherited.proxy = Some(listener),
                "redirect" => inherited.redirect = Some(listener),
                "metrics" => inherited.metrics = Some(listener),
                "admin" => inherited.admin = Some(listener),
                _ => return Err(protocol(&line)),
            }
        }
        Ok(Some(Takeover {
            inherited,
            handoff: Handoff { stream },
        }))
    }
}

/// Receives one line and the descriptors sent with it.
fn receive_fds(stream: &UnixStream) -> std::io::Result<(String, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut data = [0u8; 256];
    let received = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let line = String::from_utf8_lossy(&data[..received.bytes.min(data.len())]);
    Ok((line.trim_end().to_owned(), fds))
}

/// Offers the daemon's listeners on `socket` until shutdown; a completed takeover starts it.
pub(crate) async fn offer(socket: UpgradeSocket, control: Arc<Control>, shutdown: Arc<Shutdown>) {
    let path = socket.path.clone();
    // A socket left by an earlier process (or the one being taken over) is replaced; anything
    // else at that path is not ours to delete.
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            let _ = std::fs::remove_file(&path);
        }
        Ok(_) => {
            tracing::error!(path = %path.display(), "cannot offer takeovers: the path exists and is not a socket");
            return;
        }
        Err(_) => {}
    }
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot offer takeovers");
            return;
        }
    };
    if let Err(error) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), %error, "cannot restrict the upgrade socket");
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.started() => return,
        };
        let stream = match accepted.and_then(|(stream, _)| stream.into_std()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "upgrade socket accept failed");
                continue;
            }
        };
        let sockets = control.listening_sockets().await;
        let handed = tokio::task::spawn_blocking(move || hand_over(stream, sockets)).await;
        match handed {
            Ok(Ok(())) => {
                tracing::info!("a new process took the listeners over: draining");
                shutdown.start();
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "takeover abandoned: this process keeps serving");
            }
            Err(error) => tracing::warn!(%error, "takeover task failed"),
        }
    }
}

/// The old process's side of the exchange, blocking: checks the peer, sends the sockets,
/// waits for `READY`.
fn hand_over(stream: UnixStream, sockets: Vec<(&'static str, OwnedFd)>) -> std::io::Result<()> {
    let stream = {
        stream.set_nonblocking(false)?;
        stream
    };
    let peer = rustix::net::sockopt::socket_peercred(&stream)?;
    if peer.uid != rustix::process::getuid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the peer runs as uid {}, not ours", peer.uid.as_raw()),
        ));
    }
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim_end() != "TAKE" {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected request {:?}", line.trim_end()),
        ));
    }
    let roles: Vec<&str> = sockets.iter().map(|(role, _)| *role).collect();
    let greeting = format!("{GREETING} {}\n", roles.join(" "));
    let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &stream,
        &[IoSlice::new(greeting.as_bytes())],
        &mut control,
        SendFlags::empty(),
    )?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    line.clear();
    reader.read_line(&mut line)?;
    match line.trim_end() {
        "READY" => Ok(()),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the new process did not start (said {other:?})"),
        )),
    }
}
