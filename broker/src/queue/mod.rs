//! A queue: its message store, its consumers, and dispatch between them.
//!
//! Invariants:
//! - One `std::sync::Mutex` guards a queue's state; it is held for short, non-async sections only, and never
//!   together with the vhost topology lock (topology first, if ever both, but no current path does).
//! - Dispatch runs inside that lock whenever something could change who can receive (a publish, a new consumer,
//!   credit returned, a requeue). It hands each message to the next consumer round-robin among those with prefetch
//!   room and the highest consumer priority, pushing it into the consumer connection's `Outbox`.
//! - A message popped for a consumer is that consumer's until the connection acks, rejects or requeues it; the
//!   queue keeps no copy (the durable store will keep the on-disk record until the ack).

mod credit;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use amq_protocol::types::FieldTable;

pub use credit::{ConsumerCredit, Credit};
pub use store::{Entry, MessageStore};

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::outbox::{Delivery, Outbox, OutboxItem};

/// A consumer as its queue sees it.
pub struct QueueConsumer {
    pub tag: Arc<str>,
    pub channel: u16,
    pub connection_id: u64,
    pub outbox: Arc<Outbox>,
    pub credit: Arc<ConsumerCredit>,
    pub exclusive: bool,
    /// `x-priority` from basic.consume: higher gets messages first while it has prefetch room.
    pub priority: i64,
}

/// What a queue is, fixed at declare time.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

pub struct Queue {
    pub spec: QueueSpec,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    /// Ourselves, so deliveries can carry an `Arc<Queue>` back to the connection for acks.
    me: Weak<Queue>,
}

struct QueueState {
    store: MessageStore,
    /// Messages dropped at the head because their TTL ran out.
    expired: u64,
    consumers: Vec<QueueConsumer>,
    /// Where the next round-robin search starts.
    next_consumer: usize,
    /// An auto-delete queue is deleted when its last consumer goes, but only once it has had one.
    had_consumer: bool,
}

/// What removing a consumer left behind.
pub struct ConsumerRemoved {
    pub found: bool,
    /// The queue is auto-delete and just lost its last consumer: the caller deletes it.
    pub auto_delete_now: bool,
}

impl Queue {
    pub fn new(spec: QueueSpec) -> Arc<Self> {
        let max_priority = crate::args::get_i64(&spec.arguments, "x-max-priority")
            .unwrap_or(0)
            .clamp(0, 255) as u8;
        let ttl = crate::args::get_i64(&spec.arguments, "x-message-ttl")
            .and_then(|ms| u64::try_from(ms).ok())
            .map(std::time::Duration::from_millis);
        let state = QueueState {
            store: MessageStore::new(max_priority, ttl),
            expired: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            had_consumer: false,
        };
        Arc::new_cyclic(|me| Queue {
            spec,
            state: Mutex::new(state),
            deleted: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock cannot leave the store half-updated in a way that matters more than
        // stopping the broker would; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Enqueues a message and dispatches. Returns false if the queue was deleted meanwhile.
    pub fn publish(&self, message: Arc<Message>) -> bool {
        let mut st = self.lock();
        if self.is_deleted() {
            return false;
        }
        st.store.push(message);
        if !st.consumers.is_empty() {
            Self::dispatch_locked(self, &mut st);
        }
        true
    }

    /// Offers ready messages to consumers again (after credit came back).
    pub fn dispatch(&self) {
        let mut st = self.lock();
        Self::dispatch_locked(self, &mut st);
    }

    fn dispatch_locked(this: &Queue, st: &mut QueueState) {
        let arc = match this.self_arc() {
            Some(a) => a,
            None => return,
        };
        while !st.store.is_empty() {
            let n = st.consumers.len();
            if n == 0 {
                return;
            }
            // Highest priority with room wins; ties go round-robin from `next_consumer`.
            let mut best: Option<usize> = None;
            for k in 0..n {
                let i = (st.next_consumer + k) % n;
                let c = &st.consumers[i];
                if c.credit.has_room() && best.is_none_or(|b| c.priority > st.consumers[b].priority) {
                    best = Some(i);
                }
            }
            let Some(i) = best else { return };
            let consumer = &st.consumers[i];
            if !consumer.credit.try_acquire() {
                // Lost a race for the channel's shared credit; its release will dispatch again.
                return;
            }
            let Some(entry) = st.store.pop(&mut st.expired) else {
                consumer.credit.release();
                return;
            };
            consumer.outbox.push(OutboxItem::Deliver(Delivery {
                channel: consumer.channel,
                consumer_tag: consumer.tag.clone(),
                queue: Some(arc.clone()),
                entry,
                credit: Some(consumer.credit.clone()),
            }));
            st.next_consumer = (i + 1) % n;
        }
    }

    /// Adds a consumer, enforcing exclusive consumers, and dispatches to it.
    pub fn add_consumer(&self, consumer: QueueConsumer) -> AmqpResult<()> {
        let mut st = self.lock();
        if st.consumers.iter().any(|c| c.exclusive) || (consumer.exclusive && !st.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.spec.name, self.spec.vhost
            )));
        }
        st.consumers.push(consumer);
        st.had_consumer = true;
        Self::dispatch_locked(self, &mut st);
        Ok(())
    }

    pub fn remove_consumer(&self, connection_id: u64, channel: u16, tag: &str) -> ConsumerRemoved {
        let mut st = self.lock();
        let before = st.consumers.len();
        st.consumers
            .retain(|c| !(c.connection_id == connection_id && c.channel == channel && &*c.tag == tag));
        let found = st.consumers.len() != before;
        if st.next_consumer >= st.consumers.len() {
            st.next_consumer = 0;
        }
        ConsumerRemoved {
            found,
            auto_delete_now: found && self.spec.auto_delete && st.had_consumer && st.consumers.is_empty(),
        }
    }

    /// Puts delivered messages back (redelivered) and dispatches them again.
    pub fn requeue(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut st = self.lock();
        if self.is_deleted() {
            return;
        }
        for e in entries {
            st.store.requeue(e);
        }
        Self::dispatch_locked(self, &mut st);
    }

    /// Records that a delivered message is done with (acked, or rejected without requeue).
    pub fn settle(&self, _seq: u64) {
        // The in-memory store dropped the message when it was delivered; the durable store records acks here.
    }

    /// basic.get: the next ready message and how many remain.
    pub fn get(&self) -> Option<(Entry, u32)> {
        let mut st = self.lock();
        let st = &mut *st;
        let e = st.store.pop(&mut st.expired)?;
        Some((e, st.store.len() as u32))
    }

    pub fn purge(&self) -> u32 {
        self.lock().store.purge() as u32
    }

    pub fn message_count(&self) -> u32 {
        self.lock().store.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.lock().consumers.len() as u32
    }

    pub fn counts(&self) -> (u32, u32) {
        let st = self.lock();
        (st.store.len() as u32, st.consumers.len() as u32)
    }

    /// Marks the queue deleted, drops its messages and tells its consumers; returns the message count.
    pub fn mark_deleted(&self) -> u32 {
        let mut st = self.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.store.purge() as u32;
        for c in st.consumers.drain(..) {
            c.outbox.push(OutboxItem::Cancel {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        n
    }

    /// An `Arc` to ourselves for deliveries, so that acks can find the queue again.
    fn self_arc(&self) -> Option<Arc<Queue>> {
        self.me.upgrade()
    }
}
