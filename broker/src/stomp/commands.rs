//! The STOMP frames a connected client sends: SEND, SUBSCRIBE and UNSUBSCRIBE, ACK and NACK, BEGIN, COMMIT and
//! ABORT, DISCONNECT. Each either does its work (and queues its RECEIPT) or fails with the ERROR to send.
//!
//! Permissions are checked as for the AMQP operations each frame stands for: `write` on the exchange to SEND,
//! `configure` on a queue the frame declares, `write` on the queue and `read` on the exchange to bind a
//! subscription's queue, `read` on the queue to consume it.
//!
//! Transactions hold their SEND, ACK and NACK frames (bounded in count and bytes) and replay them in order on COMMIT;
//! ABORT, or the connection's end, drops them.

use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::codec::Frame;
use super::destination::{Destination, DestinationError};
use super::mapping;
use super::session::{AckMode, Failure, Session, Sub, Unacked, Version};
use crate::auth::{Kind, Perm};
use crate::counters::bump;
use crate::message::Message;
use crate::queue::{ConsumerCredit, Entry, Queue, QueueConsumer};
use crate::routing::{Binding, Destination as BindingDestination};
use crate::vhost::QueueDeclare;

/// Subscriptions per connection.
const MAX_SUBSCRIPTIONS: usize = 1024;
/// Open transactions per connection, and what one may hold.
const MAX_TRANSACTIONS: usize = 64;
const MAX_TX_FRAMES: usize = 10_000;
const MAX_TX_BYTES: usize = 64 * 1024 * 1024;
/// `/queue/…` names a connection remembers as declared (then it starts afresh).
const MAX_DECLARED: usize = 1024;
/// Headers of SEND and SUBSCRIBE that become queue arguments when a `/queue/…` destination is declared.
const QUEUE_ARGUMENTS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-delivery-limit",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

/// A transaction's frames, replayed on COMMIT.
#[derive(Default)]
pub struct Tx {
    frames: Vec<Frame>,
    bytes: usize,
}

/// An AMQP refusal as RabbitMQ's STOMP plugin words it: `message` is the reply code's name in lower case
/// (`not_found`, `access_refused`), the body the full text.
fn refused(e: crate::amqp::error::AmqpError) -> Failure {
    let message = e.text.split(" - ").next().unwrap_or("refused").to_ascii_lowercase();
    Failure::new(message, e.text)
}

fn required<'a>(f: &'a Frame, name: &str) -> Result<&'a str, Failure> {
    f.get(name).ok_or_else(|| {
        Failure::new(
            format!("Missing '{name}' header"),
            format!("{} needs a '{name}' header", f.command),
        )
    })
}

fn destination(f: &Frame) -> Result<Destination, Failure> {
    Destination::parse(required(f, "destination")?).map_err(|e| {
        let message = match e {
            DestinationError::Unknown(_) => "Unknown destination",
            DestinationError::Invalid(..) => "Invalid destination",
        };
        Failure::new(message, e.to_string())
    })
}

fn flag(f: &Frame, name: &str) -> Option<bool> {
    f.get(name).map(|v| v.eq_ignore_ascii_case("true"))
}

/// Runs `f` once per queue with that queue's entries (one lock per queue), gives their prefetch credit back, and
/// dispatches a queue whose consumer this unblocked.
pub fn by_queue(items: Vec<Unacked>, mut f: impl FnMut(&Arc<Queue>, Vec<Entry>)) {
    let mut groups: Vec<(Arc<Queue>, Vec<Entry>, bool)> = Vec::new();
    for u in items {
        let unblocked = u.credit.as_ref().is_some_and(|c| c.release());
        match groups.iter_mut().find(|(q, _, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, es, kick)) => {
                es.push(u.entry);
                *kick |= unblocked;
            }
            None => groups.push((u.queue, vec![u.entry], unblocked)),
        }
    }
    for (q, entries, kick) in groups {
        f(&q, entries);
        if kick {
            q.dispatch();
        }
    }
}

impl Session {
    /// Handles one frame. `Ok(false)`: the client said DISCONNECT.
    pub(super) fn handle(&mut self, f: Frame) -> Result<bool, Failure> {
        let receipt = f.get("receipt").map(str::to_string);
        let go_on = match f.command.as_str() {
            "SEND" | "ACK" | "NACK" if f.get("transaction").is_some() => {
                // Its RECEIPT waits for the COMMIT.
                self.hold(f)?;
                return Ok(true);
            }
            "SEND" => {
                self.send(&f)?;
                true
            }
            "SUBSCRIBE" => {
                self.subscribe(&f)?;
                true
            }
            "UNSUBSCRIBE" => {
                self.unsubscribe(&f)?;
                true
            }
            "ACK" => {
                self.ack(&f, false)?;
                true
            }
            "NACK" => {
                self.ack(&f, true)?;
                true
            }
            "BEGIN" => {
                let tx = required(&f, "transaction")?;
                if self.txs.contains_key(tx) {
                    return Err(Failure::new(
                        "Transaction already started",
                        format!("transaction '{tx}' is open"),
                    ));
                }
                if self.txs.len() >= MAX_TRANSACTIONS {
                    return Err(Failure::new(
                        "Too many transactions",
                        format!("at most {MAX_TRANSACTIONS} open transactions per connection"),
                    ));
                }
                self.txs.insert(tx.to_string(), Tx::default());
                true
            }
            "COMMIT" => {
                let tx = required(&f, "transaction")?;
                let held = self.txs.remove(tx).ok_or_else(|| unknown_tx(tx))?;
                // Each frame's own RECEIPT comes now, after its work (as in RabbitMQ).
                for mut frame in held.frames {
                    frame.headers.retain(|(n, _)| n != "transaction");
                    self.handle(frame)?;
                }
                true
            }
            "ABORT" => {
                let tx = required(&f, "transaction")?;
                self.txs.remove(tx).ok_or_else(|| unknown_tx(tx))?;
                true
            }
            "DISCONNECT" => false,
            "CONNECT" | "STOMP" => return Err(Failure::new("Already connected", "a second CONNECT")),
            other => {
                return Err(Failure::new(
                    "Bad command",
                    format!(
                        "Could not interpret command {}",
                        other.chars().take(40).collect::<String>()
                    ),
                ))
            }
        };
        if let Some(r) = receipt {
            self.after_sync.push(Frame::new("RECEIPT").header("receipt-id", &r));
        }
        Ok(go_on)
    }

    /// Keeps a transactional frame for its COMMIT.
    fn hold(&mut self, f: Frame) -> Result<(), Failure> {
        let name = f.get("transaction").unwrap_or_default().to_string();
        let tx = self.txs.get_mut(&name).ok_or_else(|| unknown_tx(&name))?;
        let size = f.body.len() + f.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
        if tx.frames.len() >= MAX_TX_FRAMES || tx.bytes + size > MAX_TX_BYTES {
            return Err(Failure::new(
                "Transaction too large",
                format!("a transaction holds at most {MAX_TX_FRAMES} frames and {MAX_TX_BYTES} bytes"),
            ));
        }
        tx.bytes += size;
        // Checked now, as RabbitMQ does: a bad destination fails the SEND, not the COMMIT.
        if f.command == "SEND" {
            destination(&f)?;
        }
        tx.frames.push(f);
        Ok(())
    }

    fn send(&mut self, f: &Frame) -> Result<(), Failure> {
        let dest = destination(f)?;
        if let Destination::Queue(q) = &dest {
            self.ensure_queue(q, f)?;
        }
        let (exchange, key) = dest.target();
        let (exchange, key) = (exchange.to_string(), key.to_string());
        self.access
            .check_publish(&self.broker.access, &exchange, &key)
            .map_err(refused)?;
        let properties = mapping::properties(f).map_err(|e| Failure::new("Bad header", e.to_string()))?;
        let message = Arc::new(Message::with_properties(
            exchange.as_str().into(),
            key.as_str().into(),
            properties,
            f.body.clone(),
        ));
        bump(&self.entry.counters.published, 1);
        let mut queues = Vec::new();
        let headers = message.properties().headers().clone();
        self.vhost
            .route(&exchange, &key, headers.as_ref(), Some(&message), &mut queues)
            .map_err(refused)?;
        if queues.is_empty() {
            bump(&self.entry.counters.unroutable_dropped, 1);
        }
        for q in &queues {
            let p = q.publish(message.clone());
            self.store_failed |= p.failed;
            p.widen(&mut self.tickets);
        }
        Ok(())
    }

    /// A `/queue/…` destination's queue: taken as it is when it exists, else declared (durable unless the frame
    /// says `durable:false`, with the frame's `x-…` queue arguments).
    fn ensure_queue(&mut self, name: &str, f: &Frame) -> Result<Arc<Queue>, Failure> {
        if let Some(q) = self.vhost.queue(name) {
            return Ok(q);
        }
        self.access
            .check(&self.broker.access, Perm::Configure, Kind::Queue, name)
            .map_err(refused)?;
        let mut args = FieldTable::default();
        for (n, v) in &f.headers {
            if QUEUE_ARGUMENTS.contains(&n.as_str()) {
                let value = match v.parse::<i64>() {
                    Ok(i) => AMQPValue::LongLongInt(i),
                    Err(_) if v == "true" || v == "false" => AMQPValue::Boolean(v == "true"),
                    Err(_) => AMQPValue::LongString(LongString::from(v.as_str())),
                };
                args.insert(n.as_str().into(), value);
            }
        }
        let q = self
            .vhost
            .declare_queue(&QueueDeclare {
                name,
                passive: false,
                durable: flag(f, "durable").unwrap_or(true),
                exclusive: false,
                auto_delete: flag(f, "auto-delete").unwrap_or(false),
                arguments: &args,
                connection_id: self.id,
            })
            .map_err(refused)?;
        if self.declared.len() >= MAX_DECLARED {
            self.declared.clear();
        }
        self.declared.insert(name.to_string());
        Ok(q)
    }

    /// A queue of the subscription's own, bound to `exchange` with `key`: durable (named after the subscription)
    /// for `durable:true` (or `persistent:true`), else deleted with the subscription.
    fn subscription_queue(&mut self, f: &Frame, id: &str, exchange: &str, key: &str) -> Result<Arc<Queue>, Failure> {
        if !self.vhost.has_exchange(exchange) {
            return Err(Failure::new(
                "not_found",
                format!("NOT_FOUND - no exchange '{exchange}' in vhost '{}'", self.vhost.name),
            ));
        }
        let durable = flag(f, "durable").or(flag(f, "persistent")).unwrap_or(false);
        let name = if durable {
            format!("stomp-subscription-{id}")
        } else {
            let generated = crate::vhost::generate_queue_name();
            format!("stomp-subscription-{}", generated.trim_start_matches("amq.gen-"))
        };
        let a = &self.broker.access;
        self.access
            .check(a, Perm::Configure, Kind::Queue, &name)
            .map_err(refused)?;
        self.access.check(a, Perm::Write, Kind::Queue, &name).map_err(refused)?;
        self.access
            .check(a, Perm::Read, Kind::Exchange, exchange)
            .map_err(refused)?;
        self.access.check_bind_key(a, exchange, key).map_err(refused)?;
        let q = self
            .vhost
            .declare_queue(&QueueDeclare {
                name: &name,
                passive: false,
                durable,
                exclusive: false,
                auto_delete: !durable,
                arguments: &FieldTable::default(),
                connection_id: self.id,
            })
            .map_err(refused)?;
        let binding = Binding {
            destination: BindingDestination::Queue(name.clone()),
            routing_key: key.to_string(),
            arguments: FieldTable::default(),
        };
        if let Err(e) = self.vhost.bind(exchange, binding) {
            if !durable {
                self.vhost.remove_queue(&q);
            }
            return Err(refused(e));
        }
        Ok(q)
    }

    fn subscribe(&mut self, f: &Frame) -> Result<(), Failure> {
        let raw = required(f, "destination")?.to_string();
        let dest = destination(f)?;
        // STOMP 1.0 allows a subscription without an id: its destination is its id.
        let id = match (f.get("id"), self.version) {
            (Some(id), _) => id.to_string(),
            (None, Version::V10) => raw.clone(),
            (None, _) => return Err(Failure::new("Missing 'id' header", "SUBSCRIBE needs an 'id' header")),
        };
        let tag: Arc<str> = format!("stomp:{id}").into();
        if self.subs.contains_key(&tag) {
            return Err(Failure::new(
                "Duplicated subscription identifier",
                format!("A subscription identified by '{id}' already exists."),
            ));
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(Failure::new(
                "Too many subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            ));
        }
        let ack = match f.get("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => {
                return Err(Failure::new(
                    "Invalid ack header",
                    format!("ack must be auto, client or client-individual, not '{other}'"),
                ))
            }
        };
        let prefetch = match f.get("prefetch-count") {
            None => 0,
            Some(p) => p.trim().parse::<u16>().map_err(|_| {
                Failure::new(
                    "Invalid prefetch-count header",
                    format!("not a number from 0 to 65535: '{p}'"),
                )
            })?,
        };
        let queue = match &dest {
            Destination::Queue(name) => self.ensure_queue(name, f)?,
            Destination::AmqQueue(name) => self.vhost.queue(name).ok_or_else(|| {
                Failure::new(
                    "not_found",
                    format!("NOT_FOUND - no queue '{name}' in vhost '{}'", self.vhost.name),
                )
            })?,
            Destination::Topic(key) => self.subscription_queue(f, &id, "amq.topic", key)?,
            Destination::Exchange { name, key } => {
                let (name, key) = (name.clone(), key.clone());
                self.subscription_queue(f, &id, &name, &key)?
            }
            Destination::ReplyQueue(_) => {
                return Err(Failure::new(
                    "Bad destination",
                    "a /reply-queue/ destination can only be sent to",
                ))
            }
        };
        let name = queue.name().to_string();
        let own_queue = matches!(dest, Destination::Topic(_) | Destination::Exchange { .. });
        let consumed = self
            .access
            .check(&self.broker.access, Perm::Read, Kind::Queue, &name)
            .and_then(|()| {
                let credit = Arc::new(ConsumerCredit::new(u32::from(prefetch), self.credit.clone()));
                queue.add_consumer(QueueConsumer {
                    tag: tag.clone(),
                    channel: 0,
                    connection_id: self.id,
                    outbox: self.outbox.clone(),
                    credit: credit.clone(),
                    exclusive: false,
                    priority: 0,
                    ack_required: ack != AckMode::Auto,
                })
            });
        if let Err(e) = consumed {
            if own_queue && !queue.is_durable() {
                self.vhost.remove_queue(&queue);
            }
            return Err(refused(e));
        }
        self.subs.insert(
            tag,
            Sub {
                id,
                destination: raw,
                queue,
                ack,
            },
        );
        Ok(())
    }

    fn unsubscribe(&mut self, f: &Frame) -> Result<(), Failure> {
        let id = match (f.get("id"), f.get("destination"), self.version) {
            (Some(id), _, _) => id.to_string(),
            (None, Some(d), Version::V10) => d.to_string(),
            _ => return Err(Failure::new("Missing 'id' header", "UNSUBSCRIBE needs an 'id' header")),
        };
        let tag: Arc<str> = format!("stomp:{id}").into();
        let sub = self.subs.remove(&tag).ok_or_else(|| {
            Failure::new(
                "No subscription found",
                format!("UNSUBSCRIBE must refer to an existing subscription: there is none with id '{id}'"),
            )
        })?;
        if sub.queue.remove_consumer(self.id, 0, &tag).auto_delete_now {
            self.vhost.remove_queue(&sub.queue);
        }
        Ok(())
    }

    /// ACK or NACK (`requeue`, default true, says whether a NACKed message goes back or is dead-lettered). In
    /// `client` mode both cover every earlier delivery of the subscription.
    fn ack(&mut self, f: &Frame, nack: bool) -> Result<(), Failure> {
        let header = if self.version == Version::V12 {
            "id"
        } else {
            "message-id"
        };
        let raw = required(f, header)?;
        let Ok(ack) = raw.parse::<u64>() else {
            return Err(Failure::new(
                "Invalid header",
                format!("{} must include a valid '{header}' header, not '{raw}'", f.command),
            ));
        };
        // An id already acked (or covered by a cumulative ack) is no error.
        let Some(tag) = self.unacked.get(&ack).map(|u| u.tag.clone()) else {
            return Ok(());
        };
        let cumulative = self.subs.get(&tag).is_some_and(|s| s.ack == AckMode::Client);
        let ids: Vec<u64> = if cumulative {
            self.unacked
                .range(..=ack)
                .filter(|(_, u)| u.tag == tag)
                .map(|(id, _)| *id)
                .collect()
        } else {
            vec![ack]
        };
        let items: Vec<Unacked> = ids.iter().filter_map(|id| self.unacked.remove(id)).collect();
        let n = items.len() as u64;
        let requeue = f.get("requeue").is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        match (nack, requeue) {
            (false, _) => {
                bump(&self.entry.counters.acked, n);
                by_queue(items, |q, entries| q.settle(&entries));
            }
            (true, true) => by_queue(items, |q, entries| q.requeue(entries)),
            (true, false) => by_queue(items, |q, entries| q.reject(entries, true)),
        }
        Ok(())
    }
}

fn unknown_tx(tx: &str) -> Failure {
    Failure::new("Bad transaction", format!("Invalid transaction identifier: {tx}"))
}
