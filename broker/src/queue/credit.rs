//! Prefetch accounting shared between a queue (which spends credit when it dispatches) and the connection that
//! owns the consumer (which returns it on ack, reject, nack, or — for no-ack consumers — once the delivery is
//! written out).
//!
//! A consumer has its own limit (`basic.qos global=false`, RabbitMQ's per-consumer meaning) and shares its
//! channel's limit (`global=true`). A limit of 0 means unlimited. Counters are atomics because the queue and the
//! connection run on different tasks; no lock is taken.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Credit {
    limit: AtomicU32,
    in_flight: AtomicU32,
}

impl Credit {
    pub fn new(limit: u32) -> Self {
        Credit {
            limit: AtomicU32::new(limit),
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Whether a limit is set (0 means none).
    pub fn has_limit(&self) -> bool {
        self.limit.load(Ordering::Relaxed) != 0
    }

    pub fn has_room(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit == 0 || self.in_flight.load(Ordering::Relaxed) < limit
    }

    fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    /// Returns one unit; true when this may have unblocked someone (the counter was at its limit).
    fn release(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| Some(n.saturating_sub(1)))
            .unwrap_or(0);
        limit != 0 && before >= limit
    }
}

/// The credit one consumer spends: its own plus its channel's.
#[derive(Debug)]
pub struct ConsumerCredit {
    pub own: Credit,
    pub channel: Arc<Credit>,
    /// A stream consumer's acks: the offset after the highest one acked (0: none yet).
    acked: AtomicU64,
}

impl ConsumerCredit {
    pub fn new(limit: u32, channel: Arc<Credit>) -> Self {
        ConsumerCredit {
            own: Credit::new(limit),
            channel,
            acked: AtomicU64::new(0),
        }
    }

    /// A stream consumer acked the message at `offset`.
    pub fn note_acked(&self, offset: u64) {
        self.acked.fetch_max(offset.saturating_add(1), Ordering::AcqRel);
    }

    /// The offset after the highest one this consumer acked (0: none yet).
    pub fn acked_next(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// An operator moved the consumer's stored offset: acks count from there again.
    pub fn reset_acked(&self, next: u64) {
        self.acked.store(next, Ordering::Release);
    }

    pub fn has_room(&self) -> bool {
        self.own.has_room() && self.channel.has_room()
    }

    pub fn try_acquire(&self) -> bool {
        if !self.own.try_acquire() {
            return false;
        }
        if !self.channel.try_acquire() {
            self.own.release();
            return false;
        }
        true
    }

    /// Returns one unit to both; true when the consumer or its channel was full and may now take more.
    pub fn release(&self) -> bool {
        let a = self.own.release();
        let b = self.channel.release();
        a || b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_and_channel_limits() {
        let ch = Arc::new(Credit::new(3));
        let a = ConsumerCredit::new(2, ch.clone());
        let b = ConsumerCredit::new(0, ch.clone());
        assert!(a.try_acquire());
        assert!(a.try_acquire());
        assert!(!a.try_acquire(), "consumer limit");
        assert!(b.try_acquire());
        assert!(!b.try_acquire(), "channel limit");
        assert!(b.release(), "channel was full");
        assert!(a.release(), "consumer was full");
        assert!(!a.release());
    }
}
