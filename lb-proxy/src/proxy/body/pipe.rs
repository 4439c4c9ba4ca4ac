//! The request body of our own HTTP/1 loop: the connection's task decodes it from the socket
//! (length or chunked, by the codec) and hands it over a one-chunk slot to the request path,
//! only when the request path asks for more. Nothing is read from the client before it is
//! wanted, so a body nobody reads costs nothing and backpressure reaches the client's socket.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::proto::h1::chunked::ChunkedError;

/// Why the client's body could not be read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PipeError {
    /// The client closed the connection before the end of its body.
    #[error("the client closed the connection in the middle of its body")]
    Closed,
    /// The client's chunked coding is malformed.
    #[error("malformed chunked request body: {0}")]
    Malformed(#[from] ChunkedError),
    /// Reading the client's socket failed (or timed out).
    #[error("reading the request body failed")]
    Io,
}

/// The slot between the connection (the feeder) and the request path (the reader).
#[derive(Debug, Default)]
pub struct Pipe {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// A chunk handed over and not yet taken.
    chunk: Option<Bytes>,
    /// The end: the body was read in full, or failed.
    end: Option<Result<(), PipeError>>,
    /// The reader is waiting for a chunk.
    wanted: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
}

impl Pipe {
    /// A pipe and the body that reads from it; `length` is the declared length, when known.
    pub fn new(length: Option<u64>) -> (Arc<Pipe>, PipeBody) {
        let pipe = Arc::new(Pipe::default());
        let body = PipeBody {
            pipe: pipe.clone(),
            left: length,
            done: false,
        };
        (pipe, body)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the reader waits for a chunk; if not, the feeder's task is woken when it does.
    pub fn poll_wanted(&self, cx: &mut Context<'_>) -> bool {
        let mut state = self.lock();
        if state.wanted && state.chunk.is_none() && state.end.is_none() {
            return true;
        }
        state.feeder = Some(cx.waker().clone());
        false
    }

    /// Hands over a chunk of the body.
    pub fn push(&self, data: Bytes) {
        let mut state = self.lock();
        state.chunk = Some(data);
        state.wanted = false;
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }

    /// Ends the body: read in full, or failed.
    pub fn end(&self, end: Result<(), PipeError>) {
        let mut state = self.lock();
        state.end.get_or_insert(end);
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }

    /// Whether the body was read in full by the feeder.
    pub fn is_complete(&self) -> bool {
        matches!(self.lock().end, Some(Ok(())))
    }
}

/// The request body as the request path reads it.
#[derive(Debug)]
pub struct PipeBody {
    pipe: Arc<Pipe>,
    /// Bytes the declared length still expects.
    left: Option<u64>,
    /// The end was returned.
    done: bool,
}

impl http_body::Body for PipeBody {
    type Data = Bytes;
    type Error = PipeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, PipeError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut state = self.pipe.lock();
        if let Some(data) = state.chunk.take() {
            drop(state);
            if let Some(left) = &mut self.left {
                *left = left.saturating_sub(data.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match state.end {
            Some(Ok(())) => {
                drop(state);
                self.done = true;
                Poll::Ready(None)
            }
            Some(Err(error)) => {
                drop(state);
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            None => {
                state.wanted = true;
                state.reader = Some(cx.waker().clone());
                if let Some(feeder) = state.feeder.take() {
                    feeder.wake();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.left == Some(0) && self.pipe.is_complete()
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_flow_only_when_wanted_and_the_end_follows() {
        let (pipe, mut body) = Pipe::new(Some(5));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(!pipe.poll_wanted(&mut cx), "nothing asked yet");
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(pipe.poll_wanted(&mut cx));
        pipe.push(Bytes::from_static(b"hel"));
        assert!(!pipe.poll_wanted(&mut cx), "the slot is full");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hel");
        assert_eq!(body.size_hint().exact(), Some(2));
        pipe.push(Bytes::from_static(b"lo"));
        pipe.end(Ok(()));
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "lo");
    }

    #[tokio::test]
    async fn a_failure_reaches_the_reader_once() {
        let (pipe, mut body) = Pipe::new(None);
        pipe.end(Err(PipeError::Closed));
        pipe.end(Ok(()));
        assert_eq!(body.frame().await.unwrap().unwrap_err(), PipeError::Closed);
        assert!(body.frame().await.is_none());
    }
}
