//! The message store under one queue: what is ready, in order, with a stable id per message.
//!
//! This is the in-memory store. Every message gets a sequence number (`seq`) from the queue when it is enqueued;
//! that number is its stable identity within the queue (the durable store keeps it on disk, and admin operations
//! address messages by it).
//!
//! Ordering: a queue declared with `x-max-priority` keeps one level per priority and always serves the highest
//! non-empty level; within a level, messages that were delivered and requeued come back first, in `seq` order
//! (their original place), then never-delivered ones in arrival order, as RabbitMQ does.
//!
//! Expiry: a message's deadline (the smaller of its `expiration` property and the queue's `x-message-ttl`,
//! counted from enqueue) is checked when it reaches the head; expired messages are dropped there.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::message::Message;

/// One queued message.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    /// When the message expires (per-message `expiration` or the queue's `x-message-ttl`).
    pub expires_at: Option<Instant>,
}

impl Entry {
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

#[derive(Default)]
struct Level {
    ready: VecDeque<Entry>,
    /// Requeued messages, keyed by seq; all of them are older than anything in `ready`.
    requeued: BTreeMap<u64, Entry>,
}

impl Level {
    fn pop(&mut self) -> Option<Entry> {
        match self.requeued.pop_first() {
            Some((_, e)) => Some(e),
            None => self.ready.pop_front(),
        }
    }
}

pub struct MessageStore {
    /// One level per priority 0..=max_priority (a single level without `x-max-priority`).
    levels: Vec<Level>,
    /// The queue's `x-message-ttl`.
    ttl: Option<Duration>,
    next_seq: u64,
    len: usize,
    bytes: usize,
}

impl Default for MessageStore {
    fn default() -> Self {
        Self::new(0, None)
    }
}

impl MessageStore {
    pub fn new(max_priority: u8, ttl: Option<Duration>) -> Self {
        MessageStore {
            levels: (0..=max_priority).map(|_| Level::default()).collect(),
            ttl,
            next_seq: 0,
            len: 0,
            bytes: 0,
        }
    }

    fn level_of(&self, message: &Message) -> usize {
        (message.priority as usize).min(self.levels.len() - 1)
    }

    /// The deadline for a message enqueued now.
    fn deadline(&self, message: &Message, now: Instant) -> Option<Instant> {
        let per_message = message.expiration_ms.map(Duration::from_millis);
        let ttl = match (per_message, self.ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }?;
        Some(now + ttl)
    }

    pub fn push(&mut self, message: Arc<Message>) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        let expires_at = self.deadline(&message, Instant::now());
        self.bytes += message.size();
        self.len += 1;
        let level = self.level_of(&message);
        self.levels[level].ready.push_back(Entry {
            seq,
            message,
            redelivered: false,
            expires_at,
        });
        seq
    }

    /// Puts a delivered message back, marked redelivered, at its original place.
    pub fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.bytes += entry.message.size();
        self.len += 1;
        let level = self.level_of(&entry.message);
        self.levels[level].requeued.insert(entry.seq, entry);
    }

    /// The next live message; expired ones met on the way are dropped and counted in `expired`.
    pub fn pop(&mut self, expired: &mut u64) -> Option<Entry> {
        let now = Instant::now();
        loop {
            let entry = self.levels.iter_mut().rev().find_map(Level::pop)?;
            self.bytes -= entry.message.size();
            self.len -= 1;
            if entry.is_expired(now) {
                *expired += 1;
                continue;
            }
            return Some(entry);
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

    /// Drops every ready message; returns how many.
    pub fn purge(&mut self) -> usize {
        let n = self.len;
        for l in &mut self.levels {
            l.ready.clear();
            l.requeued.clear();
        }
        self.len = 0;
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::basic::AMQPProperties;
    use bytes::Bytes;

    fn msg(b: &'static [u8], props: AMQPProperties) -> Arc<Message> {
        Arc::new(Message::with_properties(
            "".into(),
            "k".into(),
            props,
            Bytes::from_static(b),
        ))
    }

    fn drain(s: &mut MessageStore) -> Vec<(u64, bool)> {
        let mut expired = 0;
        std::iter::from_fn(|| s.pop(&mut expired))
            .map(|e| (e.seq, e.redelivered))
            .collect()
    }

    #[test]
    fn requeue_restores_order() {
        let mut s = MessageStore::default();
        for b in [&b"a"[..], b"b", b"c"] {
            s.push(msg(b, AMQPProperties::default()));
        }
        let mut expired = 0;
        let a = s.pop(&mut expired).expect("a");
        let b = s.pop(&mut expired).expect("b");
        s.requeue(b);
        s.requeue(a);
        assert_eq!(drain(&mut s), vec![(1, true), (2, true), (3, false)]);
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn priorities_then_fifo() {
        let mut s = MessageStore::new(10, None);
        for p in [3u8, 6, 3, 200] {
            s.push(msg(b"x", AMQPProperties::default().with_priority(p)));
        }
        s.push(msg(b"x", AMQPProperties::default()));
        // 200 is capped to the max (10); no priority means 0.
        assert_eq!(
            drain(&mut s).iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            vec![4, 2, 1, 3, 5]
        );
    }

    #[test]
    fn expired_messages_are_skipped() {
        let mut s = MessageStore::new(0, None);
        s.push(msg(b"old", AMQPProperties::default().with_expiration("0".into())));
        s.push(msg(b"new", AMQPProperties::default()));
        let mut expired = 0;
        assert_eq!(s.pop(&mut expired).map(|e| e.seq), Some(2));
        assert_eq!(expired, 1);
        let mut s = MessageStore::new(0, Some(Duration::ZERO));
        s.push(msg(b"x", AMQPProperties::default()));
        assert!(s.pop(&mut expired).is_none());
    }
}
