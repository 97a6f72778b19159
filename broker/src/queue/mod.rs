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
//!
//! - Deadlines arm the broker's timer (`crate::timer`), never a poll: after an operation that can change what is
//!   due (a push, a pop, a requeue, an ack that empties the store, the last consumer leaving, a policy change) the
//!   queue asks its store for its next deadline under the lock and arms the timer if that is earlier than what it
//!   armed before (`armed_at`: one atomic load in the common case, a send only when the deadline moves earlier).
//!   When the timer fires, `upkeep` runs (expired heads, unreadable retries, idle files, `x-expires`) and answers
//!   the next deadline. The timer always holds a wake at or before `armed_at`.
//!
//! This file holds the queue's state, publishing, dispatch, consumers and acks. Beside it, as `impl Queue`
//! blocks: `dead_letter.rs` (what the queue gives up on, routed on by a work list), `metrics.rs` (counters, rates,
//! utilisation), `admin_ops.rs` (peek, take/put back for moves, priority changes), `settings.rs` (spec, policy,
//! limits) and `delete.rs` (queue.delete and the broker's own removals).

mod admin_ops;
mod credit;
pub mod dead_letter;
pub mod dedup;
mod delete;
pub mod latency;
mod metrics;
mod pause;
mod settings;
pub mod spill;
mod store;
mod stream;
#[cfg(test)]
mod tests;
mod trace;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

pub use admin_ops::PriorityChange;
pub use credit::{ConsumerCredit, Credit};
pub use delete::DeleteRefused;
pub use metrics::{QueueStats, RateWindow};
pub use settings::QueueSpec;
pub(crate) use store::message_of;
pub use store::{keep_on_recovery, Entry, MessageStore, ReadAhead, ReadTarget, Staged};
pub use stream::{StreamConsumerInfo, StreamInfo};

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::clock::Clock;
use crate::message::Message;
use crate::outbox::{Delivery, Outbox, OutboxItem};
use crate::store::{FsyncMode, Syncer};
use crate::timer::{Due, Timer};
use crate::vhost::VHost;

/// Messages a queue gave up on, with why, waiting to go through its dead-letter exchange.
type DeadLetters = Vec<(Arc<Message>, Reason)>;
use dead_letter::{with_delivery_count, Overflow, QueueLimits, Reason};

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
    /// False for a no-ack consumer.
    pub ack_required: bool,
}

use store::IDLE_FILES_AFTER;

/// `armed_at` when nothing is armed.
const NOT_ARMED: u64 = u64::MAX;

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
    /// Its record waits in the queue's write-behind buffer: confirm it only after `Queue::flush_writes`.
    pub deferred: bool,
    /// For a deferred record: the first group-commit round that may write it (the syncer's open round when it
    /// was appended). Its confirm needs every round from there to its ticket to succeed, since a buffer may be
    /// handed over before the end of the batch (a full buffer, a new segment) and a failed write drops it.
    pub first_ticket: u64,
}

impl Published {
    /// Widens `tickets`, the first and last group-commit rounds that a batch's acknowledgements wait for (MQTT PUBACKs,
    /// STOMP receipts: `Syncer::wait`), to cover this publish.
    pub fn widen(&self, tickets: &mut Option<(u64, u64)>) {
        if self.ticket == 0 {
            return;
        }
        let first = if self.first_ticket > 0 {
            self.first_ticket
        } else {
            self.ticket
        };
        *tickets = Some(match *tickets {
            None => (first, self.ticket),
            Some((a, b)) => (a.min(first), b.max(self.ticket)),
        });
    }
}

pub struct Queue {
    pub spec: QueueSpec,
    /// Length limits, overflow, dead-lettering, delivery limit and expiry, from the arguments and the policy
    /// that applies (replaced whole when an operator policy changes).
    limits: RwLock<Arc<QueueLimits>>,
    /// The operator policy that applies now (`spec.policy` is the one at declare time).
    policy: RwLock<Option<Arc<crate::policy::Policy>>>,
    /// The vhost, for routing dead letters.
    vhost: Weak<VHost>,
    /// Unix ms of the last use (consume, get, declare), for `x-expires`.
    last_used: AtomicU64,
    pub stats: QueueStats,
    /// One-second samples of `stats`, taken by the broker's sampler, for rates.
    pub rates: Mutex<RateWindow>,
    /// Publish -> deliver and publish -> ack latency (its own lock: acks of memory queues take no queue lock).
    pub latency: Mutex<latency::Latency>,
    /// The last ten seconds of consumer-utilisation samples (see `sample_utilisation`).
    utilisation: Mutex<std::collections::VecDeque<bool>>,
    sync: Option<SyncPolicy>,
    state: Mutex<QueueState>,
    deleted: AtomicBool,
    /// Paused by an operator (`pause.rs`): consumers stay, nothing is delivered.
    paused: AtomicBool,
    /// The vhost's tracing switches and the journal (`trace.rs`); `traced_*`: this queue is traced through the
    /// admin API, or by its policy.
    trace: Arc<crate::trace::VhostTrace>,
    traced_api: AtomicBool,
    traced_policy: AtomicBool,
    /// Ourselves, so deliveries can carry an `Arc<Queue>` back to the connection for acks.
    me: Weak<Queue>,
    /// The broker's clock: TTL, `x-expires`, latencies, de-duplication windows and `x-death` times.
    pub(crate) clock: Clock,
    /// `x-queue-type: stream`: `QueueState::stream` holds its state (`stream.rs`).
    is_stream: bool,
    /// The broker's timer, armed with this queue's next deadline.
    timer: Timer,
    /// The deadline (unix ms) the timer is known to wake this queue at or before (`NOT_ARMED`: none). Lowered by
    /// `arm`, which sends to the timer only then; set afresh by `upkeep` when the timer fires.
    armed_at: AtomicU64,
}

/// What a queue's upkeep found.
struct Upkeep {
    /// Unused for its `x-expires`: the caller removes the queue.
    unused: bool,
    /// The queue's next deadline after this upkeep.
    next: Option<u64>,
}

struct QueueState {
    store: MessageStore,
    /// `x-message-deduplication`: keys seen recently.
    dedup: Option<dedup::DedupCache>,
    /// Expired messages taken out by the store, to settle and dead-letter.
    expired_buf: Vec<Entry>,
    /// Messages to dead-letter once the lock is released.
    dead: Vec<(Arc<Message>, Reason)>,
    /// Deliveries picked by a dispatch, handed to outboxes once the store has recorded them.
    deliveries: Vec<(Arc<Outbox>, OutboxItem)>,
    /// Messages dropped at the head because their TTL ran out.
    expired: u64,
    consumers: Vec<QueueConsumer>,
    /// Where the next round-robin search starts.
    next_consumer: usize,
    /// An auto-delete queue is deleted when its last consumer goes, but only once it has had one.
    had_consumer: bool,
    /// A stream's log, tail and consumers (`stream.rs`); `store` stays empty.
    stream: Option<Box<crate::stream::state::StreamState>>,
}

impl QueueState {
    /// Every consumer: a classic queue's, or a stream's.
    fn all_consumers(&self) -> impl Iterator<Item = &QueueConsumer> {
        let stream = self.stream.iter().flat_map(|s| s.consumers.iter().map(|c| &c.consumer));
        self.consumers.iter().chain(stream)
    }
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
    pub fn new(
        spec: QueueSpec,
        store: MessageStore,
        sync: Option<SyncPolicy>,
        vhost: Weak<VHost>,
        clock: Clock,
        timer: Timer,
    ) -> Arc<Self> {
        Self::build(spec, store, sync, vhost, clock, timer, None)
    }

    /// A stream queue over its opened files (`x-queue-type: stream`); `sync` makes its appends durable.
    pub fn new_stream(
        spec: QueueSpec,
        stream: crate::stream::state::StreamState,
        sync: Option<SyncPolicy>,
        vhost: Weak<VHost>,
        clock: Clock,
        timer: Timer,
    ) -> Arc<Self> {
        let store = MessageStore::new(0, None);
        Self::build(spec, store, sync, vhost, clock, timer, Some(Box::new(stream)))
    }

    fn build(
        spec: QueueSpec,
        mut store: MessageStore,
        sync: Option<SyncPolicy>,
        vhost: Weak<VHost>,
        clock: Clock,
        timer: Timer,
        stream: Option<Box<crate::stream::state::StreamState>>,
    ) -> Arc<Self> {
        store.set_clock(clock.clone());
        let dedup = dedup::DedupSettings::from_arguments(&spec.arguments).map(|settings| match store.dir() {
            Some(dir) => dedup::DedupCache::persistent(settings, dir, clock.clone()).unwrap_or_else(|e| {
                tracing::warn!(queue = %spec.name, error = %e, "could not load the de-duplication cache; starting empty");
                dedup::DedupCache::new(settings, clock.clone())
            }),
            None => dedup::DedupCache::new(settings, clock.clone()),
        });
        let state = QueueState {
            store,
            dedup,
            expired_buf: Vec::new(),
            dead: Vec::new(),
            expired: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            had_consumer: false,
            deliveries: Vec::new(),
            stream,
        };
        let is_stream = state.stream.is_some();
        let trace = vhost
            .upgrade()
            .map(|v| v.trace.clone())
            .unwrap_or_else(|| crate::trace::VhostTrace::new(crate::trace::Journal::in_memory(clock.clone())));
        let traced_by_policy = spec.policy.as_ref().is_some_and(|p| p.trace);
        let q = Arc::new_cyclic(|me| Queue {
            limits: RwLock::new(Arc::new(QueueLimits::from_arguments(&spec.effective_arguments()))),
            policy: RwLock::new(spec.policy.clone()),
            spec,
            vhost,
            last_used: AtomicU64::new(clock.now_ms()),
            stats: QueueStats::default(),
            rates: Mutex::new(RateWindow::default()),
            latency: Mutex::new(latency::Latency::default()),
            utilisation: Mutex::new(std::collections::VecDeque::new()),
            sync,
            state: Mutex::new(state),
            deleted: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            trace,
            traced_api: AtomicBool::new(false),
            traced_policy: AtomicBool::new(false),
            me: me.clone(),
            clock,
            timer,
            armed_at: AtomicU64::new(NOT_ARMED),
            is_stream,
        });
        // A durable queue's write-behind buffers go to the syncer thread, which tells us when one could not be
        // written.
        if let Some(sync) = &q.sync {
            let me = Arc::downgrade(&q);
            q.lock().store.set_writer(Some(crate::store::queue_log::Writer {
                syncer: sync.syncer.clone(),
                failed: Arc::new(move |segment, from| {
                    if let Some(q) = me.upgrade() {
                        q.write_failed(segment, from);
                    }
                }),
            }));
        }
        q.set_traced_by_policy(traced_by_policy);
        // Its first deadlines: `x-expires` from now, and what a recovered store holds (heads to read, records that
        // may expire).
        q.arm_next();
        q
    }

    /// An in-memory queue.
    /// A plain in-memory queue named `name` on vhost `/`, with no vhost behind it, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> Arc<Self> {
        Self::new_in_memory(
            QueueSpec {
                name: name.into(),
                vhost: "/".into(),
                durable: false,
                exclusive_owner: None,
                auto_delete: false,
                arguments: Default::default(),
                policy: None,
            },
            Weak::new(),
            Clock::system(),
            Timer::detached(),
        )
    }

    pub fn new_in_memory(spec: QueueSpec, vhost: Weak<VHost>, clock: Clock, timer: Timer) -> Arc<Self> {
        let (p, ttl) = Self::store_settings(&spec);
        Self::new(spec, MessageStore::new(p, ttl), None, vhost, clock, timer)
    }

    /// Notes a use (consume, get, redeclare) for `x-expires`. Arms nothing: a use only moves the `x-expires`
    /// deadline later, and the wake armed for the earlier one recomputes it.
    pub fn touch(&self) {
        self.last_used.store(self.clock.now_ms(), Ordering::Relaxed);
    }

    /// Makes sure the timer wakes this queue at or before `at` (unix ms). One atomic load when a wake that early is
    /// armed already (a FIFO TTL queue under load: every message after the first); a send to the timer otherwise.
    fn arm(&self, at: u64) {
        if at >= self.armed_at.load(Ordering::Relaxed) {
            return;
        }
        if at < self.armed_at.fetch_min(at, Ordering::Relaxed) {
            let me: Weak<dyn Due> = self.me.clone();
            self.timer.arm(at, me);
        }
    }

    /// Arms the store's next deadline (heads' expiry, unreadable retries, idle files), after an operation that may
    /// have changed it. Cheap when there is none: a few field checks.
    fn arm_store(&self, st: &QueueState) {
        if let Some(at) = st.store.next_deadline(IDLE_FILES_AFTER) {
            self.arm(at);
        }
    }

    /// When the queue goes for `x-expires` if nobody uses it meanwhile: only while it has no consumer.
    fn expires_at(&self, st: &QueueState) -> Option<u64> {
        if !st.consumers.is_empty() {
            return None;
        }
        let ms = self.limits().expires_ms?;
        Some(self.last_used.load(Ordering::Relaxed).saturating_add(ms))
    }

    /// The queue's next deadline: its store's, and `x-expires`.
    fn next_deadline(&self, st: &QueueState) -> Option<u64> {
        if let Some(s) = &st.stream {
            return s.next_retention();
        }
        let store = st.store.next_deadline(IDLE_FILES_AFTER);
        match (store, self.expires_at(st)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Arms the queue's next deadline, all of it (a new queue, a changed policy).
    pub(crate) fn arm_next(&self) {
        let st = self.lock();
        if let Some(at) = self.next_deadline(&st) {
            self.arm(at);
        }
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

    /// Enqueues a message and dispatches; whatever this dead-letters (a full queue's head, say) is routed on.
    pub fn publish(&self, message: Arc<Message>) -> Published {
        let (out, dead) = self.publish_without_dead_letters(message, false);
        self.route_dead_letters(dead);
        out
    }

    /// `publish` for a connection's read batch: a persistent message's record may wait in the queue log's
    /// write-behind buffer (`Published::deferred`), and the connection calls `flush_writes` once, at the end of the
    /// batch, before it confirms anything. One write per batch instead of one per message.
    pub fn publish_deferred(&self, message: Arc<Message>) -> Published {
        let (out, dead) = self.publish_without_dead_letters(message, true);
        self.route_dead_letters(dead);
        out
    }

    /// Hands the records deferred publishes left buffered to the store's syncer thread, which writes them and (with
    /// `fsync = batch`) syncs them in its next round: the returned ticket is that round, which their confirms wait
    /// for (with `fsync = never` the round only writes). No disk I/O here. `Err` means they could not be handed
    /// over (a queue without a syncer wrote them itself and failed): their publishes must be nacked.
    pub fn flush_writes(&self) -> std::io::Result<u64> {
        let mut st = self.lock();
        if self.is_stream {
            return self
                .stream_hand_over(&mut st)
                .map_err(|()| std::io::Error::other("the stream's write failed"));
        }
        st.store.hand_over()
    }

    /// The syncer could not write what this queue handed over at `from` in `segment`: those records, and every
    /// later one of that segment, are dropped (their publishes are nacked through the failed round).
    fn write_failed(&self, segment: u32, from: u64) {
        let mut st = self.lock();
        let dropped = st.store.drop_unwritten(segment, from);
        if dropped > 0 {
            tracing::warn!(queue = %self.spec.name, vhost = %self.spec.vhost, dropped, "messages whose write failed were dropped; their publishes are nacked");
        }
        self.finish(st);
    }

    /// Enqueues a message and dispatches, and returns the dead letters this caused instead of routing them (the
    /// dead-letter work list routes them, so that dead-lettering never recurses).
    fn publish_without_dead_letters(&self, message: Arc<Message>, defer: bool) -> (Published, DeadLetters) {
        let mut st = self.lock();
        if self.is_deleted() {
            return (Published::default(), Vec::new());
        }
        if self.is_stream {
            return (self.stream_publish(&mut st, message, defer), Vec::new());
        }
        if let Some(cache) = &mut st.dedup {
            if let Some(key) = dedup::dedup_key(&message) {
                if cache.check_and_insert(key) {
                    // A duplicate: confirmed, not enqueued.
                    let duplicate = Published {
                        routed: true,
                        ticket: 0,
                        failed: false,
                        deferred: false,
                        first_ticket: 0,
                    };
                    return (duplicate, Vec::new());
                }
            }
        }
        let limits = self.limits();
        if limits.has_limits() && limits.overflow != Overflow::DropHead {
            let full = limits.max_length.is_some_and(|m| st.store.len() as u64 >= m)
                || limits
                    .max_length_bytes
                    .is_some_and(|m| (st.store.bytes() + message.size()) as u64 > m);
            if full {
                if limits.overflow == Overflow::RejectPublishDlx && limits.dead_letter_exchange.is_some() {
                    st.dead.push((message, Reason::Maxlen));
                }
                let dead = std::mem::take(&mut st.dead);
                let refused = Published {
                    routed: true,
                    ticket: 0,
                    failed: true,
                    deferred: false,
                    first_ticket: 0,
                };
                return (refused, dead);
            }
        }
        self.trace_enter(&message);
        // `fsync = always` syncs each message before its confirm, so nothing is deferred there.
        let defer = defer && self.sync.as_ref().is_none_or(|s| s.mode != FsyncMode::Always);
        let pushed = match if defer {
            st.store.push_deferred(message)
        } else {
            st.store.push(message)
        } {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(queue = %self.spec.name, vhost = %self.spec.vhost, error = %e, "could not store a message; it is nacked");
                let failed = Published {
                    routed: true,
                    ticket: 0,
                    failed: true,
                    deferred: false,
                    first_ticket: 0,
                };
                return (failed, Vec::new());
            }
        };
        let mut out = Published {
            routed: true,
            ticket: 0,
            failed: false,
            deferred: pushed.deferred,
            first_ticket: 0,
        };
        if let (true, Some(sync)) = (pushed.deferred, &self.sync) {
            out.first_ticket = sync.syncer.open_round();
        }
        QueueStats::add(&self.stats.published, 1);
        if let (Some(file), Some(sync)) = (pushed.sync, &self.sync) {
            match sync.mode {
                FsyncMode::Batch => {
                    out.ticket = sync.syncer.mark_dirty(&file);
                    if let Some(dir) = &pushed.sync_dir {
                        out.ticket = out.ticket.max(sync.syncer.mark_dirty(dir));
                    }
                }
                FsyncMode::Always => {
                    let synced = crate::store::blocking(|| {
                        file.sync_data()
                            .and_then(|()| pushed.sync_dir.as_ref().map_or(Ok(()), |d| d.sync_all()))
                    });
                    if let Err(e) = synced {
                        tracing::error!(queue = %self.spec.name, error = %e, "fdatasync failed; the message is nacked");
                        out.failed = true;
                    }
                }
                FsyncMode::Never => {}
            }
        }
        if limits.has_limits() && limits.overflow == Overflow::DropHead {
            let st = &mut *st;
            while limits.max_length.is_some_and(|m| st.store.len() as u64 > m)
                || limits.max_length_bytes.is_some_and(|m| st.store.bytes() as u64 > m)
            {
                match st.store.drop_head(&mut st.expired_buf) {
                    Some(e) => self.drop_entry(st, e, Reason::Maxlen),
                    None => break,
                }
            }
            st.store.flush();
        }
        if !st.consumers.is_empty() {
            Self::dispatch_locked(self, &mut st);
        }
        self.collect_expired(&mut st);
        self.arm_store(&st);
        let dead = std::mem::take(&mut st.dead);
        (out, dead)
    }

    /// Offers ready messages to consumers again (after credit came back).
    pub fn dispatch(&self) {
        let mut st = self.lock();
        Self::dispatch_locked(self, &mut st);
        self.finish(st);
    }

    /// Settles expired messages and routes dead letters after an operation, releasing the lock first.
    fn finish(&self, mut st: MutexGuard<'_, QueueState>) {
        self.collect_expired(&mut st);
        if !st.dead.is_empty() {
            st.store.flush();
        }
        // Heads may have changed (a pop, a requeue, a put-back): the store's next deadline with them.
        self.arm_store(&st);
        let dead = std::mem::take(&mut st.dead);
        drop(st);
        self.route_dead_letters(dead);
    }

    fn dispatch_locked(this: &Queue, st: &mut QueueState) {
        if this.is_paused() {
            return;
        }
        if this.is_stream {
            return Self::stream_dispatch(this, st);
        }
        let arc = match this.self_arc() {
            Some(a) => a,
            None => return,
        };
        // Read once per dispatch, not per delivery.
        let single_active = this.limits().single_active_consumer;
        let tracing = this.trace_any();
        while !st.store.is_empty() {
            let n = st.consumers.len();
            if n == 0 {
                break;
            }
            // Single active consumer: only the earliest registered consumer receives; when it goes, the next one
            // takes over, starting with whatever it left unacked (requeued at the original positions).
            let n = if single_active { 1 } else { n };
            // Highest priority with room wins; ties go round-robin from `next_consumer`.
            let mut best: Option<usize> = None;
            for k in 0..n {
                let i = (st.next_consumer + k) % n;
                let c = &st.consumers[i];
                if c.credit.has_room()
                    && c.outbox.has_room()
                    && best.is_none_or(|b| c.priority > st.consumers[b].priority)
                {
                    best = Some(i);
                }
            }
            let Some(i) = best else {
                // Every consumer is out of credit or its connection's outbox is full: a full outbox was marked
                // held back, and its connection dispatches this queue again once it has taken what is there.
                for c in &st.consumers[..n] {
                    if c.credit.has_room() {
                        c.outbox.reserve_or_mark();
                    }
                }
                break;
            };
            let consumer = &st.consumers[i];
            if !consumer.outbox.reserve() {
                // The outbox filled since the check; the mark brings this queue back.
                break;
            }
            if !consumer.credit.try_acquire() {
                // Lost a race for the channel's shared credit; its release will dispatch again.
                consumer.outbox.unreserve();
                break;
            }
            // A head only on disk stops dispatch here; `start_read` below asks a read thread for it.
            let Some(entry) = st.store.pop_or_wait(&mut st.expired_buf) else {
                consumer.credit.release();
                consumer.outbox.unreserve();
                break;
            };
            let Some(entry) = this.returned_before_restart(st, entry) else {
                st.consumers[i].credit.release();
                st.consumers[i].outbox.unreserve();
                continue;
            };
            let consumer = &st.consumers[i];
            if tracing && this.traces(&entry.message) {
                this.record_trace(
                    &entry.message,
                    crate::trace::TraceEvent::Delivered {
                        queue: this.spec.name.clone(),
                        consumer_tag: Some(consumer.tag.to_string()),
                        connection: consumer.connection_id,
                        delivery_count: entry.delivery_count,
                        redelivered: entry.redelivered,
                    },
                );
            }
            consumer.outbox.reserved(entry.message.size());
            let item = OutboxItem::Deliver(Delivery {
                channel: consumer.channel,
                consumer_tag: consumer.tag.clone(),
                queue: Some(arc.clone()),
                entry,
                credit: Some(consumer.credit.clone()),
                reserved: true,
            });
            let outbox = consumer.outbox.clone();
            st.deliveries.push((outbox, item));
            st.next_consumer = (i + 1) % n;
        }
        this.start_read(st);
        // The store records the deliveries (for redelivered flags after a crash) before anyone can send them.
        st.store.flush();
        if !st.deliveries.is_empty() {
            QueueStats::add(&this.stats.delivered, st.deliveries.len() as u64);
            QueueStats::add(&this.stats.unacked, st.deliveries.len() as u64);
            let now = this.clock.now_ms();
            let mut lat = this.latency.lock().unwrap_or_else(|e| e.into_inner());
            for (_, item) in &st.deliveries {
                if let OutboxItem::Deliver(d) = item {
                    lat.deliver.record(now.saturating_sub(d.entry.enqueued_ms));
                }
            }
        }
        for (outbox, item) in st.deliveries.drain(..) {
            outbox.push(item);
        }
    }

    /// Asks the store's read threads for what a dispatch or an upkeep stopped at (a head only on disk); the
    /// records come back through `ReadTarget::read_done`.
    fn start_read(&self, st: &mut QueueState) {
        st.store.start_read(|| {
            let me: Weak<dyn ReadTarget> = self.me.clone();
            me
        });
    }

    /// Adds a consumer, enforcing exclusive consumers, and dispatches to it.
    pub fn add_consumer(&self, consumer: QueueConsumer) -> AmqpResult<()> {
        let mut st = self.lock();
        // Deleted between the lookup and here: the consumer would wait forever on a queue nobody can reach.
        if self.is_deleted() {
            return Err(AmqpError::not_found(format!(
                "no queue '{}' in vhost '{}'",
                self.spec.name, self.spec.vhost
            )));
        }
        if st.consumers.iter().any(|c| c.exclusive) || (consumer.exclusive && !st.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.spec.name, self.spec.vhost
            )));
        }
        st.consumers.push(consumer);
        st.had_consumer = true;
        self.touch();
        Self::dispatch_locked(self, &mut st);
        self.finish(st);
        Ok(())
    }

    /// Adds a stream's consumer, starting where `args` say (or its stored offset), and dispatches to it.
    pub fn add_stream_consumer(
        &self,
        consumer: QueueConsumer,
        args: crate::stream::args::ConsumerArgs,
    ) -> AmqpResult<()> {
        let mut st = self.lock();
        if self.is_deleted() {
            return Err(AmqpError::not_found(format!(
                "no queue '{}' in vhost '{}'",
                self.spec.name, self.spec.vhost
            )));
        }
        self.stream_add_consumer(&mut st, consumer, args)?;
        self.touch();
        Self::stream_dispatch(self, &mut st);
        Ok(())
    }

    pub fn remove_consumer(&self, connection_id: u64, channel: u16, tag: &str) -> ConsumerRemoved {
        let mut st = self.lock();
        if self.is_stream {
            let found = Self::stream_remove_consumer(&mut st, connection_id, channel, tag);
            return ConsumerRemoved {
                found,
                auto_delete_now: false,
            };
        }
        let before = st.consumers.len();
        st.consumers
            .retain(|c| !(c.connection_id == connection_id && c.channel == channel && &*c.tag == tag));
        let found = st.consumers.len() != before;
        if st.next_consumer >= st.consumers.len() {
            st.next_consumer = 0;
        }
        // The last consumer gone: `x-expires` counts again.
        if let Some(at) = self.expires_at(&st) {
            self.arm(at);
        }
        ConsumerRemoved {
            found,
            auto_delete_now: found && self.spec.auto_delete && st.had_consumer && st.consumers.is_empty(),
        }
    }

    /// Puts delivered messages back (redelivered) and dispatches them again.
    /// With `x-delivery-limit`, each return counts: past the limit the message is dead-lettered (reason
    /// `delivery_limit`) or dropped, and below it the message goes back carrying `x-delivery-count`.
    pub fn requeue(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut st = self.lock();
        if self.is_deleted() {
            return;
        }
        if self.is_stream {
            // A stream keeps everything: what a consumer gave back is simply not acked.
            QueueStats::sub(&self.stats.unacked, entries.into_iter().count() as u64);
            Self::stream_dispatch(self, &mut st);
            return;
        }
        let delivery_limit = self.limits().delivery_limit;
        for mut e in entries {
            QueueStats::add(&self.stats.redelivered, 1);
            QueueStats::sub(&self.stats.unacked, 1);
            if let Some(limit) = delivery_limit {
                e.delivery_count += 1;
                if e.delivery_count > limit {
                    self.drop_entry(&mut st, e, Reason::DeliveryLimit);
                    continue;
                }
                e.message = Arc::new(with_delivery_count(&e.message, e.delivery_count));
            }
            st.store.requeue(e);
        }
        Self::dispatch_locked(self, &mut st);
        self.finish(st);
    }

    /// Transaction commit, phase 1: writes a persistent message without making it visible (see `store::txlog`).
    pub fn stage(&self, message: &Message, tx: u64) -> std::io::Result<Staged> {
        self.lock().store.stage(message, tx)
    }

    /// Transaction commit, phase 3: a staged message joins the queue and is dispatched.
    pub fn expose(&self, staged: &Staged, message: Arc<Message>) {
        let mut st = self.lock();
        if self.is_deleted() {
            return;
        }
        QueueStats::add(&self.stats.published, 1);
        st.store.expose(staged, &message);
        if !st.consumers.is_empty() {
            Self::dispatch_locked(self, &mut st);
        }
        self.finish(st);
    }

    /// The directory of a durable queue's files.
    pub fn dir(&self) -> Option<std::path::PathBuf> {
        self.lock().store.dir().map(|d| d.to_path_buf())
    }

    /// Rejected (or, with `nack`, nacked) without requeue: settled, and dead-lettered when the queue has a
    /// dead-letter exchange.
    pub fn reject(&self, entries: impl IntoIterator<Item = Entry>, nack: bool) {
        let mut st = self.lock();
        if self.is_stream {
            QueueStats::sub(&self.stats.unacked, entries.into_iter().count() as u64);
            return;
        }
        for e in entries {
            QueueStats::add(if nack { &self.stats.nacked } else { &self.stats.rejected }, 1);
            QueueStats::sub(&self.stats.unacked, 1);
            self.drop_entry(&mut st, e, Reason::Rejected);
        }
        st.store.flush();
        self.finish(st);
    }

    /// Upkeep now, whatever is due (the full sweep `Broker::advance_time` runs): see `upkeep`. Re-arms the timer if
    /// the next deadline is earlier than what is armed. Returns true when the queue has been unused for its
    /// `x-expires` and should be deleted.
    pub fn sweep(&self) -> bool {
        let u = self.upkeep(false);
        if let (false, Some(at)) = (u.unused, u.next) {
            self.arm(at);
        }
        u.unused
    }

    /// Drops (or dead-letters) expired messages at the heads even with no consumer attached, offers messages that
    /// failed to read back from disk again once their retry time has come, lets go of idle files, checks
    /// `x-expires`, and works out the next deadline. `fired`: the timer woke us and keeps the answer, so
    /// `armed_at` becomes exactly that (under the lock, so an arm racing with this one is never lost).
    fn upkeep(&self, fired: bool) -> Upkeep {
        let mut st = self.lock();
        if self.is_stream {
            self.stream_retain(&mut st);
            let next = st.stream.as_ref().and_then(|s| s.next_retention());
            if fired {
                self.armed_at.store(next.unwrap_or(NOT_ARMED), Ordering::Relaxed);
            }
            return Upkeep { unused: false, next };
        }
        let retried = {
            let st = &mut *st;
            // Messages that failed to read back are put at the head again first, so TTL and delivery see them.
            let retried = st.store.retry_unreadable();
            st.store.expire_heads(&mut st.expired_buf);
            st.store.release_idle_files(IDLE_FILES_AFTER);
            retried
        };
        let expire = self.expires_at(&st).is_some_and(|at| self.clock.now_ms() >= at);
        if (retried || !st.expired_buf.is_empty()) && !st.consumers.is_empty() {
            Self::dispatch_locked(self, &mut st);
        }
        if !st.expired_buf.is_empty() {
            self.collect_expired(&mut st);
            st.store.flush();
        }
        let next = if expire { None } else { self.next_deadline(&st) };
        if fired {
            self.armed_at.store(next.unwrap_or(NOT_ARMED), Ordering::Relaxed);
        }
        self.finish(st);
        Upkeep { unused: expire, next }
    }

    /// Records that delivered messages are done with (acked, or rejected without requeue).
    pub fn settle<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>) {
        self.settle_counted(entries, true);
    }

    fn settle_counted<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>, as_ack: bool) {
        let entries: Vec<&Entry> = entries.into_iter().collect();
        if as_ack && self.trace_any() {
            for e in entries.iter().filter(|e| self.traces(&e.message)) {
                self.record_trace(
                    &e.message,
                    crate::trace::TraceEvent::Acked {
                        queue: self.spec.name.clone(),
                    },
                );
            }
        }
        if as_ack {
            QueueStats::add(&self.stats.acked, entries.len() as u64);
            let now = self.clock.now_ms();
            let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            for e in &entries {
                lat.ack.record(now.saturating_sub(e.enqueued_ms));
            }
        }
        QueueStats::sub(&self.stats.unacked, entries.len() as u64);
        if entries.iter().all(|e| e.loc.is_none()) {
            return;
        }
        let mut st = self.lock();
        for e in entries {
            st.store.settle(e);
        }
        st.store.flush();
        // An emptied durable queue's files go once idle: from its last ack on.
        self.arm_store(&st);
    }

    /// basic.get: the next ready message and how many remain (none while the queue is paused).
    pub fn get(&self) -> Option<(Entry, u32)> {
        self.touch();
        if self.is_paused() {
            return None;
        }
        let mut st = self.lock();
        let e = loop {
            let popped = {
                let st = &mut *st;
                st.store.pop(&mut st.expired_buf)
            };
            match popped {
                Some(e) => match self.returned_before_restart(&mut st, e) {
                    Some(e) => break Some(e),
                    None => continue,
                },
                None => break None,
            }
        };
        st.store.flush();
        let remaining = st.store.len() as u32;
        self.finish(st);
        let e = e?;
        QueueStats::add(&self.stats.delivered, 1);
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deliver
            .record(self.clock.now_ms().saturating_sub(e.enqueued_ms));
        QueueStats::add(&self.stats.unacked, 1);
        Some((e, remaining))
    }

    pub fn purge(&self) -> u32 {
        let mut st = self.lock();
        let n = st.store.purge() as u32;
        self.arm_store(&st);
        n
    }

    pub fn is_durable(&self) -> bool {
        self.lock().store.is_durable()
    }

    pub fn message_count(&self) -> u32 {
        let st = self.lock();
        if self.is_stream {
            return Self::stream_message_count(&st).min(u32::MAX as u64) as u32;
        }
        st.store.len() as u32
    }

    pub fn counts(&self) -> (u32, u32) {
        let st = self.lock();
        if self.is_stream {
            let n = Self::stream_message_count(&st).min(u32::MAX as u64) as u32;
            return (n, Self::stream_consumer_count(&st) as u32);
        }
        (st.store.len() as u32, st.consumers.len() as u32)
    }

    /// An `Arc` to ourselves for deliveries, so that acks can find the queue again.
    fn self_arc(&self) -> Option<Arc<Queue>> {
        self.me.upgrade()
    }
}

impl ReadTarget for Queue {
    /// A read thread read ahead what dispatch (or the upkeep) stopped at: installed under the lock, then dispatched,
    /// on the read thread.
    fn read_done(&self, done: ReadAhead) {
        let mut st = self.lock();
        if self.is_deleted() || !st.store.install_read(done) {
            return;
        }
        if !st.consumers.is_empty() {
            Self::dispatch_locked(self, &mut st);
        }
        self.finish(st);
    }
}

impl Due for Queue {
    /// The timer woke us: upkeep, and our next deadline. A queue unused for its `x-expires` is removed from its
    /// vhost here.
    fn due(&self) -> Option<u64> {
        if self.is_deleted() {
            return None;
        }
        let u = self.upkeep(true);
        if u.unused {
            if let (Some(vhost), Some(me)) = (self.vhost.upgrade(), self.self_arc()) {
                tracing::info!(vhost = %vhost.name, queue = %self.name(), "queue expired (x-expires)");
                vhost.remove_queue(&me);
            }
        }
        u.next
    }
}
