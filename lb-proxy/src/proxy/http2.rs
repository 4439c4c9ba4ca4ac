//! Phase two's branch for a backend that speaks HTTP/2 (`protocol: h2c` or `h2`): the request
//! head the codec wrote for HTTP/1.1 (forwarding fields, request id, rewrites all applied) is put
//! in HTTP/2's form, with the body that will be sent, and sent on one of the backend's streams
//! ([`crate::upstream::h2`]).

use http_body_util::BodyExt;

use super::body::ToBackend;
use super::prepare::Prepared;
use crate::proto::h1::response::ResponseHead;
use crate::upstream::backend::Backend;
use crate::upstream::h2::{H2Pool, H2Request, H2Send, request_parts};
use crate::upstream::{ResponseBody, SendFailure};

/// Sends `prepared` (with the upstream `head` of this attempt) on a stream to `backend`.
pub(crate) async fn send(
    http2: &H2Pool,
    backend: &Backend,
    prepared: &mut Prepared,
    head: &[u8],
) -> Result<(ResponseHead, ResponseBody), SendFailure> {
    let parts = request_parts(head, http2.scheme(), prepared.te_trailers)?;
    let body = match prepared.to_backend.take_streaming() {
        // Sent once: a streamed body is never replayed.
        Some(body) => H2Send::Streaming(Some(Box::pin(body.map_err(Into::into)))),
        None => match &prepared.to_backend {
            ToBackend::Buffered(bytes) => H2Send::Buffered(bytes.clone()),
            _ => H2Send::Empty,
        },
    };
    let request = H2Request {
        parts,
        body,
        deadline: prepared.grpc_deadline,
    };
    http2.send(&backend.pool, backend.addr, request).await
}
