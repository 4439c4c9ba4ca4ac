//! Small terminal charts of a report's timeline: one character per column of time.
//!
//! A timeline longer than [`MAX_COLUMNS`] buckets is folded so each column covers several
//! (counts add up, latencies take the worst); two runs compared are drawn on one scale, so
//! their rows can be read against each other.

use lb_core::simulate::report::{BucketReport, Report};

/// The widest chart, in characters: fits an 80-column terminal beside its label.
pub const MAX_COLUMNS: usize = 60;

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Which buckets each column covers: `columns` ranges over `0..buckets`, in order.
pub fn columns(buckets: usize) -> Vec<std::ops::Range<usize>> {
    let columns = buckets.min(MAX_COLUMNS);
    (0..columns)
        .map(|c| c * buckets / columns..(c + 1) * buckets / columns)
        .collect()
}

/// A row of bars for `values` scaled to `0..=max`: a blank for zero, at least the lowest bar
/// for anything above it.
pub fn bars(values: &[f64], max: f64) -> String {
    values
        .iter()
        .map(|&v| {
            if v <= 0.0 || max <= 0.0 {
                ' '
            } else {
                let level = ((v / max) * LEVELS.len() as f64).ceil() as usize;
                LEVELS[level.clamp(1, LEVELS.len()) - 1]
            }
        })
        .collect()
}

/// A row of bars on a logarithmic scale from `min` to `max` (both positive): for latencies,
/// where a spike is a hundred times the usual.
pub fn log_bars(values: &[f64], min: f64, max: f64) -> String {
    if !(min > 0.0 && max > min) {
        return bars(values, max);
    }
    let span = (max / min).ln();
    values
        .iter()
        .map(|&v| {
            if v <= 0.0 {
                ' '
            } else {
                let position = ((v.max(min) / min).ln() / span).clamp(0.0, 1.0);
                LEVELS[((position * (LEVELS.len() - 1) as f64).round() as usize)
                    .min(LEVELS.len() - 1)]
            }
        })
        .collect()
}

/// Requests per second in each column.
pub fn rate(report: &Report) -> Vec<f64> {
    let seconds = report.bucket_ms as f64 / 1000.0;
    fold(report, |buckets| {
        let requests: u64 = buckets.iter().map(|b| b.requests).sum();
        requests as f64 / (seconds * buckets.len() as f64)
    })
}

/// The worst p99 latency of each column, milliseconds.
pub fn p99(report: &Report) -> Vec<f64> {
    fold(report, |buckets| {
        buckets.iter().map(|b| b.latency.p99_ms).fold(0.0, f64::max)
    })
}

/// The percentage of requests that failed, per column.
pub fn error_percent(report: &Report) -> Vec<f64> {
    fold(report, |buckets| {
        let requests: u64 = buckets.iter().map(|b| b.requests).sum();
        let errors: u64 = buckets.iter().map(|b| b.errors).sum();
        if requests == 0 {
            0.0
        } else {
            100.0 * errors as f64 / requests as f64
        }
    })
}

/// The backend's percentage of the attempts sent in each column.
pub fn attempt_share(report: &Report, backend: usize) -> Vec<f64> {
    fold(report, |buckets| {
        let mine: u64 = buckets.iter().map(|b| b.backends[backend].attempts).sum();
        let all: u64 = buckets
            .iter()
            .flat_map(|b| b.backends.iter().map(|x| x.attempts))
            .sum();
        if all == 0 {
            0.0
        } else {
            100.0 * mine as f64 / all as f64
        }
    })
}

/// The backend's state per column: `D` unhealthy at some point, else `O` breaker open,
/// `o` half-open, `·` closed and healthy.
pub fn states(report: &Report, backend: usize) -> String {
    columns(report.timeline.len())
        .into_iter()
        .map(|range| {
            let buckets = &report.timeline[range];
            let of = |b: &BucketReport| (b.backends[backend].healthy, b.backends[backend].breaker);
            if buckets.iter().any(|b| !of(b).0) {
                'D'
            } else if buckets.iter().any(|b| of(b).1 == "open") {
                'O'
            } else if buckets.iter().any(|b| of(b).1 == "half_open") {
                'o'
            } else {
                '·'
            }
        })
        .collect()
}

/// The legend of [`states`].
pub const STATES_LEGEND: &str = "· closed  o half-open  O open  D unhealthy";

fn fold(report: &Report, value: impl Fn(&[BucketReport]) -> f64) -> Vec<f64> {
    columns(report.timeline.len())
        .into_iter()
        .map(|range| value(&report.timeline[range]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fold_long_timelines_evenly() {
        assert_eq!(columns(3), [0..1, 1..2, 2..3]);
        let folded = columns(120);
        assert_eq!(folded.len(), MAX_COLUMNS);
        assert!(folded.iter().all(|r| r.len() == 2));
        let uneven = columns(61);
        assert_eq!(uneven.len(), MAX_COLUMNS);
        assert_eq!(uneven.iter().map(|r| r.len()).sum::<usize>(), 61);
        assert_eq!(uneven.last().map(|r| r.end), Some(61));
    }

    #[test]
    fn bars_scale_to_the_maximum() {
        assert_eq!(bars(&[0.0, 1.0, 4.0, 8.0], 8.0), " ▁▄█");
        assert_eq!(bars(&[0.0, 0.0], 0.0), "  ");
        assert_eq!(bars(&[0.001], 8.0), "▁", "anything above zero shows");
    }

    #[test]
    fn log_bars_show_a_spike_and_the_usual() {
        // 10 ms usual, 10 s spike: the usual is the lowest bar, the spike the highest.
        assert_eq!(
            log_bars(&[10.0, 100.0, 10_000.0, 0.0], 10.0, 10_000.0),
            "▁▃█ "
        );
        assert_eq!(
            log_bars(&[5.0, 5.0], 5.0, 5.0),
            "██",
            "a flat line falls back to linear"
        );
    }
}
