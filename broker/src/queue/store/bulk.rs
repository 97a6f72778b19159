//! Operations on a queue's store outside the FIFO path: transaction staging (write first, make visible after the
//! commit record), rewriting a message in place (admin edits and priority changes keep its id), peeking, taking
//! chosen messages out (moves), purging and destroying.
//!
//! Invariants: `len` and `bytes` always count exactly the messages in the levels plus the unreadable list; every
//! message taken out of a disk-backed store either goes back (`restore`) or has its record acked by whoever took it.

use super::*;

impl MessageStore {
    /// Transaction commit, phase 1: writes a persistent message's record marked with `tx`, without making it
    /// visible. It counts after a crash only if the transaction's commit record was written.
    pub fn stage(&mut self, message: &Message, tx: u64) -> io::Result<Staged> {
        let Some(log) = &mut self.log else {
            return Err(io::Error::other("only a disk-backed store stages messages"));
        };
        let seq = self.next_seq + 1;
        let loc = log.append(
            crate::store::record::Meta {
                seq,
                enqueued_ms: self.clock.now_ms(),
                tx,
            },
            message.exchange.as_str().as_bytes(),
            message.routing_key.as_str().as_bytes(),
            &message.raw_properties,
            &message.body,
        )?;
        self.next_seq = seq;
        Ok(Staged {
            loc,
            file: log.active_file(),
            dir: log.dir_to_sync(),
        })
    }

    /// Transaction commit, phase 3 (after the commit record): the staged message joins the queue.
    pub fn expose(&mut self, staged: &Staged, message: &Message) {
        let level = self.level_of(message.priority);
        self.may_expire |= message.expiration_ms.is_some();
        self.levels[level].order.push_back(staged.loc.pack());
        self.len += 1;
        self.bytes += message.size();
    }

    /// Writes a changed message for an entry of a disk-backed store (same id), retiring the old record; returns the
    /// new location (None for memory entries, which need nothing).
    pub fn rewrite(&mut self, entry: &Entry, message: &Message) -> io::Result<Option<Loc>> {
        let (Some(log), Some(old)) = (&mut self.log, entry.loc) else {
            return Ok(None);
        };
        let loc = log.append(
            crate::store::record::Meta {
                seq: entry.seq,
                enqueued_ms: entry.enqueued_ms, // a priority change keeps its TTL start and its age
                tx: 0,
            },
            message.exchange.as_str().as_bytes(),
            message.routing_key.as_str().as_bytes(),
            &message.raw_properties,
            &message.body,
        )?;
        log.ack(old);
        Ok(Some(loc))
    }

    /// Ready messages in delivery order, without taking them (for the admin API's peek).
    pub fn peek(&self, from: usize, count: usize, matches: &dyn Fn(&Entry) -> bool) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut skipped = 0;
        for level in self.levels.iter().rev() {
            let mut memory = level.memory.iter();
            let requeued = level.requeued.values().cloned().map(Some);
            let rest: Box<dyn Iterator<Item = Option<Entry>>> = if !self.ordered {
                Box::new(level.memory.iter().cloned().map(Some))
            } else {
                Box::new(level.order.iter().map(|p| match *p {
                    IN_MEMORY => memory.next().cloned(),
                    packed => match level.ahead.get(&packed) {
                        Some(Some(e)) => Some(e.clone()),
                        _ => self.read_entry(packed),
                    },
                }))
            };
            for e in requeued.chain(rest).flatten() {
                if !matches(&e) {
                    continue;
                }
                if skipped < from {
                    skipped += 1;
                    continue;
                }
                if out.len() >= count {
                    return out;
                }
                out.push(e);
            }
        }
        out
    }

    /// Takes ready messages out of the queue, in delivery order: all of them, or those whose ids are in `ids`
    /// (for the admin API's move and delete). The caller settles or requeues what it took.
    pub fn take(&mut self, ids: Option<&std::collections::HashSet<u64>>) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        match ids {
            None => {
                while let Some(e) = self.pop(&mut expired) {
                    out.push(e);
                }
                out.extend(expired);
            }
            Some(ids) => {
                for i in (0..self.levels.len()).rev() {
                    let wanted: Vec<u64> = self.levels[i]
                        .requeued
                        .keys()
                        .filter(|k| ids.contains(k))
                        .copied()
                        .collect();
                    for k in wanted {
                        if let Some(e) = self.levels[i].requeued.remove(&k) {
                            out.push(e);
                        }
                    }
                    let memory = std::mem::take(&mut self.levels[i].memory);
                    let order = std::mem::take(&mut self.levels[i].order);
                    let mut memory = memory.into_iter();
                    if !self.ordered {
                        for e in memory {
                            if ids.contains(&e.seq) {
                                out.push(e);
                            } else {
                                self.levels[i].memory.push_back(e);
                            }
                        }
                        continue;
                    }
                    for packed in order {
                        let e = if packed == IN_MEMORY {
                            memory.next()
                        } else {
                            match self.levels[i].ahead.get(&packed) {
                                Some(Some(e)) => Some(e.clone()),
                                _ => self.read_entry(packed),
                            }
                        };
                        match e {
                            Some(e) if ids.contains(&e.seq) => {
                                // Taken out for good (or put back in memory): its count now travels with it.
                                self.delivered_before.remove(&e.seq);
                                // Read ahead, or being read: no longer in `order`, so no longer there either.
                                let level = &mut self.levels[i];
                                level.ahead.remove(&packed);
                                if let Some(r) = &mut level.reading {
                                    r.keys.remove(&packed);
                                }
                                if is_paged(packed) {
                                    if let Some(spill) = &mut self.spill {
                                        spill.forget(Loc::unpack(packed & !PAGED));
                                    }
                                }
                                out.push(e);
                            }
                            Some(e) if packed == IN_MEMORY => {
                                self.levels[i].memory.push_back(e);
                                self.levels[i].order.push_back(packed);
                            }
                            _ => self.levels[i].order.push_back(packed),
                        }
                    }
                }
                for e in &out {
                    self.len -= 1;
                    self.bytes = self.bytes.saturating_sub(e.message.size());
                }
                self.mem_bytes
                    .set(self.levels.iter().flat_map(|l| &l.memory).map(memory_cost).sum());
            }
        }
        out
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&mut self) -> usize {
        let n = self.len;
        let mut locs: Vec<Loc> = Vec::new();
        let durable = |p: &u64| *p != IN_MEMORY && !is_paged(*p);
        for l in &mut self.levels {
            locs.extend(l.order.drain(..).filter(durable).map(Loc::unpack));
            locs.extend(l.requeued.values().filter_map(|e| e.loc));
            // Persistent messages kept in memory too have their records on disk.
            locs.extend(l.memory.iter().filter_map(|e| e.loc));
            l.memory.clear();
            l.requeued.clear();
            // A read-ahead in flight is stale now: its result is dropped (see `install_read`).
            l.ahead.clear();
            l.reading = None;
        }
        self.mem_bytes.set(0);
        locs.extend(
            self.unreadable
                .drain(..)
                .map(|(_, p)| p)
                .filter(durable)
                .map(Loc::unpack),
        );
        // Every spilled record went with the levels: the spill log goes whole.
        if let Some(spill) = &mut self.spill {
            spill.destroy();
        }
        if let Some(log) = &mut self.log {
            for loc in locs {
                log.ack(loc);
            }
        }
        self.flush();
        self.len = 0;
        self.bytes = 0;
        n
    }

    /// The queue was deleted: its files go too.
    pub fn destroy(&mut self) {
        self.purge();
        if let Some(log) = self.log.take() {
            log.destroy();
        }
    }
}
