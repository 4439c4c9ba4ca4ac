//! Arrivals: when requests come, from which client, of which kind.
//!
//! The scheduled rate (steps, ramps and bursts) is a piecewise linear function `r(t)`; its
//! integral `Λ(t)` counts the requests expected by `t`. Both arrival processes are one
//! inversion of `Λ`: the `k`-th arrival is at `Λ⁻¹(T_k)`, where the targets `T_k` step by 1
//! for evenly spaced arrivals (starting at ½) and by an exponential draw of mean 1 for a
//! Poisson process (the time-change theorem: a unit-rate Poisson process run through `Λ⁻¹` is
//! a Poisson process of rate `r(t)`). Each segment inverts in closed form, so arrivals cost
//! O(1) whatever the rate's shape, with no thinning draws wasted.
//!
//! The traffic has its own random stream, so two configurations run on one seed see exactly
//! the same requests.

use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;

use super::latency::unit;
use super::scenario::{Arrivals, Clients, RequestKind, Scenario, Traffic};

/// One request's arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Time since the start of the scenario.
    pub at: Duration,
    /// The client's address.
    pub client: IpAddr,
    /// Index into [`Scenario::requests`].
    pub kind: usize,
}

/// A stretch of time over which the rate moves in a straight line.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Start, seconds.
    start: f64,
    /// Length, seconds.
    length: f64,
    /// Rate at the start and at the end, requests per second.
    from: f64,
    to: f64,
    /// Expected requests before `start`.
    before: f64,
}

impl Segment {
    fn area(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.length
    }

    /// The time `x` into the segment at which `need` more requests are expected.
    fn invert(&self, need: f64) -> f64 {
        let slope = (self.to - self.from) / self.length;
        let x = if slope.abs() < 1e-12 {
            need / self.from
        } else {
            // Solves from·x + slope·x²/2 = need, written to avoid cancellation.
            let root = (self.from * self.from + 2.0 * slope * need).max(0.0).sqrt();
            2.0 * need / (self.from + root)
        };
        x.clamp(0.0, self.length)
    }
}

/// The scheduled rate over `0..duration`, as segments with their running integral.
#[derive(Debug, Clone)]
pub(crate) struct RateCurve {
    segments: Vec<Segment>,
}

impl RateCurve {
    pub(crate) fn new(traffic: &Traffic, duration: Duration) -> RateCurve {
        let end = duration.as_secs_f64();
        let mut cuts: Vec<f64> = vec![0.0, end];
        cuts.extend(traffic.rate.iter().map(|p| p.at.as_secs_f64()));
        for burst in &traffic.bursts {
            cuts.push(burst.at.as_secs_f64());
            cuts.push((burst.at + burst.length).as_secs_f64());
        }
        cuts.retain(|t| (0.0..=end).contains(t));
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let mut segments = Vec::with_capacity(cuts.len());
        let mut before = 0.0;
        for pair in cuts.windows(2) {
            let (start, stop) = (pair[0], pair[1]);
            let middle = (start + stop) / 2.0;
            let extra: f64 = traffic
                .bursts
                .iter()
                .filter(|b| {
                    b.at.as_secs_f64() <= middle && middle < (b.at + b.length).as_secs_f64()
                })
                .map(|b| b.rps)
                .sum();
            let segment = Segment {
                start,
                length: stop - start,
                from: base_rate(traffic, middle, start) + extra,
                to: base_rate(traffic, middle, stop) + extra,
                before,
            };
            before += segment.area();
            segments.push(segment);
        }
        RateCurve { segments }
    }

    /// Requests expected over the whole duration.
    pub(crate) fn total(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.before + s.area())
    }

    /// The rate at `t` seconds (for tests and reports).
    #[cfg(test)]
    fn rate_at(&self, t: f64) -> f64 {
        self.segments
            .iter()
            .find(|s| s.start <= t && t < s.start + s.length)
            .map_or(0.0, |s| s.from + (s.to - s.from) * (t - s.start) / s.length)
    }
}

/// The base rate at `t`, on the piece of the schedule that holds `within` (a point strictly
/// inside the segment, so a step at a segment's end does not leak into it).
fn base_rate(traffic: &Traffic, within: f64, t: f64) -> f64 {
    let points = &traffic.rate;
    let index = points
        .iter()
        .rposition(|p| p.at.as_secs_f64() <= within)
        .unwrap_or(0);
    let Some(here) = points.get(index) else {
        return 0.0;
    };
    match points.get(index + 1) {
        Some(next) if next.ramp => {
            let (t0, t1) = (here.at.as_secs_f64(), next.at.as_secs_f64());
            here.rps + (next.rps - here.rps) * (t - t0) / (t1 - t0)
        }
        _ => here.rps,
    }
}

/// Picks a client index, uniformly or by Zipf's law.
#[derive(Debug, Clone)]
struct ClientPicker {
    clients: Clients,
    /// Running sums of the Zipf weights; empty when the skew is 0 (uniform).
    cumulative: Vec<f64>,
}

impl ClientPicker {
    fn new(clients: Clients) -> ClientPicker {
        let cumulative = if clients.skew == 0.0 {
            Vec::new()
        } else {
            let mut sum = 0.0;
            (1..=clients.count)
                .map(|rank| {
                    sum += f64::from(rank).powf(-clients.skew);
                    sum
                })
                .collect()
        };
        ClientPicker {
            clients,
            cumulative,
        }
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> IpAddr {
        let u = unit(rng);
        let index = match self.cumulative.last() {
            None => (u * f64::from(self.clients.count)) as u32,
            Some(total) => {
                let x = u * total;
                u32::try_from(self.cumulative.partition_point(|&c| c <= x)).unwrap_or(u32::MAX)
            }
        };
        self.clients
            .address(index.min(self.clients.count.saturating_sub(1)))
    }
}

/// The arrivals of a scenario, in time order, drawn from one generator.
#[derive(Debug, Clone)]
pub struct ArrivalStream<R> {
    curve: RateCurve,
    /// The segment the last arrival fell in (targets only grow).
    segment: usize,
    /// `Λ` of the next arrival.
    target: f64,
    spacing: Arrivals,
    clients: ClientPicker,
    /// Running sums of the normalised request shares.
    kinds: Vec<f64>,
    rng: R,
}

impl<R: Rng> ArrivalStream<R> {
    /// The arrivals of `scenario`, drawing from `rng` (which it keeps).
    pub fn new(scenario: &Scenario, rng: R) -> ArrivalStream<R> {
        let mut sum = 0.0;
        let shares: Vec<f64> = scenario
            .requests
            .iter()
            .map(|kind: &RequestKind| {
                sum += kind.share;
                sum
            })
            .collect();
        let kinds = shares.iter().map(|s| s / sum).collect();
        let mut stream = ArrivalStream {
            curve: RateCurve::new(&scenario.traffic, scenario.duration),
            segment: 0,
            target: 0.0,
            spacing: scenario.traffic.arrivals,
            clients: ClientPicker::new(scenario.clients),
            kinds,
            rng,
        };
        stream.target = stream.step();
        stream
    }

    /// How far `Λ` moves to the next arrival.
    fn step(&mut self) -> f64 {
        match self.spacing {
            // Even: the first arrival half a request in, then one request apart.
            Arrivals::Even if self.target == 0.0 => 0.5,
            Arrivals::Even => 1.0,
            Arrivals::Poisson => -(1.0 - unit(&mut self.rng)).ln(),
        }
    }

    fn kind(&mut self) -> usize {
        let u = unit(&mut self.rng);
        self.kinds
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.kinds.len().saturating_sub(1))
    }
}

impl<R: Rng> Iterator for ArrivalStream<R> {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        if self.kinds.is_empty() {
            // A scenario built by hand with no request kinds sends nothing.
            return None;
        }
        let target = self.target;
        let segment = loop {
            let segment = *self.curve.segments.get(self.segment)?;
            if target < segment.before + segment.area() {
                break segment;
            }
            self.segment += 1;
        };
        let seconds = segment.start + segment.invert(target - segment.before);
        let at = Duration::from_secs_f64(seconds);
        let client = self.clients.pick(&mut self.rng);
        let kind = self.kind();
        self.target += self.step();
        Some(Arrival { at, client, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::scenario::{Behaviour, Burst, RatePoint};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn point(at: u64, rps: f64, ramp: bool) -> RatePoint {
        RatePoint {
            at: Duration::from_secs(at),
            rps,
            ramp,
        }
    }

    fn scenario(
        rate: Vec<RatePoint>,
        bursts: Vec<Burst>,
        arrivals: Arrivals,
        secs: u64,
    ) -> Scenario {
        Scenario {
            origin: "test".into(),
            duration: Duration::from_secs(secs),
            bucket: Duration::from_secs(1),
            seed: 1,
            traffic: Traffic {
                rate,
                bursts,
                arrivals,
            },
            clients: Clients::default(),
            requests: vec![
                RequestKind {
                    method: "GET".into(),
                    share: 3.0,
                    body_bytes: 0,
                },
                RequestKind {
                    method: "POST".into(),
                    share: 1.0,
                    body_bytes: 10,
                },
            ],
            defaults: Behaviour::default(),
            backends: vec![],
        }
    }

    fn times(s: &Scenario) -> Vec<f64> {
        ArrivalStream::new(s, StdRng::seed_from_u64(5))
            .map(|a| a.at.as_secs_f64())
            .collect()
    }

    #[test]
    fn the_curve_integrates_steps_ramps_and_bursts() {
        let traffic = Traffic {
            rate: vec![
                point(0, 10.0, false),
                point(10, 30.0, true),
                point(20, 5.0, false),
            ],
            bursts: vec![Burst {
                at: Duration::from_secs(25),
                length: Duration::from_secs(2),
                rps: 100.0,
            }],
            arrivals: Arrivals::Even,
        };
        let curve = RateCurve::new(&traffic, Duration::from_secs(30));
        // A ramp 10 → 30 into the point at 10 s (200), 30 until 20 s (300), 5 until 30 s (50),
        // and +100 for 2 s (200).
        assert!((curve.total() - (200.0 + 300.0 + 50.0 + 200.0)).abs() < 1e-9);
        let table = [
            (0.0, 10.0),
            (5.0, 20.0),
            (15.0, 30.0),
            (20.0, 5.0),
            (26.0, 105.0),
            (29.0, 5.0),
        ];
        for (t, want) in table {
            assert!((curve.rate_at(t) - want).abs() < 1e-9, "t = {t}");
        }
    }

    #[test]
    fn even_arrivals_are_evenly_spaced_at_the_rate() {
        let s = scenario(vec![point(0, 4.0, false)], vec![], Arrivals::Even, 10);
        let t = times(&s);
        assert_eq!(t.len(), 40);
        for (k, at) in t.iter().enumerate() {
            assert!((at - (k as f64 + 0.5) / 4.0).abs() < 1e-9, "{k}: {at}");
        }
    }

    #[test]
    fn even_arrivals_follow_a_ramp() {
        // 0 → 100 rps over 10 s: Λ(t) = 5 t², so arrival k is at √((k + ½) / 5).
        let s = scenario(
            vec![point(0, 0.0, false), point(10, 100.0, true)],
            vec![],
            Arrivals::Even,
            10,
        );
        let t = times(&s);
        assert_eq!(t.len(), 500);
        for (k, at) in t.iter().enumerate() {
            assert!(
                (at - ((k as f64 + 0.5) / 5.0).sqrt()).abs() < 1e-6,
                "{k}: {at}"
            );
        }
    }

    #[test]
    fn poisson_counts_match_the_rate_per_window() {
        let s = scenario(
            vec![point(0, 200.0, false), point(50, 1000.0, false)],
            vec![],
            Arrivals::Poisson,
            100,
        );
        let t = times(&s);
        let first = t.iter().filter(|&&x| x < 50.0).count() as f64;
        let second = t.len() as f64 - first;
        // Poisson counts: mean 10 000 and 50 000, standard deviations 100 and 224; allow 5.
        assert!((first - 10_000.0).abs() < 500.0, "{first}");
        assert!((second - 50_000.0).abs() < 1_120.0, "{second}");
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "in time order");
        assert!(t.iter().all(|&x| (0.0..100.0).contains(&x)));
    }

    #[test]
    fn clients_and_kinds_follow_their_shares() {
        let mut s = scenario(vec![point(0, 1000.0, false)], vec![], Arrivals::Even, 20);
        s.clients.count = 10;
        s.clients.skew = 1.0;
        let arrivals: Vec<Arrival> = ArrivalStream::new(&s, StdRng::seed_from_u64(9)).collect();
        let posts = arrivals.iter().filter(|a| a.kind == 1).count() as f64 / arrivals.len() as f64;
        assert!((posts - 0.25).abs() < 0.02, "{posts}");
        // Zipf over 10 ranks: the first has 1 / H(10) = 34 % of requests, the last 3.4 %.
        let first = s.clients.address(0);
        let last = s.clients.address(9);
        let share =
            |ip| arrivals.iter().filter(|a| a.client == ip).count() as f64 / arrivals.len() as f64;
        assert!((share(first) - 0.341).abs() < 0.02, "{}", share(first));
        assert!((share(last) - 0.0341).abs() < 0.01, "{}", share(last));
    }

    #[test]
    fn the_same_seed_gives_the_same_arrivals() {
        let s = scenario(vec![point(0, 50.0, false)], vec![], Arrivals::Poisson, 10);
        let a: Vec<Arrival> = ArrivalStream::new(&s, StdRng::seed_from_u64(1)).collect();
        let b: Vec<Arrival> = ArrivalStream::new(&s, StdRng::seed_from_u64(1)).collect();
        assert_eq!(a, b);
    }
}
