//! The file source: a YAML or JSON list of backends (`lb_core::config::parse_backend_file`),
//! re-read when its directory changes — the directory, not the file, as `reload.watch` does,
//! since editors and Kubernetes replace a file by a rename. The file is also read again every
//! `backoff_max` in case a change event was missed (a network file system, a watch that could
//! not start); it is parsed only when its bytes changed. Changes closer together than
//! `discovery.debounce` are read once, after the last (a file is often written in steps).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::Context;

pub(super) async fn run(context: Context, path: PathBuf, every: Duration, debounce: Duration) {
    let (events, mut changed) = mpsc::channel::<()>(1);
    let _watcher = watch(&path, events);
    let mut last: Option<Vec<u8>> = None;
    loop {
        match std::fs::read(&path) {
            Ok(bytes) if last.as_ref() == Some(&bytes) => {}
            Ok(bytes) => {
                match lb_core::config::parse_backend_file(&bytes, &path, &context.pool) {
                    Ok(backends) => {
                        let backends = lb_core::discovery::name_all(&context.pool.name, backends);
                        context.publish(backends);
                    }
                    Err(errors) => context.failed(&errors),
                }
                last = Some(bytes);
            }
            Err(error) => {
                // Gone or unreadable: the next read tries again, and a file that comes back
                // with the same bytes is taken again.
                last = None;
                let error = format!("cannot read {}: {error}", path.display());
                context.failed(&error);
            }
        }
        tokio::select! {
            event = changed.recv() => match event {
                Some(()) => {
                    tokio::time::sleep(debounce).await;
                    while changed.try_recv().is_ok() {}
                }
                // No watch: read at the interval only.
                None => tokio::time::sleep(every).await,
            },
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Watches the directory of `path`; each change (but reads) sends on `events`. `None` (and a
/// logged error) when it cannot be watched: the file is then read at the interval.
fn watch(path: &Path, events: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            // A full channel already holds a pending read.
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
    match watching {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            let directory = directory.display();
            tracing::error!(%directory, %error, "cannot watch a discovery file's directory: it is read at intervals");
            None
        }
    }
}
