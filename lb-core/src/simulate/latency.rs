//! Drawing latencies from a scenario's distributions with the caller's generator.
//!
//! `rand` 0.10 ships no normal distribution (that is `rand_distr`), and the three we need are
//! a few lines each: Box–Muller for the normal, its exponential for the log-normal, and a
//! linear interpolation of the inverse distribution function for given percentiles.

use rand::Rng;

use super::scenario::Latency;

/// The standard normal's 99th percentile: a log-normal's σ is `ln(p99 / median) / Z99`.
const Z99: f64 = 2.326_347_874_040_841;

/// A uniform draw in `[0, 1)` with 53 random bits.
pub(crate) fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Box–Muller; the second value of the pair is not kept).
pub(crate) fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let radius = (-2.0 * (1.0 - unit(rng)).ln()).sqrt();
    radius * (std::f64::consts::TAU * unit(rng)).cos()
}

/// A distribution ready to draw from, in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) enum Sampler {
    Fixed(f64),
    Normal {
        mean: f64,
        stddev: f64,
    },
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    /// `(quantile in 0..=1, nanoseconds)`, sorted.
    Percentiles(Vec<(f64, f64)>),
}

impl Sampler {
    pub(crate) fn new(latency: &Latency) -> Sampler {
        let nanos = |d: std::time::Duration| d.as_nanos() as f64;
        match latency {
            Latency::Fixed(value) => Sampler::Fixed(nanos(*value)),
            Latency::Normal { mean, stddev } => Sampler::Normal {
                mean: nanos(*mean),
                stddev: nanos(*stddev),
            },
            Latency::LogNormal { median, p99 } => {
                let median = nanos(*median).max(1.0);
                let p99 = nanos(*p99).max(median);
                Sampler::LogNormal {
                    mu: median.ln(),
                    sigma: (p99 / median).ln() / Z99,
                }
            }
            Latency::Percentiles(points) => Sampler::Percentiles(
                points
                    .iter()
                    .map(|(percentile, value)| (percentile / 100.0, nanos(*value)))
                    .collect(),
            ),
        }
    }

    /// One latency in nanoseconds, never negative.
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            Sampler::Fixed(value) => *value,
            Sampler::Normal { mean, stddev } => (mean + stddev * standard_normal(rng)).max(0.0),
            Sampler::LogNormal { mu, sigma } => (mu + sigma * standard_normal(rng)).exp(),
            Sampler::Percentiles(points) => interpolate(points, unit(rng)),
        }
    }
}

/// The value at quantile `q` of a piecewise linear inverse distribution function.
fn interpolate(points: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(first_q, first_v)) = points.first() else {
        return 0.0;
    };
    if q <= first_q {
        return first_v;
    }
    for pair in points.windows(2) {
        let ((q0, v0), (q1, v1)) = (pair[0], pair[1]);
        if q <= q1 {
            return v0 + (v1 - v0) * (q - q0) / (q1 - q0);
        }
    }
    points.last().map_or(0.0, |&(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `n` draws, sorted.
    fn draws(latency: &Latency, n: usize) -> Vec<f64> {
        let sampler = Sampler::new(latency);
        let mut rng = StdRng::seed_from_u64(11);
        let mut values: Vec<f64> = (0..n).map(|_| sampler.sample(&mut rng)).collect();
        values.sort_by(f64::total_cmp);
        values
    }

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
    }

    #[test]
    fn fixed_is_fixed() {
        assert!(
            draws(&Latency::Fixed(ms(20)), 100)
                .iter()
                .all(|v| *v == 20e6)
        );
    }

    #[test]
    fn normal_has_its_mean_and_spread_and_no_negatives() {
        let values = draws(
            &Latency::Normal {
                mean: ms(100),
                stddev: ms(10),
            },
            40_000,
        );
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        // The standard error of the mean is 10 ms / 200 = 0.05 ms; allow ten of them.
        assert!((mean - 100e6).abs() < 0.5e6, "{mean}");
        // The 84th percentile of a normal is one deviation above the mean.
        assert!((quantile(&values, 0.8413) - 110e6).abs() < 0.5e6);
        let wide = draws(
            &Latency::Normal {
                mean: ms(1),
                stddev: ms(5),
            },
            1000,
        );
        assert!(wide[0] == 0.0, "cut at zero");
    }

    #[test]
    fn lognormal_has_its_median_and_p99() {
        let values = draws(
            &Latency::LogNormal {
                median: ms(20),
                p99: ms(200),
            },
            100_000,
        );
        let median = quantile(&values, 0.5);
        let p99 = quantile(&values, 0.99);
        assert!((median / 20e6 - 1.0).abs() < 0.02, "{median}");
        assert!((p99 / 200e6 - 1.0).abs() < 0.06, "{p99}");
    }

    #[test]
    fn percentiles_interpolate_between_points_and_hold_outside() {
        let points = vec![(0.5, 20.0), (0.9, 40.0), (0.99, 200.0)];
        let table = [
            (0.0, 20.0),
            (0.5, 20.0),
            (0.7, 30.0),
            (0.9, 40.0),
            (0.945, 120.0),
            (0.99, 200.0),
            (0.999, 200.0),
        ];
        for (q, want) in table {
            assert!((interpolate(&points, q) - want).abs() < 1e-9, "q = {q}");
        }
        let values = draws(
            &Latency::Percentiles(vec![(0.0, ms(10)), (50.0, ms(20)), (100.0, ms(100))]),
            20_000,
        );
        assert!((quantile(&values, 0.5) / 20e6 - 1.0).abs() < 0.03);
        assert!(values[0] >= 10e6 && values[values.len() - 1] <= 100e6);
    }

    #[test]
    fn unit_stays_in_range() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(
            (0..10_000)
                .map(|_| unit(&mut rng))
                .all(|u| (0.0..1.0).contains(&u))
        );
    }
}
