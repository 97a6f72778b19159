//! A connection's mailbox for work that other tasks hand it: deliveries pushed by queues, and server-sent
//! consumer cancels.
//!
//! Queues push under their own lock and wake the connection task only on the empty -> non-empty edge, so a burst
//! of deliveries costs one wakeup. The connection drains the whole batch at once, encodes it into its output
//! buffer, and writes it with one syscall.
//!
//! Back-pressure: a queue reserves room before it hands a delivery over ([`Outbox::reserve`]), and an outbox holds
//! at most [`MAX_ITEMS`] deliveries or [`MAX_BYTES`] of message bytes. A consumer whose connection cannot write as
//! fast as its queue could deliver (a slow network, a client that stops reading, a no-ack consumer with no prefetch
//! limit) therefore leaves the rest in its queue, where it is counted as ready and paged to disk like any backlog,
//! instead of in this process's memory. A queue that found no room marks the outbox held back; the connection, once
//! it has taken what was there, dispatches its consumers' queues again ([`Outbox::take_held_back`]). The mark and
//! the counts are sequentially consistent, so a queue either sees the room the connection made or the connection
//! sees its mark: no consumer is left waiting with room in its outbox.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// It took a reservation of room in the outbox (`Outbox::reserve`), given back when the connection takes it.
    pub reserved: bool,
}

pub enum OutboxItem {
    Deliver(Delivery),
    /// The queue behind this consumer is gone: tell the client with basic.cancel.
    Cancel {
        channel: u16,
        consumer_tag: Arc<str>,
    },
}

/// Deliveries an outbox holds at most before queues hold further ones back.
pub const MAX_ITEMS: usize = 4096;
/// Message bytes (bodies and properties) an outbox holds at most before queues hold further deliveries back.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

#[derive(Default)]
pub struct Outbox {
    items: Mutex<Vec<OutboxItem>>,
    notify: Notify,
    /// Something was pushed since the last `take`: readable without the lock (a busy-polling reader checks it).
    pending: AtomicBool,
    /// Deliveries reserved and not yet taken, and their message bytes.
    reserved: AtomicUsize,
    reserved_bytes: AtomicUsize,
    /// A queue found no room since the connection last looked.
    held_back: AtomicBool,
}

impl Outbox {
    /// Whether another delivery would fit now (a hint for choosing a consumer; `reserve` decides).
    pub fn has_room(&self) -> bool {
        self.reserved.load(Ordering::SeqCst) < MAX_ITEMS && self.reserved_bytes.load(Ordering::SeqCst) < MAX_BYTES
    }

    /// Reserves room for one delivery, or marks the outbox held back and answers false. Call `reserved` with the
    /// message's size once it is known, and `unreserve` if nothing is delivered after all.
    pub fn reserve(&self) -> bool {
        if !self.has_room() {
            self.held_back.store(true, Ordering::SeqCst);
            // The connection may have taken everything between the check and the mark: look again.
            if !self.has_room() {
                return false;
            }
        }
        self.reserved.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Marks the outbox held back if it is full (a queue with a message for this consumer found no room).
    pub fn reserve_or_mark(&self) {
        if !self.has_room() {
            self.held_back.store(true, Ordering::SeqCst);
        }
    }

    /// Adds a reserved delivery's message bytes.
    pub fn reserved(&self, bytes: usize) {
        self.reserved_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Gives back a reservation that was not used.
    pub fn unreserve(&self) {
        self.reserved.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a queue held a delivery back for lack of room since the last call: the connection then dispatches its
    /// consumers' queues again, after `take`.
    pub fn take_held_back(&self) -> bool {
        self.held_back.swap(false, Ordering::SeqCst)
    }

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
        drop(items);
        let (mut n, mut bytes) = (0, 0);
        for item in spare.iter() {
            if let OutboxItem::Deliver(d) = item {
                if d.reserved {
                    n += 1;
                    bytes += d.entry.message.size();
                }
            }
        }
        if n > 0 {
            self.reserved.fetch_sub(n, Ordering::SeqCst);
            self.reserved_bytes.fetch_sub(bytes, Ordering::SeqCst);
        }
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
