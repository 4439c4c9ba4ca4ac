//! A client for the daemon's admin API: list backends, drain and enable them, override their
//! weight, reset a breaker, reload the configuration, read the effective configuration.
//!
//! The daemon serves the API on its own listener (`admin.listen`, default `127.0.0.1:9091`)
//! when its configuration has an `admin` section: HTTP/1.1 and JSON, with
//! `Authorization: Bearer TOKEN` when a token is configured. [`AdminClient`] makes each call with
//! one blocking `ureq` request, as the scrape does, so `lb-cli` and `lb-tui` need no async
//! runtime; every call is bounded by a connect and a total timeout ([`Options`]).
//!
//! Each call has a typed form ([`AdminClient::drain`] returns a [`BackendStatus`]) and a raw
//! form ([`AdminClient::raw`] returns the JSON as sent, for `--json` output and for fields this
//! client does not know yet). The typed form is the raw one decoded by [`types`].
//!
//! Errors keep what the daemon said: a refusal carries `{"error": "..."}` and a status, and
//! [`AdminError::Api`] keeps both (404 unknown backend, 401 bad token, 422 invalid file...).
//! An answer that is not the API's JSON (another server on the port, a proxy's error page,
//! garbage) is a typed error, never a panic. Text from the server is made one printable line
//! ([`printable`]) before it is kept in an error, so a broken or hostile server cannot write
//! escape sequences to an operator's terminal.
//!
//! Redirects are not followed and proxies named in the environment are not used, as for the
//! scrape: the admin API is reached directly, and a bearer token is never sent elsewhere.
//!
//! # Layout
//! - [`types`]: the answers as types, and their decoding.
//! - [`error`]: [`AdminError`] and [`ErrorKind`].
//! - [`token`]: the token from a file or the environment.

pub mod error;
pub mod token;
pub mod types;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::http::Uri;

use crate::transport::{Failure, classify};

pub use error::{AdminError, ErrorKind, printable};
pub use token::{TOKEN_ENV, TokenError};
pub use types::{BackendStatus, BreakerState, Health, Override, ReloadOutcome};

/// The admin API's address when the configuration does not say (`admin.listen`'s default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9091";

/// The environment variable a client reads the admin URL from when none is given.
pub const URL_ENV: &str = "LB_ADMIN_URL";

/// Default for [`Options::connect_timeout`]: as the scrape's, long enough for a remote daemon
/// on a slow link, short enough to report a dead host before a person gives up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default for [`Options::timeout`]: a call is a lookup or a state flip; a reload parses a file
/// and binds listeners. Five seconds covers both with a wide margin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default for [`Options::max_body_bytes`]: `GET /config` with thousands of backends is well
/// under a megabyte; 8 MiB bounds the memory a wrong URL can take.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// Largest error body read for its message; the daemon's are one line.
const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// How to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Longest wait for the TCP (and TLS) connection to be set up.
    pub connect_timeout: Duration,
    /// Longest wait for the whole exchange, connecting and reading the body included.
    pub timeout: Duration,
    /// Answers larger than this are refused ([`AdminError::TooLarge`]).
    pub max_body_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// One admin API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    /// `GET /backends`.
    Backends,
    /// `GET /backends/{name}`.
    Backend(&'a str),
    /// `POST /backends/{name}/drain`.
    Drain(&'a str),
    /// `POST /backends/{name}/enable`.
    Enable(&'a str),
    /// `PUT /backends/{name}/weight` with `{"weight": N}`, or `null` to remove the override.
    SetWeight(&'a str, Option<u32>),
    /// `POST /backends/{name}/breaker/reset`.
    ResetBreaker(&'a str),
    /// `POST /reload`.
    Reload,
    /// `GET /config`.
    Config,
}

impl Call<'_> {
    /// The request method.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Backends | Self::Backend(_) | Self::Config => "GET",
            Self::SetWeight(..) => "PUT",
            Self::Drain(_) | Self::Enable(_) | Self::ResetBreaker(_) | Self::Reload => "POST",
        }
    }

    /// The backend the call names, if any.
    pub fn backend(&self) -> Option<&str> {
        match *self {
            Self::Backend(name)
            | Self::Drain(name)
            | Self::Enable(name)
            | Self::SetWeight(name, _)
            | Self::ResetBreaker(name) => Some(name),
            Self::Backends | Self::Reload | Self::Config => None,
        }
    }

    /// The path under the base URL, the backend's name percent-encoded.
    ///
    /// # Errors
    /// [`AdminError::BadName`] for an empty name.
    pub fn path(&self) -> Result<String, AdminError> {
        let backend = |name: &str, rest: &str| {
            if name.is_empty() {
                return Err(AdminError::BadName);
            }
            Ok(format!("/backends/{}{rest}", segment(name)))
        };
        match *self {
            Self::Backends => Ok("/backends".to_owned()),
            Self::Backend(name) => backend(name, ""),
            Self::Drain(name) => backend(name, "/drain"),
            Self::Enable(name) => backend(name, "/enable"),
            Self::SetWeight(name, _) => backend(name, "/weight"),
            Self::ResetBreaker(name) => backend(name, "/breaker/reset"),
            Self::Reload => Ok("/reload".to_owned()),
            Self::Config => Ok("/config".to_owned()),
        }
    }

    /// The JSON body sent, if any.
    fn body(&self) -> Option<String> {
        match self {
            Self::SetWeight(_, weight) => Some(serde_json::json!({ "weight": weight }).to_string()),
            _ => None,
        }
    }
}

/// `name` as one path segment: the characters RFC 3986 allows in a segment (`pchar`) stay as
/// they are, so `127.0.0.1:8001` reads as itself in logs; anything else (`/`, `?`, `#`, `%`,
/// spaces, non-ASCII) is percent-encoded, and so are the dots of `.` and `..`, which a server
/// or proxy could otherwise resolve as a relative path.
fn segment(name: &str) -> String {
    if name == "." || name == ".." {
        return name.replace('.', "%2E");
    }
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A client of one daemon's admin API.
#[derive(Clone)]
pub struct AdminClient {
    /// Connection pool and settings.
    agent: Agent,
    /// The base URL without a trailing `/`; paths are appended to it.
    base: String,
    token: Option<String>,
    options: Options,
}

// By hand, so that the token never reaches a log line through `{:?}`.
impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client of the admin API at `base_url` (`http://127.0.0.1:9091`, or with a path prefix
    /// when a proxy serves it under one), sending `token` as a bearer token when given, with the
    /// default [`Options`].
    ///
    /// # Errors
    /// As [`AdminClient::with_options`].
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, AdminError> {
        Self::with_options(base_url, token, Options::default())
    }

    /// A client with `options`.
    ///
    /// # Errors
    /// [`AdminError::BadUrl`] when `base_url` is not an `http://` or `https://` URL with a host,
    /// or carries user information, a query or a fragment; [`AdminError::BadToken`] when the
    /// token cannot be a header value.
    pub fn with_options(
        base_url: &str,
        token: Option<String>,
        options: Options,
    ) -> Result<Self, AdminError> {
        let bad = |reason| AdminError::BadUrl {
            url: base_url.to_owned(),
            reason,
        };
        if let Some(reason) = crate::scrape::url_problem(base_url) {
            return Err(bad(reason));
        }
        let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        if uri.query().is_some() || base_url.contains('#') {
            return Err(bad("the admin URL takes no query or fragment"));
        }
        if token.as_deref().is_some_and(|t| !token::is_token(t)) {
            return Err(AdminError::BadToken);
        }
        let config = Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            // Statuses are ours to judge: a 404 keeps the daemon's message.
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(crate::scrape::USER_AGENT)
            .accept("application/json")
            // A fresh connection per call: calls are rare (a dashboard's may be minutes apart),
            // and a `POST` sent on a pooled connection the daemon has meanwhile closed would
            // fail without being safe to repeat.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build();
        Ok(Self {
            agent: config.into(),
            base: base_url.trim_end_matches('/').to_owned(),
            token,
            options,
        })
    }

    /// The base URL calls go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Every backend.
    ///
    /// # Errors
    /// [`AdminError`]: unreachable, refused by the daemon, or an answer that is not the API's.
    pub fn backends(&self) -> Result<Vec<BackendStatus>, AdminError> {
        self.typed(Call::Backends, types::backends)
    }

    /// One backend; 404 ([`ErrorKind::NotFound`]) when there is none by that name.
    ///
    /// # Errors
    /// As [`AdminClient::backends`].
    pub fn backend(&self, name: &str) -> Result<BackendStatus, AdminError> {
        self.typed(Call::Backend(name), types::backend)
    }

    /// Drains `name`: no new requests; those in flight finish. Returns the backend afterwards.
    ///
    /// # Errors
    /// As [`AdminClient::backends`].
    pub fn drain(&self, name: &str) -> Result<BackendStatus, AdminError> {
        self.typed(Call::Drain(name), types::backend)
    }

    /// Ends a drain of `name`. Returns the backend afterwards.
    ///
    /// # Errors
    /// As [`AdminClient::backends`].
    pub fn enable(&self, name: &str) -> Result<BackendStatus, AdminError> {
        self.typed(Call::Enable(name), types::backend)
    }

    /// Overrides `name`'s weight, or with `None` removes the override (back to the file's).
    ///
    /// # Errors
    /// As [`AdminClient::backends`]; 400 for a weight outside 1..=1000000.
    pub fn set_weight(&self, name: &str, weight: Option<u32>) -> Result<BackendStatus, AdminError> {
        self.typed(Call::SetWeight(name, weight), types::backend)
    }

    /// Closes `name`'s circuit breaker and forgets its failures.
    ///
    /// # Errors
    /// As [`AdminClient::backends`].
    pub fn reset_breaker(&self, name: &str) -> Result<BackendStatus, AdminError> {
        self.typed(Call::ResetBreaker(name), types::backend)
    }

    /// Reloads the configuration file; the running configuration is unchanged when refused
    /// (422 invalid file, 409 a listener could not be bound: [`ErrorKind::Rejected`]).
    ///
    /// # Errors
    /// As [`AdminClient::backends`].
    pub fn reload(&self) -> Result<ReloadOutcome, AdminError> {
        self.typed(Call::Reload, types::reload)
    }

    /// The effective configuration, defaults filled and secrets redacted.
    ///
    /// # Errors
    /// As [`AdminClient::backends`].
    pub fn config(&self) -> Result<Value, AdminError> {
        self.raw(Call::Config)
    }

    /// Makes `call` and returns its 2xx answer as JSON, as the daemon sent it.
    ///
    /// # Errors
    /// [`AdminError`]: a bad name, unreachable, a refusal (with the daemon's message), a body
    /// too large or not JSON.
    pub fn raw(&self, call: Call<'_>) -> Result<Value, AdminError> {
        let url = format!("{}{}", self.base, call.path()?);
        let method = call.method();
        let sent = match call.body() {
            None if method == "GET" => self.authorize(self.agent.get(&url)).call(),
            None => self.authorize(self.agent.post(&url)).send_empty(),
            // Only `PUT .../weight` has a body.
            Some(body) => self
                .authorize(self.agent.put(&url))
                .content_type("application/json")
                .send(body.as_bytes()),
        };
        let mut response = sent.map_err(|e| self.transport(&url, e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            // The message is worth a small read; a failure to read it leaves the status alone.
            let message = response
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BODY_BYTES)
                .read_to_vec()
                .ok()
                .and_then(|body| types::error_message(&body));
            return Err(match message {
                Some(message) => AdminError::Api {
                    method,
                    url,
                    status,
                    message: printable(&message),
                },
                None => AdminError::Status {
                    method,
                    url,
                    status,
                },
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.options.max_body_bytes)
            .read_to_vec()
            .map_err(|e| self.transport(&url, e))?;
        serde_json::from_slice(&body).map_err(|e| AdminError::Decode {
            method,
            url,
            reason: printable(&e.to_string()),
        })
    }

    /// Makes `call` and returns its answer both decoded by `decode` (one of [`types`]'
    /// functions) and as the JSON the daemon sent: for output that shows the daemon's JSON
    /// whole yet refuses an answer of the wrong shape.
    ///
    /// # Errors
    /// As [`AdminClient::raw`]; [`AdminError::Decode`] when the JSON is not what `decode` reads.
    pub fn call_decoded<T>(
        &self,
        call: Call<'_>,
        decode: fn(Value) -> Result<T, serde_json::Error>,
    ) -> Result<(T, Value), AdminError> {
        let value = self.raw(call)?;
        let typed = decode(value.clone()).map_err(|e| AdminError::Decode {
            method: call.method(),
            // A name that passed `path` once passes again.
            url: format!("{}{}", self.base, call.path().unwrap_or_default()),
            reason: printable(&e.to_string()),
        })?;
        Ok((typed, value))
    }

    /// [`AdminClient::call_decoded`] without the JSON.
    fn typed<T>(
        &self,
        call: Call<'_>,
        decode: fn(Value) -> Result<T, serde_json::Error>,
    ) -> Result<T, AdminError> {
        self.call_decoded(call, decode).map(|(typed, _)| typed)
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// Sorts `ureq`'s error into the cases a person can act on.
    fn transport(&self, url: &str, error: ureq::Error) -> AdminError {
        let url = url.to_owned();
        let options = &self.options;
        match classify(error, options.connect_timeout, options.timeout) {
            Failure::Refused => AdminError::Refused { url },
            Failure::HostNotFound => AdminError::HostNotFound { url },
            Failure::Timeout { limit, stage } => AdminError::Timeout { url, limit, stage },
            Failure::TooLarge { limit } => AdminError::TooLarge { url, limit },
            Failure::Other(source) => AdminError::Transport { url, source },
        }
    }
}
