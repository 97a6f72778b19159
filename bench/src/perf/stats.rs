//! What a run counts and measures, shared between the connection tasks and the reporter.
//!
//! The hot loops add to the atomic counters once per read or write batch, not per message, and record latencies
//! into a histogram of their own that they merge into [`Latencies`] at most a few times a second, so the shared
//! state costs a few atomic adds per batch. The reporter samples the counters every second for the progress line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Totals since the run started, over every producer and consumer.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub received: AtomicU64,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub received: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

/// A latency histogram in microseconds, from 1 µs to 10 minutes at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Latencies merged from the consumers: the current interval (for the progress line) and the whole run.
pub struct Latencies {
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            interval: Mutex::new(new_histogram()),
            total: Mutex::new(new_histogram()),
        }
    }
}

impl Latencies {
    /// Moves a consumer's local histogram in (and empties it).
    pub fn merge(&self, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        if let Ok(mut h) = self.interval.lock() {
            let _ = h.add(&*local);
        }
        local.reset();
    }

    /// Ends the current interval: returns its (p50, p99) in µs and adds it to the run's total.
    pub fn roll(&self) -> Option<(u64, u64)> {
        let mut interval = self.interval.lock().ok()?;
        if interval.is_empty() {
            return None;
        }
        let r = (interval.value_at_quantile(0.5), interval.value_at_quantile(0.99));
        if let Ok(mut t) = self.total.lock() {
            let _ = t.add(&*interval);
        }
        interval.reset();
        Some(r)
    }

    pub fn summary(&self) -> LatencySummary {
        let _ = self.roll();
        match self.total.lock() {
            Ok(t) if !t.is_empty() => LatencySummary {
                count: t.len(),
                p50: t.value_at_quantile(0.5),
                p99: t.value_at_quantile(0.99),
                p999: t.value_at_quantile(0.999),
                max: t.max(),
            },
            _ => LatencySummary::default(),
        }
    }
}

/// End-to-end latency in µs, from the stamped send time (the intended one under `--rate`) to the consumer's read.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LatencySummary {
    /// How many messages were measured.
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// This process's CPU time (user + system) in µs, from `/proc/self/stat` (10 ms resolution).
pub fn process_cpu_us() -> Option<u64> {
    proc_cpu_us("/proc/self/stat")
}

/// User + system CPU time of a process in µs from a `/proc/PID/stat` file. The clock tick is `USER_HZ`, which Linux
/// fixes at 100 for this interface on every architecture it exports it on.
pub fn proc_cpu_us(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')', field 3 (state) is index 0, so utime (field 14) is index 11 and stime (15) is index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        let a = process_cpu_us().expect("/proc/self/stat");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = process_cpu_us().expect("/proc/self/stat");
        assert!(b >= a);
    }

    #[test]
    fn latencies_roll_into_the_total() {
        let l = Latencies::default();
        let mut local = new_histogram();
        for v in 1..=100 {
            local.saturating_record(v);
        }
        l.merge(&mut local);
        assert!(local.is_empty());
        let (p50, p99) = l.roll().expect("an interval");
        assert!((49..=51).contains(&p50), "{p50}");
        assert!((98..=100).contains(&p99), "{p99}");
        assert_eq!(l.roll(), None);
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, 100);
    }
}
