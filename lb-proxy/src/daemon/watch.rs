//! Reloading when the configuration file changes (`reload.watch`). The file's directory is
//! watched, not the file: editors save by writing a new file and renaming it over the old, and
//! Kubernetes swaps a symlink, and either replaces the file a watch on it would follow. Events
//! closer together than `reload.debounce` make one reload, and a reload happens only when the
//! file's bytes changed, so other files in the directory cost a read and nothing more.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::control::Control;

/// A running watch; dropping it stops it (its task ends with the watcher's channel).
#[derive(Debug)]
pub(crate) struct Watcher {
    _watcher: notify::RecommendedWatcher,
}

impl Watcher {
    /// Watches `path`, reloading through `control` after `debounce`. `None` (and a logged
    /// error) when the directory cannot be watched.
    pub(crate) fn start(path: &Path, debounce: Duration, control: Weak<Control>) -> Option<Self> {
        let (events, mut changed) = mpsc::channel::<()>(1);
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| !event.kind.is_access()) {
                // A full channel already holds a pending reload.
                let _ = events.try_send(());
            }
        };
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let watching = notify::recommended_watcher(handler).and_then(|mut watcher| {
            watcher.watch(&directory, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        let watcher = match watching {
            Ok(watcher) => watcher,
            Err(error) => {
                let directory = directory.display();
                tracing::error!(%directory, %error, "cannot watch the configuration: reload.watch is off");
                return None;
            }
        };
        let path = path.to_path_buf();
        // Read now: a change made before the task first runs is still a change.
        let mut last = std::fs::read(&path).ok();
        tokio::spawn(async move {
            while changed.recv().await.is_some() {
                tokio::time::sleep(debounce).await;
                while changed.try_recv().is_ok() {}
                let now = std::fs::read(&path).ok();
                if now.is_none() || now == last {
                    // Gone for a moment (an editor's rename), or unchanged: nothing to do.
                    continue;
                }
                last = now;
                let Some(control) = control.upgrade() else {
                    return;
                };
                tracing::info!(path = %path.display(), "configuration file changed: reloading");
                // The outcome is logged and counted by the reload itself.
                let _ = control.reload().await;
            }
        });
        Some(Self { _watcher: watcher })
    }
}
