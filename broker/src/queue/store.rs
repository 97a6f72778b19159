//! The message store under one queue: what is ready, in order, with a stable id per message.
//!
//! Every message gets a sequence number (`seq`) from the queue when it is enqueued; that number is its stable
//! identity within the queue, written into its on-disk record, so it survives restarts (admin operations address
//! messages by it).
//!
//! Two backings:
//! - **Memory** (non-durable queues): each level holds `Entry`s with their `Arc<Message>`; under memory pressure new
//!   transient messages are paged out to a spill log (`queue::spill`) and only their location stays, in `order`.
//! - **Disk** (durable queues): every persistent message is appended to the queue's log (`store::queue_log`), and a
//!   level holds only its packed location (8 bytes), so a queue of tens of millions of messages costs tens of
//!   megabytes; the body is read back when the message reaches the head: for dispatch by a read thread, ahead of
//!   time and with no lock held (see `reading.rs`), in place for `basic.get` and admin operations. Transient
//!   messages stay in memory, as in RabbitMQ, with a marker in the level's order so FIFO holds across both kinds.
//!
//! Ordering: a queue declared with `x-max-priority` keeps one level per priority and always serves the highest
//! non-empty level; within a level, messages that were delivered and requeued come back first, in `seq` order
//! (their original place), then never-delivered ones in arrival order, as RabbitMQ does.
//!
//! Read errors: a record that cannot be read back when it reaches the head (an I/O error, or a checksum that no
//! longer holds) is never acked or dropped for it: it moves to an `unreadable` list, still stored and still counted
//! in the queue's length, and the queue goes on with the next message. `retry_unreadable` (called by the queue's
//! upkeep when the timer wakes it at the retry time, with a growing delay) puts such records back at the head of their level to be read again. A
//! message that stays unreadable stays on disk, so a restart's recovery meets it again.
//!
//! Expiry: a message's deadline (the smaller of its `expiration` property and the queue's `x-message-ttl`, counted
//! from enqueue, in unix milliseconds so it holds across restarts) is checked when it reaches the head; expired
//! messages are dropped there.
//!
//! Deadlines: `next_deadline` tells the queue when this store next needs its upkeep (a head's expiry, the retry of
//! unreadable records, files to let go of), from what it holds in memory, so the queue can arm the broker's timer
//! (`crate::timer`) instead of being polled. A head known only by its place on disk counts as due at once: the upkeep
//! reads it, keeps it in memory, and from then on its deadline is known.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::sync::Arc;

use tracing::warn;

mod bulk;
mod reading;
#[cfg(test)]
mod tests;

use crate::clock::Clock;
use crate::message::Message;
use crate::queue::spill::{MemUse, Spill};
use crate::store::io_pool::Reader;
use crate::store::queue_log::{Loc, Located, QueueLog, Recovered};
use crate::store::record::Record;
use crate::store::summary::{Facts, Sealer};

/// What an entry held in a level's `memory` costs in RAM.
fn memory_cost(e: &Entry) -> usize {
    e.message.body.len() + e.message.raw_properties.len() + crate::queue::spill::ENTRY_OVERHEAD
}

/// Notes that an entry left a level's `memory`.
fn left_memory(mem_bytes: &mut MemUse, e: Option<Entry>) -> Option<Entry> {
    if let Some(e) = &e {
        mem_bytes.sub(memory_cost(e));
    }
    e
}

/// One queued message.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// Unix ms when the message expires (per-message `expiration` or the queue's `x-message-ttl`).
    pub expires_at: Option<u64>,
    /// Where a durable queue keeps it on disk.
    pub loc: Option<Loc>,
    /// How many times it was delivered and returned (for `x-delivery-limit`).
    pub delivery_count: u32,
    /// Unix ms when the queue accepted it (for lag and latency figures).
    pub enqueued_ms: u64,
}

impl Entry {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_ms)
    }
}

/// In a level's `order`, "the next message is the front of `memory`".
const IN_MEMORY: u64 = u64::MAX;

/// In a level's `order`, marks a packed `Loc` as one of the spill log's, not the durable log's (segment ids never
/// reach 2^30).
const PAGED: u64 = 1 << 62;

fn is_paged(packed: u64) -> bool {
    packed != IN_MEMORY && packed & PAGED != 0
}

#[derive(Default)]
struct Level {
    /// Messages held in memory: all of them on an in-memory store; the transient ones on a disk-backed store.
    memory: VecDeque<Entry>,
    /// Disk-backed stores only: arrival order, as packed `Loc`s of records on disk or `IN_MEMORY`.
    order: VecDeque<u64>,
    /// Requeued messages, keyed by seq; all of them are older than anything in `memory` / `disk`.
    requeued: BTreeMap<u64, Entry>,
    /// Records of `order` read ahead by the store's read threads and not yet taken, by packed location (None: the
    /// read failed; the record goes to the unreadable list when it reaches the head). Only ever holds locations
    /// that are in `order`.
    ahead: HashMap<u64, Option<Entry>>,
    /// The read-ahead in flight for this level.
    reading: Option<Reading>,
}

/// A read-ahead in flight: its ticket (a result with another one is stale) and the locations it still stands for
/// (one taken meanwhile, by a reader in place or an admin take, is dropped from here, and its result with it).
struct Reading {
    ticket: u64,
    keys: HashSet<u64>,
}

/// Records read ahead for one level, handed back by a read thread (see `MessageStore::start_read`).
pub struct ReadAhead {
    ticket: u64,
    level: usize,
    keys: Vec<u64>,
    records: Vec<io::Result<Record>>,
}

/// Who gets a read-ahead's records: the queue, which installs them under its lock (`MessageStore::install_read`)
/// and dispatches.
pub trait ReadTarget: Send + Sync {
    fn read_done(&self, done: ReadAhead);
}

/// What the front of a level's `order` gave (`MessageStore::take_front`).
enum Front {
    /// Taken out of `order` (None: its memory entry was missing, the count goes all the same).
    Taken(Option<Entry>),
    /// Taken out of `order` onto the unreadable list: still counted, go on.
    SetAside,
    /// Only on disk and not read yet: a read-ahead is asked for (or in flight); nothing was taken.
    Wait,
    Empty,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.order.is_empty() && self.requeued.is_empty()
    }
}

/// A message written by a transaction commit but not yet visible.
pub struct Staged {
    pub loc: Loc,
    /// The segment to sync before the commit record.
    pub file: Option<Arc<File>>,
    /// The queue's directory, when staging created a segment file.
    pub dir: Option<Arc<File>>,
}

/// What a push did: the message's seq, and the file to sync before confirming it (persistent messages on disk).
pub struct Pushed {
    pub seq: u64,
    /// The record waits in the log's write-behind buffer (`push_deferred`): `flush_deferred` before confirming.
    pub deferred: bool,
    pub sync: Option<Arc<File>>,
    /// The queue's directory, when this push created a segment file (its entry must be synced too).
    pub sync_dir: Option<Arc<File>>,
}

pub struct MessageStore {
    /// One level per priority 0..=max_priority (a single level without `x-max-priority`).
    levels: Vec<Level>,
    /// The queue's `x-message-ttl`, in ms.
    ttl_ms: Option<u64>,
    /// Some message may carry a deadline (a queue TTL, or a message with `expiration` was pushed or recovered).
    may_expire: bool,
    log: Option<QueueLog>,
    /// Where transient messages go under memory pressure (see `queue::spill`).
    spill: Option<Spill>,
    /// Levels keep `order` (true for a disk-backed store, and for any store once it has spilled): every ready
    /// message that is not requeued has its place there, `IN_MEMORY` or a packed location.
    ordered: bool,
    /// Recovered messages that had been delivered before the restart: redelivered when they next go out.
    /// (seq -> how many times it was delivered before the restart).
    delivered_before: std::collections::HashMap<u64, u32>,
    next_seq: u64,
    len: usize,
    bytes: usize,
    /// What the entries in the levels' `memory` cost in RAM (`memory_cost`): past the spill's budget, new transient
    /// messages are paged out.
    mem_bytes: MemUse,
    /// Disk records that failed to read back, as (level, packed `Loc`), oldest first: still stored and counted in
    /// `len`, never acked for the failure (see the module's "Read errors").
    unreadable: Vec<(usize, u64)>,
    /// When `retry_unreadable` may next put them back (unix ms), and the delay after that one.
    retry_at_ms: u64,
    retry_delay_ms: u64,
    /// The broker's clock (set by `Queue::new`): enqueue times, deadlines and retry times.
    clock: Clock,
    /// The data directory's read threads: a dispatch that meets a head only on disk asks them for it instead of
    /// reading in place. None (unit tests, no data directory): every pop reads in place.
    reader: Option<Reader>,
    /// A dispatch stopped at a head only on disk with no read in flight for its level: `start_read` asks.
    want_read: bool,
    /// Numbers read-aheads (see `Reading`).
    next_ticket: u64,
}

/// The first and the longest wait before unreadable records are read again.
const RETRY_FIRST_MS: u64 = 1_000;
const RETRY_MAX_MS: u64 = 60_000;

/// How long an emptied durable queue keeps its segment files open before letting go of them.
pub const IDLE_FILES_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// How long after a spill log was found holding nothing its files are let go of (if it still holds nothing then):
/// soon, but not so soon that a queue paging in and out under pressure recreates its spill log for every message.
const SPILL_RELEASE_AFTER_MS: u64 = 1_000;

impl Default for MessageStore {
    fn default() -> Self {
        Self::new(0, None)
    }
}

impl MessageStore {
    /// Lets go of the open files of a disk-backed store that has been empty (every record acked) with nothing
    /// appended for `idle`, and of a spill log that holds nothing (the queue's upkeep calls this, at the deadline
    /// `next_deadline` gave): thousands of emptied durable queues must not hold thousands of file descriptors.
    pub fn release_idle_files(&mut self, idle: std::time::Duration) {
        if let Some(spill) = self.spill.as_mut().filter(|s| s.held() == 0) {
            // Nothing paged out: its files (if any) go, a new spill starts afresh.
            spill.destroy();
        }
        if self.len == 0 {
            if let Some(log) = &mut self.log {
                log.retire_idle(idle);
            }
        }
    }

    /// When this store next needs the queue's upkeep (`Queue::sweep`: `expire_heads`, `retry_unreadable`,
    /// `release_idle_files` with `idle`), in unix ms; None when nothing is pending. From memory only, and cheap when
    /// nothing is pending (a few field checks, no clock read), since queues ask after every operation:
    /// - the earliest deadline among the heads of the levels (only those can expire; a message behind a head gets
    ///   its turn when it becomes one, and the queue asks again then). A head known only by its place on disk (a
    ///   deep durable queue, a paged-out message, a recovered one) counts as due now: the upkeep reads it into
    ///   memory, as the next delivery would have, and then knows its deadline. Correct, and a read that is not
    ///   wasted; it costs a timer wake per such head that waits, which only happens to a queue that may expire
    ///   messages (`may_expire`);
    /// - the retry time of unreadable records;
    /// - a spill log holding nothing: its files go a little later (`SPILL_RELEASE_AFTER_MS`);
    /// - an emptied disk-backed store whose records are all acked: its files go `idle` after the last append.
    pub fn next_deadline(&self, idle: std::time::Duration) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        if self.may_expire && self.len > 0 {
            if let Some(t) = self.head_deadline() {
                at(t);
            }
        }
        if !self.unreadable.is_empty() {
            at(self.retry_at_ms);
        }
        if self.spill.as_ref().is_some_and(|s| s.has_files() && s.held() == 0) {
            at(self.clock.now_ms().saturating_add(SPILL_RELEASE_AFTER_MS));
        }
        if self.len == 0 {
            if let Some(left) = self.log.as_ref().and_then(|l| l.idle_remaining(idle)) {
                let left = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                at(self.clock.now_ms().saturating_add(left));
            }
        }
        next
    }

    /// The earliest deadline among the heads of the levels (now, for a head only on disk); None when no head has
    /// one.
    fn head_deadline(&self) -> Option<u64> {
        let mut earliest: Option<u64> = None;
        for level in &self.levels {
            let head = if let Some((_, e)) = level.requeued.first_key_value() {
                e.expires_at
            } else if !self.ordered {
                level.memory.front().and_then(|e| e.expires_at)
            } else {
                match level.order.front() {
                    None => None,
                    Some(&IN_MEMORY) => level.memory.front().and_then(|e| e.expires_at),
                    Some(packed) => match level.ahead.get(packed) {
                        Some(Some(e)) => e.expires_at,
                        // The read's result installs it and asks again.
                        None if level.reading.is_some() && self.reader.is_some() => None,
                        _ => return Some(self.clock.now_ms()),
                    },
                }
            };
            if let Some(t) = head {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        earliest
    }

    /// Changes the queue's message TTL (a policy changed).
    pub fn set_ttl(&mut self, ttl_ms: Option<u64>) {
        if ttl_ms == self.ttl_ms {
            return;
        }
        self.ttl_ms = ttl_ms;
        self.may_expire |= ttl_ms.is_some();
        // One rule for every message, wherever it is kept: the TTL in force counts from when the message was
        // enqueued. (Messages on disk get their deadline when read, so the ones in memory follow suit here.)
        for level in &mut self.levels {
            for e in level.memory.iter_mut().chain(level.requeued.values_mut()) {
                e.expires_at = deadline(&e.message, e.enqueued_ms, ttl_ms);
            }
        }
    }

    /// An in-memory store.
    pub fn new(max_priority: u8, ttl_ms: Option<u64>) -> Self {
        MessageStore {
            levels: (0..=max_priority).map(|_| Level::default()).collect(),
            ttl_ms,
            may_expire: ttl_ms.is_some(),
            log: None,
            spill: None,
            ordered: false,
            delivered_before: std::collections::HashMap::new(),
            next_seq: 0,
            len: 0,
            bytes: 0,
            mem_bytes: MemUse::default(),
            unreadable: Vec::new(),
            retry_at_ms: 0,
            retry_delay_ms: RETRY_FIRST_MS,
            clock: Clock::system(),
            reader: None,
            want_read: false,
            next_ticket: 0,
        }
    }

    /// Reads time from `clock` from now on (the broker's, so tests can move it).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Opens a durable queue's directory and recovers its messages into a disk-backed store.
    pub fn open_on_disk(
        dir: &std::path::Path,
        budget: crate::store::DiskBudget,
        txs: &crate::store::txlog::TxView<'_>,
        max_priority: u8,
        ttl_ms: Option<u64>,
        sealing: Option<(Sealer, bool)>,
    ) -> io::Result<(Self, Recovered)> {
        let mut s = Self::new(max_priority, ttl_ms);
        // Whether any recovered message carries an `expiration`: if none does and the queue has no TTL, nothing
        // recovered can expire, and the store never needs to read a head early to learn its deadline.
        let expiring = std::cell::Cell::new(false);
        let keep = |facts: Facts| {
            let priority = keep_on_recovery(facts)?;
            if facts.expires {
                expiring.set(true);
            }
            Some(priority)
        };
        let (log, recovered) = QueueLog::open(dir, budget, txs, keep, |r, delivered| {
            let level = (r.priority as usize).min(s.levels.len() - 1);
            s.levels[level].order.push_back(r.loc.pack());
            s.len += 1;
            s.bytes += r.size as usize;
            if delivered > 0 {
                s.delivered_before.insert(r.seq, delivered);
            }
        })?;
        s.next_seq = recovered.max_seq;
        let (sealer, sync) = sealing.unzip();
        s.log = Some(log.with_sealer(sealer, sync.unwrap_or(true)));
        s.ordered = true;
        s.may_expire |= expiring.get();
        Ok((s, recovered))
    }

    /// Reads records for dispatch on `reader`'s threads from now on (see `start_read`).
    pub fn with_reader(mut self, reader: Option<Reader>) -> Self {
        self.reader = reader;
        self
    }

    /// Lets this store page transient messages out to `spill` under memory pressure.
    pub fn with_spill(mut self, spill: Spill) -> Self {
        self.mem_bytes.share(spill.total());
        self.spill = Some(spill);
        self
    }

    /// How many ready messages are paged out to disk now.
    pub fn spilled(&self) -> usize {
        self.spill.as_ref().map_or(0, Spill::held)
    }

    /// From now on every level keeps `order`: the messages already in memory get their places first.
    fn start_ordering(&mut self) {
        if self.ordered {
            return;
        }
        for level in &mut self.levels {
            level.order = std::iter::repeat_n(IN_MEMORY, level.memory.len()).collect();
        }
        self.ordered = true;
    }

    /// The directory of a disk-backed store.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.log.as_ref().map(|l| l.dir())
    }

    pub fn is_durable(&self) -> bool {
        self.log.is_some()
    }

    fn level_of(&self, priority: u8) -> usize {
        (priority as usize).min(self.levels.len() - 1)
    }

    fn deadline(&self, message: &Message, enqueued_ms: u64) -> Option<u64> {
        deadline(message, enqueued_ms, self.ttl_ms)
    }

    /// Enqueues a message. On a disk-backed store the record is written first; if that fails (disk full, I/O
    /// error) nothing is enqueued and the error is returned.
    pub fn push(&mut self, message: Arc<Message>) -> io::Result<Pushed> {
        self.push_with(message, false)
    }

    /// Enqueues a message whose record (on a disk-backed store) may wait in the log's write-behind buffer: the
    /// caller must `flush_deferred` before it confirms the message.
    pub fn push_deferred(&mut self, message: Arc<Message>) -> io::Result<Pushed> {
        self.push_with(message, true)
    }

    fn push_with(&mut self, message: Arc<Message>, defer: bool) -> io::Result<Pushed> {
        let seq = self.next_seq + 1;
        let level = self.level_of(message.priority);
        let now = self.clock.now_ms();
        let mut sync = None;
        let mut sync_dir = None;
        let mut deferred = false;
        if self.len == 0 {
            // Nothing is left that could carry an expiration: start afresh from the queue's TTL.
            self.may_expire = self.ttl_ms.is_some();
        }
        self.may_expire |= message.expiration_ms.is_some();
        let on_disk = self.log.is_some() && message.persistent;
        // Within the memory budget (a store without a spill has none: tests only) persistent messages stay in memory too.
        let keep = self
            .spill
            .as_ref()
            .is_some_and(|s| !s.should_page(self.mem_bytes.get()));
        if let (Some(log), true) = (&mut self.log, on_disk) {
            let m = &message;
            let meta = crate::store::record::Meta {
                seq,
                enqueued_ms: now,
                tx: 0,
            };
            let (ex, rk) = (m.exchange.as_str().as_bytes(), m.routing_key.as_str().as_bytes());
            let loc = if defer {
                deferred = true;
                log.append_deferred(meta, ex, rk, &m.raw_properties, &m.body)?
            } else {
                let loc = log.append(meta, ex, rk, &m.raw_properties, &m.body)?;
                sync = log.active_file();
                sync_dir = log.dir_to_sync();
                loc
            };
            if keep {
                // While the queue is within its memory budget the message stays in memory too, so its delivery
                // reads nothing back from disk; its record is what survives a restart.
                let entry = Entry {
                    seq,
                    message: message.clone(),
                    redelivered: false,
                    expires_at: self.deadline(&message, now),
                    loc: Some(loc),
                    delivery_count: 0,
                    enqueued_ms: now,
                };
                self.mem_bytes.add(memory_cost(&entry));
                self.levels[level].memory.push_back(entry);
                self.levels[level].order.push_back(IN_MEMORY);
            } else {
                self.levels[level].order.push_back(loc.pack());
            }
        } else if let Some(loc) = self.page_out(seq, now, &message) {
            self.levels[level].order.push_back(loc.pack() | PAGED);
        } else {
            // Transient messages stay in memory, as in RabbitMQ (on a durable queue too: they don't survive a restart).
            let expires_at = self.deadline(&message, now);
            let entry = Entry {
                seq,
                message: message.clone(),
                redelivered: false,
                expires_at,
                loc: None,
                delivery_count: 0,
                enqueued_ms: now,
            };
            self.mem_bytes.add(memory_cost(&entry));
            self.levels[level].memory.push_back(entry);
            if self.ordered {
                self.levels[level].order.push_back(IN_MEMORY);
            }
        }
        self.next_seq = seq;
        self.bytes += message.size();
        self.len += 1;
        Ok(Pushed {
            seq,
            sync,
            sync_dir,
            deferred,
        })
    }

    /// Hands the records that deferred pushes left in the log's write-behind buffer to the store's writer (the
    /// syncer thread, see `QueueLog::hand_over`) and marks the files a confirm waits for dirty; returns the round
    /// that writes and syncs them. A store whose log has no writer writes them here and returns 0.
    pub fn hand_over(&mut self) -> io::Result<u64> {
        match &mut self.log {
            Some(log) => log.hand_over(),
            None => Ok(0),
        }
    }

    /// Sends the log's write-behind buffers to `writer` from now on.
    pub fn set_writer(&mut self, writer: Option<crate::store::queue_log::Writer>) {
        if let Some(log) = &mut self.log {
            log.set_writer(writer);
        }
    }

    /// A handed-over write failed: every record of `segment` from offset `from` on is not on disk and never will
    /// be, so the queue forgets those messages (their publishes are nacked through the failed round) and the log
    /// cuts the segment back (`QueueLog::drop_unwritten`). Messages already delivered keep going, but their acks
    /// and requeues no longer name a record. Returns how many ready messages went; 0 when the write was done
    /// meanwhile by an immediate append, or handled already.
    pub fn drop_unwritten(&mut self, segment: u32, from: u64) -> usize {
        let Some(log) = &self.log else { return 0 };
        if !log.write_lost(segment, from) {
            return 0;
        }
        let gone = |loc: Loc| loc.segment == segment && loc.offset as u64 >= from;
        // The body size of a record only located: it is still in a buffer the log holds.
        let size_of = |log: &QueueLog, packed: u64| match log.locate(Loc::unpack(packed)) {
            Ok(Located::Here(r)) => r.body.len(),
            _ => 0,
        };
        let (mut dropped, mut bytes) = (0usize, 0usize);
        for level in &mut self.levels {
            let mut memory = std::mem::take(&mut level.memory).into_iter();
            for packed in std::mem::take(&mut level.order) {
                if packed == IN_MEMORY {
                    let Some(e) = memory.next() else { continue };
                    if e.loc.is_some_and(gone) {
                        dropped += 1;
                        bytes += e.message.size();
                        self.mem_bytes.sub(memory_cost(&e));
                        continue;
                    }
                    level.memory.push_back(e);
                    level.order.push_back(packed);
                } else if !is_paged(packed) && gone(Loc::unpack(packed)) {
                    dropped += 1;
                    bytes += match level.ahead.remove(&packed) {
                        Some(Some(e)) => e.message.size(),
                        _ => size_of(log, packed),
                    };
                    if let Some(r) = &mut level.reading {
                        r.keys.remove(&packed);
                    }
                } else {
                    level.order.push_back(packed);
                }
            }
            level.memory.extend(memory);
            level.requeued.retain(|_, e| {
                let keep = !e.loc.is_some_and(gone);
                if !keep {
                    dropped += 1;
                    bytes += e.message.size();
                }
                keep
            });
        }
        self.unreadable.retain(|(_, p)| {
            let keep = is_paged(*p) || !gone(Loc::unpack(*p));
            dropped += usize::from(!keep);
            keep
        });
        self.len = self.len.saturating_sub(dropped);
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(log) = &mut self.log {
            log.drop_unwritten(segment, from);
        }
        dropped
    }

    /// Puts a message taken out (not delivered) back at its original place, its flags unchanged.
    pub fn restore(&mut self, mut entry: Entry) {
        self.forget_dropped_record(&mut entry);
        self.may_expire |= entry.expires_at.is_some();
        self.bytes += entry.message.size();
        self.len += 1;
        let level = self.level_of(entry.message.priority);
        self.levels[level].requeued.insert(entry.seq, entry);
    }

    /// Puts a delivered message back, marked redelivered, at its original place.
    pub fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.forget_dropped_record(&mut entry);
        self.may_expire |= entry.expires_at.is_some();
        self.bytes += entry.message.size();
        self.len += 1;
        let level = self.level_of(entry.message.priority);
        self.levels[level].requeued.insert(entry.seq, entry);
    }

    /// An entry whose record was dropped after a failed write (see `drop_unwritten`) names no record any more.
    fn forget_dropped_record(&self, entry: &mut Entry) {
        if let (Some(log), Some(loc)) = (&self.log, entry.loc) {
            if !log.holds(loc) {
                entry.loc = None;
            }
        }
    }

    /// The next live message, read in place if it is only on disk (basic.get, admin takes, tests); expired ones
    /// met on the way are taken out into `expired` (for the queue to dead-letter or settle). A message taken from
    /// disk is noted as delivered (see `flush`).
    pub fn pop(&mut self, expired: &mut Vec<Entry>) -> Option<Entry> {
        self.pop_noting(expired, true, false)
    }

    /// Like `pop`, for dispatch: a head only on disk is never read here. None then, and the next `start_read` asks
    /// the read threads for it; the read's result (`install_read`) lets dispatch go on. Order holds: nothing behind
    /// that head, nor in a lower priority level, is served meanwhile.
    pub fn pop_or_wait(&mut self, expired: &mut Vec<Entry>) -> Option<Entry> {
        self.pop_noting(expired, true, true)
    }

    /// Like `pop`, for an admin move: not noted as a delivery (a move that is cancelled, fails or is cut short by
    /// a crash puts the message back as it was, not redelivered and with no delivery counted).
    pub fn pop_for_move(&mut self, expired: &mut Vec<Entry>) -> Option<Entry> {
        self.pop_noting(expired, false, false)
    }

    fn pop_noting(&mut self, expired: &mut Vec<Entry>, note: bool, wait: bool) -> Option<Entry> {
        let now = self.clock.now_ms();
        loop {
            let i = self.levels.iter().rposition(|l| !l.is_empty())?;
            let level = &mut self.levels[i];
            let entry = if let Some((_, e)) = level.requeued.pop_first() {
                Some(e)
            } else if !self.ordered {
                left_memory(&mut self.mem_bytes, level.memory.pop_front())
            } else {
                match self.take_front(i, wait) {
                    Front::Taken(e) => e,
                    // Set aside as unreadable: still stored and counted.
                    Front::SetAside => continue,
                    Front::Wait | Front::Empty => return None,
                }
            };
            self.len -= 1;
            let Some(entry) = entry else { continue };
            self.bytes = self.bytes.saturating_sub(entry.message.size());
            if entry.is_expired(now) {
                expired.push(entry);
                continue;
            }
            if let (true, Some(log), Some(loc)) = (note, &mut self.log, entry.loc) {
                log.note_delivered(loc);
            }
            return Some(entry);
        }
    }

    /// Takes out expired messages at the head of every level, so TTL applies even with no consumer attached. A
    /// live head read from disk on the way is kept in memory, ready for the next pop. Heads only on disk are read
    /// in place: this runs in the timer's upkeep, through `store::blocking`, and a deadline must not wait for a
    /// read thread (a head read ahead already is taken as it was read).
    pub fn expire_heads(&mut self, expired: &mut Vec<Entry>) {
        if !self.may_expire {
            return;
        }
        let now = self.clock.now_ms();
        for i in 0..self.levels.len() {
            loop {
                let level = &mut self.levels[i];
                let head = if let Some((_, e)) = level.requeued.pop_first() {
                    Some(e)
                } else if !self.ordered {
                    left_memory(&mut self.mem_bytes, level.memory.pop_front())
                } else {
                    match self.take_front(i, false) {
                        Front::Taken(e) => e,
                        // Set aside as unreadable: still stored and counted.
                        Front::SetAside => continue,
                        Front::Wait | Front::Empty => None,
                    }
                };
                let Some(head) = head else { break };
                if head.is_expired(now) {
                    self.len -= 1;
                    self.bytes = self.bytes.saturating_sub(head.message.size());
                    expired.push(head);
                } else {
                    // Back at the front: requeued entries are served first, in seq order, and this is the oldest.
                    self.levels[i].requeued.insert(head.seq, head);
                    break;
                }
            }
        }
    }

    /// Removes and returns the oldest ready message (for `x-overflow = drop-head`), whatever its priority.
    pub fn drop_head(&mut self, expired: &mut Vec<Entry>) -> Option<Entry> {
        // RabbitMQ drops from the head of the queue; with priorities, the lowest level's head is the one that
        // would be delivered last, but the head in RabbitMQ terms is the next to deliver.
        self.pop(expired)
    }

    /// A message is done with (acked, or dropped): a durable queue records it.
    pub fn settle(&mut self, entry: &Entry) {
        if let (Some(log), Some(loc)) = (&mut self.log, entry.loc) {
            log.ack(loc);
        }
    }

    /// Writes what the last operations buffered (acks, deliveries). Deliveries must be flushed before they are
    /// handed to connections.
    pub fn flush(&mut self) {
        if let Some(spill) = &mut self.spill {
            spill.flush();
        }
        if let Some(log) = &mut self.log {
            if let Err(e) = log.flush_acks() {
                warn!(error = %e, "could not record acks; the messages may be delivered again after a restart");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The message a record holds. Its properties are scanned, not decoded (a record whose checksum holds was written
/// from a publish that passed the same scan; one that does not scan counts as plain, with its bytes kept as they are).
pub(crate) fn message_of(r: &Record) -> Message {
    let summary = crate::amqp::properties::scan(&r.properties).unwrap_or_default();
    Message::from_summary(
        String::from_utf8_lossy(&r.exchange).into_owned().into(),
        String::from_utf8_lossy(&r.routing_key).into_owned().into(),
        &summary,
        r.properties.clone(),
        r.body.clone(),
    )
}

/// When a message expires: the smaller of its `expiration` and the queue's TTL, counted from its enqueue time.
fn deadline(message: &Message, enqueued_ms: u64, ttl_ms: Option<u64>) -> Option<u64> {
    let ttl = match (message.expiration_ms, ttl_ms) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some(enqueued_ms.saturating_add(ttl))
}

/// Whether a recovered record survives a restart, and at which priority (its properties, as encoded).
pub fn keep_on_recovery(facts: Facts) -> Option<u8> {
    facts.persistent.then_some(facts.priority)
}
