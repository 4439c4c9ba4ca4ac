//! The admin API's answers as types, decoded with serde from `serde_json::Value`.
//!
//! Decoding follows the contract and stays forward-compatible: every field the contract names is
//! required (a missing one is an error that names it, not a silent default), unknown fields are
//! ignored, and a state word this client does not know (`health`, `breaker`, an override) is
//! kept as [`Health::Other`] and friends rather than refused, so an older `lb-cli` still reads a
//! newer daemon. Nothing here panics on any input: a wrong shape is a `serde_json::Error`.

use serde::Deserialize;
use serde_json::Value;

/// One backend as the daemon sees it now (`GET /backends/{name}` and every per-backend call).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BackendStatus {
    /// The backend's name (its identity across reloads; unique across pools).
    pub name: String,
    /// The pool it belongs to (`default` in the flat form); absent from daemons older than
    /// pools, so not required.
    #[serde(default)]
    pub pool: Option<String>,
    /// Where it is, `host:port`.
    pub address: String,
    /// The weight the balancer uses now: the override when one is set, else the file's.
    pub weight: u32,
    /// The weight the configuration file gives it.
    pub configured_weight: u32,
    /// Its connection limit.
    pub max_connections: u32,
    /// What the active health checks say.
    pub health: Health,
    /// Its circuit breaker's state.
    pub breaker: BreakerState,
    /// Requests in flight to it now.
    pub in_flight: u64,
    /// Drained: it takes no new requests (after `drain`, until `enable`).
    pub drained: bool,
    /// Drained and nothing in flight any more: safe to stop.
    pub drain_done: bool,
    /// Runtime overrides in force (survive a reload that does not change this backend).
    pub overrides: Vec<Override>,
}

impl BackendStatus {
    /// The weight is an override set through the API, not the file's.
    pub fn weight_overridden(&self) -> bool {
        self.overrides.contains(&Override::Weight)
    }
}

/// What the active health checks say of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum Health {
    /// Passing its checks (or checks are off).
    Healthy,
    /// Failing its checks: not picked.
    Unhealthy,
    /// A word this client does not know, kept as sent.
    Other(String),
}

impl From<String> for Health {
    fn from(word: String) -> Self {
        match word.as_str() {
            "healthy" => Self::Healthy,
            "unhealthy" => Self::Unhealthy,
            _ => Self::Other(word),
        }
    }
}

/// A backend's circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Tripped: the backend is skipped until the breaker probes it.
    Open,
    /// Probing with a few requests.
    HalfOpen,
    /// The configuration turns the breaker off.
    Disabled,
    /// A word this client does not know, kept as sent.
    Other(String),
}

impl From<String> for BreakerState {
    fn from(word: String) -> Self {
        match word.as_str() {
            "closed" => Self::Closed,
            "open" => Self::Open,
            "half_open" => Self::HalfOpen,
            "disabled" => Self::Disabled,
            _ => Self::Other(word),
        }
    }
}

impl BreakerState {
    /// The label `lb-cli status` and `lb-tui` use (`half-open`).
    pub fn label(&self) -> &str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::Disabled => "disabled",
            Self::Other(word) => word,
        }
    }
}

/// A runtime override in force on a backend.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum Override {
    /// Drained through the API.
    Drain,
    /// Weight set through the API.
    Weight,
    /// A word this client does not know, kept as sent.
    Other(String),
}

impl From<String> for Override {
    fn from(word: String) -> Self {
        match word.as_str() {
            "drain" => Self::Drain,
            "weight" => Self::Weight,
            _ => Self::Other(word),
        }
    }
}

/// What `POST /reload` did when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReloadOutcome {
    /// `success`.
    pub result: String,
    /// What changed, one line each (`backend b3 added`); empty when the file is unchanged.
    #[serde(default)]
    pub changes: Vec<String>,
    /// Changes that were not applied and need a restart (`server.workers: ...`).
    #[serde(default)]
    pub needs_restart: Vec<String>,
}

/// `GET /backends`: `{"backends": [...]}`.
#[derive(Deserialize)]
struct BackendList {
    backends: Vec<BackendStatus>,
}

/// The error body every refusal carries: `{"error": "..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// `GET /backends`'s answer as a list.
///
/// # Errors
/// `value` is not `{"backends": [BACKEND, ...]}`.
pub fn backends(value: Value) -> Result<Vec<BackendStatus>, serde_json::Error> {
    serde_json::from_value::<BackendList>(value).map(|list| list.backends)
}

/// One backend object.
///
/// # Errors
/// `value` is not a backend object.
pub fn backend(value: Value) -> Result<BackendStatus, serde_json::Error> {
    serde_json::from_value(value)
}

/// `POST /reload`'s answer.
///
/// # Errors
/// `value` is not `{"result": ..., "changes": [...], "needs_restart": [...]}`.
pub fn reload(value: Value) -> Result<ReloadOutcome, serde_json::Error> {
    serde_json::from_value(value)
}

/// The message of an error answer's body, when it is the API's `{"error": "..."}`.
pub fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|body| body.error)
}
