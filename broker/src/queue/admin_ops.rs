//! What only operators do to a queue, through the admin API: look at messages without taking them (peek), take
//! them out for a move or delete and put back what could not be moved, settle what was moved, change priorities,
//! and list consumers. All of it goes through the queue's one lock, like AMQP's own operations.
//!
//! Invariants: a message taken out counts as unacked until it is settled (`settle_moved`, never as an ack) or put
//! back unchanged (not flagged redelivered); peeking changes nothing; a changed priority keeps the message's id.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Entry, Queue, QueueStats};
use crate::amqp::properties::encode_properties;
use crate::message::Message;

/// An operator's priority change.
#[derive(Debug, Clone, Copy)]
pub enum PriorityChange {
    Set(u8),
    Step(i16),
}

impl Queue {
    /// Takes ready messages out for an admin move or delete: all, or those with the given ids.
    pub fn take(&self, ids: Option<&HashSet<u64>>) -> Vec<Entry> {
        let mut st = self.lock();
        let out = st.store.take(ids);
        st.store.flush();
        QueueStats::add(&self.stats.unacked, out.len() as u64);
        self.arm_store(&st);
        out
    }

    /// Like `take`, the first `n` ready messages.
    /// Expired messages met on the way are not taken: they expire (dead-lettered, or dropped) as they would at
    /// the head.
    pub fn take_up_to(&self, n: usize) -> Vec<Entry> {
        let mut st = self.lock();
        let mut out = Vec::new();
        while out.len() < n {
            let popped = {
                let st = &mut *st;
                st.store.pop_for_move(&mut st.expired_buf)
            };
            match popped {
                Some(e) => out.push(e),
                None => break,
            }
        }
        st.store.flush();
        QueueStats::add(&self.stats.unacked, out.len() as u64);
        self.finish(st);
        out
    }

    /// The ids of the ready messages `matches` accepts, in delivery order (nothing is collected but ids).
    pub fn matching_ids(&self, matches: &dyn Fn(&Entry) -> bool) -> Vec<u64> {
        let ids = std::cell::RefCell::new(Vec::new());
        let st = self.lock();
        st.store.peek(0, 0, &|e| {
            if matches(e) {
                ids.borrow_mut().push(e.seq);
            }
            false
        });
        drop(st);
        ids.into_inner()
    }

    /// Puts back messages taken by `take` that could not be moved, unchanged (not flagged redelivered).
    pub fn put_back(&self, entries: Vec<Entry>) {
        let mut st = self.lock();
        QueueStats::sub(&self.stats.unacked, entries.len() as u64);
        for e in entries {
            st.store.restore(e);
        }
        Self::dispatch_locked(self, &mut st);
        self.finish(st);
    }

    /// Changes the priority of ready messages by id; they take their new place in delivery order at once (and, on
    /// a durable queue, on disk: the record is rewritten with the same id). Returns how many changed.
    pub fn change_priority(&self, ids: &HashSet<u64>, change: PriorityChange, max: u8) -> std::io::Result<usize> {
        let mut st = self.lock();
        let taken = st.store.take(Some(ids));
        let n = taken.len();
        let mut result = Ok(n);
        for mut e in taken {
            let props = e.message.properties();
            let current = props.priority().unwrap_or(0);
            let new = match change {
                PriorityChange::Set(p) => p,
                PriorityChange::Step(s) => (current as i16).saturating_add(s).clamp(0, max as i16) as u8,
            };
            let props = props.with_priority(new);
            let raw = encode_properties(&props);
            let message = Message::new(
                e.message.exchange.clone(),
                e.message.routing_key.clone(),
                &props,
                raw,
                e.message.body.clone(),
            );
            let message = message.inherit_trace(&e.message);
            if self.trace_any() && self.traces(&message) {
                let event = crate::trace::TraceEvent::Reprioritised {
                    queue: self.spec.name.clone(),
                    from: current,
                    to: new,
                };
                self.record_trace(&message, event);
            }
            match st.store.rewrite(&e, &message) {
                Ok(loc) => {
                    e.loc = loc;
                    e.message = Arc::new(message);
                }
                Err(err) => result = Err(err),
            }
            st.store.restore(e);
        }
        st.store.flush();
        Self::dispatch_locked(self, &mut st);
        self.finish(st);
        result
    }

    /// Removes messages an admin move or delete took out: settled like an ack, without counting as one (no ack
    /// rate, no publish -> ack latency).
    pub fn settle_moved<'a>(&self, entries: impl IntoIterator<Item = &'a Entry>) {
        self.settle_counted(entries, false);
    }

    /// Looks at ready messages without taking them: `count` messages after skipping `from`, in delivery order.
    /// Nothing about them changes.
    pub fn peek(&self, from: usize, count: usize) -> Vec<Entry> {
        self.lock().store.peek(from, count, &|_| true)
    }

    /// Like `peek`, counting only messages that `matches` accepts (`from` skips matching ones).
    pub fn peek_matching(&self, from: usize, count: usize, matches: &dyn Fn(&Entry) -> bool) -> Vec<Entry> {
        self.lock().store.peek(from, count, matches)
    }

    /// (tag, connection, channel, exclusive, priority) of every consumer, for the admin API.
    /// (tag, connection, channel, exclusive, priority, ack_required) of every consumer, for the admin API.
    pub fn consumer_infos(&self) -> Vec<(String, u64, u16, bool, i64, bool)> {
        self.lock()
            .all_consumers()
            .map(|c| {
                let t = (c.tag.to_string(), c.connection_id, c.channel, c.exclusive, c.priority);
                (t.0, t.1, t.2, t.3, t.4, c.ack_required)
            })
            .collect()
    }
}
