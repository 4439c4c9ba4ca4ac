//! lb-proxy's tests that measure the process — a request rate under reloads, resident memory,
//! descriptors and tasks over a thousand reloads, a takeover under a stream of connections —
//! in a binary of their own: cargo runs test binaries one after another, so these do not share
//! the machine with the parallel suite in `tests/it`, and [`alone`] runs them one at a time.

#[path = "../it/support/mod.rs"]
mod support;

mod reload_load;
mod restart;

/// Held for the whole of a test: the tests of this binary run one at a time.
pub async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}
