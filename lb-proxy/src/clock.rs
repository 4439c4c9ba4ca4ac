//! The data plane's clock. Every instant comes from tokio's clock, so that tests run with a
//! paused clock (`start_paused`, `advance`) see the same time in every timer and in the
//! decisions lb-core takes at `now`; outside tests it is the monotonic clock.

use std::time::Instant;

/// The current instant.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
