//! One HTTP/2 stream: its request through the request path, raced against the client's reset
//! of the stream, then its response.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Request};

use super::{H2Conn, connect, send};
use crate::proxy::body::budget::BudgetHold;
use crate::proxy::body::{FromClient, H2Body};
use crate::proxy::{ParsedUpgrade, handle_parsed};

/// Serves one stream until its response is sent, or the client resets it. `head_room`: the
/// room its head takes in the connection's ([`super::head_room`]), given back once the request
/// path is over.
pub(super) async fn serve(
    conn: Arc<H2Conn>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    head_room: BudgetHold,
) {
    let (parts, recv) = request.into_parts();
    if parts.method == Method::CONNECT {
        // Boxed: a CONNECT stream is rare, and its future would take room in every one.
        return Box::pin(connect::serve(&conn, parts, recv, respond, head_room)).await;
    }
    let head_request = parts.method == Method::HEAD;
    let body = (!recv.is_end_stream()).then(|| {
        let budget = conn.body_budget.clone();
        FromClient::H2(H2Body::new(recv, &parts.headers, budget))
    });
    // In a block of its own, so that the request path's future and the response's share
    // room in the stream's future.
    let reply = {
        let answer = pin!(handle_parsed(
            &conn.shared,
            &conn.client,
            parts,
            body,
            ParsedUpgrade::No,
        ));
        let answered = until_reset(&mut respond, answer).await;
        // The request path is over, and its head dropped with it.
        drop(head_room);
        match answered {
            Some(reply) => reply,
            None => return,
        }
    };
    send::respond(
        &mut respond,
        reply.into_h2_response(head_request),
        &conn.stall,
    )
    .await;
}

/// `answer`, unless the client resets the stream first: `None` then, and the caller drops
/// `answer`, which cancels its backend request. Pinned by the caller: moving the request
/// path's future in would copy it, and hold it twice.
pub(super) async fn until_reset<F: Future>(
    respond: &mut SendResponse<Bytes>,
    mut answer: Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(answered) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(answered));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(reset) => {
                tracing::debug!(
                    ?reset,
                    "the client reset an HTTP/2 stream before its response"
                );
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
