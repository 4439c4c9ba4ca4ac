//! A request body read from an HTTP/2 stream by the balancer's own driver of h2
//! ([`crate::conn::h2`]): its data frames, then its trailers. Each chunk handed on is released
//! to the stream's flow-control window at once, so the client may send the next while this one
//! travels on; how far it may run ahead is the stream's window
//! (`server.http2.initial_stream_window_bytes`).
//!
//! A reset of the stream before its end, whatever its code (`CANCEL` included), fails the
//! body: the request is incomplete, and it must reach the backend as an aborted one, never as
//! a shorter one that looks whole (a chunked upload would otherwise end with its last chunk).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h2::RecvStream;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};

use super::BoxError;
use super::budget::BufferBudget;
use crate::proto::h1::framing;

/// The body of a request on an HTTP/2 stream.
#[derive(Debug)]
pub struct H2Body {
    recv: RecvStream,
    /// Bytes still to come by the request's `Content-Length`, when it stated one (h2 resets a
    /// stream whose data does not match it).
    remaining: Option<u64>,
    /// The data frames are over; trailers may follow.
    data_done: bool,
    /// The connection's room for bodies read in full.
    budget: Arc<BufferBudget>,
}

impl H2Body {
    /// The body of a request with `headers`, arriving on `recv`, on a connection with
    /// `budget` for bodies read in full.
    pub fn new(recv: RecvStream, headers: &HeaderMap, budget: Arc<BufferBudget>) -> Self {
        Self {
            recv,
            remaining: content_length(headers),
            data_done: false,
            budget,
        }
    }

    /// The connection's room for bodies read in full.
    pub fn budget(&self) -> &Arc<BufferBudget> {
        &self.budget
    }
}

/// The length the request states, read by the codec's one parser of `Content-Length` (the
/// codec's rules have already refused a request whose fields disagree or are invalid).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let lines = headers.get_all(CONTENT_LENGTH).into_iter();
    framing::content_length(lines.map(|value| value.as_bytes()))
        .ok()
        .flatten()
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The window reopens as the chunk is taken: a release can fail only on a
                    // stream already gone, which the next poll reports.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(remaining) = &mut this.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_length_counts_only_when_every_field_agrees_on_it() {
        let cases: &[(&[&str], Option<u64>)] = &[
            (&[], None),
            (&["12"], Some(12)),
            (&["12", "12"], Some(12)),
            (&["12", "13"], None),
            (&["x"], None),
            (&["-1"], None),
            (&["+5"], None),
            (&["5, 5"], Some(5)),
        ];
        for (values, expected) in cases {
            let mut headers = HeaderMap::new();
            for value in *values {
                headers.append(CONTENT_LENGTH, HeaderValue::from_static(value));
            }
            assert_eq!(content_length(&headers), *expected, "{values:?}");
        }
    }
}
