//! Deleting a queue: `queue.delete` with its `if-unused` / `if-empty` conditions, and the broker's own removals
//! (exclusive, auto-delete and expired queues).
//!
//! Invariants: the conditions, taking the queue out of the topology (and saving that) and marking it deleted happen
//! under one taking of the queue's lock, so no consumer or message slips in between; once marked deleted a queue
//! takes no message and no consumer, and its consumers are told (basic.cancel) through their outboxes.

use std::sync::atomic::Ordering;

use super::{Queue, QueueState};
use crate::outbox::OutboxItem;

/// Why `queue.delete` left the queue in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteRefused<E> {
    InUse,
    NotEmpty,
    /// Taking it out of the topology failed (the deletion could not be saved).
    NotSaved(E),
}

impl Queue {
    /// Marks the queue deleted, drops its messages and tells its consumers; returns the message count.
    pub fn mark_deleted(&self) -> u32 {
        let mut st = self.lock();
        self.mark_deleted_locked(&mut st)
    }

    /// `queue.delete` with `if-unused` / `if-empty`: the conditions are checked, `unlink` (which takes the queue out
    /// of the topology and saves that) runs, and the queue is marked deleted, all under one taking of its lock, so no
    /// consumer or message slips in between (a consumer added after the check was silently cancelled before), and
    /// a failed `unlink` leaves the queue as it was. Returns the message count.
    pub fn delete_if<E>(
        &self,
        if_unused: bool,
        if_empty: bool,
        unlink: impl FnOnce() -> Result<(), E>,
    ) -> Result<u32, DeleteRefused<E>> {
        let mut st = self.lock();
        if if_unused && st.all_consumers().next().is_some() {
            return Err(DeleteRefused::InUse);
        }
        if if_empty && (!st.store.is_empty() || Self::stream_message_count(&st) > 0) {
            return Err(DeleteRefused::NotEmpty);
        }
        unlink().map_err(DeleteRefused::NotSaved)?;
        Ok(self.mark_deleted_locked(&mut st))
    }

    fn mark_deleted_locked(&self, st: &mut QueueState) -> u32 {
        self.deleted.store(true, Ordering::Release);
        let n = st.store.len() as u32;
        st.store.destroy();
        let mut consumers: Vec<_> = st.consumers.drain(..).collect();
        if let Some(s) = st.stream.take() {
            let n = s.message_count().min(u32::MAX as u64) as u32;
            let dir = s.dir().to_path_buf();
            consumers.extend(s.consumers.into_iter().map(|c| c.consumer));
            drop(s.log);
            match crate::store::blocking(|| std::fs::remove_dir_all(&dir)) {
                Ok(()) => crate::store::repl::removed_dir(&dir),
                Err(e) => {
                    tracing::warn!(queue = %self.spec.name, error = %e, "could not remove a deleted stream's files")
                }
            }
            for c in consumers {
                c.outbox.push(OutboxItem::Cancel {
                    channel: c.channel,
                    consumer_tag: c.tag.clone(),
                });
            }
            return n;
        }
        for c in consumers {
            c.outbox.push(OutboxItem::Cancel {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        n
    }
}
