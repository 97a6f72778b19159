//! A stream queue's state, owned by its `Queue` under the queue's lock: the log, the recent tail in memory, the
//! consumers with their own positions, and the stored offsets of named consumers.
//!
//! Invariants:
//! - Every appended message gets the next offset and carries it in its `x-stream-offset` header (stamped once, at
//!   append, into the stored properties, so no delivery rewrites anything).
//! - The tail (`tail`) holds the newest messages, contiguous up to the log's next offset. It always holds every
//!   message not yet written to the files (`StreamLog::written`), and past that at most `tail_budget` bytes: a
//!   consumer near the head is served from memory, one further back from the files.
//! - A consumer's messages come from its read buffer (filled by a read of the files on a read thread, at most one
//!   read in flight per consumer, at most `READ_RECORDS` / `READ_BYTES` each), then from the tail. Memory per
//!   consumer is bounded by one read, whatever the stream's size: many consumers replaying share the page cache.
//! - Reading never removes anything; acks only move a named consumer's stored offset forward.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use amq_protocol::types::AMQPValue;
use bytes::Bytes;

use super::args::{matches, ConsumerArgs, StreamSettings};
use super::log::{self, Filter, OffsetSpec, ReadPlan, StreamLog};
use super::offsets::Offsets;
use crate::message::Message;
use crate::queue::QueueConsumer;
use crate::store::record::Record;

/// The most a consumer's read from the files brings back at once.
pub const READ_RECORDS: usize = 1024;
pub const READ_BYTES: usize = 512 * 1024;
/// Bytes of already-written messages the tail keeps in memory for consumers near the head.
pub const TAIL_BYTES: usize = 4 * 1024 * 1024;

/// One message of the stream, ready to deliver.
#[derive(Debug, Clone)]
pub struct Cached {
    pub offset: u64,
    pub message: Arc<Message>,
    pub enqueued_ms: u64,
    /// Its `x-stream-filter-value`.
    pub filter: Option<Bytes>,
}

/// Identifies a consumer across a read on another thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerKey {
    pub connection_id: u64,
    pub channel: u16,
    pub tag: Arc<str>,
}

pub struct StreamConsumer {
    pub consumer: QueueConsumer,
    /// The next offset to take from the files or the tail (the read buffer holds what comes before it).
    pub cursor: u64,
    pub filter: Option<Filter>,
    /// `x-stream-consumer-name`: acks move its stored offset.
    pub name: Option<String>,
    buffer: VecDeque<Cached>,
    reading: bool,
    /// Bumped when the position is moved from outside (an operator's reset), so a read in flight is dropped.
    generation: u64,
}

impl StreamConsumer {
    pub fn key(&self) -> ConsumerKey {
        ConsumerKey {
            connection_id: self.consumer.connection_id,
            channel: self.consumer.channel,
            tag: self.consumer.tag.clone(),
        }
    }

    /// The next offset this consumer is given (the head of its read buffer, or its cursor).
    pub fn position(&self) -> u64 {
        self.buffer.front().map_or(self.cursor, |c| c.offset)
    }
}

/// A read of the files for one consumer, to run on a read thread.
pub struct ReadRequest {
    pub key: ConsumerKey,
    pub generation: u64,
    pub plan: ReadPlan,
    pub filter: Option<Filter>,
}

/// What a read for a consumer brought back.
pub struct ReadResult {
    pub messages: Vec<Cached>,
    pub next: u64,
    pub segments_skipped: u64,
}

/// What a consumer gets next.
pub enum Next {
    Message(Cached),
    /// Nothing now: at the head, or a read is in flight.
    Wait,
    /// Its next messages are only in the files: start this read.
    Read(ReadRequest),
}

pub struct StreamState {
    pub log: StreamLog,
    pub settings: StreamSettings,
    pub offsets: Offsets,
    dir: PathBuf,
    tail: VecDeque<Cached>,
    /// The offset of `tail`'s front (the log's next offset when it is empty).
    tail_first: u64,
    tail_bytes: usize,
    tail_budget: usize,
    pub consumers: Vec<StreamConsumer>,
    /// Segments filtered reads passed over without reading them.
    pub segments_skipped: u64,
    /// Messages filtered readers were not given.
    pub filtered_out: u64,
    /// A write of the log failed: publishes are refused until the broker restarts and recovers the files.
    pub failed: bool,
    /// The data directory's read threads (None: reads run in place).
    pub reader: Option<crate::store::io_pool::Reader>,
    /// Writes handed to the syncer and not yet done: dropped if an earlier one fails, so a file never has a gap.
    pub pending_writes: Vec<Arc<std::sync::atomic::AtomicU8>>,
}

/// The `x-stream-filter-value` among encoded properties.
pub fn filter_value(properties: &amq_protocol::protocol::basic::AMQPProperties) -> Option<Bytes> {
    match properties.headers().as_ref()?.inner().get("x-stream-filter-value")? {
        AMQPValue::LongString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        AMQPValue::ShortString(s) => Some(Bytes::copy_from_slice(s.as_str().as_bytes())),
        _ => None,
    }
}

/// A message read back from the log (its properties already carry its offset); its filter value only when a reader
/// filters.
pub fn cached_of(r: Record, with_filter: bool) -> Cached {
    let message = crate::queue::message_of(&r);
    let filter = if with_filter {
        filter_value(&message.properties())
    } else {
        None
    };
    Cached {
        offset: r.seq,
        message: Arc::new(message),
        enqueued_ms: r.enqueued_ms,
        filter,
    }
}

/// Runs a consumer's read (on a read thread), keeping only what its filter wants.
pub fn run_read(req: &ReadRequest) -> io::Result<ReadResult> {
    let batch = req.plan.read(READ_RECORDS, READ_BYTES)?;
    let filter = req.filter.as_ref();
    let messages = batch
        .records
        .into_iter()
        .map(|r| cached_of(r, filter.is_some()))
        .filter(|c| matches(filter, c.filter.as_deref()))
        .collect();
    Ok(ReadResult {
        messages,
        next: batch.next,
        segments_skipped: batch.segments_skipped,
    })
}

impl StreamState {
    /// Opens the stream's files in `dir` (recovering them).
    pub fn open(dir: &Path, settings: StreamSettings, tail_budget: usize) -> io::Result<Self> {
        let log = StreamLog::open(dir, settings.segment_bytes)?;
        let offsets = Offsets::open(dir)?;
        let stats = log.stats();
        if stats.damaged_bytes > 0 || stats.indexes_rebuilt > 0 {
            tracing::warn!(dir = %dir.display(), damaged_bytes = stats.damaged_bytes, indexes_rebuilt = stats.indexes_rebuilt, "recovered a stream");
        }
        let next = log.next_offset();
        Ok(StreamState {
            log,
            settings,
            offsets,
            dir: dir.to_path_buf(),
            tail: VecDeque::new(),
            tail_first: next,
            tail_bytes: 0,
            tail_budget,
            consumers: Vec::new(),
            segments_skipped: 0,
            filtered_out: 0,
            failed: false,
            reader: None,
            pending_writes: Vec::new(),
        })
    }

    /// New retention and segment size (a policy changed): retention applies at the next `retain`, the segment
    /// size to the active segment from now on.
    pub fn set_settings(&mut self, settings: StreamSettings) {
        self.log.set_max_segment_bytes(settings.segment_bytes);
        self.settings = settings;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Messages in the stream.
    pub fn message_count(&self) -> u64 {
        self.log.next_offset() - self.log.first_offset()
    }

    /// Appends a message at `now_ms`: stamps its offset into its headers, buffers its record and keeps it in the
    /// tail. Returns the stamped message's offset.
    pub fn append(&mut self, message: &Message, now_ms: u64) -> io::Result<u64> {
        let offset = self.log.next_offset();
        let props = message.properties();
        let filter = filter_value(&props);
        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert("x-stream-offset".into(), AMQPValue::LongLongInt(offset as i64));
        let stamped = Message::with_properties(
            message.exchange.clone(),
            message.routing_key.clone(),
            props.with_headers(headers),
            message.body.clone(),
        );
        self.log.append_buffered(
            &[log::Message {
                exchange: stamped.exchange.as_str().as_bytes(),
                routing_key: stamped.routing_key.as_str().as_bytes(),
                properties: &stamped.raw_properties,
                body: &stamped.body,
                filter: filter.as_deref(),
            }],
            now_ms,
        )?;
        let enqueued_ms = self.log.last_timestamp_ms();
        self.tail_bytes += stamped.body.len() + stamped.raw_properties.len();
        self.tail.push_back(Cached {
            offset,
            message: Arc::new(stamped),
            enqueued_ms,
            filter,
        });
        Ok(offset)
    }

    /// The tail's messages from `from` on that are not in the files yet (a read of the files stops where they
    /// start, at `written`), in offset order.
    pub fn unwritten_from(&self, from: u64, written: u64) -> Vec<Cached> {
        let start = from.max(written).max(self.tail_first);
        let skip = (start - self.tail_first) as usize;
        self.tail.iter().skip(skip).cloned().collect()
    }

    /// Lets go of tail messages that are written, past the budget.
    pub fn trim_tail(&mut self) {
        let written = self.log.written().load(std::sync::atomic::Ordering::Acquire);
        while self.tail_bytes > self.tail_budget {
            let Some(front) = self.tail.front() else { break };
            if front.offset >= written {
                break;
            }
            self.tail_bytes -= front.message.body.len() + front.message.raw_properties.len();
            self.tail.pop_front();
            self.tail_first += 1;
        }
        if self.tail.is_empty() {
            self.tail_first = self.log.next_offset();
        }
    }

    /// Where a new consumer starts: a named consumer's stored offset when it asked for none or for `next`,
    /// otherwise what it asked for (`next` by default). May read the files (a timestamp's segment).
    pub fn start_offset(&self, args: &ConsumerArgs) -> io::Result<u64> {
        let stored = args.name.as_deref().and_then(|n| self.offsets.get(n));
        match (args.offset, stored) {
            (None | Some(OffsetSpec::Next), Some(stored)) => Ok(stored.max(self.log.first_offset())),
            (spec, _) => self.log.seek(spec.unwrap_or(OffsetSpec::Next)),
        }
    }

    pub fn add_consumer(&mut self, consumer: QueueConsumer, args: ConsumerArgs, start: u64) {
        self.consumers.push(StreamConsumer {
            consumer,
            cursor: start,
            filter: args.filter,
            name: args.name,
            buffer: VecDeque::new(),
            reading: false,
            generation: 0,
        });
    }

    pub fn remove_consumer(&mut self, connection_id: u64, channel: u16, tag: &str) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|c| {
            !(c.consumer.connection_id == connection_id && c.consumer.channel == channel && &*c.consumer.tag == tag)
        });
        before != self.consumers.len()
    }

    /// What consumer `i` gets next (its credit and outbox are the caller's to check).
    pub fn next_for(&mut self, i: usize) -> Next {
        let next_offset = self.log.next_offset();
        let c = &mut self.consumers[i];
        if let Some(m) = c.buffer.pop_front() {
            return Next::Message(m);
        }
        if c.reading {
            return Next::Wait;
        }
        while c.cursor < next_offset {
            if c.cursor < self.tail_first {
                c.reading = true;
                return Next::Read(ReadRequest {
                    key: c.key(),
                    generation: c.generation,
                    plan: self.log.plan(c.cursor, c.filter.as_ref(), 4),
                    filter: c.filter.clone(),
                });
            }
            let m = &self.tail[(c.cursor - self.tail_first) as usize];
            c.cursor += 1;
            if matches(c.filter.as_ref(), m.filter.as_deref()) {
                return Next::Message(m.clone());
            }
            self.filtered_out += 1;
        }
        Next::Wait
    }

    /// Gives back a message `next_for` handed out that could not be delivered (no room after all).
    pub fn unget(&mut self, i: usize, m: Cached) {
        self.consumers[i].buffer.push_front(m);
    }

    /// A read for `key` finished; false when its consumer is gone or was moved meanwhile.
    pub fn read_done(&mut self, key: &ConsumerKey, generation: u64, result: io::Result<ReadResult>) -> bool {
        let tail_first = self.tail_first;
        let Some(c) = self.consumers.iter_mut().find(|c| c.key() == *key) else {
            return false;
        };
        if c.generation != generation {
            return false;
        }
        c.reading = false;
        match result {
            Ok(r) => {
                self.segments_skipped += r.segments_skipped;
                let progressed = r.next > c.cursor || !r.messages.is_empty();
                c.buffer.extend(r.messages);
                c.cursor = c.cursor.max(r.next);
                if !progressed {
                    // Nothing readable where the files should hold the cursor (damage): go on from memory.
                    tracing::warn!(dir = %self.dir.display(), from = c.cursor, to = tail_first, "a stream read found nothing; skipping to the messages in memory");
                    c.cursor = c.cursor.max(tail_first);
                }
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "a stream read failed; it is tried again on the next dispatch");
            }
        }
        true
    }

    /// Stores the offsets named consumers acked past (`acked`: the next offset after the highest ack).
    pub fn store_acked(&mut self) {
        for c in &self.consumers {
            let (Some(name), acked) = (&c.name, c.consumer.credit.acked_next()) else {
                continue;
            };
            if acked > 0 && self.offsets.get(name).is_none_or(|o| o < acked) {
                if let Err(e) = self.offsets.store(name, acked) {
                    tracing::warn!(dir = %self.dir.display(), consumer = %name, error = %e, "could not store a consumer offset");
                }
            }
        }
    }

    /// Sets a named consumer's stored offset (an operator's "replay from"); a connected consumer with that name
    /// moves there at once.
    pub fn reset_offset(&mut self, name: &str, spec: OffsetSpec) -> io::Result<u64> {
        let offset = self.log.seek(spec)?;
        self.offsets.store(name, offset)?;
        for c in self.consumers.iter_mut().filter(|c| c.name.as_deref() == Some(name)) {
            c.cursor = offset;
            c.buffer.clear();
            c.reading = false;
            c.generation += 1;
            c.consumer.credit.reset_acked(offset);
        }
        Ok(offset)
    }

    /// Retention by size and age; whole segments from the oldest. Consumers behind the new start move up to it.
    pub fn retain(&mut self, now_ms: u64) -> io::Result<usize> {
        let removed = self
            .log
            .retain(self.settings.max_bytes, self.settings.max_age_ms, now_ms)?;
        if removed > 0 {
            self.after_removal();
        }
        Ok(removed)
    }

    /// Removes the segments wholly before `offset`.
    pub fn truncate_before(&mut self, offset: u64) -> io::Result<usize> {
        let removed = self.log.truncate_before(offset)?;
        if removed > 0 {
            self.after_removal();
        }
        Ok(removed)
    }

    fn after_removal(&mut self) {
        let first = self.log.first_offset();
        for c in &mut self.consumers {
            if c.buffer.is_empty() && !c.reading {
                c.cursor = c.cursor.max(first);
            }
        }
    }

    /// When age retention next has something to remove (unix ms).
    pub fn next_retention(&self) -> Option<u64> {
        let age = self.settings.max_age_ms?;
        self.log
            .oldest_sealed_last_timestamp()
            .map(|t| t.saturating_add(age).saturating_add(1))
    }

    /// About when `offset` was appended (from the tail when it is there, otherwise from the index).
    pub fn timestamp_of(&self, offset: u64) -> u64 {
        if offset >= self.tail_first {
            if let Some(m) = self.tail.get((offset - self.tail_first) as usize) {
                return m.enqueued_ms;
            }
        }
        self.log.timestamp_near(offset)
    }

    /// A consumer's lag: messages between its position and the head.
    pub fn lag(&self, c: &StreamConsumer) -> u64 {
        self.log.next_offset().saturating_sub(c.position())
    }
}
