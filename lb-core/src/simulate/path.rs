//! One request's path, as the daemon's `forward.rs` walks it: pick (skipping backends tried,
//! then any), admit through the breaker, wait for the backend, record the outcome, and on a
//! failure ask lb-core whether to wait a backoff and try again; answer in one place.

use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;

use crate::balance::{Balancer, PickContext};
use crate::breaker::{Admission, Transition};
use crate::retry::{AttemptFailure, FailureKind, RetryDecision};

use super::engine::{Engine, View, What};
use super::latency::unit;
use super::stats::{Happening, Outcome};

/// What a request kind means to the daemon.
#[derive(Debug, Clone, Copy)]
pub(super) struct KindInfo {
    pub(super) idempotent: bool,
    pub(super) replayable: bool,
    pub(super) too_large: bool,
}

/// The attempt a request has at a backend right now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Current {
    pub(super) backend: usize,
    pub(super) admission: Admission,
    /// Being served (else waiting in the backend's queue).
    pub(super) in_service: bool,
    /// A deadline event is already scheduled for this attempt.
    pub(super) deadline_set: bool,
    /// The status the backend will answer, drawn when service starts.
    pub(super) status: u16,
}

/// A request between its arrival and its answer.
#[derive(Debug, Clone)]
pub(super) struct Request {
    /// Changes with every attempt and wait, so stale events are recognised; 0 when the slot
    /// is free.
    pub(super) token: u64,
    pub(super) arrival: u64,
    pub(super) deadline: u64,
    pub(super) bucket: usize,
    pub(super) client: IpAddr,
    pub(super) kind: KindInfo,
    pub(super) attempt: u32,
    pub(super) tried: Vec<usize>,
    pub(super) last_failure: Option<FailureKind>,
    pub(super) current: Option<Current>,
}

impl<R: Rng> Engine<R> {
    /// Picks a backend and starts an attempt, or answers when there is none.
    pub(super) fn send(&mut self, slot: usize, now: u64) {
        let at = self.instant(now);
        let mut refusals = 0;
        loop {
            let request = &self.requests[slot];
            let view = View {
                fleet: &self.fleet,
                now: at,
            };
            let context = PickContext {
                client: Some(request.client),
                exclude: &request.tried,
            };
            let mut picked = self.selector.pick(&view, &context, &mut self.decide);
            if picked.is_none() && !request.tried.is_empty() {
                let again = PickContext {
                    client: Some(request.client),
                    exclude: &[],
                };
                picked = self.selector.pick(&view, &again, &mut self.decide);
            }
            let Some(backend) = picked else {
                let outcome = match request.last_failure {
                    Some(kind) => Outcome::Failed(kind),
                    None => Outcome::NoBackend,
                };
                return self.finish(slot, now, outcome);
            };
            let (admission, transition) = self.fleet[backend].admit(at);
            self.transition(backend, transition, now);
            // Eligibility was judged at this very instant, so nothing can have taken the
            // slot or the probe; the daemon's refusal path is kept for fidelity.
            if admission == Admission::Rejected || !self.fleet[backend].has_room() {
                self.fleet[backend].release(admission);
                refusals += 1;
                if refusals > self.fleet.len() {
                    return self.finish(slot, now, Outcome::NoBackend);
                }
                self.requests[slot].tried.push(backend);
                continue;
            }
            return self.start(slot, backend, admission, now);
        }
    }

    pub(super) fn start(&mut self, slot: usize, backend: usize, admission: Admission, now: u64) {
        let token = self.token();
        let request = &mut self.requests[slot];
        request.token = token;
        request.current = Some(Current {
            backend,
            admission,
            in_service: false,
            deadline_set: false,
            status: 0,
        });
        let deadline = request.deadline;
        let node = &mut self.fleet[backend];
        node.in_flight += 1;
        self.recorder.attempt(backend, now, node.in_flight);
        if !node.up {
            return self.attempt_failed(slot, now, FailureKind::ConnectRefused);
        }
        if node.has_server() {
            self.serve(slot, now);
        } else {
            node.queue.push_back((slot, token));
            if let Some(current) = &mut self.requests[slot].current {
                current.deadline_set = true;
            }
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            self.schedule(deadline, What::Deadline { slot, token });
        }
    }

    /// The backend starts working on the request's attempt.
    pub(super) fn serve(&mut self, slot: usize, now: u64) {
        let request = &mut self.requests[slot];
        let Some(current) = &mut request.current else {
            return;
        };
        let node = &mut self.fleet[current.backend];
        node.busy += 1;
        let latency = node.latency(&mut self.behave);
        current.status = if node.error_rate > 0.0 && unit(&mut self.behave) < node.error_rate {
            node.error_status
        } else {
            200
        };
        current.in_service = true;
        let done = now.saturating_add(latency);
        let (token, deadline, deadline_set) =
            (request.token, request.deadline, current.deadline_set);
        current.deadline_set = true;
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        if done < deadline {
            self.schedule(done, What::Done { slot, token });
        } else if !deadline_set {
            self.schedule(deadline, What::Deadline { slot, token });
        }
    }

    /// Ends the request's current attempt at its backend: frees the server (starting the
    /// next one queued) and the in-flight slot. Returns the attempt.
    pub(super) fn end_attempt(&mut self, slot: usize, now: u64) -> Option<Current> {
        let current = self.requests[slot].current.take()?;
        let node = &mut self.fleet[current.backend];
        node.in_flight -= 1;
        if current.in_service {
            node.busy -= 1;
            while let Some((next, token)) = self.fleet[current.backend].queue.pop_front() {
                let waiting = &self.requests[next];
                if waiting.token == token && waiting.current.is_some_and(|c| !c.in_service) {
                    self.serve(next, now);
                    break;
                }
            }
        }
        Some(current)
    }

    /// The backend answered.
    pub(super) fn answered(&mut self, slot: usize, now: u64) {
        let Some(current) = self.end_attempt(slot, now) else {
            return;
        };
        let (backend, status) = (current.backend, current.status);
        let success = status < 500;
        self.record(backend, current.admission, success, now);
        if success {
            return self.finish(slot, now, Outcome::Answered { backend, status });
        }
        let kind = FailureKind::Status(status);
        self.recorder.attempt_failed(backend, kind);
        let wanted = self.retry.retry_on().iter().any(|c| kind.matches(c));
        if !wanted || !self.may_retry(slot) {
            return self.finish(slot, now, Outcome::Answered { backend, status });
        }
        match self.decide(slot, kind, now) {
            Some(backoff) => self.wait(slot, now, backoff, backend, kind),
            // The kept response is the answer.
            None => self.finish(slot, now, Outcome::Answered { backend, status }),
        }
    }

    /// The attempt failed without an answer: refused, cut, or out of time.
    pub(super) fn attempt_failed(&mut self, slot: usize, now: u64, kind: FailureKind) {
        let Some(current) = self.end_attempt(slot, now) else {
            return;
        };
        self.record(current.backend, current.admission, false, now);
        self.recorder.attempt_failed(current.backend, kind);
        if self.may_retry(slot)
            && let Some(backoff) = self.decide(slot, kind, now)
        {
            return self.wait(slot, now, backoff, current.backend, kind);
        }
        self.finish(slot, now, Outcome::Failed(kind))
    }

    pub(super) fn may_retry(&self, slot: usize) -> bool {
        let request = &self.requests[slot];
        request.kind.replayable && request.attempt < self.retry.max_attempts()
    }

    /// lb-core's decision, counted; the backoff when it says retry.
    pub(super) fn decide(&mut self, slot: usize, kind: FailureKind, now: u64) -> Option<Duration> {
        let request = &self.requests[slot];
        let failure = AttemptFailure {
            attempt: request.attempt,
            kind,
            idempotent: request.kind.idempotent,
            body_replayable: request.kind.replayable,
        };
        let bucket = request.bucket;
        let at = self.instant(now);
        match self
            .retry
            .decide(&failure, &self.budget, at, &mut self.decide)
        {
            RetryDecision::Retry { backoff } => {
                self.recorder.retry(bucket);
                Some(backoff)
            }
            RetryDecision::GiveUp(reason) => {
                self.recorder.gave_up(bucket, reason);
                None
            }
        }
    }

    /// Waits the backoff before the next attempt, unless it would pass the deadline (504).
    pub(super) fn wait(
        &mut self,
        slot: usize,
        now: u64,
        backoff: Duration,
        backend: usize,
        kind: FailureKind,
    ) {
        let wake = now.saturating_add(u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX));
        if wake >= self.requests[slot].deadline {
            return self.finish(slot, now, Outcome::Failed(FailureKind::ResponseTimeout));
        }
        let token = self.token();
        let request = &mut self.requests[slot];
        request.token = token;
        request.tried.push(backend);
        request.attempt += 1;
        request.last_failure = Some(kind);
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        self.schedule(wake, What::Retry { slot, token });
    }

    pub(super) fn finish(&mut self, slot: usize, now: u64, outcome: Outcome) {
        let request = &mut self.requests[slot];
        let latency = now.saturating_sub(request.arrival);
        let bucket = request.bucket;
        request.token = 0;
        request.current = None;
        self.free.push(u32::try_from(slot).unwrap_or(u32::MAX));
        self.live -= 1;
        self.recorder.finish(bucket, latency, outcome);
    }

    /// Feeds an attempt's outcome to the backend's breaker.
    pub(super) fn record(&mut self, backend: usize, admission: Admission, success: bool, now: u64) {
        let at = self.instant(now);
        let transition = self.fleet[backend].record(admission, success, at);
        self.transition(backend, transition, now);
    }

    pub(super) fn transition(&mut self, backend: usize, transition: Option<Transition>, now: u64) {
        if let Some(t) = transition {
            self.recorder.happened(
                now,
                Happening::Breaker {
                    backend,
                    from: t.from,
                    to: t.to,
                    open_for: t.open_for,
                },
            );
        }
    }
}
