//! A connection's mailbox for work that other tasks hand it: deliveries pushed by queues, and server-sent
//! consumer cancels.
//!
//! Queues push under their own lock and wake the connection task only on the empty -> non-empty edge, so a burst
//! of deliveries costs one wakeup. The connection drains the whole batch at once, encodes it into its output
//! buffer, and writes it with one syscall.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::queue::{ConsumerCredit, Entry, Queue};

/// A message a queue assigned to one of this connection's consumers.
pub struct Delivery {
    pub channel: u16,
    pub consumer_tag: Arc<str>,
    /// The queue it came from: `None` for direct reply-to, which has no queue.
    pub queue: Option<Arc<Queue>>,
    pub entry: Entry,
    /// The prefetch credit the queue spent on this delivery (`None` for direct reply-to).
    pub credit: Option<Arc<ConsumerCredit>>,
}

pub enum OutboxItem {
    Deliver(Delivery),
    /// The queue behind this consumer is gone: tell the client with basic.cancel.
    Cancel {
        channel: u16,
        consumer_tag: Arc<str>,
    },
}

#[derive(Default)]
pub struct Outbox {
    items: Mutex<Vec<OutboxItem>>,
    notify: Notify,
    /// Something was pushed since the last `take`: readable without the lock (a busy-polling reader checks it).
    pending: AtomicBool,
}

impl Outbox {
    pub fn push(&self, item: OutboxItem) {
        let was_empty = {
            let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = items.is_empty();
            items.push(item);
            self.pending.store(true, Ordering::Release);
            was_empty
        };
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Takes everything queued so far, swapping in `spare` (an empty Vec kept by the caller to reuse its capacity).
    pub fn take(&self, spare: &mut Vec<OutboxItem>) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *items, spare);
        self.pending.store(false, Ordering::Release);
    }

    /// Whether something waits to be taken (without taking the lock).
    pub fn has_items(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Resolves when something was pushed since the last `take` (a stored permit makes this edge-safe).
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}
