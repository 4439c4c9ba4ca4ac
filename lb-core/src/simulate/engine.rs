//! The discrete-event loop: virtual time, one event at a time, lb-core's own decisions.
//!
//! The loop merges two sources in time order: the next arrival (drawn lazily from the
//! traffic) and a heap of scheduled events — a backend's answer, a request's deadline, the end
//! of a backoff, a health probe, a scenario event. What a request does at each step is in
//! `path`; here are the loop, the probes (every `health_check.interval`, staggered over the
//! first interval as the daemon staggers them, each verdict fed to a [`HealthTracker`]) and
//! the scenario's events.
//!
//! Time is `u64` nanoseconds since the start; an [`Instant`] (`base` plus that) is built only
//! to call lb-core's state machines. Ties are broken by the order events were scheduled, so a
//! run is a pure function of its inputs and seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::balance::{BackendSpec, BackendView, Selector};
use crate::config::Config;
use crate::health::{HealthStatus, HealthTracker};
use crate::retry::{FailureKind, RetryBudget, RetryPolicy, is_idempotent};

use super::fleet::{Node, Policies};
use super::path::{KindInfo, Request};
use super::scenario::{Action, REPLAY_BUFFER_BYTES, Scenario};
use super::stats::{Happening, Outcome, Recorder};
use super::traffic::{Arrival, ArrivalStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum What {
    Scenario(u32),
    Probe(u32),
    Done { slot: u32, token: u64 },
    Deadline { slot: u32, token: u64 },
    Retry { slot: u32, token: u64 },
}

/// An event: ordered by time, then by the order it was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timed {
    at: u64,
    seq: u64,
    what: What,
}

/// The eligibility view the selector reads.
pub(super) struct View<'a> {
    pub(super) fleet: &'a [Node],
    pub(super) now: Instant,
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
    pub(super) base: Instant,
    pub(super) timeout: u64,
    pub(super) probe_interval: Option<u64>,
    pub(super) selector: Selector,
    pub(super) retry: RetryPolicy,
    pub(super) budget: RetryBudget,
    pub(super) fleet: Vec<Node>,
    pub(super) kinds: Vec<KindInfo>,
    pub(super) requests: Vec<Request>,
    pub(super) free: Vec<u32>,
    pub(super) live: usize,
    pub(super) heap: BinaryHeap<Reverse<Timed>>,
    pub(super) seq: u64,
    pub(super) tokens: u64,
    pub(super) events: Vec<(usize, Action)>,
    pub(super) arrivals: ArrivalStream<R>,
    pub(super) pending: Option<Arrival>,
    /// Latencies and errors drawn by the backends.
    pub(super) behave: R,
    /// The selector's and the backoff's draws.
    pub(super) decide: R,
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

    pub(super) fn is_current(&self, slot: u32, token: u64) -> bool {
        self.requests[slot as usize].token == token
    }

    pub(super) fn schedule(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.heap.push(Reverse(Timed {
            at,
            seq: self.seq,
            what,
        }));
    }

    pub(super) fn token(&mut self) -> u64 {
        self.tokens += 1;
        self.tokens
    }

    pub(super) fn instant(&self, nanos: u64) -> Instant {
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
