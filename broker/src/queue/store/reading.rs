//! Where a ready message is kept and how it comes back: paging transient messages out to the spill log, reading
//! records back from the queue's log or the spill when they reach the head, and the unreadable-record rule (see the
//! parent module's "Read errors"): a record that cannot be read is set aside, still counted, and offered again later.

use super::*;

impl MessageStore {
    /// Writes a transient message to the spill log when memory is under pressure; None keeps it in memory (no
    /// pressure, no spill, or the write failed: memory is the fallback, never an error for the publisher).
    pub(super) fn page_out(&mut self, seq: u64, now: u64, message: &Message) -> Option<Loc> {
        if !self.spill.as_ref().is_some_and(|s| s.should_page(self.mem_bytes)) {
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
                if self.unreadable.is_empty() {
                    self.retry_at_ms = self.clock.now_ms().saturating_add(self.retry_delay_ms);
                }
                self.unreadable.push((level, packed));
                None
            }
        }
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
