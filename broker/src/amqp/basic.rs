//! The consumer side of a channel: qos, consume, cancel, get, ack/nack/reject, recover, and writing deliveries.
//!
//! Prefetch is enforced by credit (`queue::ConsumerCredit`) that queues spend and this code returns. When a
//! return may unblock a consumer, its queue goes on the connection's kick list and is dispatched once at the end
//! of the batch, not once per ack.

use std::sync::Arc;

use amq_protocol::protocol::{basic, AMQPClass};
use rand::Rng;

use crate::amqp::channel::{Channel, ChannelConsumer, Ctx, ReplyConsumer, TxAck, REPLY_TO};
use crate::amqp::codec::{encode_content, encode_deliver, encode_get_ok, DeliverFields};
use crate::amqp::error::{AmqpError, AmqpResult, NOT_ALLOWED};
use crate::amqp::unacked::{by_queue, requeue_grouped, Pending};
use crate::args;
use crate::broker::ReplyTarget;
use crate::counters::bump;
use crate::outbox::Delivery;
use crate::queue::{ConsumerCredit, Credit, QueueConsumer};

/// How many deliveries a no-ack consumer may have between its queue and the socket. Prefetch does not apply to
/// no-ack consumers; this window keeps a slow one from buffering a whole queue in memory.
const NO_ACK_WINDOW: u32 = 2000;

fn random_tag(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    let s: String = (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{s}")
}

impl Channel {
    /// Resolves the queue name of a method: an empty name means the last queue declared on this channel.
    pub fn queue_name<'a>(&'a self, name: &'a str) -> AmqpResult<&'a str> {
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue
            .as_deref()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    pub(crate) fn handle_basic(&mut self, ctx: &mut Ctx<'_>, m: &basic::AMQPMethod) -> AmqpResult<()> {
        use basic::AMQPMethod as B;
        match m {
            B::Qos(q) => self.qos(ctx, q),
            B::Consume(c) => self.consume(ctx, c),
            B::Cancel(c) => {
                self.cancel(ctx, c.consumer_tag.as_str());
                if !c.nowait {
                    ctx.send(
                        self.id,
                        AMQPClass::Basic(B::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag.clone(),
                        })),
                    );
                }
                Ok(())
            }
            B::Get(g) => self.get(ctx, g),
            B::Ack(a) => {
                let pending = self.take_unacked(a.delivery_tag, a.multiple)?;
                bump(&self.counters().acked, pending.len() as u64);
                match &mut self.tx {
                    Some(tx) => tx.acks.push(TxAck::Ack(pending)),
                    // Settled at the end of the read batch (or before the next other method), with the batch's
                    // other acks.
                    None => self.acked.extend(pending),
                }
                Ok(())
            }
            B::Reject(r) => self.reject(ctx, r.delivery_tag, false, r.requeue, false),
            B::Nack(n) => self.reject(ctx, n.delivery_tag, n.multiple, n.requeue, true),
            B::Recover(r) => {
                self.recover(ctx, r.requeue);
                ctx.send(self.id, AMQPClass::Basic(B::RecoverOk(basic::RecoverOk {})));
                Ok(())
            }
            B::RecoverAsync(r) => {
                self.recover(ctx, r.requeue);
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "basic method {} is not valid from a client",
                AMQPClass::Basic(other.clone()).get_amqp_method_id()
            ))),
        }
    }

    fn qos(&mut self, ctx: &mut Ctx<'_>, q: &basic::Qos) -> AmqpResult<()> {
        // amq-protocol's Qos drops prefetch_size; the codec rejects a non-zero one (540) before it gets here.
        if q.global {
            self.credit.set_limit(q.prefetch_count as u32);
        } else {
            self.consumer_prefetch = q.prefetch_count as u32;
        }
        // A raised limit may let consumers take more.
        for c in self.consumers.values() {
            ctx.kick(&c.queue);
        }
        ctx.send(self.id, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
        Ok(())
    }

    fn consume(&mut self, ctx: &mut Ctx<'_>, c: &basic::Consume) -> AmqpResult<()> {
        let tag: Arc<str> = if c.consumer_tag.as_str().is_empty() {
            random_tag("amq.ctag-").into()
        } else {
            c.consumer_tag.as_str().into()
        };
        if self.consumers.contains_key(&tag) || self.reply_consumer.as_ref().is_some_and(|r| r.tag == tag) {
            return Err(AmqpError::new(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        if c.queue.as_str() == REPLY_TO {
            return self.consume_reply_to(ctx, c, tag);
        }
        let name = self.queue_name(c.queue.as_str())?.to_string();
        ctx.access.check(
            &ctx.broker.access,
            crate::auth::Perm::Read,
            crate::auth::Kind::Queue,
            &name,
        )?;
        let queue = ctx.vhost.queue_for(&name, ctx.connection_id)?;
        let credit = if c.no_ack {
            Arc::new(ConsumerCredit::new(NO_ACK_WINDOW, Arc::new(Credit::new(0))))
        } else {
            Arc::new(ConsumerCredit::new(self.consumer_prefetch, self.credit.clone()))
        };
        let priority = args::get_i64(&c.arguments, "x-priority").unwrap_or(0);
        let stream_args = if queue.is_stream() {
            Some(self.stream_consume_args(ctx, c, &name)?)
        } else {
            None
        };
        let consumer = QueueConsumer {
            tag: tag.clone(),
            channel: self.id,
            connection_id: ctx.connection_id,
            outbox: ctx.outbox.clone(),
            credit: credit.clone(),
            exclusive: c.exclusive,
            priority,
            ack_required: !c.no_ack,
        };
        // consume-ok only once the queue took the consumer (an exclusive consumer there refuses it with 403). The
        // queue may hand it deliveries at once, but those wait in the outbox until this batch is written, after
        // consume-ok.
        match stream_args {
            Some(a) => queue.add_stream_consumer(consumer, a)?,
            None => queue.add_consumer(consumer)?,
        }
        if !c.nowait {
            ctx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag.as_ref().into(),
                })),
            );
        }
        self.consumers.insert(
            tag,
            ChannelConsumer {
                queue,
                no_ack: c.no_ack,
                credit,
            },
        );
        Ok(())
    }

    /// RabbitMQ's rules for consuming from a stream (manual acks, a prefetch) and the consumer's stream arguments.
    fn stream_consume_args(
        &self,
        ctx: &Ctx<'_>,
        c: &basic::Consume,
        name: &str,
    ) -> AmqpResult<crate::stream::args::ConsumerArgs> {
        if c.no_ack {
            return Err(AmqpError::not_implemented(format!(
                "automatic acknowledgement not supported by stream queues queue '{name}' in vhost '{}'",
                ctx.vhost.name
            )));
        }
        if self.consumer_prefetch == 0 && !self.credit.has_limit() {
            return Err(AmqpError::precondition(format!(
                "consumer prefetch count is not set for 'queue '{name}' in vhost '{}''",
                ctx.vhost.name
            )));
        }
        crate::stream::args::consumer(&c.arguments, ctx.broker.clock.now_ms()).map_err(AmqpError::precondition)
    }

    fn consume_reply_to(&mut self, ctx: &mut Ctx<'_>, c: &basic::Consume, tag: Arc<str>) -> AmqpResult<()> {
        if !c.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        if self.reply_consumer.is_some() {
            return Err(AmqpError::precondition("reply consumer already set"));
        }
        let key = random_tag(&format!("c{}.{}.", ctx.connection_id, self.id));
        ctx.broker.register_reply_to(
            key.clone(),
            ReplyTarget {
                outbox: ctx.outbox.clone(),
                channel: self.id,
                consumer_tag: tag.clone(),
            },
        );
        self.reply_consumer = Some(ReplyConsumer { key, tag: tag.clone() });
        if !c.nowait {
            ctx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag.as_ref().into(),
                })),
            );
        }
        Ok(())
    }

    /// Client-side cancel (idempotent: an unknown tag is fine).
    fn cancel(&mut self, ctx: &mut Ctx<'_>, tag: &str) {
        if self.reply_consumer.as_ref().is_some_and(|r| &*r.tag == tag) {
            if let Some(rc) = self.reply_consumer.take() {
                ctx.broker.unregister_reply_to(&rc.key);
            }
            return;
        }
        if let Some(c) = self.consumers.remove(tag) {
            let removed = c.queue.remove_consumer(ctx.connection_id, self.id, tag);
            if removed.auto_delete_now {
                ctx.vhost.remove_queue(&c.queue);
            }
        }
    }

    /// The queue behind a consumer was deleted: drop it and tell the client if it asked to be told.
    pub fn server_cancel(&mut self, ctx: &mut Ctx<'_>, tag: &Arc<str>) {
        if self.consumers.remove(tag).is_some() && ctx.cancel_notify {
            ctx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: tag.as_ref().into(),
                    nowait: true,
                })),
            );
        }
    }

    fn get(&mut self, ctx: &mut Ctx<'_>, g: &basic::Get) -> AmqpResult<()> {
        let name = self.queue_name(g.queue.as_str())?.to_string();
        ctx.access.check(
            &ctx.broker.access,
            crate::auth::Perm::Read,
            crate::auth::Kind::Queue,
            &name,
        )?;
        let queue = ctx.vhost.queue_for(&name, ctx.connection_id)?;
        if queue.is_stream() {
            return Err(AmqpError::not_implemented(format!(
                "basic.get not supported by stream queues queue '{name}' in vhost '{}'",
                ctx.vhost.name
            )));
        }
        let Some((entry, remaining)) = queue.get() else {
            bump(&self.counters().get_empty, 1);
            ctx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        let m = &entry.message;
        if queue.trace_any() && queue.traces(m) {
            queue.record_trace(
                m,
                crate::trace::TraceEvent::Delivered {
                    queue: queue.name().to_string(),
                    consumer_tag: None,
                    connection: ctx.connection_id,
                    delivery_count: entry.delivery_count,
                    redelivered: entry.redelivered,
                },
            );
        }
        let fields = DeliverFields {
            consumer_tag: "",
            delivery_tag: tag,
            redelivered: entry.redelivered,
            exchange: m.exchange.as_str(),
            routing_key: m.routing_key.as_str(),
        };
        encode_get_ok(ctx.out, self.id, &fields, remaining);
        let c = self.counters();
        bump(if g.no_ack { &c.get } else { &c.get_ack }, 1);
        if entry.redelivered {
            bump(&c.redelivered, 1);
        }
        encode_content(ctx.out, self.id, &m.raw_properties, &m.body, ctx.frame_max);
        if g.no_ack {
            queue.settle([&entry]);
        } else {
            self.unacked.push(Pending {
                tag,
                queue,
                entry,
                credit: None,
            });
        }
        Ok(())
    }

    /// Writes one delivery the queue handed to this channel's consumer. Returns false if the consumer is gone, in
    /// which case the caller requeues it.
    pub fn deliver(&mut self, ctx: &mut Ctx<'_>, d: Delivery) -> Result<(), Delivery> {
        let no_ack = match &d.queue {
            None => match &self.reply_consumer {
                Some(rc) if rc.tag == d.consumer_tag => true,
                _ => return Err(d),
            },
            Some(_) => match self.consumers.get(&d.consumer_tag) {
                Some(c) => c.no_ack,
                None => return Err(d),
            },
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        let m = &d.entry.message;
        let fields = DeliverFields {
            consumer_tag: &d.consumer_tag,
            delivery_tag: tag,
            redelivered: d.entry.redelivered,
            exchange: m.exchange.as_str(),
            routing_key: m.routing_key.as_str(),
        };
        encode_deliver(ctx.out, self.id, &fields);
        let c = self.counters();
        bump(if no_ack { &c.delivered } else { &c.delivered_ack }, 1);
        if d.entry.redelivered {
            bump(&c.redelivered, 1);
        }
        encode_content(ctx.out, self.id, &m.raw_properties, &m.body, ctx.frame_max);
        match d.queue {
            Some(queue) if no_ack => {
                if d.credit.as_ref().is_some_and(|c| c.release()) {
                    ctx.kick(&queue);
                }
                // Settled with the batch's acks (`flush_acks`, which the connection runs after its deliveries):
                // one queue lock, one clock read and one ack write per queue per batch.
                self.acked.push(Pending {
                    tag,
                    queue,
                    entry: d.entry,
                    credit: None,
                });
            }
            Some(queue) => self.unacked.push(Pending {
                tag,
                queue,
                entry: d.entry,
                credit: d.credit,
            }),
            None => {}
        }
        Ok(())
    }

    fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Pending>> {
        self.unacked
            .take(tag, multiple)
            .map_err(|e| AmqpError::precondition(format!("unknown delivery tag {}", e.0)))
    }

    /// Acked: the queue forgets the messages, and their credit comes back.
    /// Settles the acks gathered in this read batch.
    pub fn flush_acks(&mut self, ctx: &mut Ctx<'_>) {
        if !self.acked.is_empty() {
            let pending = std::mem::take(&mut self.acked);
            self.settle(ctx, pending);
        }
    }

    pub(crate) fn settle(&mut self, ctx: &mut Ctx<'_>, pending: Vec<Pending>) {
        // A stream consumer's acks move its stored offset (if it has a name).
        let mut streams = false;
        for p in pending.iter().filter(|p| p.queue.is_stream()) {
            if let Some(c) = &p.credit {
                c.note_acked(p.entry.seq);
                streams = true;
            }
        }
        // One lock and one ack write per queue.
        let unblocked = by_queue(pending, |q, entries| {
            q.settle(&entries);
            if streams && q.is_stream() {
                q.stream_acked();
            }
        });
        if unblocked {
            self.kick_consumer_queues(ctx);
        }
    }

    fn kick_consumer_queues(&self, ctx: &mut Ctx<'_>) {
        for c in self.consumers.values() {
            ctx.kick(&c.queue);
        }
    }

    fn reject(&mut self, ctx: &mut Ctx<'_>, tag: u64, multiple: bool, requeue: bool, nack: bool) -> AmqpResult<()> {
        let pending = self.take_unacked(tag, multiple)?;
        if let Some(p) = pending.iter().find(|p| p.queue.is_stream()) {
            // The connection closes (a hard error), which settles what was taken.
            let name = p.queue.name().to_string();
            requeue_grouped(pending);
            return Err(AmqpError::not_implemented(format!(
                "basic.nack and basic.reject not supported by stream queues queue '{name}' in vhost '{}'",
                ctx.vhost.name
            )));
        }
        match &mut self.tx {
            Some(tx) => tx.acks.push(TxAck::Reject { pending, requeue, nack }),
            None => self.reject_pending(ctx, pending, requeue, nack),
        }
        Ok(())
    }

    /// Settles rejected (or, with `nack`, nacked) deliveries: back to their queues, or dropped / dead-lettered.
    pub(crate) fn reject_pending(&mut self, ctx: &mut Ctx<'_>, pending: Vec<Pending>, requeue: bool, nack: bool) {
        if ctx.vhost.trace.any() {
            for p in pending.iter().filter(|p| p.queue.traces(&p.entry.message)) {
                let event = crate::trace::TraceEvent::Rejected {
                    queue: p.queue.name().to_string(),
                    requeue,
                    nack,
                };
                p.queue.record_trace(&p.entry.message, event);
            }
        }
        if requeue {
            requeue_grouped(pending);
            self.kick_consumer_queues(ctx);
        } else {
            // Credit comes back as for an ack; each queue settles the messages and dead-letters them if it can.
            let unblocked = by_queue(pending, |q, entries| q.reject(entries, nack));
            if unblocked {
                self.kick_consumer_queues(ctx);
            }
        }
    }

    fn recover(&mut self, ctx: &mut Ctx<'_>, _requeue: bool) {
        // RabbitMQ treats requeue=false like requeue=true: the messages go back to their queues, redelivered.
        let pending = self.unacked.take_all();
        requeue_grouped(pending);
        self.kick_consumer_queues(ctx);
    }
}
