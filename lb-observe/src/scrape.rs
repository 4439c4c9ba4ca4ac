//! Fetching the metrics text: one blocking `GET` with `ureq`.
//!
//! A dashboard that scrapes once a second and a one-shot `status` need no async runtime, but
//! they do need what a real HTTP client gets right and a hand-written one tends not to:
//! connect and total timeouts, chunked and length-delimited bodies, keep-alive between scrapes,
//! TLS for `https://`, and an `Authorization` header for endpoints that ask for one (the future
//! admin API). [`Scraper`] holds one configured `ureq` agent for one URL; [`fetch`] is the
//! one-shot form.
//!
//! What counts as a good scrape is narrow on purpose: status 200 and a UTF-8 body. Anything
//! else is a [`ScrapeError`] that names the URL and says what went wrong, because the caller
//! shows it to a person (the dashboard's header, `lb-cli status`'s stderr). Redirects are not
//! followed (a 3xx is reported with its status: point the URL at the final address), and
//! proxies named in the environment are not used: the daemon is reached directly.

use std::time::Duration;

use thiserror::Error;
use ureq::Agent;
use ureq::http::Uri;

use crate::transport::{Failure, classify};

/// The metrics URL the daemon serves by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/metrics";

/// Default for [`Options::max_body_bytes`]: the daemon's metrics are a few tens of kilobytes
/// even with hundreds of backends; 16 MiB bounds the memory a wrong URL (a large file, an
/// endless stream) can take.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Default for [`Options::connect_timeout`]: a local daemon accepts in microseconds; two
/// seconds is long enough for a remote one on a slow link and short enough to report a dead
/// host before a person gives up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default for [`Options::timeout`]: the whole exchange, from resolving the host to the last
/// byte of the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `User-Agent` sent, so a daemon's logs can tell who scraped.
pub(crate) const USER_AGENT: &str = concat!("lb-observe/", env!("CARGO_PKG_VERSION"));

/// How to fetch.
#[derive(Clone, PartialEq, Eq)]
pub struct Options {
    /// Longest wait for the TCP (and TLS) connection to be set up.
    pub connect_timeout: Duration,
    /// Longest wait for the whole exchange, connecting and reading the body included.
    pub timeout: Duration,
    /// Bodies larger than this are refused ([`ScrapeError::TooLarge`]).
    pub max_body_bytes: u64,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub bearer_token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            bearer_token: None,
        }
    }
}

// By hand, so that the token never reaches a log line through `{:?}`.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Why a scrape failed. Every variant names the URL, since that is what a person checks first.
#[derive(Debug, Error)]
pub enum ScrapeError {
    /// The URL is not `http://HOST[:PORT][/PATH]` or `https://...`.
    #[error("bad metrics URL `{url}`: {reason}; expected http://HOST:PORT/PATH")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bearer token holds characters a header cannot carry (RFC 6750 `b64token`).
    #[error("{url}: the bearer token is not a token (letters, digits and -._~+/ then any `=`)")]
    BadToken {
        /// The URL it was meant for.
        url: String,
    },
    /// Nothing listens at the address.
    #[error("{url}: connection refused (is the daemon running, with its metrics on that port?)")]
    Refused {
        /// The URL fetched.
        url: String,
    },
    /// The host name does not resolve.
    #[error("{url}: the host name does not resolve")]
    HostNotFound {
        /// The URL fetched.
        url: String,
    },
    /// A timeout expired: connecting, or the exchange as a whole.
    #[error("{url}: no answer within {limit:?} ({stage})")]
    Timeout {
        /// The URL fetched.
        url: String,
        /// The limit that expired.
        limit: Duration,
        /// `connecting` or `the whole exchange`.
        stage: &'static str,
    },
    /// The server answered with a status other than 200.
    #[error("{url}: HTTP status {status}{}", status_hint(*.status))]
    Status {
        /// The URL fetched.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than [`Options::max_body_bytes`].
    #[error("{url}: the answer is larger than {limit} bytes (is this a metrics endpoint?)")]
    TooLarge {
        /// The URL fetched.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The body is not UTF-8 text.
    #[error("{url}: the answer is not UTF-8 text (is this a metrics endpoint?)")]
    NotText {
        /// The URL fetched.
        url: String,
    },
    /// Anything else on the way: a reset connection, an answer that is not HTTP, a TLS failure.
    #[error("{url}: {source}")]
    Transport {
        /// The URL fetched.
        url: String,
        /// What `ureq` reported.
        #[source]
        source: ureq::Error,
    },
}

/// A hint after a status that usually means a wrong URL or missing credentials.
fn status_hint(status: u16) -> &'static str {
    match status {
        301 | 302 | 303 | 307 | 308 => " (a redirect: use the address it points to)",
        401 | 403 => " (the endpoint wants credentials: check the bearer token)",
        404 => " (wrong path? the daemon serves /metrics)",
        _ => "",
    }
}

/// One URL and a configured client, reused between scrapes (keep-alive included).
#[derive(Debug, Clone)]
pub struct Scraper {
    /// Shared connection pool and settings.
    agent: Agent,
    url: String,
    options: Options,
}

impl Scraper {
    /// A scraper of `url` with `options`.
    ///
    /// # Errors
    /// [`ScrapeError::BadUrl`] when `url` is not an `http://` or `https://` URL with a host and
    /// no user information (credentials go in [`Options::bearer_token`], not in a URL that error
    /// messages print); [`ScrapeError::BadToken`] when the bearer token cannot be a header value.
    pub fn new(url: &str, options: Options) -> Result<Self, ScrapeError> {
        check_url(url)?;
        if let Some(token) = &options.bearer_token
            && !is_b64token(token)
        {
            return Err(ScrapeError::BadToken {
                url: url.to_owned(),
            });
        }
        let config = Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            // Statuses are ours to judge: a 404 is a typed error naming the URL, not ureq's.
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(USER_AGENT)
            .accept("text/plain")
            .build();
        Ok(Self {
            agent: config.into(),
            url: url.to_owned(),
            options,
        })
    }

    /// The URL this scraper fetches.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One `GET`: the body as text when the answer is 200 and UTF-8.
    ///
    /// # Errors
    /// [`ScrapeError`]: refused, unresolvable, timed out, another status than 200, a body too
    /// large or not UTF-8, or a transport failure.
    pub fn fetch(&self) -> Result<String, ScrapeError> {
        let mut request = self.agent.get(&self.url);
        if let Some(token) = &self.options.bearer_token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| self.error(e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ScrapeError::Status {
                url: self.url.clone(),
                status,
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.options.max_body_bytes)
            .read_to_vec()
            .map_err(|e| self.error(e))?;
        String::from_utf8(body).map_err(|_| ScrapeError::NotText {
            url: self.url.clone(),
        })
    }

    /// Sorts `ureq`'s error into the cases a person can act on.
    fn error(&self, error: ureq::Error) -> ScrapeError {
        let url = self.url.clone();
        let options = &self.options;
        match classify(error, options.connect_timeout, options.timeout) {
            Failure::Refused => ScrapeError::Refused { url },
            Failure::HostNotFound => ScrapeError::HostNotFound { url },
            Failure::Timeout { limit, stage } => ScrapeError::Timeout { url, limit, stage },
            Failure::TooLarge { limit } => ScrapeError::TooLarge { url, limit },
            Failure::Other(source) => ScrapeError::Transport { url, source },
        }
    }
}

/// Fetches the text at `url` once: [`Scraper::new`] then [`Scraper::fetch`].
///
/// # Errors
/// As [`Scraper::new`] and [`Scraper::fetch`].
pub fn fetch(url: &str, options: &Options) -> Result<String, ScrapeError> {
    Scraper::new(url, options.clone())?.fetch()
}

/// Accepts `http://` and `https://` URLs with a host and no user information.
fn check_url(url: &str) -> Result<(), ScrapeError> {
    url_problem(url).map_or(Ok(()), |reason| {
        Err(ScrapeError::BadUrl {
            url: url.to_owned(),
            reason,
        })
    })
}

/// What is wrong with `url` as the address of a daemon's endpoint, if anything: it must be
/// `http://` or `https://` with a host and no user information (shared with the admin client).
pub(crate) fn url_problem(url: &str) -> Option<&'static str> {
    let Ok(uri) = url.parse::<Uri>() else {
        return Some("not a URL");
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Some("only http:// and https:// are supported"),
        None => return Some("it has no http:// in front"),
    }
    let Some(authority) = uri.authority() else {
        return Some("it has no host");
    };
    if authority.as_str().contains('@') {
        return Some("credentials in the URL are not supported (use a bearer token)");
    }
    if authority.host().is_empty() {
        return Some("it has no host");
    }
    None
}

/// RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in [
            "http://127.0.0.1:9090/metrics",
            "http://localhost",
            "http://[::1]:9/m",
            "https://lb.example:9443/metrics?x=1",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1:9090",
            "ftp://x/",
            "http:///m",
            "http://u:p@h/",
            "http://a b/",
            "/metrics",
        ] {
            let error = check_url(bad).expect_err(bad);
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("bad metrics URL `{bad}`: ")),
                "{error}"
            );
        }
    }

    #[test]
    fn tokens() {
        for good in ["abc", "a-b.c_d~e+f/g==", "0"] {
            assert!(is_b64token(good), "{good}");
        }
        for bad in ["", "===", "a b", "a\r\nx: y", "é", "a=b"] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
        let options = Options {
            bearer_token: Some("bad token".into()),
            ..Options::default()
        };
        let error = Scraper::new(DEFAULT_URL, options).unwrap_err();
        assert!(matches!(error, ScrapeError::BadToken { .. }), "{error}");
        assert!(!error.to_string().contains("bad token"), "{error}");
    }

    #[test]
    fn debug_hides_the_token() {
        let options = Options {
            bearer_token: Some("s3cret".into()),
            ..Options::default()
        };
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn statuses_get_hints() {
        let error = ScrapeError::Status {
            url: DEFAULT_URL.into(),
            status: 401,
        };
        assert_eq!(
            error.to_string(),
            "http://127.0.0.1:9090/metrics: HTTP status 401 (the endpoint wants credentials: check the bearer token)"
        );
    }
}
