//! Where a ready message is kept and how it comes back: paging transient messages out to the spill log, reading
//! records back from the queue's log or the spill when they reach the head, and the unreadable-record rule (see the
//! parent module's "Read errors"): a record that cannot be read is set aside, still counted, and offered again later.
//!
//! Read-ahead: with read threads (`store::io`), dispatch never reads a file. A pop that meets a head only on file
//! stops there (`Front::Wait`); `start_read` then hands the next records of that level (up to
//! `READ_AHEAD_RECORDS`, about `READ_AHEAD_BYTES`) to a read thread, and `install_read`, under the queue's lock
//! again, puts what it read in the level's `ahead` map, keeping only records still in place (the `Reading`'s
//! ticket and keys: a purge drops the whole read, a take or a read in place drops one record). A record still in the
//! write-behind buffer is decoded in place: that is memory, not disk.

use super::*;
use crate::store::io_pool::{READ_AHEAD_BYTES, READ_AHEAD_RECORDS};

/// How far into a level's `order` a read-ahead looks for records on file (past messages held in memory).
const READ_AHEAD_WALK: usize = 8192;

impl MessageStore {
    /// Writes a transient message to the spill log when memory is under pressure; None keeps it in memory (no
    /// pressure, no spill, or the write failed: memory is the fallback, never an error for the publisher).
    pub(super) fn page_out(&mut self, seq: u64, now: u64, message: &Message) -> Option<Loc> {
        if !self.spill.as_ref().is_some_and(|s| s.should_page(self.mem_bytes.get())) {
            return None;
        }
        self.start_ordering();
        match self.spill.as_mut()?.write(seq, now, message) {
            Ok(loc) => Some(loc),
            Err(e) => {
                tracing::debug!(error = %e, "could not page a transient message out; it stays in memory");
                None
            }
        }
    }

    /// A spilled record as an entry: in memory from now on, like any transient message.
    pub(super) fn spilled_entry(&self, r: Record) -> Entry {
        let message = message_of(&r);
        Entry {
            seq: r.seq,
            expires_at: self.deadline(&message, r.enqueued_ms),
            message: Arc::new(message),
            redelivered: false,
            loc: None,
            delivery_count: 0,
            enqueued_ms: r.enqueued_ms,
        }
    }

    /// Reads a message from disk without changing anything.
    pub(super) fn read_entry(&self, packed: u64) -> Option<Entry> {
        if is_paged(packed) {
            let r = self.spill.as_ref()?.read(Loc::unpack(packed & !PAGED)).ok()?;
            return Some(self.spilled_entry(r));
        }
        let log = self.log.as_ref()?;
        let loc = Loc::unpack(packed);
        let r = log.read(loc).ok()?;
        // Deliveries before a restart count, as when `load` reads it for a consumer.
        let returns = self.delivered_before.get(&r.seq).copied().unwrap_or(0);
        Some(self.disk_entry(&r, loc, returns))
    }

    /// A durable record as an entry, returned `returns` times before a restart (`read_entry` and `load` share it).
    pub(super) fn disk_entry(&self, r: &Record, loc: Loc, returns: u32) -> Entry {
        let message = message_of(r);
        Entry {
            seq: r.seq,
            expires_at: self.deadline(&message, r.enqueued_ms),
            message: Arc::new(message),
            redelivered: returns > 0,
            loc: Some(loc),
            delivery_count: returns,
            enqueued_ms: r.enqueued_ms,
        }
    }

    /// Reads a message back from disk into an entry. A record that cannot be read is set aside in `unreadable`
    /// (still stored, still counted) and None is returned: the caller goes on without changing `len`.
    pub(super) fn load(&mut self, level: usize, packed: u64) -> Option<Entry> {
        if is_paged(packed) {
            let taken = self.spill.as_mut().map(|s| s.take(Loc::unpack(packed & !PAGED)));
            return match taken {
                Some(Ok(r)) => Some(self.spilled_entry(r)),
                Some(Err(e)) => {
                    warn!(error = %e, "a paged-out message cannot be read back; it is read again later");
                    if self.unreadable.is_empty() {
                        self.retry_at_ms = self.clock.now_ms().saturating_add(self.retry_delay_ms);
                    }
                    self.unreadable.push((level, packed));
                    None
                }
                None => None,
            };
        }
        let log = self.log.as_mut()?;
        let loc = Loc::unpack(packed);
        match log.read(loc) {
            Ok(r) => {
                // Each delivery before the restart came back (acked ones are gone), so each counts as a return.
                let returns = self.delivered_before.remove(&r.seq).unwrap_or(0);
                Some(self.disk_entry(&r, loc, returns))
            }
            Err(e) => {
                warn!(
                    dir = %log.dir().display(), error = %e, ?loc,
                    "a message cannot be read back; it stays stored and is read again later"
                );
                self.set_aside(level, packed);
                None
            }
        }
    }

    /// Puts a record that could not be read on the unreadable list (already out of `order`).
    fn set_aside(&mut self, level: usize, packed: u64) {
        if self.unreadable.is_empty() {
            self.retry_at_ms = self.clock.now_ms().saturating_add(self.retry_delay_ms);
        }
        self.unreadable.push((level, packed));
    }

    /// Where the record behind `packed` can be read (see `QueueLog::locate`).
    fn locate(&self, packed: u64) -> io::Result<Located> {
        let loc = Loc::unpack(packed & !PAGED);
        let missing = || io::Error::other("no log holds this record");
        if is_paged(packed) {
            self.spill.as_ref().ok_or_else(missing)?.locate(loc)
        } else {
            self.log.as_ref().ok_or_else(missing)?.locate(loc)
        }
    }

    /// A record read back as the entry it is in the level (before it is taken: deliveries before a restart are
    /// looked at, not taken, see `leaves_disk`).
    fn entry_of(&self, packed: u64, r: Record) -> Entry {
        if is_paged(packed) {
            return self.spilled_entry(r);
        }
        let returns = self.delivered_before.get(&r.seq).copied().unwrap_or(0);
        self.disk_entry(&r, Loc::unpack(packed), returns)
    }

    /// An entry whose record was read before it left `order`: the spill lets go of the record, and a count of
    /// deliveries before a restart now travels with the entry (what `load` does when it reads in place).
    fn leaves_disk(&mut self, packed: u64, e: &Entry) {
        if is_paged(packed) {
            if let Some(spill) = &mut self.spill {
                spill.forget(Loc::unpack(packed & !PAGED));
            }
        } else {
            self.delivered_before.remove(&e.seq);
        }
    }

    /// Takes the front of level `i`'s `order` on an ordered store. A head read ahead is taken as it was read; one
    /// still in a write-behind buffer is decoded in place; one only on file is read in place unless `wait` is set
    /// and the store has read threads: then nothing is taken (`Front::Wait`) and, when no read is in flight for the
    /// level, the next `start_read` asks for one.
    pub(super) fn take_front(&mut self, i: usize, wait: bool) -> Front {
        let level = &mut self.levels[i];
        let Some(&packed) = level.order.front() else {
            return Front::Empty;
        };
        if packed == IN_MEMORY {
            level.order.pop_front();
            return Front::Taken(left_memory(&mut self.mem_bytes, level.memory.pop_front()));
        }
        if let Some(read) = level.ahead.remove(&packed) {
            level.order.pop_front();
            return match read {
                Some(e) => {
                    self.leaves_disk(packed, &e);
                    Front::Taken(Some(e))
                }
                None => {
                    self.set_aside(i, packed);
                    Front::SetAside
                }
            };
        }
        if wait && self.reader.is_some() {
            match self.locate(packed) {
                Ok(Located::On(_)) => {
                    if self.levels[i].reading.is_none() {
                        self.want_read = true;
                    }
                    return Front::Wait;
                }
                // Decoded from memory, or failed at once (its segment is gone): nothing to wait for.
                Ok(Located::Here(r)) => {
                    let e = self.entry_of(packed, r);
                    self.levels[i].order.pop_front();
                    self.leaves_disk(packed, &e);
                    self.forget_reading(i, packed);
                    return Front::Taken(Some(e));
                }
                Err(_) => {}
            }
        }
        self.levels[i].order.pop_front();
        self.forget_reading(i, packed);
        match self.load(i, packed) {
            Some(e) => Front::Taken(Some(e)),
            None => Front::SetAside,
        }
    }

    /// `packed` left `order` while a read-ahead may stand for it: its result is dropped.
    fn forget_reading(&mut self, i: usize, packed: u64) {
        if let Some(r) = &mut self.levels[i].reading {
            r.keys.remove(&packed);
        }
    }

    /// Asks the read threads for the heads that dispatch stopped at (`Front::Wait`): for each such level with no
    /// read in flight, the next records of its `order` that are only on file (up to `READ_AHEAD_RECORDS`, and
    /// about `READ_AHEAD_BYTES` as far as their offsets tell). Their records go to `target` (`install_read`).
    /// Cheap when nothing waits: one flag.
    pub fn start_read(&mut self, target: impl Fn() -> std::sync::Weak<dyn ReadTarget>) {
        if !std::mem::take(&mut self.want_read) {
            return;
        }
        let Some(reader) = self.reader.clone() else { return };
        for i in 0..self.levels.len() {
            let level = &self.levels[i];
            let head_on_file = level.reading.is_none()
                && level
                    .order
                    .front()
                    .is_some_and(|p| *p != IN_MEMORY && !level.ahead.contains_key(p));
            if !head_on_file {
                continue;
            }
            let mut keys = Vec::new();
            let mut requests = Vec::new();
            let mut span = 0u64;
            let mut last: Option<(u64, u64)> = None; // (packed, offset) of the last request
            for &packed in level.order.iter().take(READ_AHEAD_WALK) {
                if keys.len() >= READ_AHEAD_RECORDS || span >= READ_AHEAD_BYTES {
                    break;
                }
                if packed == IN_MEMORY || level.ahead.contains_key(&packed) {
                    continue;
                }
                // Buffered records and gone segments are for the pop to meet: nothing to read.
                let Ok(Located::On(req)) = self.locate(packed) else {
                    continue;
                };
                if let Some((prev, offset)) = last {
                    let same_file = (prev & !0xFFFF_FFFF) == (packed & !0xFFFF_FFFF);
                    if same_file && req.offset > offset {
                        span += req.offset - offset;
                    }
                }
                last = Some((packed, req.offset));
                keys.push(packed);
                requests.push(req);
            }
            if keys.is_empty() {
                continue;
            }
            self.next_ticket += 1;
            let ticket = self.next_ticket;
            self.levels[i].reading = Some(Reading {
                ticket,
                keys: keys.iter().copied().collect(),
            });
            let target = target();
            reader.submit(
                requests,
                Box::new(move |records| {
                    if let Some(t) = target.upgrade() {
                        t.read_done(ReadAhead {
                            ticket,
                            level: i,
                            keys,
                            records,
                        });
                    }
                }),
            );
        }
    }

    /// A read-ahead's records: those still in place join the level's `ahead` (a failed read as None, set aside
    /// when it reaches the head). Returns whether anything was installed (the queue then dispatches).
    pub fn install_read(&mut self, done: ReadAhead) -> bool {
        let Some(level) = self.levels.get_mut(done.level) else {
            return false;
        };
        let Some(reading) = level.reading.take_if(|r| r.ticket == done.ticket) else {
            return false;
        };
        for (packed, read) in done.keys.into_iter().zip(done.records) {
            if !reading.keys.contains(&packed) {
                continue;
            }
            let entry = match read {
                Ok(r) => Some(self.entry_of(packed, r)),
                Err(e) => {
                    warn!(
                        dir = ?self.dir(), error = %e, loc = ?Loc::unpack(packed & !PAGED),
                        "a message cannot be read back; it stays stored and is read again later"
                    );
                    None
                }
            };
            self.levels[done.level].ahead.insert(packed, entry);
        }
        true
    }

    /// Puts records that could not be read back at the head of their levels again, once their retry time has come
    /// (the delay doubles, up to a minute, while they keep failing). Returns whether any went back, so the queue can
    /// dispatch.
    pub fn retry_unreadable(&mut self) -> bool {
        if self.unreadable.is_empty() {
            self.retry_delay_ms = RETRY_FIRST_MS;
            return false;
        }
        if self.clock.now_ms() < self.retry_at_ms {
            return false;
        }
        self.retry_delay_ms = (self.retry_delay_ms * 2).min(RETRY_MAX_MS);
        for (level, packed) in self.unreadable.drain(..).rev() {
            if let Some(l) = self.levels.get_mut(level) {
                l.order.push_front(packed);
            }
        }
        true
    }

    /// How many stored messages are waiting to be read again after a read error.
    pub fn unreadable(&self) -> usize {
        self.unreadable.len()
    }
}
