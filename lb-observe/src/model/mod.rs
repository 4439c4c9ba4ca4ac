//! What the daemon is doing: two consecutive scrapes turned into rates, error shares and
//! latency quantiles, plus short histories (`lb-tui`'s sparklines). Pure: no IO and no clock;
//! the caller says when each scrape arrived.
//!
//! Counters are differences between the previous scrape and this one, as Prometheus's `rate()`
//! does; a counter that went *down* means the daemon restarted, and then the new value is the
//! increase (Prometheus's reset rule). Quantiles come from histogram bucket deltas with linear
//! interpolation inside the bucket, as `histogram_quantile()` does. Before a second scrape
//! there is no rate, and error shares and quantiles cover the daemon's whole life: that is the
//! single-scrape view `lb-cli status` prints.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::parse::Samples;

#[cfg(test)]
mod tests;

/// Points kept per sparkline: five minutes at the default one-second interval.
pub const HISTORY_LEN: usize = 300;

/// The requests label given to answers sent without a backend (503 no backend, 413, ...).
pub const NO_BACKEND: &str = "none";

/// A circuit breaker's state as `lb_circuit_breaker_state` encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    /// 0: requests flow.
    Closed,
    /// 1: the backend is skipped.
    Open,
    /// 2: a few probe requests are let through.
    HalfOpen,
    /// The gauge is missing or holds another value.
    Unknown,
}

impl Breaker {
    fn from_gauge(value: Option<f64>) -> Self {
        match value {
            Some(0.0) => Self::Closed,
            Some(1.0) => Self::Open,
            Some(2.0) => Self::HalfOpen,
            _ => Self::Unknown,
        }
    }

    /// A short lowercase name: `closed`, `open`, `half-open`, `?`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::Unknown => "?",
        }
    }
}

/// One backend's row.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendView {
    /// The backend's name.
    pub name: String,
    /// `lb_backend_health_status`; `None` when the gauge is missing.
    pub healthy: Option<bool>,
    /// `lb_circuit_breaker_state`.
    pub breaker: Breaker,
    /// `lb_active_connections`: requests in flight now.
    pub in_flight: f64,
    /// Requests answered since the daemon started (all methods and statuses).
    pub requests_total: f64,
    /// Requests per second over the last window; `None` before a second scrape.
    pub rate: Option<f64>,
    /// Share of the window's requests that failed, in percent: answered 5xx, or with a body
    /// the backend cut off; `None` without requests.
    pub error_pct: Option<f64>,
    /// Median latency in seconds over the window; `None` without requests.
    pub p50: Option<f64>,
    /// 99th percentile latency in seconds over the window; `None` without requests.
    pub p99: Option<f64>,
    /// `lb_backend_weight`.
    pub weight: f64,
    /// The pool the backend belongs to (the `pool` label of `lb_backend_weight`); `None` from a
    /// daemon that predates pools.
    pub pool: Option<String>,
    /// This backend's share of the window's backend traffic, in percent.
    pub share: Option<f64>,
}

/// Fleet-wide figures for the header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    /// Requests per second, including answers given without a backend.
    pub rate: Option<f64>,
    /// Share of the window's requests that failed (5xx, or a body cut off), in percent.
    pub error_pct: Option<f64>,
    /// Median latency in seconds.
    pub p50: Option<f64>,
    /// 99th percentile latency in seconds.
    pub p99: Option<f64>,
    /// Backends whose health gauge is 1.
    pub healthy: usize,
    /// Backends known.
    pub backends: usize,
    /// `lb_client_connections`: client connections open now.
    pub client_connections: f64,
    /// `lb_http2_client_connections`: of them, those speaking HTTP/2 (0 from a daemon that
    /// predates the gauge).
    pub http2_connections: f64,
    /// `lb_http2_client_streams`: streams open on them.
    pub http2_streams: f64,
    /// Requests answered since the daemon started.
    pub requests_total: f64,
    /// Requests in flight over all backends.
    pub in_flight: f64,
    /// HTTP/2 client connections the balancer closed for what their client did
    /// (`lb_http2_connections_closed_total`) since it started, by reason: the reasons with
    /// a count, in the daemon's order of labels.
    pub clients_closed: Vec<(String, f64)>,
    /// Of them, those closed since the previous scrape (`None` for the first).
    pub clients_closed_recently: Option<f64>,
    /// HTTP/2 streams refused since the daemon started because their connection's room for
    /// request heads was taken (`lb_http2_streams_refused_total`; 0 from a daemon without it).
    pub http2_streams_refused: f64,
    /// Of them, those refused since the previous scrape (`None` for the first).
    pub http2_streams_refused_recently: Option<f64>,
}

/// What one scrape (and the one before it) says.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// One row per backend, sorted by name.
    pub backends: Vec<BackendView>,
    /// Fleet totals.
    pub totals: Totals,
    /// Time between the previous scrape and this one; `None` for the first.
    pub window: Option<Duration>,
    /// When this scrape arrived.
    pub received_at: Instant,
}

/// Rate and error share over time, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Requests per second.
    pub rate: VecDeque<f64>,
    /// Error share in percent (0 when there were no requests).
    pub error_pct: VecDeque<f64>,
}

impl Series {
    fn push(&mut self, rate: f64, error_pct: f64) {
        for (queue, value) in [(&mut self.rate, rate), (&mut self.error_pct, error_pct)] {
            if queue.len() == HISTORY_LEN {
                queue.pop_front();
            }
            queue.push_back(value);
        }
    }
}

/// Histories for the sparklines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The whole fleet.
    pub total: Series,
    /// Per backend, by name.
    pub backends: BTreeMap<String, Series>,
}

/// One backend's raw series from one scrape.
#[derive(Debug, Clone, Default)]
struct BackendScrape {
    /// `lb_requests_total` by (method, status).
    requests: HashMap<(String, String), f64>,
    /// `lb_request_duration_seconds_bucket` as (le, cumulative count), sorted by le.
    buckets: Vec<(f64, f64)>,
    health: Option<f64>,
    breaker: Option<f64>,
    active: Option<f64>,
    weight: Option<f64>,
    pool: Option<String>,
    /// `lb_backend_body_failures_total`: bodies the backend cut off after a head went out
    /// (0 from a daemon that predates the counter).
    body_failures: f64,
}

/// The parts of a scrape the model keeps.
#[derive(Debug, Clone)]
struct Snapshot {
    /// By backend label, including [`NO_BACKEND`].
    backends: BTreeMap<String, BackendScrape>,
    client_connections: f64,
    http2_connections: f64,
    http2_streams: f64,
    /// `lb_http2_connections_closed_total` by reason.
    clients_closed: Vec<(String, f64)>,
    http2_streams_refused: f64,
    received_at: Instant,
}

impl Snapshot {
    fn from_samples(samples: &Samples, received_at: Instant) -> Self {
        let mut backends: BTreeMap<String, BackendScrape> = BTreeMap::new();
        let mut clients_closed: Vec<(String, f64)> = Vec::new();
        for sample in &samples.0 {
            if sample.name == "lb_http2_connections_closed_total" {
                let reason = sample.label("reason").unwrap_or("").to_owned();
                match clients_closed
                    .iter_mut()
                    .find(|(known, _)| *known == reason)
                {
                    Some((_, count)) => *count += sample.value,
                    None => clients_closed.push((reason, sample.value)),
                }
                continue;
            }
            let Some(backend) = sample.label("backend") else {
                continue;
            };
            let entry = backends.entry(backend.to_owned()).or_default();
            match sample.name.as_str() {
                "lb_requests_total" => {
                    let method = sample.label("method").unwrap_or("").to_owned();
                    let status = sample.label("status").unwrap_or("").to_owned();
                    *entry.requests.entry((method, status)).or_insert(0.0) += sample.value;
                }
                "lb_request_duration_seconds_bucket" => {
                    // One histogram per route reaches a backend: buckets of one bound add up.
                    if let Some(le) = sample.label("le").and_then(parse_le) {
                        match entry.buckets.iter_mut().find(|(bound, _)| *bound == le) {
                            Some((_, count)) => *count += sample.value,
                            None => entry.buckets.push((le, sample.value)),
                        }
                    }
                }
                "lb_backend_health_status" => entry.health = Some(sample.value),
                "lb_circuit_breaker_state" => entry.breaker = Some(sample.value),
                "lb_active_connections" => entry.active = Some(sample.value),
                "lb_backend_body_failures_total" => entry.body_failures += sample.value,
                "lb_backend_weight" => {
                    entry.weight = Some(sample.value);
                    entry.pool = sample.label("pool").map(str::to_owned);
                }
                _ => {}
            }
        }
        for backend in backends.values_mut() {
            backend.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Self {
            backends,
            client_connections: samples.value("lb_client_connections").unwrap_or(0.0),
            http2_connections: samples.value("lb_http2_client_connections").unwrap_or(0.0),
            http2_streams: samples.value("lb_http2_client_streams").unwrap_or(0.0),
            clients_closed,
            http2_streams_refused: (samples.value("lb_http2_streams_refused_total")).unwrap_or(0.0),
            received_at,
        }
    }
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => text.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// The increase of a counter from `previous` to `current`; a decrease is a reset, after which
/// the counter counted `current` from zero.
pub fn counter_delta(previous: Option<f64>, current: f64) -> f64 {
    match previous {
        Some(p) if current >= p => current - p,
        _ => current,
    }
}

/// Bucket increases between two cumulative histograms of the same layout; a histogram whose
/// any bucket went down was reset, and its current buckets are the increase.
fn bucket_delta(previous: Option<&[(f64, f64)]>, current: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let Some(previous) = previous else {
        return current.to_vec();
    };
    let before = |le: f64| {
        previous
            .iter()
            .find(|(p, _)| *p == le)
            .map_or(0.0, |(_, c)| *c)
    };
    if current.iter().any(|&(le, count)| count < before(le)) {
        return current.to_vec();
    }
    current
        .iter()
        .map(|&(le, count)| (le, count - before(le)))
        .collect()
}

/// The `q` quantile (0..=1) of cumulative `buckets` (sorted by upper bound `le`, the last
/// `+Inf`), interpolating linearly inside the bucket that holds the rank and taking 0 as the
/// lower edge of the first. A rank in the `+Inf` bucket gives the highest finite bound, as
/// Prometheus's `histogram_quantile` does. `None` when the histogram is empty.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    // Also rejects NaN.
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower_le, mut lower_count) = (0.0, 0.0);
    for &(le, count) in buckets {
        // Buckets are read non-atomically by the exporter: never let the cumulative count fall.
        let count = count.max(lower_count);
        if count >= rank && count > lower_count {
            if le.is_infinite() {
                return Some(lower_le);
            }
            return Some(lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count));
        }
        (lower_le, lower_count) = (le, count);
    }
    Some(lower_le)
}

/// Adds `from` into `into`, matching buckets by upper bound.
fn merge_buckets(into: &mut Vec<(f64, f64)>, from: &[(f64, f64)]) {
    for &(le, count) in from {
        match into.iter_mut().find(|(l, _)| *l == le) {
            Some(slot) => slot.1 += count,
            None => into.push((le, count)),
        }
    }
    into.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// Request and failure increases of one backend over the window: failures are the answers
/// with a 5xx status and the bodies the backend cut off after a head that said otherwise (at
/// most one failure per request).
fn request_deltas(previous: Option<&BackendScrape>, current: &BackendScrape) -> (f64, f64) {
    let mut requests = 0.0;
    let mut errors = 0.0;
    for (key, &value) in &current.requests {
        let delta = counter_delta(previous.and_then(|p| p.requests.get(key).copied()), value);
        requests += delta;
        if key.1.starts_with('5') {
            errors += delta;
        }
    }
    let before = previous.map(|p| p.body_failures);
    errors += counter_delta(before, current.body_failures);
    (requests, errors.min(requests))
}

fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| 100.0 * part / whole)
}

/// The state fed by scrapes: the last scrape, the view computed from it, and the histories.
#[derive(Debug, Clone, Default)]
pub struct Model {
    previous: Option<Snapshot>,
    view: Option<View>,
    history: History,
}

impl Model {
    /// An empty model: no scrape yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest view, once a scrape has been ingested.
    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// Rate and error histories.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Takes in a scrape that arrived at `received_at`: computes the view against the previous
    /// scrape and appends to the histories.
    pub fn ingest(&mut self, scrape: Samples, received_at: Instant) {
        let current = Snapshot::from_samples(&scrape, received_at);
        let previous = self.previous.take();
        let window = previous
            .as_ref()
            .and_then(|p| received_at.checked_duration_since(p.received_at))
            .filter(|w| !w.is_zero());
        let per_second = |count: f64| window.map(|w| count / w.as_secs_f64());

        let mut rows = Vec::new();
        let closed = |snapshot: &Snapshot| snapshot.clients_closed.iter().map(|(_, n)| n).sum();
        // A counter's increase since the previous scrape (`None` for the first).
        let recently = |count: &dyn Fn(&Snapshot) -> f64| {
            (previous.as_ref().filter(|_| window.is_some()))
                .map(|before| counter_delta(Some(count(before)), count(&current)))
        };
        let mut totals = Totals {
            client_connections: current.client_connections,
            http2_connections: current.http2_connections,
            http2_streams: current.http2_streams,
            http2_streams_refused: current.http2_streams_refused,
            clients_closed: (current.clients_closed.iter())
                .filter(|(_, count)| *count > 0.0)
                .cloned()
                .collect(),
            clients_closed_recently: recently(&closed),
            http2_streams_refused_recently: recently(&|s| s.http2_streams_refused),
            ..Totals::default()
        };
        let (mut all_requests, mut all_errors, mut backend_requests) = (0.0, 0.0, 0.0);
        let mut all_buckets = Vec::new();
        let mut row_requests = Vec::new();
        for (name, scrape) in &current.backends {
            let before = previous.as_ref().and_then(|p| p.backends.get(name));
            let (requests, errors) = request_deltas(before, scrape);
            let buckets = bucket_delta(before.map(|b| b.buckets.as_slice()), &scrape.buckets);
            all_requests += requests;
            all_errors += errors;
            merge_buckets(&mut all_buckets, &buckets);
            let lifetime: f64 = scrape.requests.values().sum();
            totals.requests_total += lifetime;
            // "none" counts answers given without a backend: in the totals, not a row.
            let is_backend = scrape.health.is_some() || scrape.weight.is_some();
            if !is_backend {
                continue;
            }
            backend_requests += requests;
            let healthy = scrape.health.map(|h| h >= 1.0);
            totals.backends += 1;
            totals.healthy += usize::from(healthy == Some(true));
            let in_flight = scrape.active.unwrap_or(0.0);
            totals.in_flight += in_flight;
            row_requests.push(requests);
            rows.push(BackendView {
                name: name.clone(),
                healthy,
                breaker: Breaker::from_gauge(scrape.breaker),
                in_flight,
                requests_total: lifetime,
                rate: per_second(requests),
                error_pct: percent(errors, requests),
                p50: quantile(0.5, &buckets),
                p99: quantile(0.99, &buckets),
                weight: scrape.weight.unwrap_or(0.0),
                pool: scrape.pool.clone(),
                share: None,
            });
        }
        for (row, requests) in rows.iter_mut().zip(row_requests) {
            row.share = percent(requests, backend_requests);
        }
        // Pools group their backends: by pool, then by name (the map's order).
        rows.sort_by(|a, b| a.pool.cmp(&b.pool));
        totals.rate = per_second(all_requests);
        totals.error_pct = percent(all_errors, all_requests);
        totals.p50 = quantile(0.5, &all_buckets);
        totals.p99 = quantile(0.99, &all_buckets);

        if let Some(rate) = totals.rate {
            self.history
                .total
                .push(rate, totals.error_pct.unwrap_or(0.0));
            self.history
                .backends
                .retain(|name, _| rows.iter().any(|r| &r.name == name));
            for row in &rows {
                self.history
                    .backends
                    .entry(row.name.clone())
                    .or_default()
                    .push(row.rate.unwrap_or(0.0), row.error_pct.unwrap_or(0.0));
            }
        }
        self.view = Some(View {
            backends: rows,
            totals,
            window,
            received_at,
        });
        self.previous = Some(current);
    }
}
