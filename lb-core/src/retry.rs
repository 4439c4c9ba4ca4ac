//! Retry decisions, backoff and budget. (Being filled in: see the state-machines work.)

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
}

impl RetryCondition {
    /// Parses the configuration spelling: `connect_error`, `timeout`, `reset`, or a status code.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "connect_error" => Some(Self::ConnectError),
            "timeout" => Some(Self::Timeout),
            "reset" => Some(Self::Reset),
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
                f.write_str("connect_error, timeout, reset, or an HTTP status code (100-599)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u16::try_from(v)
                    .ok()
                    .filter(|code| (100..=599).contains(code))
                    .map(RetryCondition::Status)
                    .ok_or_else(|| E::custom(format!("{v} is not an HTTP status code (100-599)")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_u64(u64::try_from(v).map_err(|_| {
                    E::custom(format!("{v} is not an HTTP status code (100-599)"))
                })?)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                RetryCondition::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "unknown retry condition {v:?}: expected connect_error, timeout, reset, or a status code"
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
