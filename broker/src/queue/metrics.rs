//! A queue's figures for the admin API and Prometheus: counters (`QueueStats`), one-second rate samples
//! (`RateWindow`), consumer utilisation, depth and lag. Latency windows are in `latency.rs`.
//!
//! Invariants: every counter is a relaxed atomic owned by its queue alone (no counter is shared across queues),
//! bumped on paths that already hold the queue's lock or touch only this queue; nothing here changes what the queue
//! holds or delivers. Samples are taken by the server's metrics tick (once a second, `server::sample_metrics`),
//! never on the message path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Queue;

/// Consumer-utilisation samples kept: ten seconds at the metrics tick's one sample a second. (The window is the same
/// ten seconds as when a 100 ms sweeper took the samples; with ten point samples instead of a hundred, the share
/// moves in steps of a tenth.)
const UTILISATION_SAMPLES: usize = 10;

/// Per-queue counters for the admin API and Prometheus: relaxed atomics owned by this queue alone (no counter is
/// shared across queues), bumped on paths that already hold the queue's lock or touch only this queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub redelivered: AtomicU64,
    pub rejected: AtomicU64,
    /// Rejected with basic.nack (counted here, not in `rejected`).
    pub nacked: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub expired: AtomicU64,
    pub dropped: AtomicU64,
    /// Delivered (with acks) and not yet settled.
    pub unacked: AtomicU64,
}

impl QueueStats {
    /// The counters in a fixed order: published, delivered, acked, redelivered, rejected, dead-lettered,
    /// expired, dropped, nacked.
    pub fn counters(&self) -> [u64; 9] {
        [
            Self::get(&self.published),
            Self::get(&self.delivered),
            Self::get(&self.acked),
            Self::get(&self.redelivered),
            Self::get(&self.rejected),
            Self::get(&self.dead_lettered),
            Self::get(&self.expired),
            Self::get(&self.dropped),
            Self::get(&self.nacked),
        ]
    }

    pub(super) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn sub(c: &AtomicU64, n: u64) {
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The last 61 one-second samples of a queue's counters, for rates over 1, 10 and 60 seconds.
#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<[u64; 9]>,
}

impl RateWindow {
    const KEEP: usize = 61;

    pub fn sample(&mut self, now: [u64; 9]) {
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(now);
    }

    /// Per-second rate of counter `i` over the last `secs` seconds (fewer while the history is shorter).
    pub fn rate(&self, i: usize, secs: usize) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let span = secs.min(n - 1);
        let (new, old) = (self.samples[n - 1][i], self.samples[n - 1 - span][i]);
        new.saturating_sub(old) as f64 / span as f64
    }
}

impl Queue {
    /// How long the oldest ready message has waited, in ms (0 when empty): the time consumers are behind.
    pub fn time_behind_ms(&self) -> u64 {
        self.peek(0, 1)
            .first()
            .map(|e| self.clock.now_ms().saturating_sub(e.enqueued_ms))
            .unwrap_or(0)
    }

    /// Ready messages and their body bytes.
    pub fn depth(&self) -> (u64, u64) {
        let st = self.lock();
        (st.store.len() as u64, st.store.bytes() as u64)
    }

    /// Ready transient messages paged out to disk now (see `spill.rs`).
    pub fn paged_out(&self) -> u64 {
        self.lock().store.spilled() as u64
    }

    /// Takes one consumer-utilisation sample (the metrics tick calls this once a second): could any consumer take a
    /// message right now, or are all of them at their prefetch limit? No sample without consumers. The utilisation
    /// is the share of the last ten samples (ten seconds) in which one could.
    pub fn sample_utilisation(&self) {
        let able = {
            let st = self.lock();
            let mut consumers = st.all_consumers().peekable();
            if consumers.peek().is_none() {
                None
            } else {
                Some(consumers.any(|c| c.credit.has_room()))
            }
        };
        let mut u = self.utilisation.lock().unwrap_or_else(|e| e.into_inner());
        match able {
            None => u.clear(),
            Some(able) => {
                if u.len() == UTILISATION_SAMPLES {
                    u.pop_front();
                }
                u.push_back(able);
            }
        }
    }

    /// The share of recent samples in which a consumer could take a message; `None` without consumers.
    pub fn consumer_utilisation(&self) -> Option<f64> {
        let (able, samples) = {
            let u = self.utilisation.lock().unwrap_or_else(|e| e.into_inner());
            (u.iter().filter(|a| **a).count(), u.len())
        };
        if samples == 0 {
            return (self.consumer_count() > 0).then_some(1.0);
        }
        Some(able as f64 / samples as f64)
    }

    pub fn consumer_count(&self) -> u32 {
        self.lock().all_consumers().count() as u32
    }
}
