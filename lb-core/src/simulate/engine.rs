//! The discrete-event loop: virtual time, one event at a time, lb-core's own decisions.
//!
//! Each request follows the daemon's request path (`lb-proxy/src/forward.rs`): the budget
//! gets one deposit, the config's [`Selector`] picks among eligible backends (healthy, breaker
//! admits at `now`, in flight under `max_connections`) skipping those tried — or, when none is
//! left, among all — the breaker admits and later records the attempt's outcome, and after a
//! failure [`RetryPolicy::decide`] (with the shared [`RetryBudget`]) says whether to wait a
//! backoff and try again; the whole request is bounded by `server.request_timeout`. Health
//! probes run on `health_check.interval`, staggered as the daemon staggers them, and feed each
//! verdict to a [`HealthTracker`].
//!
//! Time is `u64` nanoseconds since the start; an [`Instant`] (`base` plus that) is built only
//! to call lb-core's state machines. Ties are broken by the order events were scheduled, so a
//! run is a pure function of its inputs and seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::balance::{BackendSpec, BackendView, Balancer, PickContext, Selector};
use crate::breaker::{Admission, Transition};
use crate::config::Config;
use crate::health::{HealthStatus, HealthTracker};
use crate::retry::{
    AttemptFailure, FailureKind, RetryBudget, RetryDecision, RetryPolicy, is_idempotent,
};

use super::fleet::{Node, Policies};
use super::latency::unit;
use super::scenario::{Action, REPLAY_BUFFER_BYTES, Scenario};
use super::stats::{Happening, Outcome, Recorder};
use super::traffic::{Arrival, ArrivalStream};

/// What a request kind means to the daemon.
#[derive(Debug, Clone, Copy)]
struct KindInfo {
    idempotent: bool,
    replayable: bool,
    too_large: bool,
}

/// The attempt a request has at a backend right now.
#[derive(Debug, Clone, Copy)]
struct Current {
    backend: usize,
    admission: Admission,
    /// Being served (else waiting in the backend's queue).
    in_service: bool,
    /// A deadline event is already scheduled for this attempt.
    deadline_set: bool,
    /// The status the backend will answer, drawn when service starts.
    status: u16,
}

/// A request between its arrival and its answer.
#[derive(Debug, Clone)]
struct Request {
    /// Changes with every attempt and wait, so stale events are recognised; 0 when the slot
    /// is free.
    token: u64,
    arrival: u64,
    deadline: u64,
    bucket: usize,
    client: IpAddr,
    kind: KindInfo,
    attempt: u32,
    tried: Vec<usize>,
    last_failure: Option<FailureKind>,
    current: Option<Current>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    Scenario(u32),
    Probe(u32),
    Done { slot: u32, token: u64 },
    Deadline { slot: u32, token: u64 },
    Retry { slot: u32, token: u64 },
}

/// An event: ordered by time, then by the order it was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timed {
    at: u64,
    seq: u64,
    what: What,
}

/// The eligibility view the selector reads.
struct View<'a> {
    fleet: &'a [Node],
    now: Instant,
}

impl BackendView for View<'_> {
    fn len(&self) -> usize {
        self.fleet.len()
    }
    fn is_eligible(&self, index: usize) -> bool {
        self.fleet[index].is_eligible(self.now)
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.fleet[index].in_flight
    }
}

/// One run of one configuration on one scenario.
pub(crate) struct Engine<R> {
    base: Instant,
    timeout: u64,
    probe_interval: Option<u64>,
    selector: Selector,
    retry: RetryPolicy,
    budget: RetryBudget,
    fleet: Vec<Node>,
    kinds: Vec<KindInfo>,
    requests: Vec<Request>,
    free: Vec<u32>,
    live: usize,
    heap: BinaryHeap<Reverse<Timed>>,
    seq: u64,
    tokens: u64,
    events: Vec<(usize, Action)>,
    arrivals: ArrivalStream<R>,
    pending: Option<Arrival>,
    /// Latencies and errors drawn by the backends.
    behave: R,
    /// The selector's and the backoff's draws.
    decide: R,
    pub(crate) recorder: Recorder,
}

impl<R: Rng> Engine<R> {
    /// Sets up a run; `streams` are the traffic, backend and decision generators.
    pub(crate) fn new(
        config: &Config,
        scenario: &Scenario,
        policies: &Policies,
        budget: RetryBudget,
        base: Instant,
        streams: [R; 3],
    ) -> Engine<R> {
        let [traffic, behave, decide] = streams;
        let specs: Vec<BackendSpec<'_>> = config
            .backends
            .iter()
            .map(|b| BackendSpec {
                id: &b.name,
                weight: b.weight,
            })
            .collect();
        let fleet: Vec<Node> = config
            .backends
            .iter()
            .map(|backend| {
                let (behaviour, _) = scenario.behaviour(&backend.name);
                Node::new(backend.max_connections, behaviour, policies)
            })
            .collect();
        let max_body = config.server.max_request_body_bytes;
        let kinds = scenario
            .requests
            .iter()
            .map(|kind| KindInfo {
                idempotent: is_idempotent(&kind.method),
                replayable: kind.body_bytes <= REPLAY_BUFFER_BYTES,
                too_large: kind.body_bytes > max_body,
            })
            .collect();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut engine = Engine {
            base,
            timeout: nanos(config.server.request_timeout),
            probe_interval: config
                .health_check
                .enabled
                .then(|| nanos(config.health_check.interval).max(1)),
            selector: Selector::new(config.load_balancer.algorithm, &specs),
            retry: policies.retry.clone(),
            budget,
            fleet,
            kinds,
            requests: Vec::new(),
            free: Vec::new(),
            live: 0,
            heap: BinaryHeap::new(),
            seq: 0,
            tokens: 0,
            events: Vec::new(),
            arrivals: ArrivalStream::new(scenario, traffic),
            pending: None,
            behave,
            decide,
            recorder: Recorder::new(scenario.duration, scenario.bucket, config.backends.len()),
        };
        for (index, backend) in config.backends.iter().enumerate() {
            let (_, events) = scenario.behaviour(&backend.name);
            for event in events {
                for action in &event.actions {
                    let id = u32::try_from(engine.events.len()).unwrap_or(u32::MAX);
                    engine.events.push((index, *action));
                    engine.schedule(nanos(event.at), What::Scenario(id));
                }
            }
        }
        if config.health_check.enabled {
            // The daemon spreads the first probes over one interval: backend i at i·interval/n.
            let count = u32::try_from(config.backends.len())
                .unwrap_or(u32::MAX)
                .max(1);
            for index in 0..config.backends.len() {
                let position = u32::try_from(index).unwrap_or(u32::MAX);
                let offset = config.health_check.interval / count * position;
                engine.schedule(nanos(offset), What::Probe(position));
            }
        }
        engine.pending = engine.arrivals.next();
        engine
    }

    /// Runs until the last arrival's request has its answer.
    pub(crate) fn run(&mut self) {
        loop {
            let next_event = self.heap.peek().map(|Reverse(t)| t.at);
            let arrival_at = self
                .pending
                .map(|a| u64::try_from(a.at.as_nanos()).unwrap_or(u64::MAX));
            match (next_event, arrival_at) {
                (_, None) if self.live == 0 => return,
                (Some(event), Some(arrival)) if event <= arrival => self.next_event(),
                (Some(_), None) => self.next_event(),
                (_, Some(arrival)) => {
                    if let Some(a) = self.pending.take() {
                        self.arrive(a, arrival);
                    }
                    self.pending = self.arrivals.next();
                }
                (None, None) => return,
            }
        }
    }

    fn next_event(&mut self) {
        let Some(Reverse(Timed { at, what, .. })) = self.heap.pop() else {
            return;
        };
        match what {
            What::Scenario(id) => self.apply(id as usize, at),
            What::Probe(backend) => self.probe(backend as usize, at),
            What::Done { slot, token } if self.is_current(slot, token) => {
                self.answered(slot as usize, at)
            }
            What::Deadline { slot, token } if self.is_current(slot, token) => {
                self.attempt_failed(slot as usize, at, FailureKind::ResponseTimeout)
            }
            What::Retry { slot, token } if self.is_current(slot, token) => {
                self.send(slot as usize, at)
            }
            What::Done { .. } | What::Deadline { .. } | What::Retry { .. } => {}
        }
    }

    fn is_current(&self, slot: u32, token: u64) -> bool {
        self.requests[slot as usize].token == token
    }

    fn schedule(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn token(&mut self) -> u64 {
        self.tokens += 1;
        self.tokens
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    fn arrive(&mut self, arrival: Arrival, now: u64) {
        let kind = self.kinds[arrival.kind];
        let bucket = self.recorder.bucket_of(now);
        if kind.too_large {
            self.recorder.finish(bucket, 0, Outcome::TooLarge);
            return;
        }
        self.budget.deposit(self.instant(now));
        let request = Request {
            token: 0,
            arrival: now,
            deadline: now.saturating_add(self.timeout),
            bucket,
            client: arrival.client,
            kind,
            attempt: 1,
            tried: Vec::new(),
            last_failure: None,
            current: None,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                let reused = &mut self.requests[slot as usize];
                let mut tried = std::mem::take(&mut reused.tried);
                tried.clear();
                *reused = Request { tried, ..request };
                slot as usize
            }
            None => {
                self.requests.push(request);
                self.requests.len() - 1
            }
        };
        self.live += 1;
        self.send(slot, now);
    }

    /// Picks a backend and starts an attempt, or answers when there is none.
    fn send(&mut self, slot: usize, now: u64) {
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

    fn start(&mut self, slot: usize, backend: usize, admission: Admission, now: u64) {
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
    fn serve(&mut self, slot: usize, now: u64) {
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
    fn end_attempt(&mut self, slot: usize, now: u64) -> Option<Current> {
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
    fn answered(&mut self, slot: usize, now: u64) {
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
    fn attempt_failed(&mut self, slot: usize, now: u64, kind: FailureKind) {
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

    fn may_retry(&self, slot: usize) -> bool {
        let request = &self.requests[slot];
        request.kind.replayable && request.attempt < self.retry.max_attempts()
    }

    /// lb-core's decision, counted; the backoff when it says retry.
    fn decide(&mut self, slot: usize, kind: FailureKind, now: u64) -> Option<Duration> {
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
    fn wait(
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

    fn finish(&mut self, slot: usize, now: u64, outcome: Outcome) {
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
    fn record(&mut self, backend: usize, admission: Admission, success: bool, now: u64) {
        let at = self.instant(now);
        let transition = self.fleet[backend].record(admission, success, at);
        self.transition(backend, transition, now);
    }

    fn transition(&mut self, backend: usize, transition: Option<Transition>, now: u64) {
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

    fn probe(&mut self, backend: usize, now: u64) {
        let node = &mut self.fleet[backend];
        let passed = node.up && node.health_passes(now);
        if let Some(flip) = node
            .health
            .as_mut()
            .and_then(|h: &mut HealthTracker| h.record(passed))
        {
            node.healthy = flip.to == HealthStatus::Healthy;
            self.recorder.happened(
                now,
                Happening::Health {
                    backend,
                    to: flip.to,
                },
            );
        }
        if let Some(interval) = self.probe_interval {
            let position = u32::try_from(backend).unwrap_or(u32::MAX);
            self.schedule(now.saturating_add(interval), What::Probe(position));
        }
    }

    fn apply(&mut self, id: usize, now: u64) {
        let (backend, action) = self.events[id];
        self.recorder
            .happened(now, Happening::Scenario { backend, action });
        let node = &mut self.fleet[backend];
        match action {
            Action::Down if node.up => {
                node.up = false;
                node.busy = 0;
                node.queue.clear();
                let victims: Vec<usize> = (0..self.requests.len())
                    .filter(|&slot| {
                        let r = &self.requests[slot];
                        r.token != 0 && r.current.is_some_and(|c| c.backend == backend)
                    })
                    .collect();
                for slot in victims {
                    if let Some(current) = &mut self.requests[slot].current {
                        // The server is gone already; nothing to free but the in-flight slot.
                        current.in_service = false;
                    }
                    self.attempt_failed(slot, now, FailureKind::ResetBeforeResponse);
                }
            }
            Action::Down => {}
            Action::Up => node.up = true,
            Action::Slow(factor) => node.slow = factor,
            Action::ErrorRate(rate) => node.error_rate = rate,
            Action::Health(passes) => node.set_health_endpoint(passes, now),
            Action::Flap(period) => node.flap(period, now),
        }
    }
}
