//! Broker-wide counters that no queue owns: what channels did (published, confirmed, delivered, acked, returned,
//! polled), and connection, channel and queue churn. Prometheus exports them under RabbitMQ's names
//! (`rabbitmq_channel_messages_published_total`, `rabbitmq_connections_opened_total`, ...).
//!
//! Invariants:
//! - Each connection owns one [`ChannelCounters`] (in its `ConnectionEntry`) and is its only writer, so a bump is a
//!   relaxed load and store on a cache line no other task writes: no contended atomic on the message path.
//! - When a connection ends, the broker adds its counters to those of closed connections under the connection
//!   registry's lock (`Broker::unregister_connection`), and a reader sums closed and live connections under the same
//!   lock (`Broker::channel_totals`): the totals never go backwards when a connection closes.
//! - Gauges (`unconfirmed`) are not folded: a closed connection has nothing unconfirmed.
//! - [`Churn`] counters are bumped on rare paths (connection accept and close, queue declare and delete) from any
//!   task, so they use `fetch_add`.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one connection's channels did, in RabbitMQ's terms (messages, not frames).
#[derive(Debug, Default)]
pub struct ChannelCounters {
    /// basic.publish received (before routing; a message routed to three queues counts once).
    pub published: AtomicU64,
    /// Publisher confirms sent as basic.ack (each message counts once, however cumulative the ack).
    pub confirmed: AtomicU64,
    /// Gauge: messages published on confirm channels and not yet confirmed (or nacked).
    pub unconfirmed: AtomicU64,
    /// Mandatory messages no queue took, returned with basic.return.
    pub unroutable_returned: AtomicU64,
    /// Messages no queue took, dropped (not mandatory).
    pub unroutable_dropped: AtomicU64,
    /// basic.deliver to consumers in automatic-acknowledgement (no-ack) mode.
    pub delivered: AtomicU64,
    /// basic.deliver to consumers in manual-acknowledgement mode.
    pub delivered_ack: AtomicU64,
    /// Deliveries and get-oks with the redelivered flag.
    pub redelivered: AtomicU64,
    /// Messages acknowledged by consumers (basic.ack; `multiple` counts each message).
    pub acked: AtomicU64,
    /// basic.get answered with a message, no-ack.
    pub get: AtomicU64,
    /// basic.get answered with a message, manual ack.
    pub get_ack: AtomicU64,
    /// basic.get answered with get-empty.
    pub get_empty: AtomicU64,
    pub channels_opened: AtomicU64,
    pub channels_closed: AtomicU64,
}

/// A snapshot of [`ChannelCounters`], summed over connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChannelTotals {
    pub published: u64,
    pub confirmed: u64,
    pub unconfirmed: u64,
    pub unroutable_returned: u64,
    pub unroutable_dropped: u64,
    pub delivered: u64,
    pub delivered_ack: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub get: u64,
    pub get_ack: u64,
    pub get_empty: u64,
    pub channels_opened: u64,
    pub channels_closed: u64,
}

/// Adds `n` to a counter that only the calling task writes (its connection's): a plain load and store, no locked
/// read-modify-write.
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Takes `n` from a single-writer gauge, never below zero.
pub fn drop_by(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).saturating_sub(n), Ordering::Relaxed);
}

impl ChannelCounters {
    /// The counters as of now.
    pub fn snapshot(&self) -> ChannelTotals {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ChannelTotals {
            published: g(&self.published),
            confirmed: g(&self.confirmed),
            unconfirmed: g(&self.unconfirmed),
            unroutable_returned: g(&self.unroutable_returned),
            unroutable_dropped: g(&self.unroutable_dropped),
            delivered: g(&self.delivered),
            delivered_ack: g(&self.delivered_ack),
            redelivered: g(&self.redelivered),
            acked: g(&self.acked),
            get: g(&self.get),
            get_ack: g(&self.get_ack),
            get_empty: g(&self.get_empty),
            channels_opened: g(&self.channels_opened),
            channels_closed: g(&self.channels_closed),
        }
    }
}

impl std::ops::AddAssign for ChannelTotals {
    fn add_assign(&mut self, o: Self) {
        self.published += o.published;
        self.confirmed += o.confirmed;
        self.unconfirmed += o.unconfirmed;
        self.unroutable_returned += o.unroutable_returned;
        self.unroutable_dropped += o.unroutable_dropped;
        self.delivered += o.delivered;
        self.delivered_ack += o.delivered_ack;
        self.redelivered += o.redelivered;
        self.acked += o.acked;
        self.get += o.get;
        self.get_ack += o.get_ack;
        self.get_empty += o.get_empty;
        self.channels_opened += o.channels_opened;
        self.channels_closed += o.channels_closed;
    }
}

/// Connection and queue churn since the broker started.
#[derive(Debug, Default)]
pub struct Churn {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    /// Non-passive queue.declare (and admin API declares), new queue or not.
    pub queues_declared: AtomicU64,
    /// Declares that made a new queue.
    pub queues_created: AtomicU64,
    /// Queues deleted, by a client, an operator, or the broker (exclusive owner gone, auto-delete, expiry).
    pub queues_deleted: AtomicU64,
}

impl Churn {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_stop_at_zero_and_totals_add_up() {
        let live = ChannelCounters::default();
        bump(&live.published, 3);
        bump(&live.unconfirmed, 2);
        drop_by(&live.unconfirmed, 5);
        assert_eq!(live.snapshot().unconfirmed, 0, "a gauge never goes below zero");
        bump(&live.unconfirmed, 1);
        let mut total = live.snapshot();
        total += live.snapshot();
        assert_eq!((total.published, total.unconfirmed), (6, 2));
    }
}
