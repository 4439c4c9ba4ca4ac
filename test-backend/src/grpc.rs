//! The gRPC echo service `lb.test.Echo`, served with tonic's server codec (no .proto, no build
//! step: the messages are written by hand with prost's derive). Each method makes one
//! balancer behaviour observable:
//!
//! | method | kind | answer |
//! |---|---|---|
//! | `Unary` | unary | `message` back, with the backend's name |
//! | `ServerStream` | server streaming | `count` replies (at most 10000), numbered |
//! | `Bidi` | bidirectional | each request's `message` back as it arrives |
//! | `BigTrailers` | server streaming | one reply, then trailers with `x-big` of `trailer_bytes` bytes (at most 1 MiB) |
//! | `Fail` | unary | the status `code` with `message` (and `grpc-retry-pushback-ms` when `pushback_ms` is set); when `fail_on` names another backend, `message` back as `Unary` does, with the call's `grpc-previous-rpc-attempts` as `x-previous-attempts` |
//! | `Collect` | client streaming | one reply: every request's `message`, joined by `,`; on the backend `fail_on` names, the status `code` as soon as the first request arrived (the others unread) |
//! | `ServerStream` with `code` | server streaming | `count` replies, then the status `code` in trailers (the response began: no retry may follow) |
//! | `Wait` | unary | a reply after `wait_ms` milliseconds (at most 60000); a call dropped first (cancelled, past its deadline) is counted in [`crate::BackendStats::grpc_cancelled`] |
//!
//! Every call is counted in [`crate::BackendStats::grpc_calls`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use http::{Request, Response};
use hyper::body::Incoming;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{
    ClientStreamingService, Grpc, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;

use crate::Shared;

/// The service's path prefix.
pub const SERVICE: &str = "/lb.test.Echo/";
/// Most replies `ServerStream` sends.
pub const MAX_STREAM_REPLIES: u32 = 10_000;
/// Largest `x-big` trailer `BigTrailers` sends.
pub const MAX_TRAILER_BYTES: u32 = 1 << 20;

/// A request to any method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Text echoed back (and `Fail`'s message).
    #[prost(string, tag = "1")]
    pub message: String,
    /// `ServerStream`: how many replies.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// `BigTrailers`: the size of the `x-big` trailer.
    #[prost(uint32, tag = "3")]
    pub trailer_bytes: u32,
    /// `Fail`: the gRPC status code to fail with.
    #[prost(uint32, tag = "4")]
    pub code: u32,
    /// `Wait`: milliseconds before the reply.
    #[prost(uint64, tag = "5")]
    pub wait_ms: u64,
    /// `Fail`, `Collect`: fail only on the backend of this name (empty: on every backend).
    #[prost(string, tag = "6")]
    pub fail_on: String,
    /// `Fail`: the `grpc-retry-pushback-ms` sent with the status.
    #[prost(int64, optional, tag = "7")]
    pub pushback_ms: Option<i64>,
}

/// A reply of any method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    /// The request's text.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The backend's name.
    #[prost(string, tag = "2")]
    pub backend: String,
    /// The reply's number in a stream, from 0.
    #[prost(uint32, tag = "3")]
    pub index: u32,
}

type Replies = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;
type Reply<T> = Pin<Box<dyn Future<Output = Result<tonic::Response<T>, Status>> + Send>>;

/// Whether a request is for this service.
pub(crate) fn is_grpc(path: &str) -> bool {
    path.starts_with(SERVICE)
}

/// Serves one call.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Response<tonic::body::Body> {
    shared.stats.grpc_calls.fetch_add(1, Relaxed);
    let method = request.uri().path()[SERVICE.len()..].to_owned();
    let name = Arc::<str>::from(shared.header.to_str().unwrap_or("backend"));
    let mut grpc = Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    match method.as_str() {
        "Unary" => grpc.unary(Unary(name), request).await,
        "ServerStream" => grpc.server_streaming(ServerStream(name), request).await,
        "Bidi" => grpc.streaming(Bidi(name), request).await,
        "BigTrailers" => grpc.server_streaming(BigTrailers(name), request).await,
        "Fail" => grpc.unary(Fail(name), request).await,
        "Collect" => grpc.client_streaming(Collect(name), request).await,
        "Wait" => grpc.unary(Wait(name, shared.clone()), request).await,
        _ => Status::unimplemented(format!("no method {method}")).into_http(),
    }
}

fn reply(backend: &str, message: String, index: u32) -> EchoReply {
    EchoReply {
        message,
        backend: backend.to_owned(),
        index,
    }
}

struct Unary(Arc<str>);

impl UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = Reply<EchoReply>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let answer = reply(&self.0, request.into_inner().message, 0);
        Box::pin(async move { Ok(tonic::Response::new(answer)) })
    }
}

struct ServerStream(Arc<str>);

impl ServerStreamingService<EchoRequest> for ServerStream {
    type Response = EchoReply;
    type ResponseStream = Replies;
    type Future = Reply<Replies>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let request = request.into_inner();
        let backend = self.0.clone();
        let count = request.count.min(MAX_STREAM_REPLIES);
        let code = request.code;
        let message = request.message.clone();
        let replies = stream::iter(0..count)
            .map(move |index| Ok(reply(&backend, request.message.clone(), index)));
        // A status after the replies: the response began, and the status comes in trailers.
        let end = stream::iter((code != 0).then(|| Err(status(code, &message))));
        let replies = replies.chain(end);
        Box::pin(async move { Ok(tonic::Response::new(Box::pin(replies) as Replies)) })
    }
}

struct Bidi(Arc<str>);

impl StreamingService<EchoRequest> for Bidi {
    type Response = EchoReply;
    type ResponseStream = Replies;
    type Future = Reply<Replies>;

    fn call(&mut self, request: tonic::Request<Streaming<EchoRequest>>) -> Self::Future {
        let backend = self.0.clone();
        let replies = request.into_inner().enumerate().map(move |(index, item)| {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            item.map(|request| reply(&backend, request.message, index))
        });
        Box::pin(async move { Ok(tonic::Response::new(Box::pin(replies) as Replies)) })
    }
}

struct BigTrailers(Arc<str>);

impl ServerStreamingService<EchoRequest> for BigTrailers {
    type Response = EchoReply;
    type ResponseStream = Replies;
    type Future = Reply<Replies>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let request = request.into_inner();
        let size = request.trailer_bytes.min(MAX_TRAILER_BYTES) as usize;
        let first = reply(&self.0, request.message, 0);
        Box::pin(async move {
            // A printable pattern, so that a test sees any byte out of place.
            let big: String = (0..size)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let mut metadata = MetadataMap::new();
            let value = MetadataValue::try_from(big.as_str())
                .map_err(|_| Status::internal("trailer value"))?;
            metadata.insert("x-big", value);
            // An OK status as the stream's last item: tonic writes it, with the metadata, as
            // the trailers that follow the reply.
            let end = Status::with_metadata(Code::Ok, "", metadata);
            let replies = stream::iter([Ok(first), Err(end)]);
            Ok(tonic::Response::new(Box::pin(replies) as Replies))
        })
    }
}

/// The status `code` (a gRPC code) with `message`.
fn status(code: u32, message: &str) -> Status {
    Status::new(Code::from(i32::try_from(code).unwrap_or(i32::MAX)), message)
}

/// Whether the backend `name` fails a request that says `fail_on`.
fn fails_here(name: &str, fail_on: &str) -> bool {
    fail_on.is_empty() || fail_on == name
}

struct Fail(Arc<str>);

impl UnaryService<EchoRequest> for Fail {
    type Response = EchoReply;
    type Future = Reply<EchoReply>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let previous = request
            .metadata()
            .get("grpc-previous-rpc-attempts")
            .cloned();
        let request = request.into_inner();
        if !fails_here(&self.0, &request.fail_on) {
            let mut answer = tonic::Response::new(reply(&self.0, request.message, 0));
            // What a retry said of the attempts before it, for the tests to see.
            if let Some(previous) = previous {
                answer
                    .metadata_mut()
                    .insert("x-previous-attempts", previous);
            }
            return Box::pin(async move { Ok(answer) });
        }
        let mut failure = status(request.code, &request.message);
        if let Some(pushback) = request.pushback_ms {
            let value = MetadataValue::from(pushback);
            failure
                .metadata_mut()
                .insert("grpc-retry-pushback-ms", value);
        }
        Box::pin(async move { Err(failure) })
    }
}

struct Collect(Arc<str>);

impl ClientStreamingService<EchoRequest> for Collect {
    type Response = EchoReply;
    type Future = Reply<EchoReply>;

    fn call(&mut self, request: tonic::Request<Streaming<EchoRequest>>) -> Self::Future {
        let name = self.0.clone();
        let mut requests = request.into_inner();
        Box::pin(async move {
            let mut messages = Vec::new();
            while let Some(request) = requests.message().await? {
                if messages.is_empty() && request.code != 0 && fails_here(&name, &request.fail_on) {
                    return Err(status(request.code, &request.message));
                }
                messages.push(request.message);
            }
            Ok(tonic::Response::new(reply(&name, messages.join(","), 0)))
        })
    }
}

struct Wait(Arc<str>, Arc<Shared>);

/// Counts a `Wait` call dropped before its reply.
struct Cancelled {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.stats.grpc_cancelled.fetch_add(1, Relaxed);
        }
    }
}

impl UnaryService<EchoRequest> for Wait {
    type Response = EchoReply;
    type Future = Reply<EchoReply>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let request = request.into_inner();
        let answer = reply(&self.0, request.message, 0);
        let wait = Duration::from_millis(request.wait_ms.min(crate::MAX_DELAY_MS));
        let guard = Cancelled {
            shared: self.1.clone(),
            finished: false,
        };
        Box::pin(async move {
            let mut guard = guard;
            tokio::time::sleep(wait).await;
            guard.finished = true;
            Ok(tonic::Response::new(answer))
        })
    }
}
