//! Phase two: attempts. Each picks an eligible backend (skipping those tried for this request
//! while another is left), takes an in-flight slot and the breaker's admission, and sends the
//! request within the request's deadline; [`super::settle`] decides what the outcome means.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use lb_core::balance::{Balancer, PickContext};
use lb_core::retry::FailureKind;

use super::ClientInfo;
use super::prepare::Prepared;
use super::reply::Reply;
use super::respond;
use super::settle::{self, Settled};
use crate::clock;
use crate::runtime::{Runtime, Shared};
use crate::upstream::backend::{Backend, EligibleView};
use crate::upstream::{Outgoing, UploadBody};

/// Runs attempts until one is the answer.
pub(crate) async fn attempts(
    shared: &Shared,
    runtime: &Runtime,
    client: &ClientInfo,
    prepared: &mut Prepared,
) -> Reply {
    runtime.budget.deposit(prepared.started);
    let mut tried: Vec<usize> = Vec::new();
    let mut refusals = 0usize;
    let mut attempt: u32 = 1;
    let mut last_failure: Option<(Arc<Backend>, FailureKind)> = None;
    loop {
        let now = clock::now();
        let Some((index, backend)) = pick(runtime, prepared.client_ip, &tried, now) else {
            return out_of_backends(shared, prepared, last_failure);
        };
        // Eligibility was judged a moment ago; a racing request may have taken the last slot or
        // the last probe. Such refusals are bounded so a saturated fleet answers 503 at once.
        let reserved = backend.try_reserve().map(|slot| (slot, backend.admit(now)));
        let Some((slot, admission)) = reserved.filter(|(_, admission)| !admission.is_rejected())
        else {
            refusals += 1;
            if refusals > runtime.backends.len() {
                return respond::no_backend(shared, prepared.method);
            }
            tried.push(index);
            continue;
        };
        // Written at the await: a future built by a function and returned to it was copied
        // whole into this one's state (docs/performance.md, item 24).
        let head = prepared.head_for(client, backend.authority.as_str().as_bytes());
        let outcome = tokio::time::timeout_at(prepared.deadline, async {
            if let Some(body) = prepared.to_backend.take_streaming() {
                // Sent once: a streamed body is never replayed.
                let body: UploadBody = Box::pin(http_body_util::BodyExt::map_err(body, Into::into));
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
            };
            backend.pool.send(backend.addr, outgoing, now).await
        })
        .await;
        let settled = settle::settle(
            shared, runtime, &backend, prepared, attempt, outcome, slot, admission,
        );
        match settled {
            Settled::Answer(reply) => return reply,
            Settled::Retry { backoff, kind } => {
                if !settle::wait_backoff(backoff, prepared.deadline).await {
                    let failure = Some((backend, FailureKind::ResponseTimeout));
                    return out_of_backends(shared, prepared, failure);
                }
                tried.push(index);
                attempt += 1;
                last_failure = Some((backend, kind));
            }
        }
    }
}

/// The answer when no attempt is left: the last failure's status, or 503 when no backend was
/// eligible at all.
fn out_of_backends(
    shared: &Shared,
    prepared: &Prepared,
    last_failure: Option<(Arc<Backend>, FailureKind)>,
) -> Reply {
    match last_failure {
        Some((backend, kind)) => {
            respond::failure_reply(&backend, prepared.method, kind, prepared.started)
        }
        None => respond::no_backend(shared, prepared.method),
    }
}

/// Picks an eligible backend, preferring one not yet tried for this request.
fn pick(
    runtime: &Runtime,
    client: IpAddr,
    tried: &[usize],
    now: Instant,
) -> Option<(usize, Arc<Backend>)> {
    let view = EligibleView {
        backends: &runtime.backends,
        now,
    };
    let mut rng = rand::rng();
    let context = PickContext {
        client: Some(client),
        exclude: tried,
    };
    let index = runtime
        .selector
        .pick(&view, &context, &mut rng)
        .or_else(|| {
            if tried.is_empty() {
                return None;
            }
            let again = PickContext {
                client: Some(client),
                exclude: &[],
            };
            runtime.selector.pick(&view, &again, &mut rng)
        })?;
    Some((index, runtime.backends.get(index)?.clone()))
}
