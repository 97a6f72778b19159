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
pub use store::{keep_on_recovery, Entry, MessageStore};

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::outbox::{Delivery, Outbox, OutboxItem};
use crate::store::{FsyncMode, Syncer};

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

/// How a durable queue makes persistent messages durable before they are confirmed.
#[derive(Clone)]
pub struct SyncPolicy {
    pub mode: FsyncMode,
    pub syncer: Arc<Syncer>,
}

/// What a publish into one queue did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    /// The message was enqueued.
    pub routed: bool,
    /// The group-commit round that must complete before the message may be confirmed (0: none).
    pub ticket: u64,
    /// The message could not be stored (disk full, I/O error): nack it.
    pub failed: bool,
}

pub struct Queue {
    pub spec: QueueSpec,
    sync: Option<SyncPolicy>,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    /// Ourselves, so deliveries can carry an `Arc<Queue>` back to the connection for acks.
    me: Weak<Queue>,
}

struct QueueState {
    store: MessageStore,
    /// Deliveries picked by a dispatch, handed to outboxes once the store has recorded them.
    deliveries: Vec<(Arc<Outbox>, OutboxItem)>,
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
    /// A queue over `store` (in-memory, or recovered from disk for durable queues); `sync` is how persistent
    /// messages on a disk-backed store are made durable before their confirm.
    pub fn new(spec: QueueSpec, store: MessageStore, sync: Option<SyncPolicy>) -> Arc<Self> {
        let state = QueueState {
            store,
            expired: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            had_consumer: false,
            deliveries: Vec::new(),
        };
        Arc::new_cyclic(|me| Queue {
            spec,
            sync,
            state: Mutex::new(state),
            deleted: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// The `x-max-priority` and `x-message-ttl` a store for this spec needs.
    pub fn store_settings(spec: &QueueSpec) -> (u8, Option<u64>) {
        let max_priority = crate::args::get_i64(&spec.arguments, "x-max-priority")
            .unwrap_or(0)
            .clamp(0, 255) as u8;
        let ttl = crate::args::get_i64(&spec.arguments, "x-message-ttl").and_then(|ms| u64::try_from(ms).ok());
        (max_priority, ttl)
    }

    /// An in-memory queue.
    pub fn new_in_memory(spec: QueueSpec) -> Arc<Self> {
        let (p, ttl) = Self::store_settings(&spec);
        Self::new(spec, MessageStore::new(p, ttl), None)
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

    /// Enqueues a message and dispatches.
    pub fn publish(&self, message: Arc<Message>) -> Published {
        let mut st = self.lock();
        if self.is_deleted() {
            return Published::default();
        }
        let pushed = match st.store.push(message) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(queue = %self.spec.name, vhost = %self.spec.vhost, error = %e, "could not store a message; it is nacked");
                return Published {
                    routed: true,
                    ticket: 0,
                    failed: true,
                };
            }
        };
        let mut out = Published {
            routed: true,
            ticket: 0,
            failed: false,
        };
        if let (Some(file), Some(sync)) = (pushed.sync, &self.sync) {
            match sync.mode {
                FsyncMode::Batch => out.ticket = sync.syncer.mark_dirty(&file),
                FsyncMode::Always => {
                    if let Err(e) = file.sync_data() {
                        tracing::error!(queue = %self.spec.name, error = %e, "fdatasync failed; the message is nacked");
                        out.failed = true;
                    }
                }
                FsyncMode::Never => {}
            }
        }
        if !st.consumers.is_empty() {
            Self::dispatch_locked(self, &mut st);
        }
        out
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
                break;
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
            let Some(i) = best else { break };
            let consumer = &st.consumers[i];
            if !consumer.credit.try_acquire() {
                // Lost a race for the channel's shared credit; its release will dispatch again.
                break;
            }
            let Some(entry) = st.store.pop(&mut st.expired) else {
                consumer.credit.release();
                break;
            };
            let item = OutboxItem::Deliver(Delivery {
                channel: consumer.channel,
                consumer_tag: consumer.tag.clone(),
                queue: Some(arc.clone()),
                entry,
                credit: Some(consumer.credit.clone()),
            });
            let outbox = consumer.outbox.clone();
            st.deliveries.push((outbox, item));
            st.next_consumer = (i + 1) % n;
        }
        // The store records the deliveries (for redelivered flags after a crash) before anyone can send them.
        st.store.flush();
        for (outbox, item) in st.deliveries.drain(..) {
            outbox.push(item);
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

    /// Records that delivered messages are done with (acked, or rejected without requeue).
    pub fn settle<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>) {
        let mut st = self.lock();
        if !st.store.is_durable() {
            return;
        }
        for e in entries {
            st.store.settle(e);
        }
        st.store.flush();
    }

    /// basic.get: the next ready message and how many remain.
    pub fn get(&self) -> Option<(Entry, u32)> {
        let mut st = self.lock();
        let st = &mut *st;
        let e = st.store.pop(&mut st.expired);
        st.store.flush();
        let e = e?;
        Some((e, st.store.len() as u32))
    }

    pub fn purge(&self) -> u32 {
        self.lock().store.purge() as u32
    }

    pub fn is_durable(&self) -> bool {
        self.lock().store.is_durable()
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
        let n = st.store.len() as u32;
        st.store.destroy();
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
