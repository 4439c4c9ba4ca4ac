//! What went wrong on the wire, sorted once for the scrape and the admin client alike: each
//! turns a [`Failure`] into its own error, with its own hint.

use std::io::ErrorKind;
use std::time::Duration;

/// A `ureq` error sorted into the cases a person can act on.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing listens at the address.
    Refused,
    /// The host name does not resolve.
    HostNotFound,
    /// A timeout expired: `limit`, while `stage` (`connecting` or `the whole exchange`).
    Timeout {
        limit: Duration,
        stage: &'static str,
    },
    /// The body passed the limit.
    TooLarge { limit: u64 },
    /// Anything else, kept whole.
    Other(ureq::Error),
}

/// Sorts `error`, given the connect and total timeouts the request ran with.
pub(crate) fn classify(
    error: ureq::Error,
    connect_timeout: Duration,
    timeout: Duration,
) -> Failure {
    let whole = Failure::Timeout {
        limit: timeout,
        stage: "the whole exchange",
    };
    match error {
        ureq::Error::Timeout(which) => {
            let connecting = matches!(which, ureq::Timeout::Connect | ureq::Timeout::Resolve)
                && connect_timeout < timeout;
            match connecting {
                true => Failure::Timeout {
                    limit: connect_timeout,
                    stage: "connecting",
                },
                false => whole,
            }
        }
        ureq::Error::Io(ref e) if e.kind() == ErrorKind::ConnectionRefused => Failure::Refused,
        ureq::Error::Io(ref e) if e.kind() == ErrorKind::TimedOut => whole,
        ureq::Error::HostNotFound => Failure::HostNotFound,
        ureq::Error::BodyExceedsLimit(limit) => Failure::TooLarge { limit },
        other => Failure::Other(other),
    }
}
