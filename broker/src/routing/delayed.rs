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
//! Operators see and change what is held (the admin API's scheduled messages): `DelayedHold::list` pages the held
//! messages in due order; `cancel`, `deliver_now` and `reschedule` take the ones picked out of the hold. A
//! rescheduled message is held again as a new message whose `x-delay` counts from the reschedule (so a restart
//! recovers its new due time), and its old record is acked only once the new one is synced: a crash in between
//! can deliver it twice, never lose it.
//!
//! Invariant: while a hold has messages, the timer holds a wake for it at or before the earliest due time (armed when
//! the hold is made with recovered messages, when a message due earlier than all others is held, and answered by
//! every release; a cancel or an early delivery leaves a wake that finds nothing due and answers the next).

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
        let locs = self.route(&vhost, ready);
        let mut held = self.lock();
        held.released(locs);
        held.next_due()
    }

    /// Routes messages taken out of the hold, with no lock held; returns the records of those that had one.
    fn route(&self, vhost: &VHost, ready: Vec<Released>) -> Vec<Loc> {
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
        locs
    }

    /// A page of the held messages in due order: those `matches` accepts, past the first `skip` of them, at most
    /// `count`; and how many it accepts in all.
    pub fn list(&self, matches: &dyn Fn(&Message) -> bool, skip: usize, count: usize) -> (Vec<Scheduled>, u64) {
        self.lock().list(matches, skip, count)
    }

    /// How many messages are held, their bytes, and when the first is due.
    pub fn summary(&self) -> (u64, u64, Option<u64>) {
        let held = self.lock();
        (held.len() as u64, held.bytes, held.next_due())
    }

    /// Drops the held messages `pick` names (by id and message); returns how many.
    pub fn cancel(&self, pick: &dyn Fn(u64, &Message) -> bool) -> usize {
        let mut held = self.lock();
        let taken = held.take_where(pick);
        let n = taken.len();
        held.released(taken.into_iter().filter_map(|(_, loc)| loc));
        n
    }

    /// Routes the held messages `pick` names now, as if their delay had passed; returns how many.
    pub fn deliver_now(&self, pick: &dyn Fn(u64, &Message) -> bool) -> usize {
        let Some(vhost) = self.vhost.upgrade() else { return 0 };
        let taken = self.lock().take_where(pick);
        let n = taken.len();
        let locs = self.route(&vhost, taken);
        self.lock().released(locs);
        n
    }

    /// Holds the messages `pick` names again, due at `due_ms` (one due by `now` is delivered at once); returns how
    /// many. Syncs the new records before the old ones are acked, so it must run off the async workers. A message
    /// that cannot be held again stays as it was, and the first such error is returned once the rest are done.
    pub fn reschedule(&self, pick: &dyn Fn(u64, &Message) -> bool, due_ms: u64, now: u64) -> io::Result<usize> {
        if due_ms <= now {
            return Ok(self.deliver_now(pick));
        }
        let taken = self.lock().take_where_keyed(pick);
        let (mut files, mut old, mut failed) = (Vec::<Arc<File>>::new(), Vec::new(), None);
        let mut n = 0;
        for (key, held) in taken {
            let again = with_delay(&held.message, due_ms - now);
            match self.hold(Arc::new(again), due_ms - now, now) {
                Ok(f) => {
                    for f in f {
                        if !files.iter().any(|g| Arc::ptr_eq(g, &f)) {
                            files.push(f);
                        }
                    }
                    old.extend(held.loc);
                    n += 1;
                }
                Err(e) => {
                    self.lock().put_back(key, held);
                    failed.get_or_insert(e);
                }
            }
        }
        for f in &files {
            if let Err(e) = f.sync_all() {
                // The new records may not be durable: keep the old ones too (a restart may deliver both).
                return Err(failed.unwrap_or(e));
            }
        }
        self.lock().released(old);
        match failed {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

/// A copy of `message` whose `x-delay` header is `delay_ms`.
fn with_delay(message: &Message, delay_ms: u64) -> Message {
    let props = message.properties();
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        "x-delay".into(),
        amq_protocol::types::AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
    );
    Message::with_properties(
        message.exchange.clone(),
        message.routing_key.clone(),
        props.with_headers(headers),
        message.body.clone(),
    )
}

/// A held message as an operator sees it.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// Its id within the exchange's hold (stable while it is held).
    pub id: u64,
    /// When it is due (unix ms).
    pub due_ms: u64,
    /// When it was held (unix ms).
    pub held_ms: u64,
    pub message: Arc<Message>,
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

/// One held message.
struct Held {
    message: Arc<Message>,
    /// Its record, for a held persistent message on a durable exchange.
    loc: Option<Loc>,
    /// When it was held (unix ms).
    since_ms: u64,
}

#[derive(Default)]
pub struct DelayedMessages {
    /// (due unix ms, seq) -> the message.
    pending: BTreeMap<(u64, u64), Held>,
    /// The held messages' body bytes.
    bytes: u64,
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
            bytes: 0,
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
            d.bytes += m.size() as u64;
            d.pending.insert(
                (due, r.seq),
                Held {
                    message: Arc::new(m),
                    loc: Some(loc),
                    since_ms: r.enqueued_ms,
                },
            );
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
        self.bytes += message.size() as u64;
        self.pending.insert(
            (now.saturating_add(delay_ms), self.next_seq),
            Held {
                message,
                loc,
                since_ms: now,
            },
        );
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
        due.into_values().map(|h| self.taken(h)).collect()
    }

    fn taken(&mut self, h: Held) -> Released {
        self.bytes = self.bytes.saturating_sub(h.message.size() as u64);
        (h.message, h.loc)
    }

    /// See `DelayedHold::list`.
    fn list(&self, matches: &dyn Fn(&Message) -> bool, skip: usize, count: usize) -> (Vec<Scheduled>, u64) {
        let (mut page, mut matching) = (Vec::new(), 0u64);
        for ((due, id), h) in &self.pending {
            if !matches(&h.message) {
                continue;
            }
            if matching as usize >= skip && page.len() < count {
                page.push(Scheduled {
                    id: *id,
                    due_ms: *due,
                    held_ms: h.since_ms,
                    message: h.message.clone(),
                });
            }
            matching += 1;
        }
        (page, matching)
    }

    /// Takes the held messages `pick` names, in due order.
    fn take_where(&mut self, pick: &dyn Fn(u64, &Message) -> bool) -> Vec<Released> {
        self.take_where_keyed(pick)
            .into_iter()
            .map(|(_, h)| (h.message, h.loc))
            .collect()
    }

    fn take_where_keyed(&mut self, pick: &dyn Fn(u64, &Message) -> bool) -> Vec<((u64, u64), Held)> {
        let keys: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter(|((_, id), h)| pick(*id, &h.message))
            .map(|(k, _)| *k)
            .collect();
        let mut taken = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(h) = self.pending.remove(&k) {
                self.bytes = self.bytes.saturating_sub(h.message.size() as u64);
                taken.push((k, h));
            }
        }
        taken
    }

    /// Puts back a message taken by `take_where_keyed` (its reschedule failed).
    fn put_back(&mut self, key: (u64, u64), h: Held) {
        self.bytes += h.message.size() as u64;
        self.pending.insert(key, h);
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
        self.bytes = 0;
        if let Some(log) = self.log.take() {
            log.destroy();
        }
    }
}
