//! Response heads from a backend: parsing (syntax by `httparse`), the framing of the body that
//! follows (RFC 9112 §6.3), and the head kept as received, less what the balancer writes itself.
//!
//! Strict where a lenient reading would let a backend smuggle a second response into the
//! connection's next exchange: an invalid or ambiguous `Content-Length`, a transfer coding other
//! than a single `chunked` (as nginx does: the balancer cannot forward a coding it does not
//! apply, and must not deliver coded bytes as plain content), `Transfer-Encoding` in an HTTP/1.0
//! response, and `101` to a request that asked for no upgrade are all errors (502).

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use super::fields::{ConnectionTokens, FieldKind, common_response_name};
use super::framing::{ContentLengthError, Framing, TransferCodings, content_length};

/// Most field lines a response head may carry (hyper's client default).
pub const MAX_FIELDS: usize = 100;

/// Why a response head is unusable; the exchange fails and its connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not valid HTTP/1.x syntax.
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
    /// Larger than `upstream.max_response_header_bytes`.
    #[error("response head too large")]
    HeadTooLarge,
    /// More than [`MAX_FIELDS`] field lines.
    #[error("too many header fields in the response")]
    TooManyFields,
    /// A `Content-Length` that is not one number.
    #[error("response {0}")]
    ContentLength(ContentLengthError),
    /// A transfer coding other than a single `chunked`.
    #[error("unsupported transfer coding in the response")]
    UnsupportedCoding,
    /// `Transfer-Encoding` in an HTTP/1.0 response.
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    CodingOnHttp10,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("101 without an upgrade asked for")]
    UnaskedSwitch,
}

/// A response head as received, less its hop-by-hop fields, the fields its `Connection` names,
/// and its framing fields; with the framing of the body that follows.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The backend's version.
    pub version: Version,
    /// The status.
    pub status: StatusCode,
    /// Bytes of the head as received.
    bytes: Bytes,
    /// The reason phrase's range.
    reason: Range<usize>,
    /// (name, value) ranges of the fields to forward.
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// The backend's `Content-Length`, normalised: for a HEAD request the length of the body it
    /// would have sent.
    pub declared_length: Option<u64>,
    /// How the body that follows is framed on this connection.
    pub body: Framing,
    /// Whether the connection may carry another exchange once the body is read.
    pub reusable: bool,
}

impl ResponseHead {
    /// The fields to forward, (name, value), names in the backend's case.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            head: self,
            fields: self.fields.iter(),
        }
    }

    /// The reason phrase as the backend sent it.
    pub fn reason(&self) -> &[u8] {
        &self.bytes[self.reason.clone()]
    }

    /// Bytes of the head as received: room enough for the fields.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The head of a response that did not come as HTTP/1 bytes (an HTTP/2 backend's): its
    /// fields less `content-length` (in `declared_length`) and the connection-specific ones,
    /// laid out as `name: value` lines so that [`ResponseHead::size`] is their written size.
    pub fn from_fields(
        version: Version,
        status: StatusCode,
        headers: &HeaderMap,
        declared_length: Option<u64>,
        body: Framing,
    ) -> ResponseHead {
        let mut bytes = Vec::with_capacity(headers.len() * 32);
        let mut fields = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let kept = !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade"
            );
            if kept {
                push_line(
                    &mut bytes,
                    &mut fields,
                    name.as_str().as_bytes(),
                    value.as_bytes(),
                );
            }
        }
        ResponseHead {
            version,
            status,
            bytes: Bytes::from(bytes),
            reason: 0..0,
            fields,
            declared_length,
            body,
            reusable: false,
        }
    }

    /// This head, an HTTP/2 backend's `2xx` to the extended `CONNECT` an upgrade request
    /// became (RFC 8441), as the `101` the HTTP/1.1 client waits for: the backend's fields
    /// (less any `Sec-WebSocket-Accept`), then `Upgrade: upgrade` and
    /// `Sec-WebSocket-Accept: accept`.
    pub fn into_switch(self, upgrade: &[u8], accept: &[u8]) -> ResponseHead {
        const ACCEPT: &[u8] = b"sec-websocket-accept";
        let mut bytes = Vec::with_capacity(self.bytes.len() + 64);
        let mut fields = Vec::with_capacity(self.fields.len() + 2);
        let kept = (self.fields.iter())
            .map(|(name, value)| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
            .filter(|(name, _)| !name.eq_ignore_ascii_case(ACCEPT));
        for (name, value) in kept.chain([(&b"upgrade"[..], upgrade), (ACCEPT, accept)]) {
            push_line(&mut bytes, &mut fields, name, value);
        }
        ResponseHead {
            version: Version::HTTP_11,
            status: StatusCode::SWITCHING_PROTOCOLS,
            bytes: Bytes::from(bytes),
            reason: 0..0,
            fields,
            declared_length: None,
            body: Framing::NONE,
            reusable: false,
        }
    }

    /// How many fields [`ResponseHead::append_to`] appends at most.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Appends the fields to `headers`; whether a `Date` was among them. `httparse` accepted
    /// them, so they are valid; a line the `http` crate would still refuse is left out rather
    /// than failing the response.
    pub fn append_to(&self, headers: &mut HeaderMap) -> bool {
        headers.reserve(self.fields.len());
        let mut dated = false;
        for (name, value) in &self.fields {
            let name = &self.bytes[name.clone()];
            let name = match common_response_name(name) {
                Some(name) => name,
                None => match HeaderName::from_bytes(name) {
                    Ok(name) => name,
                    Err(_) => continue,
                },
            };
            let Ok(value) = HeaderValue::from_maybe_shared(self.bytes.slice(value.clone())) else {
                continue;
            };
            dated |= name == http::header::DATE;
            headers.append(name, value);
        }
        dated
    }
}

/// The fields of a [`ResponseHead`] to forward, (name, value).
#[derive(Debug, Clone)]
pub struct Fields<'h> {
    head: &'h ResponseHead,
    fields: std::slice::Iter<'h, (Range<usize>, Range<usize>)>,
}

impl<'h> Iterator for Fields<'h> {
    type Item = (&'h [u8], &'h [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (name, value) = self.fields.next()?;
        Some((
            &self.head.bytes[name.clone()],
            &self.head.bytes[value.clone()],
        ))
    }
}

/// A complete response head found at the start of a buffer; [`Parsed::into_head`] takes the
/// head's bytes off the buffer.
#[derive(Debug)]
pub struct Parsed {
    /// Bytes of the head, up to and including its empty line.
    pub length: usize,
    head: ResponseHead,
}

impl Parsed {
    /// The status, to skip interim responses before taking the head.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The head, over `bytes`: the first [`Parsed::length`] bytes of the buffer parsed.
    pub fn into_head(mut self, bytes: Bytes) -> ResponseHead {
        debug_assert_eq!(bytes.len(), self.length);
        self.head.bytes = bytes;
        self.head
    }
}

/// Appends the field line `name: value` to `bytes`, and its ranges to `fields`.
fn push_line(
    bytes: &mut Vec<u8>,
    fields: &mut Vec<(Range<usize>, Range<usize>)>,
    name: &[u8],
    value: &[u8],
) {
    let name_start = bytes.len();
    bytes.extend_from_slice(name);
    let name_end = bytes.len();
    bytes.extend_from_slice(b": ");
    let value_start = bytes.len();
    bytes.extend_from_slice(value);
    fields.push((name_start..name_end, value_start..bytes.len()));
    bytes.extend_from_slice(b"\r\n");
}

/// Parses the response head at the start of `buffer`: `Ok(None)` while it is incomplete and
/// within `max_head_bytes`. `expect_body` is false for a HEAD request, whose response has no
/// body whatever its fields say. A `101` is an error: the request asked for no upgrade.
pub fn parse(
    buffer: &[u8],
    expect_body: bool,
    max_head_bytes: usize,
) -> Result<Option<Parsed>, ResponseError> {
    parse_answer(buffer, expect_body, max_head_bytes, false)
}

/// [`parse`] for the answer to a request that asked for an upgrade when `upgrade_asked`: a
/// `101` is then the final head, with no body, its connection never reusable, and its
/// `Upgrade` field kept for the client. A `101` without `Upgrade` and `Connection: upgrade`
/// (RFC 9110 §15.2.2) is malformed.
pub fn parse_answer(
    buffer: &[u8],
    expect_body: bool,
    max_head_bytes: usize,
    upgrade_asked: bool,
) -> Result<Option<Parsed>, ResponseError> {
    if buffer.is_empty() {
        return Ok(None);
    }
    // Uninitialised: zeroing a hundred slots before every parse cost more than the parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut slots,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) if length > max_head_bytes => {
            return Err(ResponseError::HeadTooLarge);
        }
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > max_head_bytes => {
            return Err(ResponseError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyFields),
        Err(_) => return Err(ResponseError::Malformed("not an HTTP/1.x response head")),
    };
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ResponseError::Malformed("invalid status code"))?;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    if switching && !upgrade_asked {
        return Err(ResponseError::UnaskedSwitch);
    }
    let mut upgrades = 0u32;
    let base = buffer.as_ptr() as usize;
    let range = |slice: &[u8]| {
        let start = slice.as_ptr() as usize - base;
        start..start + slice.len()
    };
    let mut connection = ConnectionTokens::default();
    let mut codings = TransferCodings::default();
    let mut lengths: [Option<&[u8]>; 2] = [None, None];
    let mut more_lengths = Vec::new();
    let mut fields = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        match FieldKind::of(field.name.as_bytes()) {
            FieldKind::Connection => connection.read(field.value),
            FieldKind::TransferEncoding => codings.read(field.value),
            FieldKind::HopByHop => {}
            FieldKind::Upgrade if switching => {
                upgrades += 1;
                fields.push((range(field.name.as_bytes()), range(field.value)));
            }
            FieldKind::Upgrade => {}
            FieldKind::ContentLength => match lengths.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => *slot = Some(field.value),
                None => more_lengths.push(field.value),
            },
            _ => fields.push((range(field.name.as_bytes()), range(field.value))),
        }
    }
    if connection.names_any() {
        fields.retain(|(name, _)| !connection.names(&buffer[name.clone()]));
    }
    let declared_length = content_length(lengths.iter().flatten().chain(&more_lengths).copied())
        .map_err(ResponseError::ContentLength)?;
    let keeps_alive = match version {
        Version::HTTP_11 => !connection.close,
        _ => connection.keep_alive,
    };
    if switching {
        if upgrades != 1 || !connection.upgrade || version != Version::HTTP_11 {
            return Err(ResponseError::Malformed(
                "101 without one Upgrade and Connection: upgrade",
            ));
        }
        // What follows is the switched protocol's, never a next response.
        return Ok(Some(Parsed {
            length,
            head: ResponseHead {
                version,
                status,
                bytes: Bytes::new(),
                reason: 0..0,
                fields,
                declared_length: None,
                body: Framing::NONE,
                reusable: false,
            },
        }));
    }
    let (body, reusable) = framing(version, status, expect_body, codings, declared_length)?;
    // httparse hands out a reason phrase that is not UTF-8 (obs-text) as a static "", which
    // does not lie in the buffer: only a phrase that does is kept.
    let reason = response
        .reason
        .map(str::as_bytes)
        .filter(|reason| buffer.as_ptr_range().contains(&reason.as_ptr()))
        .map_or(0..0, range);
    Ok(Some(Parsed {
        length,
        head: ResponseHead {
            version,
            status,
            bytes: Bytes::new(),
            reason,
            fields,
            declared_length: if codings.present {
                None
            } else {
                declared_length
            },
            body,
            reusable: reusable && keeps_alive,
        },
    }))
}

/// RFC 9112 §6.3 for a response: its body's framing, and whether the connection can carry
/// another exchange after it as far as framing goes.
fn framing(
    version: Version,
    status: StatusCode,
    expect_body: bool,
    codings: TransferCodings,
    declared_length: Option<u64>,
) -> Result<(Framing, bool), ResponseError> {
    if !expect_body
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::NONE, true));
    }
    if codings.present {
        if version == Version::HTTP_10 {
            return Err(ResponseError::CodingOnHttp10);
        }
        if !codings.is_chunked_only() {
            return Err(ResponseError::UnsupportedCoding);
        }
        // The coding overrides a length; a backend that sends both is not trusted with the
        // connection's next exchange.
        return Ok((Framing::Chunked, declared_length.is_none()));
    }
    Ok(match declared_length {
        Some(length) => (Framing::Length(length), true),
        None => (Framing::UntilClose, false),
    })
}

#[cfg(test)]
mod tests;
