//! What the request path answers a client: a status, a head carried explicitly (the backend's,
//! as the codec kept it, or the balancer's own), a body, and whether the connection must close
//! after it. The HTTP/1 loop writes it with the codec; hyper's server gets it as a response.

use bytes::Bytes;
use http::header::{self, HeaderValue};
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
}

impl Reply {
    /// The balancer's own plain-text answer.
    pub fn local(status: StatusCode, text: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            head: ReplyHead::Local,
            body: ToClient::Fixed(Some(text.into())),
            close: false,
        }
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
        backend.into_iter().flatten().chain(local)
    }

    /// Room the fields take when written.
    pub fn fields_size(&self) -> usize {
        match &self.head {
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
        if head_request && let Some(length) = declared {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
