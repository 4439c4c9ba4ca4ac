//! One request on our own HTTP/1 loop: the request path runs, then its reply is written, while
//! the client's side ([`ClientSide`]) feeds the request body as it is asked for and watches the
//! client: a client that goes away abandons its request.

use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use http::Version;

use super::feed::{ClientSide, Feeder};
use super::respond;
use crate::conn::stream::ClientStream;
use crate::conn::timed_io::TimedIo;
use crate::proto::h1::framing::Framing;
use crate::proto::h1::request::RequestHead;
use crate::proxy::ClientInfo;
use crate::proxy::body::{FromClient, Pipe, Upgraded};
use crate::proxy::{ClientRequest, handle};
use crate::runtime::Shared;

/// How one request ended for its connection.
pub(super) enum Exchanged {
    /// The response was sent; the next request may follow.
    KeepOpen,
    /// The response was sent; the connection closes now. `unread`: the client may still be
    /// sending (its body was not read to the end).
    Close {
        /// Part of the request body was never read.
        unread: bool,
    },
    /// The client went away, or the response could not be sent whole.
    Failed,
    /// The backend switched protocols (`101` sent to the client): the connection is a tunnel
    /// to that backend from now on. Boxed: rare, and large.
    Upgraded(Box<Upgraded>),
}

/// Runs the request path for one head and writes its reply.
///
/// A function returning an `async move` block, as [`handle`] is: an `async fn` would hold the
/// head twice.
#[allow(clippy::manual_async_fn)] // see above
pub(super) fn exchange<'a, S: ClientStream>(
    io: &'a mut TimedIo<S>,
    buffer: &'a mut BytesMut,
    out: &'a mut Vec<u8>,
    shared: &'a Shared,
    client: &'a Arc<ClientInfo>,
    head: RequestHead,
    max_head_bytes: usize,
) -> impl Future<Output = Exchanged> + 'a {
    async move {
        let RequestHead { parts, meta, .. } = head;
        let method = parts.method.clone();
        let version = parts.version;
        let keep_alive = meta.keep_alive;
        let upgrade = meta.upgrade;
        let (feeder, body) = if meta.body.is_empty() {
            (None, None)
        } else {
            let declared = match meta.body {
                Framing::Length(length) => Some(length),
                _ => None,
            };
            let (pipe, body) = Pipe::new(declared);
            let continue_due = meta.expect_continue && version == Version::HTTP_11;
            (
                Some(Feeder::new(pipe, meta.body, continue_due)),
                Some(FromClient::Pipe(body)),
            )
        };
        let request = ClientRequest { parts, meta, body };
        let mut client_side = ClientSide {
            feeder,
            buffer,
            max_head_bytes,
        };
        let reply = {
            let mut handling = std::pin::pin!(handle(shared, client, request));
            std::future::poll_fn(|cx| {
                loop {
                    if let Poll::Ready(reply) = handling.as_mut().poll(cx) {
                        return Poll::Ready(Some(reply));
                    }
                    match client_side.poll(io, cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Poll::Ready(None),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await
        };
        let Some(reply) = reply else {
            return Exchanged::Failed;
        };
        if upgrade {
            // Boxed: upgrades are rare.
            let upgrading = answer_upgrade(io, out, reply, &method, &mut client_side, shared);
            return Box::pin(upgrading).await;
        }
        // A body still arriving may end while the response streams (an echo): the connection
        // is announced as kept, and closed after the response only if part of the body was
        // never read.
        let last = !keep_alive || shared.shutdown.is_started();
        let written =
            respond::write(io, out, reply, &method, version, last, &mut client_side).await;
        let unread = client_side.unread();
        match written {
            Ok(true) if !unread => Exchanged::KeepOpen,
            Ok(_) => Exchanged::Close { unread },
            Err(_) => Exchanged::Failed,
        }
    }
}

/// Writes the answer to an upgrade request. A `101` (only a backend's, to this request) makes
/// the connection a tunnel. Any other answer leaves it HTTP/1.1; but bytes the client sent
/// behind its upgrade request were meant for a tunnel that did not open, and are never read as
/// a next request: then the connection closes after the answer.
async fn answer_upgrade<S: ClientStream>(
    io: &mut TimedIo<S>,
    out: &mut Vec<u8>,
    mut reply: crate::proxy::reply::Reply,
    method: &http::Method,
    client_side: &mut ClientSide<'_>,
    shared: &Shared,
) -> Exchanged {
    let upgraded = match reply.status {
        http::StatusCode::SWITCHING_PROTOCOLS => reply.body.take_upgraded(),
        _ => None,
    };
    let last = shared.shutdown.is_started() || !client_side.buffer.is_empty();
    let written = respond::write(
        io,
        out,
        reply,
        method,
        Version::HTTP_11,
        last && upgraded.is_none(),
        client_side,
    )
    .await;
    match (written, upgraded) {
        (Ok(true), Some(upgraded)) => Exchanged::Upgraded(Box::new(upgraded)),
        (Ok(true), None) => Exchanged::KeepOpen,
        (Ok(false), _) => Exchanged::Close { unread: true },
        (Err(_), _) => Exchanged::Failed,
    }
}
