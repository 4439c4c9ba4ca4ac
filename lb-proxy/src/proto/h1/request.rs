//! Request heads: parsing and every rule the balancer enforces on them, as one validation step
//! with typed verdicts ([`RequestError`]).
//!
//! [`parse`] reads HTTP/1 bytes (syntax by `httparse`, hyper's own parser); [`check_parts`]
//! applies the same rules to a head another parser produced (hyper's, for HTTP/2 and h2c). Each
//! rule is one function used by both, so the two can differ only where a parser decides first.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::fields::{ConnectionTokens, FieldKind};
use super::framing::{ContentLengthError, Framing, TransferCodings, content_length};
use super::target::{self, TargetForm};

/// Most field lines in a request head (hyper's default); a head with more gets 431.
pub const MAX_FIELDS: usize = 100;

/// The limits a request head is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head, request line to the empty line included (`server.max_header_bytes`).
    pub max_head_bytes: usize,
    /// Longest request target (`server.max_uri_bytes`).
    pub max_target_bytes: usize,
}

/// Why a request head is refused; each answer closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not valid HTTP/1.x syntax.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A version other than HTTP/1.0 and HTTP/1.1.
    #[error("HTTP version not supported")]
    Version,
    /// The head is larger than `server.max_header_bytes`.
    #[error("request head too large")]
    HeadTooLarge,
    /// More than [`MAX_FIELDS`] field lines.
    #[error("too many header fields")]
    TooManyFields,
    /// The target is longer than `server.max_uri_bytes`.
    #[error("request target too long")]
    TargetTooLong,
    /// The target is in no valid form, or in a form its method may not use.
    #[error("invalid request target")]
    InvalidTarget,
    /// `CONNECT` (tunnels are not supported).
    #[error("CONNECT is not supported")]
    Connect,
    /// HTTP/1.1 without `Host`, or HTTP/2 without `:authority` or `Host`.
    #[error("missing Host")]
    MissingHost,
    /// HTTP/2 with a `Host` other than its `:authority` (RFC 9113 §8.3.1): one recipient could
    /// route by one and another by the other.
    #[error("Host differs from :authority")]
    HostNotAuthority,
    /// More than one `Host`.
    #[error("more than one Host")]
    DuplicateHost,
    /// A `Host` that is no valid `host[:port]`.
    #[error("invalid Host")]
    InvalidHost,
    /// A `Content-Length` that is not one number.
    #[error("{0}")]
    ContentLength(ContentLengthError),
    /// `Transfer-Encoding` whose last coding is not `chunked`, `chunked` twice, or an empty list.
    #[error("invalid Transfer-Encoding")]
    InvalidCoding,
    /// A transfer coding other than `chunked` (before a final `chunked`).
    #[error("transfer codings other than chunked are not supported")]
    UnsupportedCoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    CodingOnHttp10,
    /// An expectation other than `100-continue`.
    #[error("unsupported expectation")]
    Expectation,
}

impl RequestError {
    /// The status that answers it.
    pub fn status(self) -> StatusCode {
        match self {
            RequestError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            RequestError::HeadTooLarge | RequestError::TooManyFields => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            RequestError::TargetTooLong => StatusCode::URI_TOO_LONG,
            RequestError::Connect | RequestError::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            RequestError::Expectation => StatusCode::EXPECTATION_FAILED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A valid request head, ready for the request path.
#[derive(Debug)]
pub struct RequestHead {
    /// Bytes of the head, up to and including its empty line (0 for [`check_parts`]).
    pub length: usize,
    /// Method, target, version and every field as received.
    pub parts: http::request::Parts,
    /// What the rules concluded.
    pub meta: RequestMeta,
}

/// What the rules concluded about a valid request head.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The host the request is for: the absolute-form target's authority, else `Host`; `None`
    /// for an HTTP/1.0 request that names none.
    pub host: Option<HeaderValue>,
    /// How the request body is framed (no body: `Framing::NONE`).
    pub body: Framing,
    /// Whether the request declared a body (`Content-Length` or `Transfer-Encoding`).
    pub declares_body: bool,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// Whether this is a well-formed upgrade request (rule R19 of docs/security.md): its `Upgrade`
    /// field is forwarded, and a `101` answer turns the connection into a tunnel.
    pub upgrade: bool,
}

/// What the field lines of a head told the rules.
#[derive(Debug, Default)]
struct FieldFacts<'a> {
    hosts: u32,
    host: Option<&'a [u8]>,
    lengths: [Option<&'a [u8]>; 2],
    more_lengths: Vec<&'a [u8]>,
    codings: TransferCodings,
    connection: ConnectionTokens<'a>,
    expect: Option<&'a [u8]>,
    upgrades: u32,
    upgrade: Option<&'a [u8]>,
}

impl<'a> FieldFacts<'a> {
    fn read(&mut self, kind: FieldKind, value: &'a [u8]) {
        match kind {
            FieldKind::Host => {
                self.hosts += 1;
                self.host = Some(value);
            }
            FieldKind::ContentLength => match self.lengths.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(value),
                None => self.more_lengths.push(value),
            },
            FieldKind::TransferEncoding => self.codings.read(value),
            FieldKind::Connection => self.connection.read(value),
            FieldKind::Expect => self.expect = Some(value),
            FieldKind::Upgrade => {
                self.upgrades += 1;
                self.upgrade = Some(value);
            }
            _ => {}
        }
    }

    /// Whether the head is a well-formed upgrade request (RFC 9110 §7.8), the only kind the
    /// balancer forwards with its `Upgrade` field: HTTP/1.1, `upgrade` listed in `Connection`,
    /// one non-empty `Upgrade` line that does not ask for `h2c` (HTTP/2 is offered by prior
    /// knowledge, not by a switch in the middle of a connection), no body declared at all, and
    /// the connection kept. Anything else is an ordinary request whose `Upgrade` is dropped as
    /// hop-by-hop: bytes after a head that does not qualify are always read as a next request,
    /// never tunnelled.
    fn upgrade(&self, version: Version, keep_alive: bool) -> bool {
        version == Version::HTTP_11
            && keep_alive
            && self.connection.upgrade
            && self.upgrades == 1
            && !self.codings.present
            && self.lengths[0].is_none()
            && self.upgrade.is_some_and(|value| {
                !value.trim_ascii().is_empty() && !super::fields::has_token(value, b"h2c")
            })
    }

    /// The rules over the facts, for a request with `version`, `method` and target `form`.
    fn conclude(
        &self,
        version: Version,
        method: &Method,
        form: &TargetForm,
    ) -> Result<Conclusion, RequestError> {
        if *method == Method::CONNECT {
            return Err(RequestError::Connect);
        }
        match form {
            TargetForm::Authority => return Err(RequestError::InvalidTarget),
            TargetForm::Asterisk if *method != Method::OPTIONS => {
                return Err(RequestError::InvalidTarget);
            }
            _ => {}
        }
        if self.hosts > 1 {
            return Err(RequestError::DuplicateHost);
        }
        match self.host {
            None if version == Version::HTTP_11 => return Err(RequestError::MissingHost),
            Some(host) if !target::is_valid_host(host) => return Err(RequestError::InvalidHost),
            _ => {}
        }
        let (body, close) = self.framing(version)?;
        let expect_continue = match self.expect {
            // An HTTP/1.0 client cannot understand 100 Continue (RFC 9110 §10.1.1).
            _ if version == Version::HTTP_10 => false,
            None => false,
            Some(value) if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") => true,
            Some(_) => return Err(RequestError::Expectation),
        };
        let asked = version == Version::HTTP_11 || self.connection.keep_alive;
        let keep_alive = asked && !self.connection.close && !close;
        Ok(Conclusion {
            body,
            declares_body: self.codings.present || self.lengths[0].is_some(),
            keep_alive,
            expect_continue,
            // Read only when `Upgrade` was sent: the common head pays one compare.
            upgrade: self.upgrade.is_some() && self.upgrade(version, keep_alive),
        })
    }

    /// The request body's framing (RFC 9112 §6.1-6.3), and whether the connection must close
    /// after the answer (both `Transfer-Encoding` and `Content-Length` were sent).
    fn framing(&self, version: Version) -> Result<(Framing, bool), RequestError> {
        let codings = &self.codings;
        if codings.present {
            if version == Version::HTTP_10 {
                return Err(RequestError::CodingOnHttp10);
            }
            if codings.chunked > 1 || !codings.chunked_last {
                return Err(RequestError::InvalidCoding);
            }
            if codings.other {
                return Err(RequestError::UnsupportedCoding);
            }
            // Chunked wins over a length, which is dropped; such a request may be an attempt to
            // smuggle, so the connection closes after it (RFC 9112 §6.1).
            return Ok((Framing::Chunked, self.lengths[0].is_some()));
        }
        let lines = self
            .lengths
            .iter()
            .flatten()
            .chain(&self.more_lengths)
            .copied();
        match content_length(lines) {
            Ok(Some(length)) => Ok((Framing::Length(length), false)),
            Ok(None) => Ok((Framing::NONE, false)),
            Err(error) => Err(RequestError::ContentLength(error)),
        }
    }
}

/// What [`FieldFacts::conclude`] found.
struct Conclusion {
    body: Framing,
    declares_body: bool,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

/// Parses the request head at the start of `buffer`: `Ok(None)` while it is incomplete (and
/// within the limits). Header values and the target are views of one copy of the head.
pub fn parse(buffer: &[u8], limits: &Limits) -> Result<Option<RequestHead>, RequestError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buffer,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > limits.max_head_bytes => {
            return Err(RequestError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(syntax_error(error)),
    };
    if length > limits.max_head_bytes {
        return Err(RequestError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(RequestError::Malformed("incomplete request line"));
    };
    if target.len() > limits.max_target_bytes {
        return Err(RequestError::TargetTooLong);
    }
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| RequestError::Malformed("method"))?;
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let form = target::classify(target.as_bytes()).map_err(|_| RequestError::InvalidTarget)?;
    let mut facts = FieldFacts::default();
    for field in request.headers.iter() {
        facts.read(FieldKind::of(field.name.as_bytes()), field.value);
    }
    let authority = match &form {
        TargetForm::Absolute { authority, .. } => Some(&target.as_bytes()[authority.clone()]),
        _ => None,
    };
    let conclusion = facts.conclude(version, &method, &form)?;

    // Every check passed: build the request's parts over one copy of the head.
    let head = Bytes::copy_from_slice(&buffer[..length]);
    let base = buffer.as_ptr() as usize;
    let view = |slice: &[u8]| {
        let start = slice.as_ptr() as usize - base;
        head.slice(start..start + slice.len())
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| RequestError::Malformed("field name"))?;
        let value = HeaderValue::from_maybe_shared(view(field.value))
            .map_err(|_| RequestError::Malformed("field value"))?;
        headers.append(name, value);
    }
    let uri =
        Uri::from_maybe_shared(view(target.as_bytes())).map_err(|_| RequestError::InvalidTarget)?;
    let host = match (authority, facts.host) {
        (Some(authority), _) => Some(view(authority)),
        (None, Some(host)) => Some(view(host)),
        (None, None) => None,
    };
    let host = match host {
        Some(bytes) => {
            Some(HeaderValue::from_maybe_shared(bytes).map_err(|_| RequestError::InvalidHost)?)
        }
        None => None,
    };
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        length,
        parts,
        meta: RequestMeta {
            host,
            body: conclusion.body,
            declares_body: conclusion.declares_body,
            keep_alive: conclusion.keep_alive,
            expect_continue: conclusion.expect_continue,
            upgrade: conclusion.upgrade,
        },
    }))
}

fn syntax_error(error: httparse::Error) -> RequestError {
    match error {
        httparse::Error::TooManyHeaders => RequestError::TooManyFields,
        httparse::Error::Version => RequestError::Version,
        httparse::Error::HeaderName => RequestError::Malformed("invalid field name"),
        httparse::Error::HeaderValue => RequestError::Malformed("invalid field value"),
        httparse::Error::NewLine => RequestError::Malformed("invalid line ending"),
        httparse::Error::Token => RequestError::Malformed("invalid method or target"),
        httparse::Error::Status => RequestError::Malformed("invalid request line"),
    }
}

/// Applies the rules of [`parse`] to a head another parser produced: hyper's, for HTTP/1 under
/// `server.h2c` and for HTTP/2. `body` is the body's framing as that parser found it.
pub fn check_parts(
    parts: &http::request::Parts,
    limits: &Limits,
    body: Framing,
) -> Result<RequestMeta, RequestError> {
    let target_len = target_len(&parts.uri);
    if target_len > limits.max_target_bytes {
        return Err(RequestError::TargetTooLong);
    }
    let form = match (parts.uri.scheme_str(), parts.uri.authority()) {
        // HTTP/2's `*` comes with `:scheme` and `:authority` (RFC 9113 §8.3.1), HTTP/1's alone:
        // either way the asterisk form, which only OPTIONS may use.
        _ if parts.uri.path() == "*" && parts.uri.query().is_none() => TargetForm::Asterisk,
        (Some(scheme), Some(authority))
            if (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
                && target::is_valid_host(authority.as_str().as_bytes()) =>
        {
            // The ranges are the byte parser's; the rules only look at the form.
            TargetForm::Absolute {
                authority: 0..0,
                path: 0..0,
            }
        }
        (Some(_), _) => return Err(RequestError::InvalidTarget),
        (None, Some(_)) => TargetForm::Authority,
        (None, None) => TargetForm::Origin,
    };
    // At most MAX_FIELDS field lines, as an HTTP/1.1 head may have; an HTTP/2 client's cookie
    // crumbs count once, being one field upstream (browsers send a crumb per cookie). Counted
    // only past the limit: the map knows its size.
    if parts.headers.len() > MAX_FIELDS {
        let crumbs = parts.headers.get_all(header::COOKIE).iter().count();
        if parts.headers.len() - crumbs + usize::from(crumbs > 0) > MAX_FIELDS {
            return Err(RequestError::TooManyFields);
        }
    }
    let mut facts = FieldFacts::default();
    for (name, value) in &parts.headers {
        let value = value.as_bytes();
        // A value starts and ends with a visible byte (RFC 9113 §8.2.1): HTTP/1.1's parser
        // strips the whitespace around one, HPACK carries it, and what a backend makes of it
        // is its own guess.
        if let (Some(first), Some(last)) = (value.first(), value.last())
            && (matches!(first, b' ' | b'\t') || matches!(last, b' ' | b'\t'))
        {
            return Err(RequestError::Malformed(
                "a field value with whitespace at an end",
            ));
        }
        facts.read(FieldKind::of(name.as_str().as_bytes()), value);
    }
    let mut conclusion = facts.conclude(parts.version, &parts.method, &form)?;
    if parts.version == Version::HTTP_2 {
        // `:authority` stands for Host, and must agree with one sent beside it; a request
        // names its host one way or the other (an `http` URI has one, RFC 9110 §4.2.1).
        match (parts.uri.authority(), facts.host) {
            (None, None) => return Err(RequestError::MissingHost),
            (Some(authority), Some(host))
                if !authority.as_str().as_bytes().eq_ignore_ascii_case(host) =>
            {
                return Err(RequestError::HostNotAuthority);
            }
            _ => {}
        }
        // HTTP/2 frames bodies itself.
        conclusion.body = body;
    }
    let host = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    Ok(RequestMeta {
        host,
        body: conclusion.body,
        declares_body: conclusion.declares_body || !body.is_empty(),
        keep_alive: conclusion.keep_alive,
        expect_continue: conclusion.expect_continue,
        // HTTP/1.1 only: an HTTP/2 request never is one (its extended CONNECT is not offered).
        upgrade: conclusion.upgrade,
    })
}

/// The request target's length as sent: origin form or absolute form.
fn target_len(uri: &Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    scheme + authority + path
}

#[cfg(test)]
mod tests;
