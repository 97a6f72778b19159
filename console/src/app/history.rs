//! What the console remembers of past snapshots: per queue, a ring of samples taken from each stream snapshot, from
//! which the views draw sparklines and rate charts and the queue table derives its lag trend.
//!
//! Invariants: samples are appended in arrival order (their `at_ms` never decreases within a ring), and a ring
//! holds at most [`CAPACITY`] samples (ten minutes at one snapshot a second).

use std::collections::{HashMap, HashSet, VecDeque};

use warren_shared::{Overview, QueueInfo};

use crate::event::QueueKey;

/// Samples kept per queue.
pub const CAPACITY: usize = 600;

/// One queue at one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    pub at_ms: u64,
    /// Messages per second in (published) and out (delivered), and acked, over the last second.
    pub publish: f64,
    pub deliver: f64,
    pub ack: f64,
    /// Rejects + nacks + expired + dropped, per second.
    pub errors: f64,
    pub ready: u64,
    pub unacked: u64,
}

impl Sample {
    pub fn of(q: &QueueInfo, at_ms: u64) -> Self {
        let r = &q.rates;
        Sample {
            at_ms,
            publish: r.publish.last_1s,
            deliver: r.deliver.last_1s,
            ack: r.ack.last_1s,
            errors: r.reject.last_1s + r.nack.last_1s + r.expired.last_1s + r.dropped.last_1s,
            ready: q.messages_ready,
            unacked: q.messages_unacked,
        }
    }

    pub fn of_overview(o: &Overview, at_ms: u64) -> Self {
        let r = &o.rates;
        Sample {
            at_ms,
            publish: r.publish.last_1s,
            deliver: r.deliver.last_1s,
            ack: r.ack.last_1s,
            errors: r.reject.last_1s + r.nack.last_1s + r.expired.last_1s + r.dropped.last_1s,
            ready: o.totals.messages_ready,
            unacked: o.totals.messages_unacked,
        }
    }
}

/// Whether a queue's backlog is growing, draining or holding steady.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trend {
    Draining,
    Stable,
    Growing,
}

impl Trend {
    pub fn word(self) -> &'static str {
        match self {
            Trend::Growing => "growing",
            Trend::Draining => "draining",
            Trend::Stable => "stable",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct History {
    queues: HashMap<QueueKey, VecDeque<Sample>>,
    overview: VecDeque<Sample>,
}

fn push(ring: &mut VecDeque<Sample>, s: Sample) {
    if ring.len() == CAPACITY {
        ring.pop_front();
    }
    ring.push_back(s);
}

impl History {
    /// Records one snapshot; queues that are gone lose their history.
    pub fn record(&mut self, overview: &Overview, queues: &[QueueInfo], at_ms: u64) {
        push(&mut self.overview, Sample::of_overview(overview, at_ms));
        // One set per snapshot keeps this linear in the number of queues (a scan per key was quadratic).
        let present: HashSet<(&str, &str)> = queues.iter().map(|q| (q.vhost.as_str(), q.name.as_str())).collect();
        self.queues
            .retain(|k, _| present.contains(&(k.vhost.as_str(), k.name.as_str())));
        for q in queues {
            let ring = self.queues.entry(QueueKey::new(&q.vhost, &q.name)).or_default();
            push(ring, Sample::of(q, at_ms));
        }
    }

    pub fn queue(&self, key: &QueueKey) -> Option<&VecDeque<Sample>> {
        self.queues.get(key)
    }

    pub fn overview(&self) -> &VecDeque<Sample> {
        &self.overview
    }

    /// The last `n` values of `f` for a queue, oldest first.
    pub fn series(&self, key: &QueueKey, n: usize, f: impl Fn(&Sample) -> f64) -> Vec<f64> {
        self.queues
            .get(key)
            .map(|r| r.iter().skip(r.len().saturating_sub(n)).map(f).collect())
            .unwrap_or_default()
    }

    /// The backlog trend over the last ten samples: a change of more than 2 messages and 0.5% counts.
    pub fn trend(&self, key: &QueueKey) -> Trend {
        let Some(ring) = self.queues.get(key) else {
            return Trend::Stable;
        };
        let window: Vec<&Sample> = ring.iter().skip(ring.len().saturating_sub(10)).collect();
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return Trend::Stable;
        };
        let delta = last.ready as i64 - first.ready as i64;
        let threshold = 2.max((first.ready.max(last.ready) as f64 * 0.005) as i64);
        if delta > threshold {
            Trend::Growing
        } else if delta < -threshold {
            Trend::Draining
        } else {
            Trend::Stable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, ready: u64, publish: f64) -> QueueInfo {
        let mut q = QueueInfo {
            vhost: "/".into(),
            name: name.into(),
            messages_ready: ready,
            ..QueueInfo::default()
        };
        q.rates.publish.last_1s = publish;
        q
    }

    #[test]
    fn trend_follows_the_backlog_and_rings_are_bounded() {
        let mut h = History::default();
        let key = QueueKey::new("/", "a");
        for i in 0..CAPACITY as u64 + 5 {
            h.record(&Overview::default(), &[q("a", 100 + i * 10, i as f64)], i * 1000);
        }
        assert_eq!(h.queue(&key).map(|r| r.len()), Some(CAPACITY));
        assert_eq!(h.trend(&key), Trend::Growing);
        assert_eq!(h.series(&key, 3, |s| s.publish), vec![602.0, 603.0, 604.0]);
        for i in 0..10 {
            h.record(&Overview::default(), &[q("a", 1000 - i * 50, 0.0)], 700_000 + i * 1000);
        }
        assert_eq!(h.trend(&key), Trend::Draining);
        for i in 0..10 {
            h.record(&Overview::default(), &[q("a", 500 + i % 2, 0.0)], 800_000 + i * 1000);
        }
        assert_eq!(h.trend(&key), Trend::Stable);
        h.record(&Overview::default(), &[q("b", 1, 0.0)], 900_000);
        assert!(h.queue(&key).is_none(), "a deleted queue loses its history");
    }
}
