//! What the request path answers a client: a status, a head carried explicitly (the backend's,
//! as the codec kept it, or the balancer's own), a body, and whether the connection must close
//! after it. The HTTP/1 loop writes it with the codec; hyper's server gets it as a response.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body as _;

use crate::proto::h1::date::date_value;
use crate::proto::h1::response::ResponseHead;
use crate::proxy::body::ToClient;

/// The content type of the balancer's own answers.
const TEXT_PLAIN: &[u8] = b"text/plain; charset=utf-8";

/// The head of a reply.
#[derive(Debug)]
pub enum ReplyHead {
    /// The backend's head, less what the balancer writes itself.
    Backend(ResponseHead),
    /// The balancer's own answer: a plain text.
    Local,
}

/// An answer to a client.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Its head.
    pub head: ReplyHead,
    /// Its body.
    pub body: ToClient,
    /// The connection closes after it: what follows a request the balancer refused must never
    /// be read as a next request.
    pub close: bool,
    /// Fields a route or policy changes (removed, then added); boxed and absent on the common
    /// path, so a plain reply stays small.
    pub extra: Option<Box<Extra>>,
    /// The request id's field, written last in place of any the backend sent. Boxed: a reply
    /// moves several times, and ids may be off.
    pub request_id: Option<Box<(HeaderName, HeaderValue)>>,
}

/// A reply's own fields: the backend's, or the balancer's one field.
pub enum OwnFields<'r> {
    /// The backend's.
    Backend(crate::proto::h1::response::Fields<'r>),
    /// The balancer's `Content-Type`.
    Local(Option<(&'r [u8], &'r [u8])>),
}

impl<'r> Iterator for OwnFields<'r> {
    type Item = (&'r [u8], &'r [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            OwnFields::Backend(fields) => fields.next(),
            OwnFields::Local(field) => field.take(),
        }
    }
}

/// The fields of a reply's head, as [`Reply::fields`] gives them: its own and changed ones,
/// then the request id (in place of any of the same name).
pub struct Fields<'r> {
    listed: Listed<'r>,
    id: Option<(&'r [u8], &'r [u8])>,
}

impl<'r> Iterator for Fields<'r> {
    type Item = (&'r [u8], &'r [u8]);

    // Always: the head writer's loop over the fields was one function before the request id.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let Some((id_name, _)) = self.id else {
            return self.listed.next();
        };
        for (name, value) in self.listed.by_ref() {
            if !name.eq_ignore_ascii_case(id_name) {
                return Some((name, value));
            }
        }
        self.id.take()
    }
}

/// A reply's own fields, with a route's changes.
pub enum Listed<'r> {
    /// No field changed.
    Plain(OwnFields<'r>),
    /// Its own fields less those removed, then those added (the index of the next).
    Changed(OwnFields<'r>, &'r Extra, usize),
}

impl<'r> Iterator for Listed<'r> {
    type Item = (&'r [u8], &'r [u8]);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Listed::Plain(own) => own.next(),
            Listed::Changed(own, extra, added) => {
                for (name, value) in own.by_ref() {
                    let removed = (extra.remove.iter())
                        .any(|r| r.as_str().as_bytes().eq_ignore_ascii_case(name));
                    if !removed {
                        return Some((name, value));
                    }
                }
                let (name, value) = extra.add.get(*added)?;
                *added += 1;
                Some((name.as_str().as_bytes(), value.as_bytes()))
            }
        }
    }
}

/// Fields changed on a reply.
#[derive(Debug, Default)]
pub struct Extra {
    /// Names whose fields are left out.
    pub remove: Vec<HeaderName>,
    /// Fields added.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl Extra {
    /// Replaces any field `name` with `value`.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.remove.push(name.clone());
        self.add.retain(|(n, _)| *n != name);
        self.add.push((name, value));
    }
}

impl Reply {
    /// The balancer's own plain-text answer.
    pub fn local(status: StatusCode, text: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            head: ReplyHead::Local,
            body: ToClient::Fixed(Some(text.into())),
            close: false,
            extra: None,
            request_id: None,
        }
    }

    /// The fields changed on this reply, created on first use.
    pub fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// The same reply, closing the connection after it.
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    /// The fields of the head without the request id: its own, with a route's changes.
    pub fn listed(&self) -> Listed<'_> {
        let own = match &self.head {
            ReplyHead::Backend(head) => OwnFields::Backend(head.fields()),
            ReplyHead::Local => OwnFields::Local(Some((&b"content-type"[..], TEXT_PLAIN))),
        };
        match self.extra.as_deref() {
            // The common reply: its own fields, with no filter to run on each.
            None => Listed::Plain(own),
            Some(extra) => Listed::Changed(own, extra, 0),
        }
    }

    /// The fields of the head, (name, value), the request id's included.
    pub fn fields(&self) -> Fields<'_> {
        let listed = self.listed();
        let id = (self.request_id.as_deref())
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
        Fields { listed, id }
    }

    /// Room the fields take when written.
    pub fn fields_size(&self) -> usize {
        let extra = self.extra.as_deref().map_or(0, |extra| {
            (extra.add.iter())
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum()
        });
        let id = (self.request_id.as_deref()).map_or(0, |(n, v)| n.as_str().len() + v.len() + 4);
        extra
            + id
            + match &self.head {
                ReplyHead::Backend(head) => head.size(),
                ReplyHead::Local => 48,
            }
    }

    /// The reason phrase the backend sent (empty for the balancer's own answers).
    pub fn reason(&self) -> &[u8] {
        match &self.head {
            ReplyHead::Backend(head) => head.reason(),
            ReplyHead::Local => b"",
        }
    }

    /// The length the backend declared, normalised: what a HEAD response states.
    pub fn declared_length(&self) -> Option<u64> {
        match &self.head {
            ReplyHead::Backend(head) => head.declared_length,
            ReplyHead::Local => None,
        }
    }

    /// The reply as an HTTP/2 response: the backend's fields (which the codec kept free of
    /// HTTP/1's connection-specific ones), a `Date` when they have none (the balancer's own
    /// answers never do), and the body's length when it is known (a HEAD response states the
    /// backend's declared length). HTTP/2 has no `Connection: close`: a reply that closes its
    /// HTTP/1 connection just ends its stream.
    pub fn into_h2_response(self, head_request: bool) -> Response<ToClient> {
        let declared = self.declared_length();
        let Reply {
            status,
            head,
            body,
            close: _,
            extra,
            request_id,
        } = self;
        // Room for the fields added below, so that the map is allocated once: growing it
        // costs a request more than filling it.
        let own = match &head {
            ReplyHead::Backend(head) => head.field_count(),
            ReplyHead::Local => 1,
        };
        let added = extra.as_deref().map_or(0, |extra| extra.add.len());
        let length = match head_request {
            true => declared,
            false => (!body.is_end_stream())
                .then(|| body.size_hint().exact())
                .flatten(),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        *headers = HeaderMap::with_capacity(own + added + 3);
        let dated = match &head {
            ReplyHead::Backend(head) => head.append_to(headers),
            ReplyHead::Local => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                false
            }
        };
        if let Some(extra) = extra {
            with_extra(headers, *extra);
        }
        if let Some(field) = request_id {
            let (name, value) = *field;
            headers.insert(name, value);
        }
        if !dated {
            headers.insert(header::DATE, date_value());
        }
        // No field states it: the codec takes the backend's into `declared`, and configuration
        // reserves the name.
        if let Some(length) = length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        response
    }
}

/// A route's or the balancer's field changes, less any field HTTP/2 does not carry (RFC 9113
/// §8.2.2): configuration reserves most of them, not `Keep-Alive` or `Proxy-Connection`.
#[cold]
fn with_extra(headers: &mut HeaderMap, extra: Extra) {
    for name in &extra.remove {
        headers.remove(name);
    }
    for (name, value) in extra.add {
        if !is_connection_specific(&name) {
            headers.append(name, value);
        }
    }
}

/// A field HTTP/2 does not carry (RFC 9113 §8.2.2); `TE` is one but for `trailers`, which a
/// response never needs.
pub fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}
