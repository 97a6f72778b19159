//! The message store under one queue: what is ready, in order, with a stable id per message.
//!
//! This is the in-memory store. Every message gets a sequence number (`seq`) from the queue when it is enqueued;
//! that number is its stable identity within the queue (the durable store keeps it on disk, and admin operations
//! address messages by it). Messages delivered and then requeued go back in `seq` order ahead of never-delivered
//! ones, so a requeue restores the original order, as RabbitMQ does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::message::Message;

/// One queued message.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
}

#[derive(Default)]
pub struct MessageStore {
    ready: VecDeque<Entry>,
    /// Requeued messages, keyed by seq; all of them are older than anything in `ready`.
    requeued: BTreeMap<u64, Entry>,
    next_seq: u64,
    bytes: usize,
}

impl MessageStore {
    pub fn push(&mut self, message: Arc<Message>) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.bytes += message.size();
        self.ready.push_back(Entry { seq, message, redelivered: false });
        seq
    }

    /// Puts a delivered message back, marked redelivered, at its original place.
    pub fn requeue(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        self.bytes += entry.message.size();
        self.requeued.insert(entry.seq, entry);
    }

    pub fn pop(&mut self) -> Option<Entry> {
        let entry = match self.requeued.pop_first() {
            Some((_, e)) => Some(e),
            None => self.ready.pop_front(),
        }?;
        self.bytes -= entry.message.size();
        Some(entry)
    }

    pub fn len(&self) -> usize {
        self.ready.len() + self.requeued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.requeued.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&mut self) -> usize {
        let n = self.len();
        self.ready.clear();
        self.requeued.clear();
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(b: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::with_properties("".into(), "k".into(), Default::default(), Bytes::from_static(b)))
    }

    #[test]
    fn requeue_restores_order() {
        let mut s = MessageStore::default();
        for b in [&b"a"[..], b"b", b"c"] {
            s.push(msg(b));
        }
        let a = s.pop().expect("a");
        let b = s.pop().expect("b");
        s.requeue(b);
        s.requeue(a);
        let order: Vec<_> = std::iter::from_fn(|| s.pop()).map(|e| (e.seq, e.redelivered)).collect();
        assert_eq!(order, vec![(1, true), (2, true), (3, false)]);
        assert_eq!(s.bytes(), 0);
    }
}
