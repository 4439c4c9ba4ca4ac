//! gRPC calls the balancer fails itself. A call is an HTTP/2 POST with `content-type:
//! application/grpc…`, its status in `grpc-status` / `grpc-message` trailers; the balancer
//! passes calls through untouched, trailers included ([`crate::proto::grpc`] holds the field
//! rules).
//!
//! A gRPC client reads an HTTP 503 as a transport error with no useful status, so an answer of
//! the balancer's own (no backend, connect failure, timeout, breaker open, rate limit, queue
//! full, auth) to a gRPC request becomes what a gRPC server would say: HTTP 200, `content-type:
//! application/grpc`, and the status in a trailers-only response ([`from_local`]), mapped as
//! gRPC's own HTTP-to-gRPC table does
//! (<https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>), with the
//! balancer's timeouts as DEADLINE_EXCEEDED and its limits as RESOURCE_EXHAUSTED.
//!
//! A call to a pool whose `retry.retry_on` lists gRPC statuses ([`GrpcRetry`]) may also be
//! retried after one of them, as gRPC's own retry policy does it (gRFC A6): only when the
//! status came alone, before anything of the response reached the client (a trailers-only
//! response, [`judge`]); any other response commits the call to its attempt. Its streamed body
//! is kept meanwhile, up to `retry.replay_buffer_bytes` ([`super::body::replay`]).

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue, RETRY_AFTER};

use super::body::{ToBackend, ToClient};
use super::reply::{Reply, ReplyHead};
use crate::proto::grpc::{
    DEADLINE_EXCEEDED, GRPC_MESSAGE, GRPC_STATUS, INTERNAL, PERMISSION_DENIED, RESOURCE_EXHAUSTED,
    UNAUTHENTICATED, UNAVAILABLE, UNIMPLEMENTED, UNKNOWN, encode_message,
};
use crate::proto::h1::response::ResponseHead;
use crate::upstream::{GrpcAnswer, ResponseBody, SendFailure};

/// A gRPC call that the statuses of its pool's `retry_on` may retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcRetry {
    /// The gRPC status codes `retry_on` lists, as a bit set (bit `n` for code `n`).
    pub statuses: u32,
    /// Attempts sent to HTTP/2 backends so far: a retry tells the backend how many came
    /// before (`grpc-previous-rpc-attempts`).
    pub sent: u32,
}

/// What a gRPC call's response means for its retries: a trailers-only answer with a status the
/// pool retries is a failure ([`SendFailure::Grpc`], keeping the answer in case no retry
/// follows); anything else is the answer, and commits the call (its body keeps no more copy).
#[cold]
pub(crate) fn judge(
    retry: GrpcRetry,
    head: ResponseHead,
    body: ResponseBody,
    to_backend: &ToBackend,
) -> Result<(ResponseHead, ResponseBody), SendFailure> {
    if head.status == StatusCode::OK
        && body.ended_with_head()
        && let Some((code, pushback)) = crate::proto::grpc::status_in(head.fields())
        && code < 32
        && retry.statuses & (1 << code) != 0
    {
        let answer = GrpcAnswer {
            code,
            pushback,
            head,
            body,
        };
        return Err(SendFailure::Grpc(Box::new(answer)));
    }
    to_backend.commit();
    Ok((head, body))
}

/// The gRPC status for an answer of the balancer's own with `status`; `limited`: the answer
/// tells the client to come back later (`Retry-After`: a full queue).
pub(crate) fn code_for(status: StatusCode, limited: bool) -> u8 {
    match status.as_u16() {
        400 | 500 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        408 | 504 => DEADLINE_EXCEEDED,
        413 | 429 => RESOURCE_EXHAUSTED,
        503 if limited => RESOURCE_EXHAUSTED,
        502 | 503 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// The balancer's own failure `reply` to a gRPC call, as gRPC answers: HTTP 200, `content-type:
/// application/grpc`, `grpc-status` and `grpc-message` (the reply's text) in a trailers-only
/// response. The reply's other added fields (`Retry-After`, `WWW-Authenticate`) and the request
/// id are kept.
pub(crate) fn from_local(mut reply: Reply) -> Reply {
    let extra = reply.extra();
    let limited = (extra.add.iter()).any(|(name, _)| *name == RETRY_AFTER);
    let code = code_for(reply.status, limited);
    let text = match &reply.body {
        ToClient::Fixed(Some(text)) => text.clone(),
        _ => Bytes::new(),
    };
    let extra = reply.extra();
    extra.set(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    extra.set(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    extra.set(GRPC_MESSAGE, encode_message(&text));
    reply.status = StatusCode::OK;
    reply.head = ReplyHead::Local;
    reply.body = ToClient::Fixed(None);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_as_grpc_maps_them() {
        let table = [
            (400, false, INTERNAL),
            (401, false, UNAUTHENTICATED),
            (403, false, PERMISSION_DENIED),
            (404, false, UNIMPLEMENTED),
            (408, false, DEADLINE_EXCEEDED),
            (413, false, RESOURCE_EXHAUSTED),
            (429, false, RESOURCE_EXHAUSTED),
            (502, false, UNAVAILABLE),
            (503, false, UNAVAILABLE),
            (503, true, RESOURCE_EXHAUSTED),
            (504, false, DEADLINE_EXCEEDED),
            (418, false, UNKNOWN),
        ];
        for (status, limited, code) in table {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_for(status, limited), code, "{status}");
        }
    }

    #[test]
    fn a_local_failure_becomes_a_trailers_only_answer() {
        let local = Reply::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: no backend available\n",
        );
        let reply = from_local(local);
        assert_eq!(reply.status, StatusCode::OK);
        let response = reply.into_h2_response(false);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers.get_all("content-type").iter().count(), 1);
        assert_eq!(headers["grpc-status"], "14");
        assert_eq!(
            headers["grpc-message"],
            "503 service unavailable: no backend available"
        );
        assert!(http_body::Body::is_end_stream(response.body()));
    }
}
