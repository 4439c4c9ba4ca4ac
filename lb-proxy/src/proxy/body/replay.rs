//! A streamed request body that can be sent again: the client's body is forwarded as it
//! arrives, and a copy of what went by is kept, up to a limit, so that another attempt can send
//! it again and then carry on with the rest of the client's stream.
//!
//! This is what a gRPC call needs to be retried after a status `retry.retry_on` lists (gRPC's
//! own retry design, gRFC A6, buffers a call's messages the same way, with a per-call limit).
//! A call's body streams (bidirectional calls answer messages before the client has sent them
//! all), so it cannot be read in full first as a small HTTP/1 body is.
//!
//! - Each attempt sends a [`ReplayBody`]: first the copy (one frame), then the client's stream,
//!   whose frames it passes on as they come and copies while the copy is [kept](Replay::kept).
//! - The copy is dropped for good (and the call can no longer be retried) when it would pass
//!   the limit, when the client's stream fails, or when the call is [committed](Replay::commit):
//!   the backend's response began, and the call's answer is that one.
//! - Before another attempt, [`Replay::rewind`] cuts the previous attempt's body off: from then
//!   on it only fails (its stream is reset), so that only the new attempt reads the client.
//!
//! The state sits behind a mutex that only the attempt in flight takes (once per frame), and
//! the client's stream is polled under it: one attempt at a time reads it. Copies are real
//! copies into one buffer, so the limit bounds the memory held, not only the bytes counted: a
//! `Bytes` slice of the client's frame would pin the connection's whole read buffer. On an
//! HTTP/2 connection the copy also takes room from the connection's budget for bodies
//! (`server.http2.max_buffered_body_bytes`) as it grows, and is dropped when it finds none.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::BoxError;
use super::budget::BudgetHold;

/// The client's body and the copy of what was forwarded, shared by a call's attempts.
#[derive(Debug)]
pub struct Replay<B> {
    state: Mutex<State<B>>,
    /// The most bytes the copy holds.
    limit: usize,
}

#[derive(Debug)]
struct State<B> {
    /// The client's body.
    source: B,
    /// The data forwarded so far, while it is kept.
    copy: BytesMut,
    /// The client's trailers, once they went by (kept with the copy).
    trailers: Option<HeaderMap>,
    /// Whether `copy` holds all that was forwarded: another attempt may then be sent.
    kept: bool,
    /// The room the copy has taken on its HTTP/2 connection, grown with it and given back
    /// with it.
    room: Option<BudgetHold>,
    /// The client's stream ended: nothing more will come from it.
    ended: bool,
    /// The attempt whose body may read; earlier ones are cut off.
    generation: u32,
}

/// An attempt's body was cut off: another attempt took the call over.
#[derive(Debug, thiserror::Error)]
#[error("the request body went to another attempt")]
pub struct Superseded;

impl<B> Replay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// A body that keeps up to `limit` bytes of `source`, taking no connection's room.
    #[cfg(test)]
    pub fn new(source: B, limit: u64) -> Arc<Self> {
        Self::holding(source, limit, None)
    }

    /// As [`Replay::new`], the copy growing `room` on its connection as it grows, and dropped
    /// when the connection has no more.
    pub fn holding(source: B, limit: u64, room: Option<BudgetHold>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                source,
                copy: BytesMut::new(),
                trailers: None,
                room,
                kept: true,
                ended: false,
                generation: 0,
            }),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The body of the current attempt: the copy, then the rest of the client's stream.
    pub fn body(self: &Arc<Self>) -> ReplayBody<B> {
        let generation = self.lock().generation;
        ReplayBody {
            replay: self.clone(),
            generation,
            sent: 0,
            trailers_sent: false,
        }
    }

    /// Whether another attempt could send everything forwarded so far.
    pub fn kept(&self) -> bool {
        self.lock().kept
    }

    /// Cuts the bodies handed out so far off, for another attempt; false (and nothing changes)
    /// when the copy is no longer kept.
    pub fn rewind(&self) -> bool {
        let mut state = self.lock();
        if !state.kept {
            return false;
        }
        state.generation = state.generation.wrapping_add(1);
        true
    }

    /// The call is committed to its current attempt: the copy is dropped and no more is kept.
    pub fn commit(&self) {
        self.lock().drop_copy();
    }

    /// Bytes the copy holds now.
    #[cfg(test)]
    fn copied(&self) -> usize {
        self.lock().copy.len()
    }
}

impl<B> State<B> {
    fn drop_copy(&mut self) {
        self.kept = false;
        self.copy = BytesMut::new();
        self.trailers = None;
        self.room = None;
    }
}

/// One attempt's view of a [`Replay`].
#[derive(Debug)]
pub struct ReplayBody<B> {
    replay: Arc<Replay<B>>,
    /// The attempt it belongs to.
    generation: u32,
    /// Bytes of the copy this body has sent.
    sent: usize,
    /// The client's trailers went out.
    trailers_sent: bool,
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let limit = this.replay.limit;
        let mut state = this.replay.lock();
        if state.generation != this.generation {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if this.sent < state.copy.len() {
            let again = Bytes::copy_from_slice(&state.copy[this.sent..]);
            this.sent = state.copy.len();
            return Poll::Ready(Some(Ok(Frame::data(again))));
        }
        if state.ended {
            if !this.trailers_sent
                && let Some(trailers) = state.trailers.clone()
            {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut state.source).poll_frame(cx));
        match frame {
            None => {
                state.ended = true;
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if state.kept {
                    if let Some(data) = frame.data_ref() {
                        let within = state.copy.len().saturating_add(data.len()) <= limit;
                        let room = match &mut state.room {
                            Some(room) => within && room.grow(data.len() as u64),
                            None => within,
                        };
                        if !room {
                            state.drop_copy();
                        } else {
                            state.copy.extend_from_slice(data);
                            this.sent = state.copy.len();
                        }
                    } else if let Some(trailers) = frame.trailers_ref() {
                        state.trailers = Some(trailers.clone());
                        this.trailers_sent = true;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                // What failed cannot be sent again.
                state.drop_copy();
                Poll::Ready(Some(Err(error.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.replay.lock();
        state.generation == self.generation
            && state.ended
            && self.sent >= state.copy.len()
            && (self.trailers_sent || state.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::BodyExt;
    use proptest::prelude::*;

    use super::*;

    /// A client's body: these frames, `pending` between them when asked, then the end.
    #[derive(Debug, Default)]
    struct Script {
        frames: VecDeque<Result<Frame<Bytes>, &'static str>>,
        /// Answer `Pending` once before each frame (a client still sending).
        stall: bool,
        stalled: bool,
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.stall && !self.stalled && !self.frames.is_empty() {
                self.stalled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.stalled = false;
            Poll::Ready(
                self.frames
                    .pop_front()
                    .map(|frame| frame.map_err(Into::into)),
            )
        }
    }

    fn data(text: &str) -> Result<Frame<Bytes>, &'static str> {
        Ok(Frame::data(Bytes::copy_from_slice(text.as_bytes())))
    }

    fn script(frames: Vec<Result<Frame<Bytes>, &'static str>>) -> Script {
        Script {
            frames: frames.into(),
            ..Script::default()
        }
    }

    /// Reads up to `frames` frames of `body` (all when `None`): their data, and whether the
    /// body ended (`Ok(true)`), stopped early (`Ok(false)`) or failed.
    async fn read(
        body: &mut ReplayBody<Script>,
        frames: Option<usize>,
    ) -> (Vec<u8>, Result<bool, String>) {
        let mut out = Vec::new();
        let mut left = frames.unwrap_or(usize::MAX);
        while left > 0 {
            match body.frame().await {
                None => return (out, Ok(true)),
                Some(Err(error)) => return (out, Err(error.to_string())),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        out.extend_from_slice(data);
                    }
                }
            }
            left -= 1;
        }
        (out, Ok(false))
    }

    #[tokio::test]
    async fn a_retry_sends_the_copy_then_the_rest_of_the_stream() {
        let replay = Replay::new(script(vec![data("ab"), data("cd"), data("ef")]), 1024);
        let mut first = replay.body();
        assert_eq!(
            read(&mut first, Some(2)).await,
            (b"abcd".to_vec(), Ok(false))
        );
        assert!(replay.rewind());
        let mut second = replay.body();
        // The first attempt's body is cut off; the second sends what went by, then the rest.
        assert!(matches!(read(&mut first, None).await.1, Err(e) if e.contains("another attempt")));
        assert!(!second.is_end_stream());
        assert_eq!(
            read(&mut second, None).await,
            (b"abcdef".to_vec(), Ok(true))
        );
        assert!(second.is_end_stream());
        // And a third, after the client's stream ended, sends it all again.
        assert!(replay.rewind());
        let mut third = replay.body();
        assert_eq!(read(&mut third, None).await, (b"abcdef".to_vec(), Ok(true)));
    }

    #[tokio::test]
    async fn trailers_are_sent_again_after_the_data() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-end", "yes".parse().unwrap());
        let frames = vec![data("ab"), Ok(Frame::trailers(trailers))];
        let replay = Replay::new(script(frames), 1024);
        let mut first = replay.body();
        let collected = (&mut first).collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-end"], "yes");
        assert!(replay.rewind());
        let collected = replay.body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-end"], "yes");
        assert_eq!(collected.to_bytes(), "ab");
    }

    #[tokio::test]
    async fn past_the_limit_the_copy_is_dropped_and_the_stream_goes_on() {
        let replay = Replay::new(script(vec![data("abc"), data("def"), data("g")]), 5);
        let mut first = replay.body();
        assert_eq!(read(&mut first, Some(1)).await.0, b"abc");
        assert!(replay.kept());
        assert_eq!(read(&mut first, None).await, (b"defg".to_vec(), Ok(true)));
        assert!(!replay.kept());
        assert_eq!(replay.copied(), 0, "the memory is given back");
        assert!(!replay.rewind(), "nothing to send again");
    }

    #[tokio::test]
    async fn a_committed_call_keeps_nothing() {
        let replay = Replay::new(script(vec![data("abc"), data("def")]), 1024);
        let mut first = replay.body();
        assert_eq!(read(&mut first, Some(1)).await.0, b"abc");
        replay.commit();
        assert_eq!(replay.copied(), 0);
        assert_eq!(read(&mut first, None).await, (b"def".to_vec(), Ok(true)));
        assert_eq!(replay.copied(), 0);
        assert!(!replay.rewind());
    }

    /// A copy takes room on its HTTP/2 connection as it grows, and gives it all back when it
    /// goes: when the call commits, outgrows the limit or the connection's room, or ends.
    #[tokio::test]
    async fn the_copy_grows_in_the_connections_room_and_gives_it_back() {
        use crate::proxy::body::budget::BufferBudget;
        let budget = BufferBudget::new(10);
        for (outcome, limit) in [
            ("commit", 5),
            ("outgrown", 5),
            ("no room", 100),
            ("dropped", 5),
        ] {
            let frames = vec![data("abc"), data("defgh"), data("ij")];
            let replay = Replay::holding(script(frames), limit, budget.reserve(0));
            let mut first = replay.body();
            assert_eq!(read(&mut first, Some(1)).await.0, b"abc");
            assert!(replay.kept());
            assert!(
                budget.reserve(8).is_none(),
                "{outcome}: the copy's 3 of 10 taken"
            );
            let taken_elsewhere = (outcome == "no room").then(|| budget.reserve(3).unwrap());
            match outcome {
                "commit" => replay.commit(),
                "dropped" => drop((first, replay)),
                _ => {
                    // 8 bytes: past the limit of 5, or past the 4 left of the room.
                    let rest = read(&mut first, None).await;
                    assert_eq!(rest, (b"defghij".to_vec(), Ok(true)), "{outcome}");
                    assert!(
                        !replay.kept(),
                        "{outcome}: the copy is dropped, the call streams on"
                    );
                }
            }
            drop(taken_elsewhere);
            assert!(budget.reserve(10).is_some(), "{outcome}: all 10 back");
        }
    }

    #[tokio::test]
    async fn a_failed_stream_cannot_be_sent_again() {
        let replay = Replay::new(script(vec![data("abc"), Err("client went away")]), 1024);
        let mut first = replay.body();
        let (bytes, end) = read(&mut first, None).await;
        assert_eq!(bytes, b"abc");
        assert_eq!(end, Err("client went away".to_owned()));
        assert!(!replay.kept());
        assert!(!replay.rewind());
    }

    #[tokio::test]
    async fn a_zero_limit_keeps_only_an_untouched_body() {
        let replay = Replay::new(script(vec![data("a")]), 0);
        assert!(replay.rewind(), "nothing forwarded yet: nothing to replay");
        let mut body = replay.body();
        assert_eq!(read(&mut body, None).await.0, b"a");
        assert!(!replay.kept());
    }

    proptest! {
        /// Whatever the frames, the limit, and where the first attempt stops: a retry (when one
        /// is allowed) sends exactly the client's bytes, in order; the copy never passes the
        /// limit; and a retry is allowed exactly when all that went by fits in the limit.
        #[test]
        fn a_retry_sends_exactly_the_clients_bytes(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..12),
            limit in 0u64..200,
            stop in 0usize..14,
            stall in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let frames = (chunks.iter())
                    .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
                    .collect();
                let source = Script { frames, stall, ..Script::default() };
                let all: Vec<u8> = chunks.concat();
                let replay = Replay::new(source, limit);
                let mut first = replay.body();
                let (forwarded, _) = read(&mut first, Some(stop)).await;
                prop_assert!(replay.copied() as u64 <= limit);
                let fits = forwarded.len() as u64 <= limit;
                prop_assert_eq!(replay.kept(), fits);
                prop_assert_eq!(replay.rewind(), fits);
                if fits {
                    let (again, end) = read(&mut replay.body(), None).await;
                    prop_assert_eq!(end, Ok(true));
                    prop_assert_eq!(again, all);
                } else {
                    // The first attempt still sends the rest of the stream.
                    let (rest, end) = read(&mut first, None).await;
                    prop_assert_eq!(end, Ok(true));
                    prop_assert_eq!([forwarded, rest].concat(), all);
                }
                Ok(())
            })?;
        }
    }
}
