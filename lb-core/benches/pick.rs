//! One `pick` of each balancing algorithm, at 3, 100 and 1000 backends.
//!
//! Every backend is eligible, with in-flight counts `i % 7` so the load-aware algorithms have
//! something to compare; `ip_hash` sees a different client address on every iteration (its
//! hash is part of the cost). Two extra cases put every other backend out (half ineligible)
//! for `round_robin` and `ip_hash`, whose cost grows with the skipping.
//!
//! Run: `cargo bench -p lb-core --bench pick -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lb_core::balance::{Algorithm, BackendSpec, BackendView, Balancer, PickContext, Selector};
use rand::SeedableRng;
use rand::rngs::StdRng;

struct View {
    eligible: Vec<bool>,
    in_flight: Vec<u64>,
}

impl BackendView for View {
    fn len(&self) -> usize {
        self.eligible.len()
    }
    fn is_eligible(&self, index: usize) -> bool {
        self.eligible[index]
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight[index]
    }
}

const SIZES: [usize; 3] = [3, 100, 1000];

fn bench_one(c: &mut Criterion, group: &str, algorithm: Algorithm, half_down: bool) {
    let mut g = c.benchmark_group(group);
    for n in SIZES {
        let names: Vec<String> = (0..n).map(|i| format!("backend-{i}")).collect();
        let specs: Vec<BackendSpec<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, id)| BackendSpec {
                id,
                weight: 1 + (i % 3) as u32,
            })
            .collect();
        let selector = Selector::new(algorithm, &specs);
        let view = View {
            eligible: (0..n).map(|i| !half_down || i % 2 == 0).collect(),
            in_flight: (0..n).map(|i| (i % 7) as u64).collect(),
        };
        let mut rng = StdRng::seed_from_u64(42);
        let mut client = 0u32;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                client = client.wrapping_add(0x9e37_79b9);
                let ctx = PickContext {
                    client: Some(IpAddr::V4(Ipv4Addr::from(client))),
                    exclude: &[],
                };
                black_box(selector.pick(black_box(&view), &ctx, &mut rng))
            })
        });
    }
    g.finish();
}

fn picks(c: &mut Criterion) {
    for algorithm in Algorithm::ALL {
        bench_one(c, algorithm.as_str(), algorithm, false);
    }
    bench_one(c, "round_robin_half_down", Algorithm::RoundRobin, true);
    bench_one(c, "ip_hash_half_down", Algorithm::IpHash, true);
}

criterion_group!(benches, picks);
criterion_main!(benches);
