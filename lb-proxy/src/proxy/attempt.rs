//! Phase two: attempts. Each picks an eligible backend of the route's pool (skipping those
//! tried for this request while another is left), takes an in-flight slot and the breaker's
//! admission, and sends the request within the request's deadline; [`super::settle`] decides
//! what the outcome means. When every backend that could serve is at `max_connections` and the
//! pool has a queue, the request waits there for a slot, behind those already waiting.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use lb_core::balance::{Balancer, PickContext};
use lb_core::retry::FailureKind;

use super::ClientInfo;
use super::logged::Logged;
use super::prepare::Prepared;
use super::reply::Reply;
use super::respond;
use super::settle::{self, Settled};
use crate::access_log::{AttemptEnd, Record};
use crate::clock;
use crate::runtime::{PoolRuntime, RouteRuntime, Shared};
use crate::upstream::Outgoing;
use crate::upstream::backend::{Backend, EligibleView};
use crate::upstream::queue::Queue;

/// Runs attempts until one is the answer.
pub(crate) async fn attempts(
    shared: &Shared,
    pool: &PoolRuntime,
    route: &RouteRuntime,
    client: &ClientInfo,
    prepared: &mut Prepared,
    mut log: Option<&mut Logged>,
) -> Reply {
    pool.budget.deposit(prepared.started);
    let mut tried: Vec<usize> = Vec::new();
    let mut refusals = 0usize;
    let mut attempt: u32 = 1;
    // The backend (by table index) whose failure is the answer if nothing else is.
    let mut last_failure: Option<(usize, FailureKind)> = None;
    // When the first wait in the queue ends at the latest.
    let mut queued_until: Option<tokio::time::Instant> = None;
    loop {
        let now = clock::now();
        // A newcomer does not take the slot that those already waiting wait for.
        let behind = queued_until.is_none() && pool.queue.as_ref().is_some_and(|q| q.is_waiting());
        let picked = match behind {
            true => None,
            false => pick(pool, prepared.client_ip, &tried, now),
        };
        let Some((index, backend)) = picked else {
            // Boxed: a wait in the queue is rare, and its future would otherwise take room in
            // every request's.
            let waited = Box::pin(queue_or_refuse(
                shared,
                pool,
                route,
                prepared,
                &mut queued_until,
                behind,
            ));
            match waited.await {
                None => continue,
                Some(Some(reply)) => return reply,
                Some(None) => {
                    return out_of_backends(shared, pool, route, prepared, last_failure);
                }
            }
        };
        // Eligibility was judged a moment ago; a racing request may have taken the last slot or
        // the last probe. Such refusals are bounded so a saturated fleet answers 503 at once.
        let reserved = backend.try_reserve().map(|slot| (slot, backend.admit(now)));
        let Some((slot, admission)) = reserved.filter(|(_, admission)| !admission.is_rejected())
        else {
            refusals += 1;
            if refusals > pool.backends.len() {
                return respond::no_backend(shared, &route.name, prepared.method);
            }
            tried.push(index);
            continue;
        };
        // Written at the await: a future built by a function and returned to it was copied
        // whole into this one's state (docs/performance.md, item 24).
        let head = prepared.head_for(client, backend.authority.as_str().as_bytes());
        // With tracing on, the head carries the attempt's own `traceparent`.
        let head = match log
            .as_deref_mut()
            .and_then(|logged| logged.trace.as_deref_mut())
        {
            Some(trace) => trace.attempt(head, backend.addr, now),
            None => head,
        };
        let outcome = tokio::time::timeout_at(prepared.deadline, async {
            if let Some(http2) = backend.pool.http2() {
                // Boxed: HTTP/2 backends are the rarer kind, and their exchange would otherwise
                // take room in every request's future.
                return Box::pin(super::http2::send(http2, &backend, prepared, &head)).await;
            }
            // Sent once, unless it is a replayed body (a gRPC call that may be retried).
            if let Some(body) = prepared.to_backend.take_upload() {
                let framing = prepared.framing;
                let send = backend.pool.send_streaming(
                    backend.addr,
                    &head,
                    body,
                    framing,
                    prepared.expect_body,
                    now,
                    client.addresses(),
                );
                // Boxed: a streamed upload is rare, and its exchange would otherwise take room in
                // every request's future.
                return Box::pin(send).await;
            }
            let outgoing = Outgoing {
                head: &head,
                body: prepared.to_backend.buffered(),
                expect_body: prepared.expect_body,
                idempotent: prepared.idempotent,
                client: client.addresses(),
                upgrade: prepared.upgrade,
            };
            backend.pool.send(backend.addr, outgoing, now).await
        })
        .await;
        if let Some(logged) = log.as_deref_mut() {
            record_attempt(&mut logged.record, &backend, &outcome, now);
        }
        let handles = &pool.handles[index][route.slot];
        let settled = settle::settle(
            shared, pool, route, handles, &backend, prepared, attempt, outcome, slot, admission,
        );
        match settled {
            Settled::Answer(reply) => return reply,
            Settled::Retry { backoff, kind } => {
                if let Some(logged) = log.as_deref_mut() {
                    logged.record.retried(kind.label());
                }
                if !settle::wait_backoff(backoff, prepared.deadline).await {
                    let failure = Some((index, FailureKind::ResponseTimeout));
                    return out_of_backends(shared, pool, route, prepared, failure);
                }
                tried.push(index);
                attempt += 1;
                last_failure = Some((index, kind));
            }
        }
    }
}

/// Adds an attempt's backend, outcome and duration (from `sent` to now) to the log's record.
#[cold]
fn record_attempt(
    record: &mut Record,
    backend: &Backend,
    outcome: &settle::Outcome,
    sent: Instant,
) {
    let end = match outcome {
        Ok(Ok((head, _))) => AttemptEnd::Status(head.status.as_u16()),
        // A gRPC status is named (`grpc_unavailable`): the attempt's HTTP status says nothing.
        Ok(Err(crate::upstream::SendFailure::Grpc(answer))) => AttemptEnd::Failure(
            lb_core::retry::grpc_status_name(answer.code).unwrap_or("grpc_status"),
        ),
        Ok(Err(failure)) => AttemptEnd::Failure(settle::classify(failure).label()),
        Err(_) => AttemptEnd::Failure(FailureKind::ResponseTimeout.label()),
    };
    let duration = clock::now().saturating_duration_since(sent);
    record.attempt(backend.metrics.name.clone(), end, duration);
}

/// The answer when no attempt is left: the last failure's status, or 503 when no backend was
/// eligible at all.
fn out_of_backends(
    shared: &Shared,
    pool: &PoolRuntime,
    route: &RouteRuntime,
    prepared: &Prepared,
    last_failure: Option<(usize, FailureKind)>,
) -> Reply {
    match last_failure {
        Some((index, kind)) => {
            let (method, started) = (prepared.method, prepared.started);
            let handles = pool.handles(index, route.slot);
            respond::failure_reply(handles, method, kind, started)
        }
        None => respond::no_backend(shared, &route.name, prepared.method),
    }
}

/// No backend was picked: waits in the pool's queue when a slot is worth waiting for (`None`
/// when one freed: pick again), answers 503 with `Retry-After` when the queue gives up, or
/// leaves the answer to the caller (`Some(None)`) when there is nothing to wait for.
async fn queue_or_refuse(
    shared: &Shared,
    pool: &PoolRuntime,
    route: &RouteRuntime,
    prepared: &Prepared,
    queued_until: &mut Option<tokio::time::Instant>,
    behind: bool,
) -> Option<Option<Reply>> {
    let Some(queue) = &pool.queue else {
        return Some(None);
    };
    if !(behind || waits_for_slot(pool, clock::now())) {
        return Some(None);
    }
    let until = *queued_until.get_or_insert_with(|| {
        (tokio::time::Instant::now() + queue.timeout()).min(prepared.deadline)
    });
    if wait_in_queue(queue, pool, until).await {
        return None;
    }
    let mut reply = respond::no_backend(shared, &route.name, prepared.method);
    let retry = http::HeaderValue::from_static("1");
    reply.extra().set(http::header::RETRY_AFTER, retry);
    Some(Some(reply))
}

/// Whether a backend of `pool` would serve but for `max_connections`: then a slot is worth
/// waiting for.
fn waits_for_slot(pool: &PoolRuntime, now: Instant) -> bool {
    pool.backends
        .iter()
        .any(|backend| backend.waits_for_slot(now))
}

/// Waits in the pool's queue until a slot frees or `until`; true when one freed.
async fn wait_in_queue(queue: &Queue, pool: &PoolRuntime, until: tokio::time::Instant) -> bool {
    let has_room = || {
        let now = clock::now();
        pool.backends.iter().any(|backend| backend.is_eligible(now))
    };
    queue.wait(until, has_room).await.is_ok()
}

/// Picks an eligible backend, preferring one not yet tried for this request; a backend in its
/// slow-start ramp keeps the pick only with the ramp's probability.
fn pick(
    pool: &PoolRuntime,
    client: IpAddr,
    tried: &[usize],
    now: Instant,
) -> Option<(usize, Arc<Backend>)> {
    let picked = pick_index(pool, client, tried, now)?;
    if pool.slow_start {
        return ramped(pool, client, tried, now, picked);
    }
    Some((picked, pool.backends.get(picked)?.clone()))
}

/// The slow-start check of [`pick`]: another pick, without `picked`, unless its ramp keeps it.
#[cold]
fn ramped(
    pool: &PoolRuntime,
    client: IpAddr,
    tried: &[usize],
    now: Instant,
    picked: usize,
) -> Option<(usize, Arc<Backend>)> {
    let backend = pool.backends.get(picked)?;
    let factor = backend.slow_start.factor(now);
    if factor < 1.0 && rand::RngExt::random::<f64>(&mut rand::rng()) >= factor {
        let mut skip = tried.to_vec();
        skip.push(picked);
        let other = pick_index(pool, client, &skip, now).unwrap_or(picked);
        return Some((other, pool.backends.get(other)?.clone()));
    }
    Some((picked, backend.clone()))
}

#[inline(always)]
fn pick_index(pool: &PoolRuntime, client: IpAddr, tried: &[usize], now: Instant) -> Option<usize> {
    let view = EligibleView {
        backends: &pool.backends,
        now,
    };
    let mut rng = rand::rng();
    let context = PickContext {
        client: Some(client),
        exclude: tried,
    };
    pool.selector.pick(&view, &context, &mut rng).or_else(|| {
        if tried.is_empty() {
            return None;
        }
        let again = PickContext {
            client: Some(client),
            exclude: &[],
        };
        pool.selector.pick(&view, &again, &mut rng)
    })
}
