//! Property tests of the balancing algorithms, through the public `Selector` API.
//!
//! Statistical properties use a seeded generator (the seed comes from proptest, so every case
//! is reproducible) and tolerances of six binomial standard deviations, `6·√(n·p·(1−p))`:
//! a correct algorithm fails one such check with probability about 2·10⁻⁹.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};

use lb_core::balance::{Algorithm, BackendSpec, BackendView, Balancer, PickContext, Selector};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Counts the allocations made by the current thread, to check that picks make none.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Eligibility and in-flight counts in two vectors.
#[derive(Debug, Clone)]
struct View {
    eligible: Vec<bool>,
    in_flight: Vec<u64>,
}

impl View {
    fn up(eligible: Vec<bool>) -> View {
        let n = eligible.len();
        View {
            eligible,
            in_flight: vec![0; n],
        }
    }
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

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("backend-{i}")).collect()
}

fn specs<'a>(names: &'a [String], weights: &[u32]) -> Vec<BackendSpec<'a>> {
    names
        .iter()
        .zip(weights)
        .map(|(id, &weight)| BackendSpec { id, weight })
        .collect()
}

fn selector(algorithm: Algorithm, weights: &[u32]) -> Selector {
    let names = names(weights.len());
    Selector::new(algorithm, &specs(&names, weights))
}

fn counts(s: &Selector, view: &View, ctx: &PickContext<'_>, picks: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = vec![0; view.len()];
    for _ in 0..picks {
        counts[s.pick(view, ctx, &mut rng).expect("a candidate exists")] += 1;
    }
    counts
}

/// |observed − n·p| within six standard deviations (plus one for rounding).
fn within_binomial(observed: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (observed as f64 - mean).abs() <= 6.0 * sd + 1.0
}

/// An eligibility mask of length 1..=max with at least one eligible backend.
fn mask(max: usize) -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(any::<bool>(), 1..=max)
        .prop_filter("needs a candidate", |m| m.contains(&true))
}

fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        0xc000_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
    ))
}

proptest! {
    /// Over k·M picks, each of the M candidates gets exactly k, whatever the cursor's start.
    #[test]
    fn round_robin_is_exact(eligible in mask(12), k in 1usize..5, warm_up in 0usize..20) {
        let s = selector(Algorithm::RoundRobin, &vec![1; eligible.len()]);
        counts(&s, &View::up(vec![true; eligible.len()]), &PickContext::default(), warm_up, 0);
        let view = View::up(eligible.clone());
        let m = eligible.iter().filter(|&&e| e).count();
        let c = counts(&s, &view, &PickContext::default(), k * m, 0);
        for (count, up) in c.iter().zip(&eligible) {
            prop_assert_eq!(*count, if *up { k } else { 0 });
        }
    }

    /// Over Σ(candidate weights) picks, each candidate gets exactly its weight.
    #[test]
    fn smooth_wrr_is_exact_per_cycle(
        (weights, eligible) in (1usize..8).prop_flat_map(|n| (
            prop::collection::vec(1u32..20, n),
            prop::collection::vec(any::<bool>(), n).prop_filter("needs a candidate", |m| m.contains(&true)),
        )),
        warm_up in 0usize..50,
    ) {
        let s = selector(Algorithm::WeightedRoundRobin, &weights);
        counts(&s, &View::up(vec![true; weights.len()]), &PickContext::default(), warm_up, 0);
        let cycle: u32 = weights.iter().zip(&eligible).filter(|(_, e)| **e).map(|(w, _)| *w).sum();
        let c = counts(&s, &View::up(eligible.clone()), &PickContext::default(), cycle as usize, 0);
        for ((count, up), w) in c.iter().zip(&eligible).zip(&weights) {
            prop_assert_eq!(*count, if *up { *w as usize } else { 0 });
        }
    }

    /// Smoothness: backend i never runs more than 2·S/(S − wᵢ) picks in a row (S = Σw). The
    /// scheme keeps each backend's running count within about one pick of its ideal share,
    /// which gives this bound; the largest ratio seen in 30 000 random weight sets was 1.67.
    #[test]
    fn smooth_wrr_interleaves(weights in prop::collection::vec(1u32..40, 2..8)) {
        let s = selector(Algorithm::WeightedRoundRobin, &weights);
        let total: u32 = weights.iter().sum();
        let view = View::up(vec![true; weights.len()]);
        let mut rng = StdRng::seed_from_u64(0);
        let picks: Vec<usize> = (0..2 * total)
            .map(|_| s.pick(&view, &PickContext::default(), &mut rng).unwrap())
            .collect();
        for (i, &w) in weights.iter().enumerate() {
            if w == total {
                continue;
            }
            let mut run = 0u32;
            let mut longest = 0u32;
            for &p in &picks {
                run = if p == i { run + 1 } else { 0 };
                longest = longest.max(run);
            }
            prop_assert!(longest * (total - w) <= 2 * total, "backend {} ran {} in {:?}", i, longest, picks);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// 100 000 picks land within six binomial sd of each candidate's weight share.
    #[test]
    fn weighted_random_converges_to_weights(
        (weights, eligible) in (2usize..7).prop_flat_map(|n| (
            prop::collection::vec(1u32..10, n),
            prop::collection::vec(any::<bool>(), n).prop_filter("needs a candidate", |m| m.contains(&true)),
        )),
        seed in any::<u64>(),
    ) {
        const PICKS: usize = 100_000;
        let s = selector(Algorithm::WeightedRandom, &weights);
        let c = counts(&s, &View::up(eligible.clone()), &PickContext::default(), PICKS, seed);
        let total: u32 = weights.iter().zip(&eligible).filter(|(_, e)| **e).map(|(w, _)| *w).sum();
        for ((count, up), w) in c.iter().zip(&eligible).zip(&weights) {
            let p = if *up { f64::from(*w) / f64::from(total) } else { 0.0 };
            prop_assert!(within_binomial(*count, PICKS, p), "{:?} for weights {:?}", c, weights);
        }
    }

    /// 100 000 picks land within six binomial sd of 1/M on each of the M candidates.
    #[test]
    fn random_is_uniform(eligible in mask(10), seed in any::<u64>()) {
        const PICKS: usize = 100_000;
        let s = selector(Algorithm::Random, &vec![1; eligible.len()]);
        let c = counts(&s, &View::up(eligible.clone()), &PickContext::default(), PICKS, seed);
        let m = eligible.iter().filter(|&&e| e).count() as f64;
        for (count, up) in c.iter().zip(&eligible) {
            prop_assert!(within_binomial(*count, PICKS, if *up { 1.0 / m } else { 0.0 }), "{:?}", c);
        }
    }

    /// With distinct loads, the r-th least loaded of M candidates (r = 1..M) wins exactly when
    /// it is one of the two distinct uniform samples and the other is more loaded:
    /// P(r) = 2(M − r) / (M(M − 1)). In particular the most loaded never wins. This pins the
    /// whole scheme: distinct samples, uniform over candidates, the lighter one kept.
    #[test]
    fn p2c_keeps_the_lighter_of_two_distinct_samples(
        eligible in mask(8).prop_filter("two candidates", |m| m.iter().filter(|&&e| e).count() >= 2),
        seed in any::<u64>(),
    ) {
        const PICKS: usize = 60_000;
        let n = eligible.len();
        // Distinct loads (101 is prime and n < 101), in an order unrelated to the index.
        let in_flight: Vec<u64> = (0..n as u64).map(|i| i * 41 % 101 + 1).collect();
        let s = selector(Algorithm::P2c, &vec![1; n]);
        let view = View { eligible: eligible.clone(), in_flight: in_flight.clone() };
        let c = counts(&s, &view, &PickContext::default(), PICKS, seed);
        let mut ranked: Vec<usize> = (0..n).filter(|&i| eligible[i]).collect();
        ranked.sort_by_key(|&i| in_flight[i]);
        let m = ranked.len() as f64;
        for (r, &i) in ranked.iter().enumerate() {
            let p = 2.0 * (m - (r as f64 + 1.0)) / (m * (m - 1.0));
            prop_assert!(within_binomial(c[i], PICKS, p), "rank {} got {:?}", r, c);
        }
        prop_assert!(eligible.iter().zip(&c).all(|(e, k)| *e || *k == 0));
    }
}

/// Any weights, eligibility, exclusions, loads, client and view length.
#[derive(Debug, Clone)]
struct Scenario {
    weights: Vec<u32>,
    /// The view's length, which may be shorter or longer than the spec list.
    eligible: Vec<bool>,
    in_flight: Vec<u64>,
    exclude: Vec<usize>,
    client: Option<u32>,
}

impl Scenario {
    fn view(&self) -> View {
        View {
            eligible: self.eligible.clone(),
            in_flight: self.in_flight.clone(),
        }
    }

    fn is_candidate(&self, i: usize) -> bool {
        i < self.weights.len()
            && i < self.eligible.len()
            && self.eligible[i]
            && !self.exclude.contains(&i)
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..12).prop_flat_map(|n| {
        (
            prop::collection::vec(0u32..6, n),
            prop::collection::vec((any::<bool>(), 0u64..4), n.saturating_sub(2)..n + 3),
            prop::collection::vec(0usize..n + 3, 0..4),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|(weights, backends, exclude, client)| Scenario {
                weights,
                eligible: backends.iter().map(|b| b.0).collect(),
                in_flight: backends.iter().map(|b| b.1).collect(),
                exclude,
                client,
            })
    })
}

proptest! {
    /// No algorithm returns an ineligible, excluded or out-of-range index, and each returns
    /// `None` iff there is no candidate.
    #[test]
    fn only_candidates_and_none_iff_no_candidate(sc in scenario(), seed in any::<u64>()) {
        let view = sc.view();
        let ctx = PickContext { client: sc.client.map(client), exclude: &sc.exclude };
        let any_candidate = (0..sc.weights.len()).any(|i| sc.is_candidate(i));
        let mut rng = StdRng::seed_from_u64(seed);
        for algorithm in Algorithm::ALL {
            let s = selector(algorithm, &sc.weights);
            prop_assert_eq!(s.algorithm(), algorithm);
            for _ in 0..20 {
                match s.pick(&view, &ctx, &mut rng) {
                    Some(i) => prop_assert!(sc.is_candidate(i), "{:?} picked {}", algorithm, i),
                    None => prop_assert!(!any_candidate, "{:?} gave None", algorithm),
                }
            }
        }
    }

    /// Least connections returns a candidate of minimum in-flight/weight.
    #[test]
    fn least_connections_returns_a_minimum(sc in scenario(), seed in any::<u64>()) {
        let view = sc.view();
        let ctx = PickContext { client: None, exclude: &sc.exclude };
        let s = selector(Algorithm::LeastConnections, &sc.weights);
        let w = |i: usize| u128::from(sc.weights[i].max(1));
        let load = |i: usize| u128::from(sc.in_flight[i]);
        let candidates: Vec<usize> = (0..sc.weights.len()).filter(|&i| sc.is_candidate(i)).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..10 {
            if let Some(i) = s.pick(&view, &ctx, &mut rng) {
                for &j in &candidates {
                    prop_assert!(load(i) * w(j) <= load(j) * w(i), "{} beat by {}", i, j);
                }
            } else {
                prop_assert!(candidates.is_empty());
            }
        }
    }
}

/// The backend id each of `clients` client addresses maps to.
fn mapping(names: &[String], weights: &[u32], eligible: &[bool], clients: u32) -> Vec<String> {
    let s = Selector::new(Algorithm::IpHash, &specs(names, weights));
    let view = View::up(eligible.to_vec());
    let mut rng = StdRng::seed_from_u64(0);
    (0..clients)
        .map(|c| {
            let ctx = PickContext {
                client: Some(client(c)),
                exclude: &[],
            };
            names[s.pick(&view, &ctx, &mut rng).expect("all eligible")].clone()
        })
        .collect()
}

const CLIENTS: u32 = 10_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Removing one of N equal backends moves exactly the clients it served, which are
    /// between 1/(2N) and 3/(2N) of all clients (its ring share has ~10 % relative spread).
    #[test]
    fn ip_hash_removal_moves_only_the_removed_backends_clients(
        (n, removed) in (3usize..20).prop_flat_map(|n| (Just(n), 0..n)),
    ) {
        let all = names(n);
        let before = mapping(&all, &vec![1; n], &vec![true; n], CLIENTS);
        let rest: Vec<String> = all.iter().filter(|id| **id != all[removed]).cloned().collect();
        let after = mapping(&rest, &vec![1; n - 1], &vec![true; n - 1], CLIENTS);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == &all[removed] {
                moved += 1;
            } else {
                prop_assert_eq!(b, a);
            }
        }
        let share = moved as f64 / f64::from(CLIENTS);
        let ideal = 1.0 / n as f64;
        prop_assert!(share >= 0.5 * ideal && share <= 1.5 * ideal, "moved {} of {} (n = {})", moved, CLIENTS, n);
    }

    /// Raising a backend's weight moves clients only onto it; lowering it moves only its own
    /// clients away. No client moves between two other backends.
    #[test]
    fn ip_hash_weight_change_moves_only_to_or_from_that_backend(
        (weights, changed, new_weight) in (3usize..20).prop_flat_map(|n| (
            prop::collection::vec(1u32..6, n), 0..n, 1u32..10,
        )),
    ) {
        let n = weights.len();
        let ids = names(n);
        let before = mapping(&ids, &weights, &vec![true; n], CLIENTS);
        let mut reweighted = weights.clone();
        reweighted[changed] = new_weight;
        let after = mapping(&ids, &reweighted, &vec![true; n], CLIENTS);
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                let target = &ids[changed];
                if new_weight > weights[changed] {
                    prop_assert_eq!(a, target);
                } else {
                    prop_assert_eq!(b, target);
                }
            }
        }
    }

    /// An ineligible backend's clients go to their next choice — the backend they would have
    /// had if it were removed — the others stay, and all return when it is eligible again.
    #[test]
    fn ip_hash_ineligible_goes_to_next_choice_and_returns(
        (n, down) in (2usize..20).prop_flat_map(|n| (Just(n), 0..n)),
    ) {
        let ids = names(n);
        let weights = vec![1; n];
        let up = mapping(&ids, &weights, &vec![true; n], CLIENTS);
        let mut eligible = vec![true; n];
        eligible[down] = false;
        let during = mapping(&ids, &weights, &eligible, CLIENTS);
        let rest: Vec<String> = ids.iter().filter(|id| **id != ids[down]).cloned().collect();
        let removed = mapping(&rest, &vec![1; n - 1], &vec![true; n - 1], CLIENTS);
        for ((u, d), r) in up.iter().zip(&during).zip(&removed) {
            prop_assert_ne!(d, &ids[down]);
            prop_assert_eq!(d, r);
            if u != &ids[down] {
                prop_assert_eq!(u, d);
            }
        }
        prop_assert_eq!(up, mapping(&ids, &weights, &vec![true; n], CLIENTS));
    }

    /// Two selectors built independently, from the backend list in any order, agree.
    #[test]
    fn ip_hash_mapping_is_the_same_across_instances(
        weights in prop::collection::vec(1u32..5, 1..15),
        rotate in 0usize..15,
    ) {
        let ids = names(weights.len());
        let one = mapping(&ids, &weights, &vec![true; ids.len()], 2_000);
        let mut shuffled: Vec<(String, u32)> = ids.iter().cloned().zip(weights.iter().copied()).collect();
        shuffled.rotate_left(rotate % ids.len());
        shuffled.reverse();
        let (ids2, weights2): (Vec<String>, Vec<u32>) = shuffled.into_iter().unzip();
        let two = mapping(&ids2, &weights2, &vec![true; ids2.len()], 2_000);
        prop_assert_eq!(one, two);
    }
}

/// No pick allocates: every algorithm, on its fast path and on its fallbacks (one candidate
/// among 1000, no candidate, no client address for `ip_hash`).
#[test]
fn picks_do_not_allocate() {
    let before = allocations();
    drop(std::hint::black_box(Box::new(1u64)));
    assert_eq!(allocations(), before + 1, "the counter sees allocations");
    let n = 1000;
    let weights: Vec<u32> = (0..n).map(|i| 1 + i % 4).collect();
    let mut one_left = vec![false; n as usize];
    one_left[617] = true;
    let views = [
        View {
            eligible: vec![true; n as usize],
            in_flight: (0..u64::from(n)).map(|i| i % 5).collect(),
        },
        View::up(one_left),
        View::up(vec![false; n as usize]),
    ];
    let exclude = [3, 617];
    let contexts = [
        PickContext {
            client: Some(client(7)),
            exclude: &[],
        },
        PickContext {
            client: None,
            exclude: &exclude,
        },
    ];
    let mut rng = StdRng::seed_from_u64(1);
    for algorithm in Algorithm::ALL {
        let s = selector(algorithm, &weights);
        for view in &views {
            for ctx in &contexts {
                let before = allocations();
                for _ in 0..50 {
                    std::hint::black_box(s.pick(view, ctx, &mut rng));
                }
                assert_eq!(allocations(), before, "{algorithm:?} allocated");
            }
        }
    }
}
