//! A channel's delivered-but-unsettled messages, addressed by delivery tag.
//!
//! Tags are issued in increasing order per channel, so the structure is a `VecDeque` of slots in tag order: an ack
//! of the oldest delivery (the common case) is O(1) at the front, any other is a binary search. An out-of-order ack
//! leaves a tombstone (`None`), and tombstones at the front are popped.
//!
//! Invariants:
//! - Slots are sorted by tag, and only deliveries that await a settlement have one: the tags of no-ack deliveries
//!   (and basic.get no-ack) leave no trace, so a channel that streams no-ack deliveries next to one old unacked
//!   message holds one slot, not one per tag in between.
//! - Tombstones never outnumber live slots by more than the front run that `compact` pops, plus those between
//!   live ones; `take` compacts whenever it empties the front.
//!
//! Settling what comes out of it (ack, reject, requeue, a closing channel) goes through `by_queue`, the one place
//! that gives credit back and hands each queue its deliveries in one call, in their order.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::queue::{ConsumerCredit, Entry, Queue};

/// One unsettled delivery.
pub struct Pending {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub entry: Entry,
    /// The consumer's credit to return on settlement; `None` for basic.get.
    pub credit: Option<Arc<ConsumerCredit>>,
}

/// A delivery tag's place: the delivery, or a tombstone once it was settled out of order.
struct Slot {
    tag: u64,
    pending: Option<Pending>,
}

#[derive(Default)]
pub struct Unacked {
    items: VecDeque<Slot>,
    live: usize,
}

/// The delivery tag was not outstanding: a 406 for the client.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownTag(pub u64);

impl Unacked {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds a delivery; its tag must be above every tag already here (tags only grow on a channel).
    pub fn push(&mut self, p: Pending) {
        debug_assert!(self.items.back().is_none_or(|s| s.tag < p.tag));
        self.items.push_back(Slot {
            tag: p.tag,
            pending: Some(p),
        });
        self.live += 1;
    }

    /// Where `tag`'s slot is, if it still holds its delivery.
    fn get_index(&self, tag: u64) -> Option<usize> {
        let idx = match self.items.front() {
            Some(front) if front.tag == tag => 0,
            _ => self.items.binary_search_by_key(&tag, |s| s.tag).ok()?,
        };
        self.items[idx].pending.is_some().then_some(idx)
    }

    fn compact(&mut self) {
        while matches!(self.items.front(), Some(Slot { pending: None, .. })) {
            self.items.pop_front();
        }
    }

    /// Removes what an ack/nack/reject of `tag` settles, with RabbitMQ's rules: `multiple` takes every outstanding
    /// tag up to `tag` (0 means all); the request is unknown unless some outstanding tag is >= `tag` (or exactly
    /// `tag` without `multiple`).
    pub fn take(&mut self, tag: u64, multiple: bool) -> Result<Vec<Pending>, UnknownTag> {
        if multiple && tag == 0 {
            return Ok(self.take_all());
        }
        if !multiple {
            let idx = self.get_index(tag).ok_or(UnknownTag(tag))?;
            let p = self.items[idx].pending.take().ok_or(UnknownTag(tag))?;
            self.live -= 1;
            self.compact();
            return Ok(vec![p]);
        }
        let last_live = self.items.iter().rev().find(|s| s.pending.is_some()).map(|s| s.tag);
        if last_live.is_none_or(|t| t < tag) {
            return Err(UnknownTag(tag));
        }
        let mut out = Vec::new();
        for slot in self.items.iter_mut().take_while(|s| s.tag <= tag) {
            if let Some(p) = slot.pending.take() {
                out.push(p);
            }
        }
        self.live -= out.len();
        self.compact();
        Ok(out)
    }

    pub fn take_all(&mut self) -> Vec<Pending> {
        let out: Vec<Pending> = self.items.drain(..).filter_map(|s| s.pending).collect();
        self.live = 0;
        out
    }

    /// Puts back deliveries taken by an ack inside a transaction that was rolled back.
    pub fn restore(&mut self, back: Vec<Pending>) {
        if back.is_empty() {
            return;
        }
        let mut all: Vec<Pending> = self.take_all();
        all.extend(back);
        all.sort_by_key(|p| p.tag);
        for p in all {
            self.push(p);
        }
    }

    /// How many slots are held, tombstones included (what the structure costs in memory).
    pub fn slots(&self) -> usize {
        self.items.len()
    }
}

/// Gives back the credit of settled deliveries, then hands each queue its deliveries from `pending` in one call (one
/// lock taking and one ack-file write per queue), each queue's in their original order. Returns whether credit came
/// back to a consumer that had run out (its queues need a dispatch).
pub fn by_queue(pending: Vec<Pending>, mut each: impl FnMut(&Arc<Queue>, Vec<Entry>)) -> bool {
    let mut unblocked = false;
    for p in &pending {
        if let Some(c) = &p.credit {
            unblocked |= c.release();
        }
    }
    // Most batches are one queue's (an ack, a multiple ack from one consumer): nothing to group, and the entries
    // are collected in place.
    if pending.windows(2).all(|w| Arc::ptr_eq(&w[0].queue, &w[1].queue)) {
        if let Some(q) = pending.first().map(|p| p.queue.clone()) {
            each(&q, pending.into_iter().map(|p| p.entry).collect());
        }
        return unblocked;
    }
    let mut groups: Vec<(Arc<Queue>, Vec<Entry>)> = Vec::new();
    for p in pending {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &p.queue)) {
            Some((_, v)) => v.push(p.entry),
            None => groups.push((p.queue, vec![p.entry])),
        }
    }
    for (q, entries) in groups {
        each(&q, entries);
    }
    unblocked
}

/// Requeues deliveries, one lock per queue, keeping their order (their credit comes back).
pub fn requeue_grouped(pending: Vec<Pending>) {
    by_queue(pending, |q, entries| q.requeue(entries));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn pending(q: &Arc<Queue>, tag: u64) -> Pending {
        let message = Arc::new(Message::with_properties(
            "".into(),
            "k".into(),
            Default::default(),
            Default::default(),
        ));
        Pending {
            tag,
            queue: q.clone(),
            entry: Entry {
                seq: tag,
                message,
                redelivered: false,
                expires_at: None,
                loc: None,
                delivery_count: 0,
                enqueued_ms: 0,
            },
            credit: None,
        }
    }

    fn queue() -> Arc<Queue> {
        Queue::for_tests("q")
    }

    fn tags(v: &[Pending]) -> Vec<u64> {
        v.iter().map(|p| p.tag).collect()
    }

    #[test]
    fn single_and_multiple() {
        let q = queue();
        let mut u = Unacked::default();
        for t in [1, 2, 3, 5, 6] {
            u.push(pending(&q, t)); // tag 4 was a no-ack delivery
        }
        assert_eq!(u.take(4, false).err(), Some(UnknownTag(4)));
        assert_eq!(tags(&u.take(2, false).expect("2")), vec![2]);
        assert_eq!(u.take(2, false).err(), Some(UnknownTag(2)), "double ack");
        assert_eq!(tags(&u.take(4, true).expect("<=4")), vec![1, 3]);
        assert_eq!(u.take(9, true).err(), Some(UnknownTag(9)));
        assert_eq!(u.len(), 2);
        assert_eq!(tags(&u.take(0, true).expect("all")), vec![5, 6]);
        assert!(u.is_empty());
    }

    #[test]
    fn restore_after_rollback() {
        let q = queue();
        let mut u = Unacked::default();
        for t in 1..=3 {
            u.push(pending(&q, t));
        }
        let taken = u.take(2, false).expect("2");
        u.restore(taken);
        assert_eq!(tags(&u.take(3, true).expect("all")), vec![1, 2, 3]);
    }

    #[test]
    fn no_ack_tags_cost_nothing_next_to_an_old_unacked_delivery() {
        let q = queue();
        let mut u = Unacked::default();
        u.push(pending(&q, 1));
        // Tags 2..=1_000_000 went to a no-ack consumer; then an acked delivery.
        u.push(pending(&q, 1_000_001));
        assert_eq!(u.slots(), 2, "no placeholder per no-ack tag");
        assert_eq!(tags(&u.take(1_000_001, false).expect("last")), vec![1_000_001]);
        assert_eq!(u.take(500, false).err(), Some(UnknownTag(500)));
        assert_eq!(tags(&u.take(1, false).expect("first")), vec![1]);
        assert_eq!(u.slots(), 0);
    }
}
