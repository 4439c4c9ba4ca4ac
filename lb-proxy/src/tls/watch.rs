//! Reloads certificates when their files change: the directories holding them are watched
//! (not the files: tools replace a file by renaming a new one over it, and Kubernetes swaps a
//! symlinked directory), and after events stop for [`DEBOUNCE`] every certificate is read again
//! ([`ServerTls::reload_files`] swaps only those whose bytes changed). A certificate and its key
//! written one after the other thus reload once, as a pair.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::ServerTls;
use crate::shutdown::Shutdown;

/// Quiet time after the last file event before the certificates are read again.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(300);

/// Whether an event may mean a file's content changed: our own reads (open, read, close after
/// reading) must not set off another reload.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Starts watching `tls`'s files; the task reloads on changes until shutdown. `None` (logged)
/// when the system refuses a watch: certificates then reload only when the daemon is told to.
pub(crate) fn spawn(tls: Arc<ServerTls>, shutdown: Arc<Shutdown>) -> Option<JoinHandle<()>> {
    let changed = Arc::new(Notify::new());
    let signal = changed.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| changes_content(&event.kind)) {
            signal.notify_one();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch certificate files: they reload on config reload only");
            return None;
        }
    };
    let directories: BTreeSet<PathBuf> = tls
        .files()
        .iter()
        .map(|file| match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    for directory in &directories {
        if let Err(error) = watcher.watch(directory, RecursiveMode::NonRecursive) {
            tracing::warn!(directory = %directory.display(), %error, "cannot watch a certificate directory");
        }
    }
    Some(tokio::spawn(async move {
        // The watcher lives as long as the task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = changed.notified() => {}
                _ = shutdown.started() => return,
            }
            // Wait until events stop for DEBOUNCE.
            while tokio::time::timeout(DEBOUNCE, changed.notified())
                .await
                .is_ok()
            {}
            let reload = tls.clone();
            // File reads and key parsing block: off the async workers.
            let _ = tokio::task::spawn_blocking(move || reload.reload_files()).await;
        }
    }))
}
