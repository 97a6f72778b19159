//! Undo for an operator's purge and message delete: what they remove is kept here, per vhost and queue, for a
//! window (`--undo-window`, default 10 minutes) and within a size bound (`--undo-max-bytes`, default 64 MiB: bodies,
//! properties and [`PER_MESSAGE`] bytes each), and
//! can be put back into its queue (`admin/undo.rs`) until the window ends; then it is dropped.
//!
//! Invariants:
//! - The removal itself is durable at once (the messages are settled in their queue's store); what is kept here is
//!   in memory only, so a restart forgets it, and undo is then no longer possible. The API says so.
//! - The total kept never passes the bound: older batches give way to a newer one, and a batch larger than the
//!   whole bound is not kept (that removal cannot be undone, and its answer says so).
//! - A batch is taken out whole to be restored; a restore that fails puts it back unchanged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::message::Message;

/// The default window: 10 minutes.
pub const DEFAULT_WINDOW_MS: u64 = 10 * 60 * 1000;
/// The default bound: 64 MiB of message bodies and properties.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// What one purge or delete removed.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: u64,
    pub vhost: String,
    pub queue: String,
    /// "purge" or "delete".
    pub action: String,
    pub user: String,
    pub at_ms: u64,
    /// Undo is possible until then.
    pub until_ms: u64,
    /// In the order they would have been delivered.
    pub messages: Vec<Arc<Message>>,
    pub bytes: u64,
}

impl Batch {
    fn expired(&self, now_ms: u64) -> bool {
        self.until_ms <= now_ms
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    batches: VecDeque<Batch>,
    bytes: u64,
}

#[derive(Debug)]
pub struct Quarantine {
    inner: Mutex<Inner>,
    /// 0: undo is off.
    pub window_ms: u64,
    pub max_bytes: u64,
}

/// What each message kept costs besides its body and properties (its `Arc`, the message struct, the batch's slot),
/// roughly: counted so that many small messages cannot pass the bound unseen.
pub const PER_MESSAGE: u64 = 256;

/// Bytes a message counts for.
fn size(m: &Message) -> u64 {
    m.size() as u64 + PER_MESSAGE
}

impl Quarantine {
    pub fn new(window_ms: u64, max_bytes: u64) -> Self {
        Quarantine {
            inner: Mutex::new(Inner::default()),
            window_ms,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a removal of about `bytes` (counted as `keep` counts them: with [`PER_MESSAGE`] each) can be kept for
    /// undo.
    pub fn fits(&self, bytes: u64) -> bool {
        self.window_ms > 0 && bytes <= self.max_bytes
    }

    /// Keeps what a purge or delete removed; returns the batch's id and until when it can be undone, or None when
    /// undo is off or the batch is larger than the bound. Older batches give way to keep the total within it.
    pub fn keep(
        &self,
        vhost: &str,
        queue: &str,
        action: &str,
        user: &str,
        messages: Vec<Arc<Message>>,
        now_ms: u64,
    ) -> Option<(u64, u64)> {
        let bytes: u64 = messages.iter().map(|m| size(m)).sum();
        if messages.is_empty() || !self.fits(bytes) {
            return None;
        }
        let mut inner = self.lock();
        Self::sweep_locked(&mut inner, now_ms);
        while inner.bytes + bytes > self.max_bytes {
            let Some(old) = inner.batches.pop_front() else { break };
            inner.bytes -= old.bytes;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let until_ms = now_ms.saturating_add(self.window_ms);
        inner.bytes += bytes;
        inner.batches.push_back(Batch {
            id,
            vhost: vhost.to_string(),
            queue: queue.to_string(),
            action: action.to_string(),
            user: user.to_string(),
            at_ms: now_ms,
            until_ms,
            messages,
            bytes,
        });
        Some((id, until_ms))
    }

    fn sweep_locked(inner: &mut Inner, now_ms: u64) {
        while inner.batches.front().is_some_and(|b| b.expired(now_ms)) {
            if let Some(old) = inner.batches.pop_front() {
                inner.bytes -= old.bytes;
            }
        }
        // Batches are kept in order of time and share one window, so the expired ones are at the front; any other
        // (a batch put back after a failed restore) goes here.
        let before = inner.batches.len();
        inner.batches.retain(|b| !b.expired(now_ms));
        if inner.batches.len() != before {
            inner.bytes = inner.batches.iter().map(|b| b.bytes).sum();
        }
    }

    /// Drops what can no longer be undone (called once a second by the broker, and on every access).
    pub fn sweep(&self, now_ms: u64) {
        Self::sweep_locked(&mut self.lock(), now_ms);
    }

    /// What can be undone now, newest first: each batch without its messages, and how many it holds.
    pub fn list(&self, now_ms: u64) -> Vec<(Batch, usize)> {
        let mut inner = self.lock();
        Self::sweep_locked(&mut inner, now_ms);
        inner
            .batches
            .iter()
            .rev()
            .map(|b| {
                let listed = Batch {
                    messages: Vec::new(),
                    ..b.clone()
                };
                (listed, b.messages.len())
            })
            .collect()
    }

    /// Takes batch `id` out to restore it (None: unknown, or its window has ended).
    pub fn take(&self, id: u64, now_ms: u64) -> Option<Batch> {
        let mut inner = self.lock();
        Self::sweep_locked(&mut inner, now_ms);
        let i = inner.batches.iter().position(|b| b.id == id)?;
        let b = inner.batches.remove(i)?;
        inner.bytes -= b.bytes;
        Some(b)
    }

    /// Puts back a batch whose restore failed, as it was (it keeps its window).
    pub fn put_back(&self, batch: Batch) {
        let mut inner = self.lock();
        inner.bytes += batch.bytes;
        let at = inner.batches.partition_point(|b| b.id < batch.id);
        inner.batches.insert(at, batch);
    }

    /// Messages and bytes kept now.
    pub fn totals(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.batches.iter().map(|b| b.messages.len() as u64).sum(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(n: usize, body: usize) -> Vec<Arc<Message>> {
        (0..n)
            .map(|_| {
                Arc::new(Message::with_properties(
                    "".into(),
                    "q".into(),
                    Default::default(),
                    bytes::Bytes::from(vec![b'x'; body]),
                ))
            })
            .collect()
    }

    #[test]
    fn batches_are_kept_for_the_window_then_dropped() {
        let q = Quarantine::new(1000, 1 << 20);
        let (id, until) = q
            .keep("/", "orders", "purge", "ops", messages(3, 10), 5_000)
            .expect("kept");
        assert_eq!(until, 6_000);
        assert_eq!(q.list(5_500).len(), 1);
        assert_eq!(q.list(5_999).first().map(|(b, n)| (b.id, *n)), Some((id, 3)));
        assert!(q.list(6_000).is_empty(), "the window has ended");
        assert!(q.take(id, 6_000).is_none());
        assert_eq!(q.totals(), (0, 0), "the space is reclaimed");
    }

    #[test]
    fn the_bound_drops_the_oldest_and_refuses_what_cannot_fit() {
        let one = messages(1, 100);
        let each = size(&one[0]);
        let q = Quarantine::new(60_000, each * 2);
        let a = q.keep("/", "a", "purge", "ops", messages(1, 100), 0).expect("a");
        let b = q.keep("/", "b", "delete", "ops", messages(1, 100), 1).expect("b");
        let c = q.keep("/", "c", "purge", "ops", messages(1, 100), 2).expect("c");
        let ids: Vec<u64> = q.list(3).iter().map(|(x, _)| x.id).collect();
        assert_eq!(ids, vec![c.0, b.0], "newest first; the oldest gave way");
        assert!(q.take(a.0, 3).is_none());
        assert!(
            q.keep("/", "d", "purge", "ops", messages(3, 100), 3).is_none(),
            "larger than the bound"
        );
        assert!(
            q.keep("/", "e", "purge", "ops", Vec::new(), 3).is_none(),
            "nothing to keep"
        );
        let off = Quarantine::new(0, 1 << 20);
        assert!(
            off.keep("/", "f", "purge", "ops", messages(1, 1), 0).is_none(),
            "undo is off"
        );
    }

    #[test]
    fn a_failed_restore_puts_the_batch_back_in_place() {
        let q = Quarantine::new(60_000, 1 << 20);
        let a = q.keep("/", "a", "purge", "ops", messages(2, 10), 0).expect("a");
        let b = q.keep("/", "b", "purge", "ops", messages(1, 10), 1).expect("b");
        let taken = q.take(a.0, 2).expect("taken");
        assert_eq!(q.totals().0, 1);
        q.put_back(taken);
        assert_eq!(q.totals().0, 3);
        let ids: Vec<u64> = q.list(3).iter().map(|(x, _)| x.id).collect();
        assert_eq!(ids, vec![b.0, a.0]);
    }
}
