//! End-to-end latency of a queue: publish -> deliver and publish -> ack, in milliseconds, in HDR histograms over a
//! sliding window (the current minute plus the previous one; the sampler rotates them every 60 s), for the admin
//! API's percentiles; and, since the queue was made, in the fixed buckets of [`BUCKETS_MS`] ([`Cumulative`]), for
//! Prometheus histograms, whose buckets must only ever grow.
//!
//! Latencies are whole milliseconds, at least 1: a sub-millisecond latency counts as 1 ms.

use hdrhistogram::Histogram;

/// The upper bounds (ms) of the buckets the admin API reports.
pub const BUCKETS_MS: &[u64] = &[
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
];

/// Highest latency recorded (ms): an hour; longer ones count as an hour.
const MAX_MS: u64 = 3_600_000;

/// Two significant digits (1% precision) and 32-bit counts keep a histogram near 8 KiB, allocated only while the
/// queue has traffic: an idle queue holds none (thousands of queues must not cost hundreds of MB).
fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_MS, 2).expect("valid histogram bounds")
}

#[derive(Default)]
pub struct Window {
    current: Option<Histogram<u32>>,
    previous: Option<Histogram<u32>>,
    /// Consecutive equal values not yet in `current` (value, count): on a busy queue most messages take the same
    /// whole number of milliseconds, so one histogram update covers a run of them. Part of `current` in every
    /// figure.
    run: (u64, u32),
    /// Everything recorded since the queue was made (the pending run is added when read).
    total: Cumulative,
}

/// A queue's latencies since it was made, in the buckets of [`BUCKETS_MS`] (per bucket, not cumulative; the last
/// counts what is above the largest bound), with their count and sum: a Prometheus histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cumulative {
    pub count: u64,
    pub sum_ms: u64,
    pub buckets: [u64; BUCKETS_MS.len() + 1],
}

impl Cumulative {
    fn add(&mut self, ms: u64, n: u64) {
        self.count += n;
        self.sum_ms += ms * n;
        // The first bucket whose bound is at least `ms` (a bucket holds what is <= its bound).
        self.buckets[BUCKETS_MS.partition_point(|&b| b < ms)] += n;
    }
}

/// Percentiles (ms) and the reported buckets (upper bound ms, count) of a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub buckets: Vec<(u64, u64)>,
}

impl Window {
    pub fn record(&mut self, ms: u64) {
        let ms = ms.clamp(1, MAX_MS);
        if self.run.0 == ms && self.run.1 < u32::MAX {
            self.run.1 += 1;
        } else {
            self.flush_run();
            self.run = (ms, 1);
        }
    }

    /// Puts the pending run into `current`.
    fn flush_run(&mut self) {
        let (ms, n) = std::mem::take(&mut self.run);
        if n > 0 {
            let _ = self.current.get_or_insert_with(histogram).record_n(ms, n);
            self.total.add(ms, u64::from(n));
        }
    }

    /// The current minute becomes the previous one; the one before is dropped (with its memory).
    pub fn rotate(&mut self) {
        self.flush_run();
        self.previous = self.current.take();
    }

    /// Every latency recorded since the queue was made.
    pub fn cumulative(&self) -> Cumulative {
        let mut c = self.total.clone();
        if self.run.1 > 0 {
            c.add(self.run.0, u64::from(self.run.1));
        }
        c
    }

    pub fn summary(&self) -> Summary {
        let pending = (self.run.1 > 0).then(|| {
            let mut h = self.current.clone().unwrap_or_else(histogram);
            let _ = h.record_n(self.run.0, self.run.1);
            h
        });
        let current = pending.as_ref().or(self.current.as_ref());
        let h = match (current, &self.previous) {
            (None, None) => return Summary::default(),
            (Some(h), None) | (None, Some(h)) => h.clone(),
            (Some(a), Some(b)) => {
                let mut h = a.clone();
                let _ = h.add(b);
                h
            }
        };
        if h.is_empty() {
            return Summary::default();
        }
        let mut buckets = Vec::with_capacity(BUCKETS_MS.len());
        let mut below = 0;
        for &b in BUCKETS_MS {
            let upto = h.count_between(1, b);
            buckets.push((b, upto.saturating_sub(below)));
            below = upto;
        }
        Summary {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            buckets,
        }
    }
}

#[derive(Default)]
pub struct Latency {
    pub deliver: Window,
    pub ack: Window,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_window() {
        let mut w = Window::default();
        for ms in 1..=100 {
            w.record(ms);
        }
        let s = w.summary();
        assert_eq!(s.count, 100);
        assert!((49..=51).contains(&s.p50), "{s:?}");
        assert_eq!(s.max, 100);
        assert_eq!(s.buckets.iter().map(|(_, n)| n).sum::<u64>(), 100);
        w.rotate();
        assert_eq!(w.summary().count, 100, "the previous minute still counts");
        w.rotate();
        assert_eq!(w.summary().count, 0);
        assert_eq!(w.cumulative().count, 100, "the cumulative figures never drop anything");
    }

    #[test]
    fn cumulative_buckets_hold_what_is_at_most_their_bound() {
        let mut w = Window::default();
        for ms in [0, 1, 2, 3, 3, 60_000, 60_001, 5_000_000] {
            w.record(ms);
        }
        let c = w.cumulative();
        assert_eq!(c.count, 8);
        assert_eq!(c.sum_ms, 1 + 1 + 2 + 3 + 3 + 60_000 + 60_001 + MAX_MS);
        assert_eq!(&c.buckets[..3], &[2, 1, 2], "le=1: 0 and 1; le=2: 2; le=5: 3, 3");
        assert_eq!(c.buckets[BUCKETS_MS.len() - 1], 1, "le=60000");
        assert_eq!(c.buckets[BUCKETS_MS.len()], 2, "above the largest bound");
        assert_eq!(c.buckets.iter().sum::<u64>(), c.count);
    }

    #[test]
    fn runs_of_equal_values_count_like_single_records() {
        let values = [3, 3, 3, 0, 1, 1, 7, 7, 7, 7, 3, 5_000_000];
        let mut w = Window::default();
        let mut h = histogram();
        for v in values {
            w.record(v);
            let _ = h.record(v.clamp(1, MAX_MS));
            // Every figure includes the run still pending.
            assert_eq!(w.summary().count, h.len());
            assert_eq!(w.summary().max, h.max());
        }
        assert_eq!(w.summary().p50, h.value_at_quantile(0.5));
        w.rotate();
        assert_eq!(
            w.summary().count,
            values.len() as u64,
            "the run went into the minute that rotated"
        );
    }
}
