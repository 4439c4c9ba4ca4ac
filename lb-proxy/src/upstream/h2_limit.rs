//! The streams an HTTP/2 backend lets one connection carry (its SETTINGS_MAX_CONCURRENT_STREAMS)
//! and whether it takes extended `CONNECT` (SETTINGS_ENABLE_CONNECT_PROTOCOL), read off the
//! connection's bytes as hyper reads them: [`LimitTap`] shows the bytes the backend sent to a
//! [`SettingsWatch`]; the latest values are kept in a
//! [`PeerLimit`] the pool reads when it places a stream. A new connection takes no
//! stream before the backend's first SETTINGS arrived ([`PeerLimit::settled`]): streams sent
//! before it would be placed blind, and a backend refuses those beyond its limit.
//!
//! The same reads go through a [`ResetWatch`], the one change the tap makes to the bytes: an
//! RST_STREAM(NO_ERROR) on a response that has not ended reaches hyper as INTERNAL_ERROR, so
//! that the cut-off body fails instead of ending as if whole (see [`crate::proto::h2_resets`]).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::proto::h2_resets::ResetWatch;
use crate::proto::h2_settings::{SettingsSeen, SettingsWatch};

/// The latest limit a backend's connection announced; unlimited until it announces one (RFC
/// 9113 §6.5.2: the initial value is unlimited).
#[derive(Debug, Clone)]
pub(crate) struct PeerLimit(Arc<Limit>);

#[derive(Debug)]
struct Limit {
    streams: AtomicUsize,
    /// The backend takes extended `CONNECT` (RFC 8441): WebSocket over HTTP/2.
    extended_connect: AtomicBool,
    /// Set once the backend's first SETTINGS frame was read.
    settled: AtomicBool,
    settled_now: Notify,
}

impl PeerLimit {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Limit {
            streams: AtomicUsize::new(usize::MAX),
            extended_connect: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            settled_now: Notify::new(),
        }))
    }

    /// Streams the backend allows on the connection now.
    pub(crate) fn get(&self) -> usize {
        self.0.streams.load(Ordering::Relaxed)
    }

    /// Whether the backend said it takes extended `CONNECT` (SETTINGS_ENABLE_CONNECT_PROTOCOL).
    pub(crate) fn extended_connect(&self) -> bool {
        self.0.extended_connect.load(Ordering::Acquire)
    }

    /// Ready once the backend's first SETTINGS frame was read: until then a connection does
    /// not know how many streams it may carry.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.0.settled_now.notified();
            if self.0.settled.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn saw(&self, seen: SettingsSeen) {
        if let Some(streams) = seen.max_concurrent_streams {
            let streams = usize::try_from(streams).unwrap_or(usize::MAX);
            if streams != self.get() {
                tracing::debug!(streams, "HTTP/2 backend set its concurrent stream limit");
            }
            self.0.streams.store(streams, Ordering::Relaxed);
        }
        if let Some(enabled) = seen.enable_connect_protocol {
            self.0.extended_connect.store(enabled, Ordering::Release);
        }
        if !self.0.settled.swap(true, Ordering::AcqRel) {
            self.0.settled_now.notify_waiters();
        }
    }
}

/// A backend connection's socket, watched for the backend's SETTINGS and its quiet resets.
pub(crate) struct LimitTap<S> {
    inner: S,
    watch: SettingsWatch,
    resets: ResetWatch,
    limit: PeerLimit,
}

impl<S> LimitTap<S> {
    /// `inner`, whose reads update `limit`.
    pub(crate) fn new(inner: S, limit: PeerLimit) -> Self {
        Self {
            inner,
            watch: SettingsWatch::new(),
            resets: ResetWatch::new(),
            limit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LimitTap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let fresh = &mut buf.filled_mut()[before..];
        if let Some(stream) = this.resets.feed(fresh) {
            tracing::debug!(
                stream,
                "HTTP/2 backend reset a response before its end with NO_ERROR: taken as INTERNAL_ERROR, the body fails"
            );
        }
        if let Some(seen) = this.watch.feed(fresh) {
            this.limit.saw(seen);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LimitTap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn passes_bytes_through_and_keeps_the_latest_limit() {
        let (near, mut far) = tokio::io::duplex(64);
        let limit = PeerLimit::new();
        let mut tap = LimitTap::new(near, limit.clone());
        assert_eq!(limit.get(), usize::MAX, "unlimited until the backend says");
        let settled = tokio::spawn({
            let limit = limit.clone();
            async move { limit.settled().await }
        });
        // SETTINGS, MAX_CONCURRENT_STREAMS = 3, then = 1 in a second frame.
        let mut sent = vec![0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3];
        sent.extend([0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1]);
        far.write_all(&sent).await.unwrap();
        let mut read = vec![0; sent.len()];
        tap.read_exact(&mut read[..15]).await.unwrap();
        assert_eq!(limit.get(), 3);
        settled.await.unwrap();
        tap.read_exact(&mut read[15..]).await.unwrap();
        assert_eq!(read, sent, "every byte passed unchanged");
        assert_eq!(limit.get(), 1);
        tap.write_all(b"to the backend").await.unwrap();
        let mut written = [0; 14];
        far.read_exact(&mut written).await.unwrap();
        assert_eq!(&written, b"to the backend");
    }
}
