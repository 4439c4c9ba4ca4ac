//! Phase three: what an attempt's outcome means. It is classified once ([`classify`]) into
//! lb-core's [`FailureKind`]; the breaker records it; lb-core's retry policy decides, within
//! the budget, whether another attempt follows and after what backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use lb_core::retry::{AttemptFailure, FailureKind, GiveUpReason, RetryDecision};

use super::prepare::Prepared;
use super::reply::Reply;
use super::respond::{self, BAD_BODY, NO_WEBSOCKET, TOO_LARGE};
use crate::clock;
use crate::metrics::RouteHandles;
use crate::proto::grpc::Pushback;
use crate::proto::h1::response::ResponseHead;
use crate::runtime::{PoolRuntime, RouteRuntime, Shared};
use crate::upstream::backend::{Admitted, Backend, InFlight};
use crate::upstream::{GrpcAnswer, ResponseBody, SendFailure};

/// What one attempt gave: a response head and body, a failure, or the request's deadline.
pub(crate) type Outcome =
    Result<Result<(ResponseHead, ResponseBody), SendFailure>, tokio::time::error::Elapsed>;

/// What follows an attempt.
// Returned once per attempt and taken apart at once: boxing the reply would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Settled {
    /// This is the answer.
    Answer(Reply),
    /// Another attempt follows this backoff; `kind` is why this one failed.
    Retry {
        /// How long to wait first.
        backoff: Duration,
        /// The failure.
        kind: FailureKind,
    },
}

/// Settles one attempt's outcome: feeds the breaker, and answers or asks for a retry.
// Inlined: the outcome and the reply are large, and a call of its own moves them twice more.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn settle(
    shared: &Shared,
    pool: &PoolRuntime,
    route: &RouteRuntime,
    handles: &Arc<RouteHandles>,
    backend: &Arc<Backend>,
    prepared: &Prepared,
    attempt: u32,
    outcome: Outcome,
    slot: InFlight,
    admitted: Admitted<'_>,
) -> Settled {
    let now = clock::now();
    let may_retry = (prepared.replayable || prepared.to_backend.may_replay())
        && attempt < pool.retry.max_attempts();
    let proxied = |head, body, slot| {
        let (method, started, bytes) = (prepared.method, prepared.started, prepared.request_bytes);
        respond::proxied(head, body, slot, method, started, bytes, handles)
    };
    // A backend's 5xx that may be retried is kept: it is the answer if no retry happens; so is
    // a gRPC status `retry_on` lists, with the wait its backend asked for.
    let mut pushback = None;
    let (kind, kept) = match outcome {
        Ok(Ok((head, body))) => {
            let status = head.status;
            let kind = FailureKind::Status(status.as_u16());
            let retry_wanted = status.is_server_error()
                && (pool.retry.retry_on().iter()).any(|condition| kind.matches(condition));
            admitted.record(!status.is_server_error(), now);
            if !retry_wanted || !may_retry {
                return Settled::Answer(proxied(head, body, slot));
            }
            (kind, Some((head, body, slot)))
        }
        Ok(Err(error)) => {
            // The client's body failed, not the backend: no breaker failure, no retry.
            if let Some(fault) = &prepared.fault
                && (fault.too_large() || fault.malformed())
            {
                drop(admitted);
                let (status, text) = match fault.too_large() {
                    true => (StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE),
                    false => (StatusCode::BAD_REQUEST, BAD_BODY),
                };
                let refused = respond::refuse(shared, &route.name, prepared.method, status, text);
                return Settled::Answer(refused.closing());
            }
            // A backend that cannot take a WebSocket over HTTP/2 serves everything else: no
            // breaker failure (a client could otherwise open it at will), and no retry (the
            // pool's backends are configured alike).
            if let SendFailure::NoWebSocket = error {
                drop(admitted);
                tracing::debug!(backend = %backend.name(), %error, "upgrade not sent");
                let text = NO_WEBSOCKET;
                let status = StatusCode::BAD_GATEWAY;
                return Settled::Answer(respond::refuse(
                    shared,
                    &route.name,
                    prepared.method,
                    status,
                    text,
                ));
            }
            if let SendFailure::Grpc(answer) = error {
                let GrpcAnswer {
                    code,
                    pushback: asked,
                    head,
                    body,
                } = *answer;
                // A status the operator listed as worth another backend counts against this
                // one, as a 5xx does.
                admitted.record(false, now);
                if !may_retry {
                    return Settled::Answer(proxied(head, body, slot));
                }
                pushback = asked;
                (FailureKind::GrpcStatus(code), Some((head, body, slot)))
            } else {
                let kind = classify(&error);
                tracing::debug!(backend = %backend.name(), %error, kind = kind.label(), "attempt failed");
                admitted.record(false, now);
                (kind, None)
            }
        }
        Err(_elapsed) => {
            admitted.record(false, now);
            (FailureKind::ResponseTimeout, None)
        }
    };
    let retry = may_retry
        .then(|| {
            decide(
                shared, pool, backend, prepared, attempt, kind, pushback, now,
            )
        })
        .flatten();
    match (retry, kept) {
        (Some(backoff), _) => Settled::Retry { backoff, kind },
        (None, Some((head, body, slot))) => Settled::Answer(proxied(head, body, slot)),
        (None, None) => Settled::Answer(respond::failure_reply(
            handles,
            prepared.method,
            kind,
            prepared.started,
        )),
    }
}

/// Asks lb-core whether to retry; counts the retry or the budget refusal. A gRPC backend's
/// `grpc-retry-pushback-ms` (gRFC A6) replaces the backoff (within `retry.max_delay`), and a
/// negative one forbids the retry.
#[allow(clippy::too_many_arguments)]
fn decide(
    shared: &Shared,
    pool: &PoolRuntime,
    backend: &Backend,
    prepared: &Prepared,
    attempt: u32,
    kind: FailureKind,
    pushback: Option<Pushback>,
    now: Instant,
) -> Option<Duration> {
    if pushback == Some(Pushback::Stop) {
        return None;
    }
    let failure = AttemptFailure {
        attempt,
        kind,
        idempotent: prepared.idempotent,
        body_replayable: prepared.replayable || prepared.to_backend.may_replay(),
    };
    let decision = (pool.retry).decide(&failure, &pool.budget, now, &mut rand::rng());
    match decision {
        // A replayed body is readied for the next attempt now; it may have outgrown its copy
        // since `may_replay` (the attempt's upload runs on), and then no retry follows.
        RetryDecision::Retry { .. } if !prepared.to_backend.rewind() => None,
        RetryDecision::Retry { backoff } => {
            backend.metrics.count_retry(&kind);
            match pushback {
                Some(Pushback::Wait(wait)) => Some(wait.min(pool.retry.max_delay())),
                _ => Some(backoff),
            }
        }
        RetryDecision::GiveUp(GiveUpReason::BudgetExhausted) => {
            shared.metrics.retry_budget_exhausted.inc();
            None
        }
        RetryDecision::GiveUp(_) => None,
    }
}

/// Sleeps the backoff unless it would pass the request's deadline.
pub(crate) async fn wait_backoff(backoff: Duration, deadline: tokio::time::Instant) -> bool {
    let wake = tokio::time::Instant::now() + backoff;
    if wake >= deadline {
        return false;
    }
    tokio::time::sleep_until(wake).await;
    true
}

/// Classifies a failed exchange once: connect refused, connect timeout, or a failure after the
/// request may have been sent (reset, closed, malformed response).
pub(crate) fn classify(failure: &SendFailure) -> FailureKind {
    match failure {
        SendFailure::Connect(kind) => *kind,
        SendFailure::Exchange(_) => FailureKind::ResetBeforeResponse,
        SendFailure::Grpc(answer) => FailureKind::GrpcStatus(answer.code),
        // Answered before classification; nothing was sent.
        SendFailure::NoWebSocket => FailureKind::ConnectRefused,
    }
}
