//! gRPC calls retried after a gRPC status `retry.retry_on` lists, with a tonic client and two
//! test-backends whose echo service fails on one of them: a unary call failing UNAVAILABLE on
//! its first backend succeeds on the other when configured, and is not retried by default; a
//! client-streaming call is sent again from its kept copy and then carries on with the rest of
//! the client's stream, unless its body outgrew `retry.replay_buffer_bytes`; a call whose
//! response began is never retried; the retry budget and a backend's
//! `grpc-retry-pushback-ms` are respected.
//!
//! The pool balances by `ip_hash`: every call from 127.0.0.1 goes first to the same backend (a
//! first call learns which), and a retry goes to the other.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt;
use test_backend::RunningBackend;
use test_backend::grpc::EchoRequest;
use tonic::Code;

use crate::support::grpc::{
    self, client_streaming, h2c_backend, h2c_balancer, says, server_streaming, unary,
};
use crate::support::*;

/// Two HTTP/2-only test-backends behind a balancer (h2c both sides, `ip_hash`, no breaker)
/// with `retry`; the backend every call goes to first, and the other.
async fn setup(retry: &str) -> (lb_proxy::Daemon, RunningBackend, RunningBackend) {
    let mut backends = vec![h2c_backend("a", None).await, h2c_backend("b", None).await];
    let extra = format!(
        "load_balancer:\n  algorithm: ip_hash\ncircuit_breaker:\n  enabled: false\n{retry}"
    );
    let daemon = h2c_balancer(&backends, &extra).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let first = unary(&mut client, "Unary", tonic::Request::new(says("which")))
        .await
        .expect("a first call")
        .into_inner()
        .backend;
    let b = backends.pop().unwrap();
    let a = backends.pop().unwrap();
    let (first, other) = match first.as_str() {
        "a" => (a, b),
        _ => (b, a),
    };
    (daemon, first, other)
}

const RETRY_UNAVAILABLE: &str = "retry:\n  max_attempts: 2\n  base_delay: 0s\n  max_delay: 0s\n  \
     retry_on: [connect_error, grpc_unavailable]\n";

fn calls(backend: &RunningBackend) -> u64 {
    backend.stats().grpc_calls.load(Relaxed)
}

/// A `Fail` call failing UNAVAILABLE on `backend` only.
fn unavailable_on(backend: &RunningBackend) -> EchoRequest {
    EchoRequest {
        code: Code::Unavailable as u32,
        fail_on: backend.name().to_owned(),
        ..says("try me")
    }
}

async fn retries(daemon: &lb_proxy::Daemon, reason: &str) -> f64 {
    let metrics = scrape(daemon).await;
    let label = format!("reason=\"{reason}\"");
    metric_sum(&metrics, "lb_retries_total", &[&label])
}

#[tokio::test]
async fn a_unary_call_failing_unavailable_is_retried_on_another_backend_when_configured() {
    let (daemon, first, other) = setup(RETRY_UNAVAILABLE).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    for round in 1..=3u64 {
        let request = tonic::Request::new(unavailable_on(&first));
        let reply = unary(&mut client, "Fail", request)
            .await
            .expect("retried on the other backend");
        assert_eq!(reply.get_ref().backend, other.name());
        assert_eq!(reply.get_ref().message, "try me");
        // gRFC A6: the retry says how many attempts came before it.
        assert_eq!(reply.metadata().get("x-previous-attempts").unwrap(), "1");
        assert_eq!(
            calls(&first),
            1 + round,
            "the setup's call, then one per round"
        );
        assert_eq!(calls(&other), round);
    }
    assert_eq!(retries(&daemon, "grpc_status").await, 3.0);

    // A status not listed is the answer, as the backend gave it.
    let request = EchoRequest {
        code: Code::ResourceExhausted as u32,
        ..unavailable_on(&first)
    };
    let status = unary(&mut client, "Fail", tonic::Request::new(request))
        .await
        .expect_err("not retried");
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "try me")
    );
    assert_eq!(calls(&other), 3);
}

#[tokio::test]
async fn by_default_a_call_that_reached_a_backend_is_not_retried() {
    let (daemon, first, other) = setup("").await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let request = tonic::Request::new(unavailable_on(&first));
    let status = unary(&mut client, "Fail", request)
        .await
        .expect_err("the backend's status");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "try me", "the backend's own answer");
    assert_eq!((calls(&first), calls(&other)), (2, 0));
    assert_eq!(retries(&daemon, "grpc_status").await, 0.0);
}

#[tokio::test]
async fn a_streamed_call_is_sent_again_then_goes_on_with_the_rest_of_the_stream() {
    let retry = format!("{RETRY_UNAVAILABLE}  replay_buffer_bytes: 1024\n");
    let (daemon, first, other) = setup(&retry).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let (sender, rx) = tokio::sync::mpsc::channel::<EchoRequest>(4);
    let opening = EchoRequest {
        code: Code::Unavailable as u32,
        fail_on: first.name().to_owned(),
        ..says("one")
    };
    let requests =
        futures_util::stream::once(async move { opening })
            .chain(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|request| (request, rx))
            }));
    let call =
        tokio::spawn(async move { client_streaming(&mut client, "Collect", requests).await });
    // The first backend failed the call after its first message; the other has it now, and
    // waits for the rest, which the client sends only then.
    let retried = eventually(Duration::from_secs(5), || async {
        calls(&first) == 2 && calls(&other) == 1
    })
    .await;
    assert!(retried, "the call went to the other backend");
    sender.send(says("two")).await.unwrap();
    sender.send(says("three")).await.unwrap();
    drop(sender);
    let reply = call.await.unwrap().expect("the retried call succeeds");
    assert_eq!(reply.get_ref().backend, other.name());
    assert_eq!(reply.get_ref().message, "one,two,three");
    assert_eq!(retries(&daemon, "grpc_status").await, 1.0);
}

/// The messages of a client-streaming `Collect` call whose first (2,000 bytes) `backend`
/// fails UNAVAILABLE.
fn large_call_failing_on(
    backend: &RunningBackend,
) -> futures_util::stream::Iter<std::array::IntoIter<EchoRequest, 2>> {
    let opening = EchoRequest {
        code: Code::Unavailable as u32,
        fail_on: backend.name().to_owned(),
        ..says(&"x".repeat(2000))
    };
    futures_util::stream::iter([opening, says("two")])
}

#[tokio::test]
async fn a_streamed_call_past_the_replay_limit_is_not_retried() {
    let retry = format!("{RETRY_UNAVAILABLE}  replay_buffer_bytes: 1024\n");
    let (daemon, first, other) = setup(&retry).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let requests = large_call_failing_on(&first);
    let status = client_streaming(&mut client, "Collect", requests)
        .await
        .expect_err("the first backend's status");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!((calls(&first), calls(&other)), (2, 0));
    assert_eq!(retries(&daemon, "grpc_status").await, 0.0);
}

/// On HTTP/2 a call's copy takes room from its connection's budget for bodies
/// (`server.http2.max_buffered_body_bytes`, security.md H16) as it grows: one that finds none
/// is dropped, and the call is not retried, as one past `replay_buffer_bytes` is not.
#[tokio::test]
async fn a_call_whose_copy_outgrows_its_connections_room_is_not_retried() {
    for (room, retried) in [(1_000, false), (1_048_576, true)] {
        let retry = format!(
            "{RETRY_UNAVAILABLE}  replay_buffer_bytes: 8192\n\
             server:\n  http2:\n    max_buffered_body_bytes: {room}\n"
        );
        let (daemon, first, other) = setup(&retry).await;
        let mut client = grpc::connect(daemon.listen_addr).await;
        let requests = large_call_failing_on(&first);
        let answer = client_streaming(&mut client, "Collect", requests).await;
        assert_eq!(answer.is_ok(), retried, "room {room}: {answer:?}");
        assert_eq!(calls(&other), u64::from(retried), "room {room}");
        let expected = if retried { 1.0 } else { 0.0 };
        assert_eq!(
            retries(&daemon, "grpc_status").await,
            expected,
            "room {room}"
        );
        daemon.shutdown().await;
    }
}

#[tokio::test]
async fn a_call_whose_response_began_is_never_retried() {
    let (daemon, first, other) = setup(RETRY_UNAVAILABLE).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    // One reply, then UNAVAILABLE in trailers: the client had the response's head and a
    // message, so the call is committed.
    let request = EchoRequest {
        count: 1,
        code: Code::Unavailable as u32,
        ..says("began")
    };
    let mut replies = server_streaming(&mut client, "ServerStream", request)
        .await
        .expect("the response began")
        .into_inner();
    let reply = replies.message().await.expect("a reply").expect("one");
    assert_eq!(reply.backend, first.name());
    let status = replies.message().await.expect_err("then the status");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!((calls(&first), calls(&other)), (2, 0));
    assert_eq!(retries(&daemon, "grpc_status").await, 0.0);
}

#[tokio::test]
async fn the_retry_budget_and_the_backends_pushback_are_respected() {
    // No budget: the call is not retried, and the refusal is counted.
    let broke = "retry:\n  max_attempts: 2\n  retry_on: [grpc_unavailable]\n  budget_ratio: 0\n  \
                 budget_min_per_sec: 0\n";
    let (daemon, first, other) = setup(broke).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let request = tonic::Request::new(unavailable_on(&first));
    let status = unary(&mut client, "Fail", request)
        .await
        .expect_err("no budget for a retry");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(calls(&other), 0);
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_retry_budget_exhausted_total", &[]),
        1.0
    );

    // A negative pushback forbids the retry; a positive one is waited (within max_delay).
    let (daemon, first, other) = setup(RETRY_UNAVAILABLE).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let request = EchoRequest {
        pushback_ms: Some(-1),
        ..unavailable_on(&first)
    };
    let status = unary(&mut client, "Fail", tonic::Request::new(request))
        .await
        .expect_err("the backend asked for no retry");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(calls(&other), 0);
    let request = EchoRequest {
        pushback_ms: Some(0),
        ..unavailable_on(&first)
    };
    let reply = unary(&mut client, "Fail", tonic::Request::new(request))
        .await
        .expect("retried at once");
    assert_eq!(reply.get_ref().backend, other.name());
}
