//! What can go wrong talking to the admin API, kept precise enough to act on.
//!
//! The daemon's own refusals ([`AdminError::Api`]) keep its status and its one-line message, so
//! "no backend named \"b9\"" reaches the operator as the daemon wrote it. Everything else names
//! the URL, since that is what a person checks first. [`AdminError::kind`] sorts the variants
//! into the few cases a caller branches on (a command line's exit code, a dashboard's colour).

use std::time::Duration;

use thiserror::Error;

/// Longest server-provided message kept, in characters: a line on a terminal, not a page.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why an admin call failed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The base URL is not `http://HOST[:PORT][/PREFIX]` or `https://...`.
    #[error("bad admin URL `{url}`: {reason}; expected http://HOST:PORT")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bearer token holds characters a header cannot carry.
    #[error("the admin token is not a token: it must be printable ASCII without spaces")]
    BadToken,
    /// The backend name cannot name a backend (it is empty).
    #[error("a backend name cannot be empty")]
    BadName,
    /// Nothing listens at the address.
    #[error(
        "{url}: connection refused (is the daemon running, with an `admin` section listening there?)"
    )]
    Refused {
        /// The URL called.
        url: String,
    },
    /// The host name does not resolve.
    #[error("{url}: the host name does not resolve")]
    HostNotFound {
        /// The URL called.
        url: String,
    },
    /// A timeout expired: connecting, or the exchange as a whole.
    #[error("{url}: no answer within {limit:?} ({stage})")]
    Timeout {
        /// The URL called.
        url: String,
        /// The limit that expired.
        limit: Duration,
        /// `connecting` or `the whole exchange`.
        stage: &'static str,
    },
    /// The daemon refused the call with an error status and its JSON `{"error": "..."}`.
    #[error("{message} (HTTP {status} from {method} {url})")]
    Api {
        /// The request method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// The status code, 4xx or 5xx.
        status: u16,
        /// The daemon's message, made one printable line.
        message: String,
    },
    /// A status other than 2xx without the admin API's JSON error: not the admin API, or a
    /// proxy in front of it.
    #[error("{method} {url}: HTTP status {status} without the admin API's JSON error{}", status_hint(*.status))]
    Status {
        /// The request method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The answer is larger than the configured limit.
    #[error("{url}: the answer is larger than {limit} bytes (is this the admin API?)")]
    TooLarge {
        /// The URL called.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A 2xx answer whose body is not the JSON the admin API sends for this call.
    #[error("{method} {url}: the answer is not the admin API's JSON ({reason})")]
    Decode {
        /// The request method.
        method: &'static str,
        /// The URL called.
        url: String,
        /// What did not fit, as serde_json says it (with line and column).
        reason: String,
    },
    /// Anything else on the way: a reset connection, an answer that is not HTTP, a TLS failure.
    #[error("{url}: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// What `ureq` reported.
        #[source]
        source: ureq::Error,
    },
}

/// The cases a caller branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's input is wrong before anything is sent: the URL, the token, a name.
    Usage,
    /// The daemon could not be reached or the exchange broke off.
    Unreachable,
    /// 401 or 403: the token is missing or wrong.
    Unauthorized,
    /// 404 from the admin API: no such backend (or path).
    NotFound,
    /// Another 4xx from the admin API: a bad request, or a reload refused (422 invalid file,
    /// 409 a listener could not be bound); nothing changed.
    Rejected,
    /// A 5xx from the admin API.
    Server,
    /// The answer is not the admin API's: another server on that port, or garbage.
    Protocol,
}

impl AdminError {
    /// Which case this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BadUrl { .. } | Self::BadToken | Self::BadName => ErrorKind::Usage,
            Self::Refused { .. }
            | Self::HostNotFound { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. } => ErrorKind::Unreachable,
            Self::Api { status, .. } | Self::Status { status, .. }
                if matches!(status, 401 | 403) =>
            {
                ErrorKind::Unauthorized
            }
            Self::Api { status: 404, .. } => ErrorKind::NotFound,
            Self::Api { status, .. } if *status >= 500 => ErrorKind::Server,
            Self::Api { .. } => ErrorKind::Rejected,
            Self::Status { .. } | Self::TooLarge { .. } | Self::Decode { .. } => {
                ErrorKind::Protocol
            }
        }
    }

    /// The HTTP status, when the daemon answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The daemon's own message, when it sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Api { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A hint after a status that usually means a wrong URL or missing credentials.
fn status_hint(status: u16) -> &'static str {
    match status {
        301 | 302 | 303 | 307 | 308 => " (a redirect: use the address it points to)",
        401 | 403 => " (the endpoint wants credentials: check the bearer token)",
        404 => " (is this the admin listener? `admin.listen`, default 127.0.0.1:9091)",
        _ => "",
    }
}

/// `text` as one printable line of at most 300 characters shown (then `…`): control
/// characters (a newline, an escape sequence) and bidirectional overrides are shown escaped, so
/// text from a broken or hostile server cannot rewrite an operator's terminal or split a log line.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS));
    let mut shown = 0;
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        let escaped = (c.is_control() || bidi).then(|| c.escape_default());
        // The bound is on what is shown: an escape such as `\u{1b}` counts for its six.
        let width = escaped.clone().map_or(1, Iterator::count);
        if shown + width > MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        shown += width;
        match escaped {
            Some(escaped) => out.extend(escaped),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_is_one_safe_line() {
        let cases = [
            ("no backend named \"b9\"", "no backend named \"b9\""),
            ("two\nlines\r", "two\\nlines\\r"),
            ("\u{1b}[2Jcleared", "\\u{1b}[2Jcleared"),
            ("tab\there", "tab\\there"),
            ("rtl \u{202e}evil", "rtl \\u{202e}evil"),
            ("émoji ✓", "émoji ✓"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(printable(input), want, "{input:?}");
        }
        let long = "x".repeat(1000);
        let cut = printable(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        // Escapes count for what they show: a line of escapes is bounded too.
        let cut = printable(&"\u{1}".repeat(1000));
        assert!(cut.chars().count() <= MAX_MESSAGE_CHARS + 1, "{cut}");
        assert!(
            cut.starts_with("\\u{1}\\u{1}") && cut.ends_with('…'),
            "{cut}"
        );
        assert_eq!(
            printable(&"x".repeat(MAX_MESSAGE_CHARS)),
            "x".repeat(MAX_MESSAGE_CHARS)
        );
    }

    #[test]
    fn kinds() {
        let api = |status| AdminError::Api {
            method: "GET",
            url: "http://127.0.0.1:9091/backends".into(),
            status,
            message: "m".into(),
        };
        let plain = |status| AdminError::Status {
            method: "GET",
            url: "http://127.0.0.1:9091/backends".into(),
            status,
        };
        let cases = [
            (api(401), ErrorKind::Unauthorized),
            (api(403), ErrorKind::Unauthorized),
            (plain(401), ErrorKind::Unauthorized),
            (api(404), ErrorKind::NotFound),
            (plain(404), ErrorKind::Protocol),
            (api(400), ErrorKind::Rejected),
            (api(409), ErrorKind::Rejected),
            (api(422), ErrorKind::Rejected),
            (api(500), ErrorKind::Server),
            (plain(502), ErrorKind::Protocol),
            (AdminError::BadName, ErrorKind::Usage),
            (
                AdminError::Refused { url: "u".into() },
                ErrorKind::Unreachable,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
        assert_eq!(api(422).status(), Some(422));
        assert_eq!(api(422).message(), Some("m"));
        assert_eq!(plain(502).message(), None);
    }

    #[test]
    fn messages_lead_with_what_the_daemon_said() {
        let error = AdminError::Api {
            method: "POST",
            url: "http://127.0.0.1:9091/backends/b9/drain".into(),
            status: 404,
            message: "no backend named \"b9\"".into(),
        };
        assert_eq!(
            error.to_string(),
            "no backend named \"b9\" (HTTP 404 from POST http://127.0.0.1:9091/backends/b9/drain)"
        );
    }
}
