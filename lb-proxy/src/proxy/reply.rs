//! What the request path answers a client: a status, a head carried explicitly (the backend's,
//! as the codec kept it, or the balancer's own), a body, and whether the connection must close
//! after it. The HTTP/1 loop writes it with the codec; hyper's server gets it as a response.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

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

    /// The fields of the head, (name, value).
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (backend, local) = match &self.head {
            ReplyHead::Backend(head) => (Some(head.fields()), None),
            ReplyHead::Local => (None, Some((&b"content-type"[..], TEXT_PLAIN))),
        };
        let removed = self
            .extra
            .as_deref()
            .map_or(&[][..], |extra| &extra.remove[..]);
        let added = self
            .extra
            .as_deref()
            .map_or(&[][..], |extra| &extra.add[..]);
        backend
            .into_iter()
            .flatten()
            .chain(local)
            .filter(move |(name, _)| {
                removed.is_empty()
                    || !removed
                        .iter()
                        .any(|r| r.as_str().as_bytes().eq_ignore_ascii_case(name))
            })
            .chain(
                added
                    .iter()
                    .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
            )
    }

    /// Room the fields take when written.
    pub fn fields_size(&self) -> usize {
        let extra = self.extra.as_deref().map_or(0, |extra| {
            (extra.add.iter())
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum()
        });
        extra
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

    /// The reply as a response for hyper's server, which frames the body itself from its size
    /// (a HEAD response states the backend's declared length).
    pub fn into_response(self, head_request: bool) -> Response<ToClient> {
        let declared = self.declared_length();
        let Reply {
            status,
            head,
            body,
            close,
            extra,
        } = self;
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        match &head {
            ReplyHead::Backend(head) => head.append_to(headers),
            ReplyHead::Local => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
        }
        if let Some(extra) = extra {
            for name in &extra.remove {
                headers.remove(name);
            }
            for (name, value) in extra.add {
                headers.append(name, value);
            }
        }
        if head_request && let Some(length) = declared {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
