//! The `x-delayed-message` exchange type (as RabbitMQ's delayed-message plugin does it): a message published with
//! an `x-delay` header (milliseconds) is held by the exchange and routed, by the type named in the exchange's
//! `x-delayed-type` argument, once the delay has passed. The broker's timer (`crate::timer`) releases them: a
//! [`DelayedHold`] arms it with the due time of its earliest held message, and when it fires releases what is due
//! and answers the due time of the next one.
//!
//! A durable exchange writes held persistent messages to a message log of its own
//! (`<data-dir>/delayed/<vhost hex>/<exchange hex>/`), so they survive a restart and are released on time after it;
//! a released message's record is acked once it has been routed. A publisher confirm for a held persistent message
//! waits for the sync of its record, as one for a durable queue does.
//!
//! Release (`DelayedHold::release_due`, and `VHost::release_delayed` for every delayed exchange at once, here so that
//! all of the delayed exchange lives in one file) takes the due messages out under the hold's lock, then routes each
//! one as the exchange's `x-delayed-type` would, with no lock held while queues take them, and acks the records of
//! those it routed.
//!
//! Invariant: while a hold has messages, the timer holds a wake for it at or before the earliest due time (armed when
//! the hold is made with recovered messages, when a message due earlier than all others is held, and answered by
//! every release).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::args;
use crate::message::Message;
use crate::store::queue_log::{Loc, QueueLog};
use crate::store::txlog::TxView;
use crate::store::{hex, DiskBudget};
use crate::timer::{Due, Timer};
use crate::vhost::{Durability, VHost};

/// The `x-delay` of a message, when positive.
pub fn delay_of(message: &Message) -> Option<u64> {
    let props = message.properties();
    let d = args::get_i64(props.headers().as_ref()?, "x-delay")?;
    u64::try_from(d).ok().filter(|d| *d > 0)
}

/// A released message and, when it was kept on disk, its record.
pub type Released = (Arc<Message>, Option<Loc>);

/// The held messages of a new delayed exchange: recovered from its directory when it is durable and the vhost
/// persists (`<data-dir>/delayed/<vhost hex>/<exchange hex>/`), else in memory.
pub fn open_hold(
    durability: Option<&Durability>,
    vhost: &str,
    exchange: &str,
    durable: bool,
) -> io::Result<DelayedMessages> {
    match durability {
        Some(d) if durable => {
            let dir = d
                .store
                .root
                .join("delayed")
                .join(hex(vhost.as_bytes()))
                .join(hex(exchange.as_bytes()));
            DelayedMessages::open(&dir, d.store.budget.clone())
        }
        _ => Ok(DelayedMessages::default()),
    }
}

/// A delayed exchange's held messages, with what releasing them takes: the vhost to route through, the exchange's
/// name, and the timer to arm. Owned by its `Exchange`; the timer holds only a `Weak`, so a deleted exchange's wake
/// is skipped.
pub struct DelayedHold {
    messages: Mutex<DelayedMessages>,
    vhost: Weak<VHost>,
    exchange: String,
    timer: Timer,
    me: Weak<DelayedHold>,
}

impl DelayedHold {
    /// The hold of exchange `exchange` in `vhost`, over `messages` (recovered ones are armed at once).
    pub fn new(messages: DelayedMessages, vhost: Weak<VHost>, exchange: &str, timer: Timer) -> Arc<Self> {
        let first = messages.next_due();
        let hold = Arc::new_cyclic(|me| DelayedHold {
            messages: Mutex::new(messages),
            vhost,
            exchange: exchange.to_string(),
            timer,
            me: me.clone(),
        });
        if let Some(at) = first {
            hold.arm(at);
        }
        hold
    }

    fn arm(&self, at: u64) {
        let me: Weak<dyn Due> = self.me.clone();
        self.timer.arm(at, me);
    }

    pub fn lock(&self) -> MutexGuard<'_, DelayedMessages> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a message until `delay_ms` after `now` (see `DelayedMessages::hold`), and arms the timer when it is due
    /// before every message held already.
    pub fn hold(&self, message: Arc<Message>, delay_ms: u64, now: u64) -> io::Result<Vec<Arc<File>>> {
        let due = now.saturating_add(delay_ms);
        let mut held = self.lock();
        let first = held.next_due();
        let files = held.hold(message, delay_ms, now)?;
        drop(held);
        if first.is_none_or(|f| due < f) {
            self.arm(due);
        }
        Ok(files)
    }

    /// Routes the held messages whose delay has passed, as the exchange's `x-delayed-type` would, and answers when the
    /// next one is due.
    pub fn release_due(&self) -> Option<u64> {
        let vhost = self.vhost.upgrade()?;
        let ready = self.lock().take_due(vhost.clock.now_ms());
        if ready.is_empty() {
            return self.lock().next_due();
        }
        let mut locs = Vec::new();
        let mut queues = Vec::new();
        for (m, loc) in ready {
            queues.clear();
            let headers = m.properties().headers().clone();
            // As the exchange's own type routes it (it holds nothing back without a message to look at); an
            // exchange deleted meanwhile routes it nowhere.
            let _ = vhost.route_internal(
                &self.exchange,
                m.routing_key.as_str(),
                headers.as_ref(),
                None,
                &mut queues,
            );
            for q in &queues {
                q.publish(m.clone());
            }
            locs.extend(loc);
        }
        let mut held = self.lock();
        held.released(locs);
        held.next_due()
    }
}

impl Due for DelayedHold {
    fn due(&self) -> Option<u64> {
        self.release_due()
    }
}

impl VHost {
    /// Routes the held messages of every delayed exchange whose delay has passed (the full sweep of
    /// `Broker::advance_time`; the timer releases each exchange's on its own).
    pub fn release_delayed(&self) {
        let holds: Vec<Arc<DelayedHold>> = self
            .read()
            .exchanges
            .values()
            .filter_map(|x| x.delayed.clone())
            .collect();
        for hold in holds {
            // What is left stays armed: the timer's wake for the earliest held message is still there.
            hold.release_due();
        }
    }
}

#[derive(Default)]
pub struct DelayedMessages {
    /// (due unix ms, seq) -> the message and, for a held persistent message on a durable exchange, its record.
    pending: BTreeMap<(u64, u64), (Arc<Message>, Option<Loc>)>,
    log: Option<QueueLog>,
    next_seq: u64,
}

impl DelayedMessages {
    /// Held messages of a durable exchange, recovered from `dir`.
    pub fn open(dir: &Path, budget: DiskBudget) -> io::Result<Self> {
        let mut live = Vec::new();
        let (log, rec) = QueueLog::open(dir, budget, &TxView(None), |_| Some(0), |r, _| live.push(r.loc))?;
        let mut d = DelayedMessages {
            pending: BTreeMap::new(),
            log: None,
            next_seq: rec.max_seq,
        };
        for loc in live {
            let Ok(r) = log.read(loc) else { continue };
            let props = crate::amqp::nesting::parse_properties_bounded(&r.properties[..]).unwrap_or_default();
            let m = Message::new(
                String::from_utf8_lossy(&r.exchange).into_owned().into(),
                String::from_utf8_lossy(&r.routing_key).into_owned().into(),
                &props,
                Bytes::copy_from_slice(&r.properties),
                r.body.clone(),
            );
            let due = r.enqueued_ms.saturating_add(delay_of(&m).unwrap_or(0));
            d.pending.insert((due, r.seq), (Arc::new(m), Some(loc)));
        }
        d.log = Some(log);
        Ok(d)
    }

    /// Holds a message until `delay_ms` from now. Returns the files a sync must cover before the publish may be
    /// confirmed (the log's segment, and its directory when the segment is new): none for a message kept in memory.
    pub fn hold(&mut self, message: Arc<Message>, delay_ms: u64, now: u64) -> io::Result<Vec<Arc<File>>> {
        self.next_seq += 1;
        let loc = match (&mut self.log, message.persistent) {
            (Some(log), true) => Some(log.append(
                crate::store::record::Meta {
                    seq: self.next_seq,
                    enqueued_ms: now,
                    tx: 0,
                },
                message.exchange.as_str().as_bytes(),
                message.routing_key.as_str().as_bytes(),
                &message.raw_properties,
                &message.body,
            )?),
            _ => None,
        };
        self.pending
            .insert((now.saturating_add(delay_ms), self.next_seq), (message, loc));
        let mut to_sync = Vec::new();
        if let (Some(log), Some(_)) = (&mut self.log, loc) {
            to_sync.extend(log.active_file());
            to_sync.extend(log.dir_to_sync());
        }
        Ok(to_sync)
    }

    /// When the earliest held message is due (unix ms).
    pub fn next_due(&self) -> Option<u64> {
        self.pending.first_key_value().map(|((due, _), _)| *due)
    }

    /// Takes the messages whose delay has passed, in due order.
    pub fn take_due(&mut self, now: u64) -> Vec<Released> {
        let later = self.pending.split_off(&(now.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.pending, later);
        due.into_values().collect()
    }

    /// Released messages were routed: their records are done with.
    pub fn released(&mut self, locs: impl IntoIterator<Item = Loc>) {
        if let Some(log) = &mut self.log {
            for loc in locs {
                log.ack(loc);
            }
            let _ = log.flush_acks();
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The exchange was deleted: its held messages go too.
    pub fn destroy(&mut self) {
        self.pending.clear();
        if let Some(log) = self.log.take() {
            log.destroy();
        }
    }
}
