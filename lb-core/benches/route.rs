//! One route lookup in tables of 10, 100 and 1000 routes, and the path normalisation before it.
//!
//! The routes are what a shared balancer carries: half name a host (`svc{i}.example.com`) and
//! a segment prefix, half only a path prefix (`/svc{i}/`), one in ten also a method. The
//! request asked for matches the *last* route of its kind, so a table that scanned would pay
//! for every route before it; `miss` matches none. The budget: 200 ns at 100 routes.
//!
//! Run: `cargo bench -p lb-core --bench route -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lb_core::route::{
    HeaderMatch, HeaderSource, HostKey, HostPattern, PathPattern, PathRules, RouteMatch,
    RouteRequest, RouteTable, normalize_path,
};

struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn satisfies(&self, _: &str, want: &HeaderMatch) -> bool {
        *want == HeaderMatch::Absent
    }
}

fn routes(n: usize) -> Vec<RouteMatch> {
    (0..n)
        .map(|i| {
            let mut route = RouteMatch::default();
            if i % 2 == 0 {
                let host = format!("svc{i}.example.com");
                route
                    .hosts
                    .push(HostPattern::parse(&host).expect("valid host"));
                route.path = Some(PathPattern::SegmentPrefix(format!("/v{}", i % 3)));
            } else {
                route.path = Some(PathPattern::Prefix(format!("/svc{i}/")));
            }
            if i % 10 == 9 {
                route.methods.push("GET".into());
            }
            route
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 100, 1000] {
        let table = RouteTable::new(&routes(n));
        let host_last = format!("SVC{}.example.com:8080", (n - 2) / 2 * 2);
        let path_last = format!("/svc{}/items/42", n - 1);
        let cases = [
            (
                "host",
                host_last.as_str(),
                format!("/v{}/users/7", (n - 2) / 2 * 2 % 3),
            ),
            ("path", "www.example.com", path_last),
            ("miss", "www.example.com", "/nothing/here".to_owned()),
        ];
        for (name, host, path) in cases {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let path = normalize_path(black_box(&path), &PathRules::default())
                        .expect("a clean path");
                    let key = HostKey::new(black_box(host.as_bytes()));
                    let request = RouteRequest {
                        host: key.as_ref().map(HostKey::as_str),
                        path: &path,
                        method: "GET",
                        headers: &NoHeaders,
                    };
                    black_box(table.lookup(&request))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
