//! A channel's delivered-but-unsettled messages, addressed by delivery tag.
//!
//! Tags are issued consecutively per channel, so the structure is a `VecDeque` indexed by `tag - base`: lookup is
//! O(1), an out-of-order ack leaves a tombstone (`None`), and tombstones at the front are popped. No-ack
//! deliveries use tags too but are never inserted; their slots stay tombstones.

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

#[derive(Default)]
pub struct Unacked {
    /// The tag of `items[0]`.
    base: u64,
    items: VecDeque<Option<Pending>>,
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

    pub fn push(&mut self, p: Pending) {
        if self.items.is_empty() {
            self.base = p.tag;
        }
        let idx = (p.tag - self.base) as usize;
        while self.items.len() < idx {
            self.items.push_back(None);
        }
        self.items.push_back(Some(p));
        self.live += 1;
    }

    fn get_index(&self, tag: u64) -> Option<usize> {
        let idx = usize::try_from(tag.checked_sub(self.base)?).ok()?;
        matches!(self.items.get(idx), Some(Some(_))).then_some(idx)
    }

    fn compact(&mut self) {
        while matches!(self.items.front(), Some(None)) {
            self.items.pop_front();
            self.base += 1;
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
            let p = self.items[idx].take().ok_or(UnknownTag(tag))?;
            self.live -= 1;
            self.compact();
            return Ok(vec![p]);
        }
        let last_live = self
            .items
            .iter()
            .rposition(Option::is_some)
            .map(|i| self.base + i as u64);
        if last_live.is_none_or(|t| t < tag) {
            return Err(UnknownTag(tag));
        }
        let upto = usize::try_from(tag.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.items.len() - 1);
        let mut out = Vec::new();
        for slot in self.items.iter_mut().take(upto + 1) {
            if let Some(p) = slot.take() {
                out.push(p);
            }
        }
        self.live -= out.len();
        self.compact();
        Ok(out)
    }

    pub fn take_all(&mut self) -> Vec<Pending> {
        let out: Vec<Pending> = self.items.drain(..).flatten().collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::queue::QueueSpec;

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
        Queue::new_in_memory(
            QueueSpec {
                name: "q".into(),
                vhost: "/".into(),
                durable: false,
                exclusive_owner: None,
                auto_delete: false,
                arguments: Default::default(),
                policy: None,
            },
            std::sync::Weak::new(),
        )
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
}
