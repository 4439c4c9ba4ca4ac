//! Retry decisions, backoff and budget.
//!
//! After an attempt fails, [`RetryPolicy::decide`] says whether to try another backend and how
//! long to wait first. It retries only what is safe: a failure kind listed in `retry_on`, a body
//! that can be sent again, and either an idempotent method (RFC 9110 §9.2.2) or a failure that
//! never reached the backend (a refused or timed-out connect), or a gRPC status the operator
//! listed (a gRPC call is a POST: listing `grpc_unavailable` is the statement, as in gRPC's own
//! retry policy of gRFC A6, that a call answered so may be sent again). Backoff is exponential with full
//! jitter (Brooker, "Exponential Backoff and Jitter", AWS Architecture Blog, 2015), so clients
//! that failed together do not come back together.
//!
//! # Why a budget rather than only a retry count
//! A fixed count (say 3 attempts) multiplies the load on the backends by up to 3 exactly when
//! they are failing, often because they are overloaded: retries turn a brownout into an outage,
//! and across layers the factors multiply (3 layers of 3 attempts is 27 times the load). A
//! [`RetryBudget`] bounds retries to a fraction of the original requests instead (with a ratio
//! of 0.2, retries add at most 20% to the load however many fail), plus a small floor of retries
//! per second so a service with little traffic can still retry. The count still caps one
//! request's attempts; the budget caps what all requests together may add. This is the scheme
//! of Finagle's `RetryBudget`, tower's `retry::budget` and the SRE book's per-client retry
//! budget ("Handling Overload", Google SRE, 2016).
//!
//! # Layout
//! - [`RetryCondition`] (this file): the `retry_on` configuration entries.
//! - [`FailureKind`] (this file): how an attempt failed, classified once by the data plane.
//! - `policy`: [`RetryPolicy`], the decision and the backoff; [`is_idempotent`].
//! - `budget`: [`RetryBudget`], a lock-free token bucket shared by all workers.
//! - `grpc`: the `retry_on` names of gRPC status codes.

mod budget;
mod grpc;
mod policy;

pub use budget::{BudgetPolicy, InvalidRetryBudget, RetryBudget};
pub use grpc::{GRPC_STATUS_NAMES, grpc_status_code, grpc_status_name};
pub use policy::{
    AttemptFailure, GiveUpReason, InvalidRetryPolicy, RetryDecision, RetryPolicy, is_idempotent,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One entry of `retry.retry_on`: a kind of failure after which a retry may be attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCondition {
    /// The connection to the backend could not be established (refused or connect timeout).
    ConnectError,
    /// The backend accepted the request but did not answer within the timeout.
    Timeout,
    /// The connection was reset or closed before any byte of the response arrived.
    Reset,
    /// The backend answered with this status code.
    Status(u16),
    /// A gRPC call was answered with this `grpc-status` (1-16) before any of its response
    /// reached the client (a trailers-only response).
    GrpcStatus(u8),
}

impl RetryCondition {
    /// Parses the configuration spelling: `connect_error`, `timeout`, `reset`, a status code, or
    /// a gRPC status name (`grpc_unavailable`, see [`GRPC_STATUS_NAMES`]).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "connect_error" => Some(Self::ConnectError),
            "timeout" => Some(Self::Timeout),
            "reset" => Some(Self::Reset),
            grpc if grpc.starts_with("grpc_") => grpc_status_code(grpc).map(Self::GrpcStatus),
            other => other
                .parse::<u16>()
                .ok()
                .filter(|code| (100..=599).contains(code))
                .map(Self::Status),
        }
    }
}

impl std::fmt::Display for RetryCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConnectError => f.write_str("connect_error"),
            Self::Timeout => f.write_str("timeout"),
            Self::Reset => f.write_str("reset"),
            Self::Status(code) => write!(f, "{code}"),
            Self::GrpcStatus(code) => match grpc_status_name(*code) {
                Some(name) => f.write_str(name),
                None => write!(f, "grpc_{code}"),
            },
        }
    }
}

impl Serialize for RetryCondition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Status(code) => serializer.serialize_u16(*code),
            other => serializer.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for RetryCondition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RetryCondition;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "connect_error, timeout, reset, an HTTP status code (100-599), or a gRPC status name",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u16::try_from(v)
                    .ok()
                    .filter(|code| (100..=599).contains(code))
                    .map(RetryCondition::Status)
                    .ok_or_else(|| E::custom(format!("{v} is not an HTTP status code (100-599)")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_u64(
                    u64::try_from(v).map_err(|_| {
                        E::custom(format!("{v} is not an HTTP status code (100-599)"))
                    })?,
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                RetryCondition::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "unknown retry condition {v:?}: expected connect_error, timeout, reset, a status code, or a gRPC status like grpc_unavailable"
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// How one attempt failed, as the data plane classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The backend refused the connection.
    ConnectRefused,
    /// The connection could not be established within the connect timeout.
    ConnectTimeout,
    /// The connection was reset or closed before any byte of the response arrived.
    ResetBeforeResponse,
    /// The request was sent but no response arrived within the timeout.
    ResponseTimeout,
    /// The backend answered with this status code (one the caller treats as a failure).
    Status(u16),
    /// The backend answered a gRPC call with this `grpc-status` and nothing else (a
    /// trailers-only response), one that `retry_on` lists.
    GrpcStatus(u8),
}

impl FailureKind {
    /// Every value [`label`](Self::label) can return, for metrics created ahead of events.
    pub const LABELS: [&'static str; 6] = [
        "connect_refused",
        "connect_timeout",
        "reset",
        "timeout",
        "status",
        "grpc_status",
    ];

    /// The stable metric label: `connect_refused`, `connect_timeout`, `reset`, `timeout`,
    /// `status` or `grpc_status` (the code itself goes in its own label, if anywhere, to bound
    /// cardinality).
    pub fn label(&self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::ResetBeforeResponse => "reset",
            Self::ResponseTimeout => "timeout",
            Self::Status(_) => "status",
            Self::GrpcStatus(_) => "grpc_status",
        }
    }

    /// Whether retrying this failure is the operator's explicit choice whatever the method: a
    /// gRPC status is a failure only when `retry_on` lists it, and listing it says that a call
    /// answered so may be sent again (gRPC calls are all POSTs).
    pub fn listed_as_safe(&self) -> bool {
        matches!(self, Self::GrpcStatus(_))
    }

    /// Whether the backend may have seen (and acted on) the request. Only a failed connect
    /// proves it did not, which makes connect failures safe to retry for any method.
    pub fn may_have_reached_backend(&self) -> bool {
        !matches!(self, Self::ConnectRefused | Self::ConnectTimeout)
    }

    /// Whether a `retry_on` entry covers this failure: both connect kinds are `connect_error`,
    /// a response timeout is `timeout`, a reset is `reset`, a status matches the same code.
    pub fn matches(&self, cond: &RetryCondition) -> bool {
        match (self, cond) {
            (Self::ConnectRefused | Self::ConnectTimeout, RetryCondition::ConnectError)
            | (Self::ResponseTimeout, RetryCondition::Timeout)
            | (Self::ResetBeforeResponse, RetryCondition::Reset) => true,
            (Self::Status(code), RetryCondition::Status(wanted)) => code == wanted,
            (Self::GrpcStatus(code), RetryCondition::GrpcStatus(wanted)) => code == wanted,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kind_table() {
        use RetryCondition::{ConnectError, GrpcStatus, Reset, Status, Timeout};
        // (kind, label, may have reached the backend, the conditions it matches among a list)
        let all = [
            ConnectError,
            Timeout,
            Reset,
            Status(502),
            Status(503),
            GrpcStatus(14),
        ];
        #[rustfmt::skip]
        let rows: &[(FailureKind, &str, bool, &[RetryCondition])] = &[
            (FailureKind::ConnectRefused,      "connect_refused", false, &[ConnectError]),
            (FailureKind::ConnectTimeout,      "connect_timeout", false, &[ConnectError]),
            (FailureKind::ResetBeforeResponse, "reset",           true,  &[Reset]),
            (FailureKind::ResponseTimeout,     "timeout",         true,  &[Timeout]),
            (FailureKind::Status(503),         "status",          true,  &[Status(503)]),
            (FailureKind::Status(500),         "status",          true,  &[]),
            (FailureKind::GrpcStatus(14),      "grpc_status",     true,  &[GrpcStatus(14)]),
            (FailureKind::GrpcStatus(8),       "grpc_status",     true,  &[]),
        ];
        for &(kind, label, reached, matching) in rows {
            assert_eq!(kind.label(), label, "{kind:?}");
            assert_eq!(kind.may_have_reached_backend(), reached, "{kind:?}");
            let matched: Vec<_> = all.iter().copied().filter(|c| kind.matches(c)).collect();
            assert_eq!(matched, matching, "{kind:?}");
        }
    }
}

#[cfg(test)]
mod condition_tests {
    use super::RetryCondition;

    #[test]
    fn grpc_names_parse_and_print_back() {
        assert_eq!(
            RetryCondition::parse("grpc_unavailable"),
            Some(RetryCondition::GrpcStatus(14))
        );
        assert_eq!(
            RetryCondition::parse("grpc_cancelled"),
            Some(RetryCondition::GrpcStatus(1))
        );
        for wrong in [
            "grpc_ok",
            "grpc_",
            "grpc_14",
            "unavailable",
            "grpc_Unavailable",
        ] {
            assert_eq!(RetryCondition::parse(wrong), None, "{wrong}");
        }
        let condition = RetryCondition::GrpcStatus(8);
        assert_eq!(condition.to_string(), "grpc_resource_exhausted");
        assert_eq!(
            RetryCondition::parse(&condition.to_string()),
            Some(condition)
        );
    }
}

#[cfg(test)]
mod label_tests {
    use super::FailureKind;

    #[test]
    fn labels_lists_every_label() {
        let kinds = [
            FailureKind::ConnectRefused,
            FailureKind::ConnectTimeout,
            FailureKind::ResetBeforeResponse,
            FailureKind::ResponseTimeout,
            FailureKind::Status(503),
            FailureKind::GrpcStatus(14),
        ];
        let labels: Vec<&str> = kinds.iter().map(FailureKind::label).collect();
        assert_eq!(labels, FailureKind::LABELS);
    }
}
