//! `impl Queue` for streams (`x-queue-type: stream`): the queue's lock guards its `StreamState` (`crate::stream`),
//! and these are the stream's versions of publish, write hand-over, dispatch, consumers, acks and upkeep.
//!
//! Invariants:
//! - A publish appends to the log's buffer under the queue's lock; the connection hands the buffer to the syncer
//!   thread at the end of its read batch (`flush_writes`), and the confirms wait for that round, as for a durable
//!   classic queue. No file is written or synced on an async worker.
//! - Reads of the files run on the data directory's read threads, planned under the lock and read without it; the
//!   result is installed under the lock and dispatched from there.
//! - Deliveries carry the message's offset as `Entry::seq`; settling one removes nothing. An ack moves a named
//!   consumer's stored offset (`ConsumerCredit::note_acked`, then `stream_acked`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use super::{Entry, Published, Queue, QueueConsumer, QueueState, QueueStats};
use crate::amqp::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::outbox::{Delivery, OutboxItem};
use crate::store::{WriteJob, WRITE_DROPPED, WRITE_PENDING};
use crate::stream::args::ConsumerArgs;
use crate::stream::log::OffsetSpec;
use crate::stream::state::{run_read, Next, ReadRequest, ReadResult};

/// How much of a stream one peek reads at most.
pub const PEEK_SCAN_BYTES: usize = 64 * 1024 * 1024;

/// A stream's figures for the admin API.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    pub first_offset: u64,
    pub next_offset: u64,
    pub bytes: u64,
    pub segments: u64,
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub segment_bytes: u64,
    pub first_timestamp_ms: u64,
    pub last_timestamp_ms: u64,
    pub segments_skipped: u64,
    pub filtered_out: u64,
    pub consumers: Vec<StreamConsumerInfo>,
    /// Stored offsets of named consumers (connected or not).
    pub stored: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct StreamConsumerInfo {
    pub tag: String,
    pub connection_id: u64,
    pub channel: u16,
    pub name: Option<String>,
    /// The next offset it is given.
    pub offset: u64,
    /// Messages between it and the head.
    pub lag: u64,
    /// How far behind the head's time its position is (ms).
    pub lag_ms: u64,
}

impl Queue {
    pub fn is_stream(&self) -> bool {
        self.is_stream
    }

    pub(super) fn stream_publish(&self, st: &mut QueueState, message: Arc<Message>, defer: bool) -> Published {
        let now = self.clock.now_ms();
        let Some(s) = st.stream.as_mut() else {
            return Published::default();
        };
        let failed = Published {
            routed: true,
            failed: true,
            ..Published::default()
        };
        if s.failed {
            return failed;
        }
        let rolled_from = s.log.segment_count();
        if let Err(e) = s.append(&message, now) {
            tracing::warn!(queue = %self.spec.name, vhost = %self.spec.vhost, error = %e, "could not append to a stream; the message is nacked");
            return failed;
        }
        let rolled = s.log.segment_count() != rolled_from;
        QueueStats::add(&self.stats.published, 1);
        let mut out = Published {
            routed: true,
            deferred: defer,
            ..Published::default()
        };
        if let Some(sync) = &self.sync {
            out.first_ticket = sync.syncer.open_round();
        }
        if !defer {
            match self.stream_hand_over(st) {
                Ok(ticket) => out.ticket = ticket,
                Err(()) => out.failed = true,
            }
        }
        if rolled {
            self.stream_retain(st);
        }
        Self::stream_dispatch(self, st);
        out
    }

    /// Hands what the log buffered to the syncer thread (which writes, then syncs unless `fsync = never`); returns
    /// its round. Without a syncer (tests), writes in place.
    pub(super) fn stream_hand_over(&self, st: &mut QueueState) -> Result<u64, ()> {
        let Some(s) = st.stream.as_mut() else { return Ok(0) };
        let writes = s.log.take_writes();
        if writes.is_empty() {
            return Ok(0);
        }
        let Some(sync) = &self.sync else {
            let written = s.log.written().clone();
            let ok = crate::store::blocking(|| writes.iter().all(|h| h.write(&written).is_ok()));
            if !ok {
                s.failed = true;
                return Err(());
            }
            s.trim_tail();
            return Ok(0);
        };
        s.pending_writes.retain(|w| w.load(Ordering::Acquire) == WRITE_PENDING);
        let mut ticket = 0;
        for h in writes {
            let state = Arc::new(AtomicU8::new(WRITE_PENDING));
            s.pending_writes.push(state.clone());
            let me: Weak<Queue> = self.me.clone();
            let written = s.log.written().clone();
            let end = h.end_offset;
            let seal = h.seal;
            let job = WriteJob {
                file: h.file.clone(),
                offset: h.position,
                bytes: h.bytes,
                state,
                failed: Box::new(move || {
                    if let Some(q) = me.upgrade() {
                        q.stream_write_failed();
                    }
                }),
                then: Some(Box::new(move || {
                    if let Some(seal) = seal {
                        if let Err(e) = seal.write_index() {
                            tracing::warn!(error = %e, "could not write a sealed stream segment's index; it is rebuilt at the next start");
                        }
                    }
                    written.fetch_max(end, Ordering::AcqRel);
                })),
            };
            ticket = sync.syncer.submit(Some(job), &[h.file]);
        }
        s.trim_tail();
        Ok(ticket)
    }

    /// The syncer could not write part of the log: what was handed over after it is dropped (its publishes are
    /// nacked through their failed rounds), and the stream takes no more publishes until a restart recovers it.
    fn stream_write_failed(&self) {
        let mut st = self.lock();
        if let Some(s) = st.stream.as_mut() {
            s.failed = true;
            for w in s.pending_writes.drain(..) {
                let _ = w.compare_exchange(WRITE_PENDING, WRITE_DROPPED, Ordering::AcqRel, Ordering::Acquire);
            }
            tracing::error!(queue = %self.spec.name, vhost = %self.spec.vhost, "a stream's write failed; it refuses publishes until the broker restarts");
        }
    }

    /// Gives each stream consumer what it may take now; starts reads for those whose next messages are only in the
    /// files.
    pub(super) fn stream_dispatch(this: &Queue, st: &mut QueueState) {
        if this.is_paused() {
            return;
        }
        let Some(arc) = this.self_arc() else { return };
        let Some(s) = st.stream.as_mut() else { return };
        let mut reads = Vec::new();
        for i in 0..s.consumers.len() {
            loop {
                let c = &s.consumers[i].consumer;
                if !c.credit.has_room() {
                    break;
                }
                if !c.outbox.has_room() {
                    c.outbox.reserve_or_mark();
                    break;
                }
                let m = match s.next_for(i) {
                    Next::Message(m) => m,
                    Next::Wait => break,
                    Next::Read(r) => {
                        reads.push(r);
                        break;
                    }
                };
                let c = &s.consumers[i].consumer;
                if !c.outbox.reserve() {
                    s.unget(i, m);
                    break;
                }
                if !c.credit.try_acquire() {
                    c.outbox.unreserve();
                    s.unget(i, m);
                    break;
                }
                c.outbox.reserved(m.message.size());
                let item = OutboxItem::Deliver(Delivery {
                    channel: c.channel,
                    consumer_tag: c.tag.clone(),
                    queue: Some(arc.clone()),
                    entry: Entry {
                        seq: m.offset,
                        message: m.message,
                        redelivered: false,
                        expires_at: None,
                        loc: None,
                        delivery_count: 0,
                        enqueued_ms: m.enqueued_ms,
                    },
                    credit: Some(c.credit.clone()),
                    reserved: true,
                });
                st.deliveries.push((c.outbox.clone(), item));
            }
        }
        if !st.deliveries.is_empty() {
            QueueStats::add(&this.stats.delivered, st.deliveries.len() as u64);
            QueueStats::add(&this.stats.unacked, st.deliveries.len() as u64);
        }
        for (outbox, item) in st.deliveries.drain(..) {
            outbox.push(item);
        }
        let reader = st.stream.as_ref().and_then(|s| s.reader.clone());
        for r in reads {
            let me = this.me.clone();
            let task = move || {
                let result = run_read(&r);
                if let Some(q) = me.upgrade() {
                    q.stream_read_done(&r, result);
                }
            };
            match &reader {
                Some(reader) => reader.run(Box::new(task)),
                // No read threads could start: a thread of its own (never in place: the queue's lock is held here,
                // and the read's end takes it).
                None => {
                    if let Err(e) = std::thread::Builder::new()
                        .name("warren-stream-read".into())
                        .spawn(task)
                    {
                        tracing::error!(queue = %this.spec.name, error = %e, "could not start a stream read");
                    }
                }
            }
        }
    }

    fn stream_read_done(&self, r: &ReadRequest, result: std::io::Result<ReadResult>) {
        let mut st = self.lock();
        if self.is_deleted() {
            return;
        }
        let installed = st
            .stream
            .as_mut()
            .is_some_and(|s| s.read_done(&r.key, r.generation, result));
        if installed {
            Self::stream_dispatch(self, &mut st);
        }
    }

    /// basic.consume on a stream: RabbitMQ's rules (manual acks, a prefetch), then the consumer's start.
    pub(super) fn stream_add_consumer(
        &self,
        st: &mut QueueState,
        consumer: QueueConsumer,
        args: ConsumerArgs,
    ) -> AmqpResult<()> {
        let Some(s) = st.stream.as_mut() else {
            return Err(AmqpError::precondition("not a stream"));
        };
        let start = crate::store::blocking(|| s.start_offset(&args)).map_err(|e| {
            AmqpError::new(
                crate::amqp::error::INTERNAL_ERROR,
                format!("cannot read stream '{}': {e}", self.spec.name),
            )
        })?;
        if let Some(name) = &args.name {
            consumer.credit.reset_acked(start);
            tracing::debug!(queue = %self.spec.name, consumer = %name, start, "named stream consumer starts");
        }
        s.add_consumer(consumer, args, start);
        Ok(())
    }

    /// Acks arrived for this stream: store the named consumers' offsets that moved.
    pub fn stream_acked(&self) {
        let mut st = self.lock();
        if let Some(s) = st.stream.as_mut() {
            s.store_acked();
        }
    }

    /// Retention, off the async workers' other tasks (it removes files).
    pub(super) fn stream_retain(&self, st: &mut QueueState) {
        let now = self.clock.now_ms();
        let Some(s) = st.stream.as_mut() else { return };
        if s.settings.max_bytes.is_none() && s.settings.max_age_ms.is_none() {
            return;
        }
        match crate::store::blocking(|| s.retain(now)) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(queue = %self.spec.name, vhost = %self.spec.vhost, segments = n, first_offset = s.log.first_offset(), "stream retention removed old segments")
            }
            Err(e) => {
                tracing::warn!(queue = %self.spec.name, vhost = %self.spec.vhost, error = %e, "stream retention failed")
            }
        }
    }

    /// Removes the stream's segments wholly before `offset` (the operator's "truncate before"); returns how many.
    pub fn stream_truncate_before(&self, offset: u64) -> Option<std::io::Result<usize>> {
        let mut st = self.lock();
        let s = st.stream.as_mut()?;
        Some(crate::store::blocking(|| s.truncate_before(offset)))
    }

    /// Sets a named consumer's stored offset (the operator's "replay from"); returns the offset it now starts at.
    pub fn stream_reset_offset(&self, name: &str, spec: OffsetSpec) -> Option<std::io::Result<u64>> {
        let mut st = self.lock();
        let result = {
            let s = st.stream.as_mut()?;
            crate::store::blocking(|| s.reset_offset(name, spec))
        };
        Self::stream_dispatch(self, &mut st);
        Some(result)
    }

    /// Looks at messages without consuming anything (the admin API's peek): from where `start` seeks to, passes
    /// over `skip` messages that `matches`, then returns up to `count` that match, each with its offset as
    /// `Entry::seq`. The read is planned under the lock and done without it; it stops after [`PEEK_SCAN_BYTES`] of
    /// messages, so a filter that matches little cannot read a whole large stream. None for other queues.
    pub fn stream_peek(
        &self,
        start: OffsetSpec,
        skip: usize,
        count: usize,
        matches: &dyn Fn(&Entry) -> bool,
    ) -> Option<std::io::Result<Vec<Entry>>> {
        // What the files hold is read without the lock; what is appended and not written yet (the plan's limit)
        // is only in the tail, and is taken with the plan.
        let (plan, unwritten) = {
            let st = self.lock();
            let s = st.stream.as_ref()?;
            match crate::store::blocking(|| s.log.seek(start)) {
                Ok(from) => {
                    let plan = s.log.plan(from, None, usize::MAX);
                    let unwritten = s.unwritten_from(from, plan.limit());
                    (plan, unwritten)
                }
                Err(e) => return Some(Err(e)),
            }
        };
        let (mut out, mut skipped, mut scanned) = (Vec::new(), 0, 0usize);
        let mut each = |e: Entry| {
            scanned += e.message.body.len() + e.message.raw_properties.len();
            if matches(&e) {
                if skipped < skip {
                    skipped += 1;
                } else {
                    out.push(e);
                }
            }
            out.len() < count && scanned < PEEK_SCAN_BYTES
        };
        let entry = |seq: u64, message: Arc<Message>, enqueued_ms: u64| Entry {
            seq,
            message,
            redelivered: false,
            expires_at: None,
            loc: None,
            delivery_count: 0,
            enqueued_ms,
        };
        let mut more = true;
        if let Err(e) = plan.visit(&mut |r| {
            more = each(entry(r.seq, Arc::new(super::message_of(&r)), r.enqueued_ms));
            more
        }) {
            return Some(Err(e));
        }
        for m in unwritten {
            if !more {
                break;
            }
            more = each(entry(m.offset, m.message, m.enqueued_ms));
        }
        Some(Ok(out))
    }

    /// The stream's figures (None for other queues).
    pub fn stream_info(&self) -> Option<StreamInfo> {
        let st = self.lock();
        let s = st.stream.as_ref()?;
        let head_ms = s.log.last_timestamp_ms();
        let consumers = s
            .consumers
            .iter()
            .map(|c| {
                let lag = s.lag(c);
                StreamConsumerInfo {
                    tag: c.consumer.tag.to_string(),
                    connection_id: c.consumer.connection_id,
                    channel: c.consumer.channel,
                    name: c.name.clone(),
                    offset: c.position(),
                    lag,
                    lag_ms: if lag == 0 {
                        0
                    } else {
                        head_ms.saturating_sub(s.timestamp_of(c.position()))
                    },
                }
            })
            .collect();
        Some(StreamInfo {
            first_offset: s.log.first_offset(),
            next_offset: s.log.next_offset(),
            bytes: s.log.bytes(),
            segments: s.log.segment_count() as u64,
            max_bytes: s.settings.max_bytes,
            max_age_ms: s.settings.max_age_ms,
            segment_bytes: s.settings.segment_bytes,
            first_timestamp_ms: s.log.first_timestamp_ms(),
            last_timestamp_ms: head_ms,
            segments_skipped: s.segments_skipped,
            filtered_out: s.filtered_out,
            consumers,
            stored: s.offsets.iter().map(|(n, o)| (n.to_string(), o)).collect(),
        })
    }

    /// Removes a stream consumer; true when it was there.
    pub(super) fn stream_remove_consumer(st: &mut QueueState, connection_id: u64, channel: u16, tag: &str) -> bool {
        st.stream
            .as_mut()
            .is_some_and(|s| s.remove_consumer(connection_id, channel, tag))
    }

    pub(super) fn stream_consumer_count(st: &QueueState) -> usize {
        st.stream.as_ref().map_or(0, |s| s.consumers.len())
    }

    pub(super) fn stream_message_count(st: &QueueState) -> u64 {
        st.stream.as_ref().map_or(0, |s| s.message_count())
    }
}
