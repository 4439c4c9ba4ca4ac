//! Checks on a request head that hyper does not make, run before anything reaches a backend.
//!
//! hyper's parser already refuses most malformed heads (see docs/security.md for the list); what
//! it leaves to the application, because a plain server may not care, matters to a proxy whose
//! backend may parse differently (request smuggling, RFC 9112 §11.2):
//! - HTTP/1.1 without exactly one `Host` (RFC 9112 §3.2: 400);
//! - a `Transfer-Encoding` other than a single `chunked` (hyper only looks at the last coding,
//!   and a proxy that drops `gzip` from `gzip, chunked` would corrupt the body: 501; `chunked`
//!   twice is malformed: 400);
//! - a request target over `server.max_uri_bytes` (414).
//!
//! Every check reads the parsed head in place: no allocation on the common path.

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{StatusCode, Version};

/// Why a request head is refused; the answer closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The status to answer.
    pub status: StatusCode,
    /// The body text.
    pub text: &'static str,
}

impl Rejection {
    const fn new(status: StatusCode, text: &'static str) -> Self {
        Self { status, text }
    }
}

/// HTTP/1.1 without a `Host` header.
pub const MISSING_HOST: Rejection =
    Rejection::new(StatusCode::BAD_REQUEST, "400 bad request: missing Host\n");
/// More than one `Host` header.
pub const DUPLICATE_HOST: Rejection = Rejection::new(
    StatusCode::BAD_REQUEST,
    "400 bad request: more than one Host\n",
);
/// `chunked` applied more than once.
pub const CHUNKED_TWICE: Rejection = Rejection::new(
    StatusCode::BAD_REQUEST,
    "400 bad request: chunked applied more than once\n",
);
/// A transfer coding other than `chunked`.
pub const UNSUPPORTED_CODING: Rejection = Rejection::new(
    StatusCode::NOT_IMPLEMENTED,
    "501 not implemented: transfer codings other than chunked\n",
);
/// A request target over the limit.
pub const URI_TOO_LONG: Rejection = Rejection::new(StatusCode::URI_TOO_LONG, "414 URI too long\n");

/// Checks what hyper leaves to the application; `Err` names the answer.
pub fn check_head(parts: &Parts, max_uri_bytes: usize) -> Result<(), Rejection> {
    if target_len(&parts.uri) > max_uri_bytes {
        return Err(URI_TOO_LONG);
    }
    if parts.version == Version::HTTP_11 {
        let mut hosts = parts.headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (None, _) => return Err(MISSING_HOST),
            (Some(_), Some(_)) => return Err(DUPLICATE_HOST),
            (Some(_), None) => {}
        }
    }
    check_transfer_encoding(&parts.headers)
}

/// The request target's length as sent: origin form (`/path?q`) or absolute form.
fn target_len(uri: &http::Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    scheme + authority + path
}

/// Accepts no `Transfer-Encoding`, or exactly one `chunked` over all its lines.
pub fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), Rejection> {
    let mut chunked = 0usize;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(UNSUPPORTED_CODING);
        };
        for coding in text.split(',') {
            let coding = coding.trim();
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else if !coding.is_empty() {
                return Err(UNSUPPORTED_CODING);
            }
        }
    }
    if chunked > 1 {
        return Err(CHUNKED_TWICE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn head(version: Version, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().uri(uri).version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    type Case<'a> = (
        Version,
        &'a str,
        &'a [(&'a str, &'a str)],
        Result<(), Rejection>,
    );

    #[test]
    fn table() {
        let long = format!("/{}", "a".repeat(99));
        let cases: &[Case<'_>] = &[
            (Version::HTTP_11, "/", &[("host", "a")], Ok(())),
            (Version::HTTP_11, "/", &[], Err(MISSING_HOST)),
            (
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("host", "b")],
                Err(DUPLICATE_HOST),
            ),
            (Version::HTTP_10, "/", &[], Ok(())),
            (Version::HTTP_2, "http://a/", &[], Ok(())),
            (Version::HTTP_11, &long, &[("host", "a")], Ok(())),
            (
                Version::HTTP_11,
                &format!("{long}b"),
                &[("host", "a")],
                Err(URI_TOO_LONG),
            ),
            (
                Version::HTTP_11,
                "http://a.test/x",
                &[("host", "a.test")],
                Ok(()),
            ),
            (
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("transfer-encoding", "chunked")],
                Ok(()),
            ),
            (
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("transfer-encoding", "Chunked ")],
                Ok(()),
            ),
            (
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("transfer-encoding", "gzip, chunked")],
                Err(UNSUPPORTED_CODING),
            ),
            (
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("transfer-encoding", "chunked, chunked")],
                Err(CHUNKED_TWICE),
            ),
            (
                Version::HTTP_11,
                "/",
                &[
                    ("host", "a"),
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                Err(CHUNKED_TWICE),
            ),
            (
                Version::HTTP_11,
                "/",
                &[("host", "a"), ("transfer-encoding", "xchunked")],
                Err(UNSUPPORTED_CODING),
            ),
        ];
        for (version, uri, headers, want) in cases {
            let parts = head(*version, uri, headers);
            assert_eq!(
                check_head(&parts, 100),
                *want,
                "{version:?} {uri} {headers:?}"
            );
        }
    }
}
