//! One AMQP channel's state machine: method dispatch, content assembly, publishing, confirms and transactions.
//!
//! Invariants:
//! - A channel is driven only by its connection's task, so none of this state is shared or locked.
//! - Content frames are accepted only in order: method (basic.publish), one header, then exactly `body_size`
//!   bytes of body. Anything else is a 505 connection error.
//! - Publisher confirms are counted per channel and sent as one cumulative `basic.ack` at the end of each read
//!   batch (`flush_confirms`), after any `basic.return` written during that batch.
//! - Consumer handling lives in `basic.rs`, declarations in `declare.rs`; both are `impl Channel` blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use amq_protocol::protocol::{basic, channel, confirm, tx, AMQPClass};
use amq_protocol::types::{FieldTable, ShortString};
use bytes::{Bytes, BytesMut};

use crate::amqp::codec::{encode_content, encode_method, ContentHeader, Frame};
use crate::amqp::error::{AmqpError, AmqpResult, INTERNAL_ERROR, NO_ROUTE};
use crate::amqp::unacked::{requeue_grouped, Pending, Unacked};
use crate::broker::Broker;
use crate::counters::{bump, drop_by, ChannelCounters};
use crate::message::Message;
use crate::outbox::{Delivery, Outbox, OutboxItem};
use crate::queue::{ConsumerCredit, Credit, Entry, Published, Queue, Staged};
use crate::store::SyncProgress;
use crate::vhost::VHost;

/// RabbitMQ's default largest message (128 MiB).
pub const MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;

/// The pseudo-queue for direct reply-to.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// What a channel handler needs from its connection and the broker.
pub struct Ctx<'a> {
    pub broker: &'a Arc<Broker>,
    pub vhost: &'a Arc<VHost>,
    pub connection_id: u64,
    pub outbox: &'a Arc<Outbox>,
    pub out: &'a mut BytesMut,
    pub frame_max: u32,
    /// The client advertised `consumer_cancel_notify`.
    pub cancel_notify: bool,
    /// Queues to dispatch again at the end of this batch (credit came back).
    pub kick: &'a mut Vec<Arc<Queue>>,
    /// Queues holding this batch's deferred records: `Queue::flush_writes` at the end of the batch, before any
    /// confirm is sent.
    pub flush: &'a mut Vec<Arc<Queue>>,
    /// The connection's permissions on its vhost.
    pub access: &'a mut crate::amqp::access::ConnAccess,
}

impl Ctx<'_> {
    pub fn send(&mut self, channel: u16, method: AMQPClass) {
        encode_method(self.out, channel, method);
    }

    pub fn kick(&mut self, q: &Arc<Queue>) {
        if !self.kick.iter().any(|k| Arc::ptr_eq(k, q)) {
            self.kick.push(q.clone());
        }
    }
}

#[allow(clippy::large_enum_variant)] // one per channel, not per message
enum Content {
    Idle,
    Header(basic::Publish),
    Body {
        publish: basic::Publish,
        header: ContentHeader,
        body: BodyBuf,
    },
}

/// A body arriving in one frame stays one `Bytes`; only multi-frame bodies are joined.
enum BodyBuf {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl BodyBuf {
    fn len(&self) -> usize {
        match self {
            BodyBuf::Empty => 0,
            BodyBuf::One(b) => b.len(),
            BodyBuf::Many(b) => b.len(),
        }
    }

    fn push(&mut self, chunk: Bytes) {
        *self = match std::mem::replace(self, BodyBuf::Empty) {
            BodyBuf::Empty => BodyBuf::One(chunk),
            BodyBuf::One(first) => {
                let mut m = BytesMut::with_capacity(first.len() + chunk.len());
                m.extend_from_slice(&first);
                m.extend_from_slice(&chunk);
                BodyBuf::Many(m)
            }
            BodyBuf::Many(mut m) => {
                m.extend_from_slice(&chunk);
                BodyBuf::Many(m)
            }
        }
    }

    fn freeze(self) -> Bytes {
        match self {
            BodyBuf::Empty => Bytes::new(),
            BodyBuf::One(b) => b,
            BodyBuf::Many(m) => m.freeze(),
        }
    }
}

/// A consumer as its channel sees it.
pub struct ChannelConsumer {
    pub queue: Arc<Queue>,
    pub no_ack: bool,
    pub credit: Arc<ConsumerCredit>,
}

/// The channel's direct reply-to consumer.
pub struct ReplyConsumer {
    pub key: String,
    pub tag: Arc<str>,
}

/// A settlement recorded inside a transaction, applied on commit.
pub enum TxAck {
    Ack(Vec<Pending>),
    Reject {
        pending: Vec<Pending>,
        requeue: bool,
        nack: bool,
    },
}

#[derive(Default)]
pub struct TxState {
    pub publishes: Vec<(PendingPublishOwned, Arc<Message>)>,
    pub acks: Vec<TxAck>,
}

/// Publisher confirm state of a channel in confirm mode.
#[derive(Default)]
struct Confirms {
    /// The sequence number of the last publish.
    last_seq: u64,
    /// Confirms not yet sent, in order.
    pending: VecDeque<PendingConfirm>,
}

struct PendingConfirm {
    seq: u64,
    /// The group-commit round to wait for (0: none).
    ticket: u64,
    /// The message could not be stored: nack it.
    nack: bool,
    /// Its record waits in a queue's write-behind buffer: the end of the batch resolves the ticket (`resolve_flush`).
    await_flush: bool,
    /// The first round that may have written its record (0: only `ticket` counts): every round from there to
    /// `ticket` must succeed (see `Published::first_ticket`).
    first_ticket: u64,
}

/// A publish buffered in a transaction.
pub struct PendingPublishOwned {
    exchange: ShortString,
    routing_key: ShortString,
    mandatory: bool,
    /// For headers-exchange routing at commit.
    headers: Option<FieldTable>,
}

pub struct Channel {
    pub id: u16,
    /// We sent channel.close and wait for close-ok; everything else is dropped.
    pub closing: bool,
    content: Content,
    /// Confirm mode: publish sequence numbers and the confirms still to send.
    confirm: Option<Confirms>,
    pub tx: Option<TxState>,
    pub unacked: Unacked,
    pub next_tag: u64,
    /// By consumer tag, hashed with foldhash: looked up once per delivery.
    pub consumers: FoldMap<Arc<str>, ChannelConsumer>,
    pub reply_consumer: Option<ReplyConsumer>,
    /// basic.qos global=false: the limit given to consumers created from now on.
    pub consumer_prefetch: u32,
    /// basic.qos global=true: the limit shared by all of this channel's consumers.
    pub credit: Arc<Credit>,
    /// The last queue declared here, which an empty queue name refers to.
    pub last_queue: Option<String>,
    route_buf: Vec<Arc<Queue>>,
    /// Deliveries acked in this read batch, settled together (`flush_acks`): one lock per queue per batch.
    pub acked: Vec<crate::amqp::unacked::Pending>,
    routes: RouteCache,
    /// The connection's counters (this channel's task is their only writer).
    counters: Arc<ChannelCounters>,
}

/// Routes this channel resolved recently, valid while the vhost's topology generation is unchanged, so that a
/// steady stream of publishes takes no shared lock. Headers-exchange routes depend on each message and are not kept.
/// The route used last is checked first (two short compares), so a publisher sending to one key never hashes.
#[derive(Default)]
struct RouteCache {
    generation: u64,
    by_exchange: FoldMap<String, FoldMap<String, Route>>,
    entries: usize,
    last: Option<LastRoute>,
}

pub type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The queues one (exchange, routing key) reaches, shared by the cache and the publishes that use it.
type Route = Arc<[Arc<Queue>]>;

struct LastRoute {
    exchange: String,
    routing_key: String,
    queues: Route,
}

impl RouteCache {
    /// The queues `exchange` routes `routing_key` to, when known at this topology generation.
    fn get(&mut self, generation: u64, exchange: &str, routing_key: &str) -> Option<Route> {
        if self.generation != generation {
            *self = RouteCache {
                generation,
                ..RouteCache::default()
            };
            return None;
        }
        if let Some(last) = &self.last {
            if last.routing_key == routing_key && last.exchange == exchange {
                return Some(last.queues.clone());
            }
        }
        let queues = self.by_exchange.get(exchange)?.get(routing_key)?.clone();
        let last = self.last.get_or_insert_with(|| LastRoute {
            exchange: String::new(),
            routing_key: String::new(),
            queues: queues.clone(),
        });
        // Reuses the strings' buffers: alternating between a few keys does not allocate.
        last.exchange.clear();
        last.exchange.push_str(exchange);
        last.routing_key.clear();
        last.routing_key.push_str(routing_key);
        last.queues = queues.clone();
        Some(queues)
    }

    fn insert(&mut self, exchange: &str, routing_key: &str, queues: Route) {
        if self.entries >= ROUTE_CACHE_MAX {
            return;
        }
        self.entries += 1;
        self.by_exchange
            .entry(exchange.to_string())
            .or_default()
            .insert(routing_key.to_string(), queues);
    }
}

/// A channel publishing to ever-new routing keys keeps at most this many routes.
const ROUTE_CACHE_MAX: usize = 1024;

impl Channel {
    pub fn new(id: u16, counters: Arc<ChannelCounters>) -> Self {
        Channel {
            id,
            closing: false,
            content: Content::Idle,
            confirm: None,
            tx: None,
            unacked: Unacked::default(),
            next_tag: 1,
            consumers: FoldMap::default(),
            reply_consumer: None,
            consumer_prefetch: 0,
            credit: Arc::new(Credit::new(0)),
            last_queue: None,
            route_buf: Vec::new(),
            acked: Vec::new(),
            routes: RouteCache::default(),
            counters,
        }
    }

    /// The connection's counters, for the `impl Channel` blocks in other files.
    pub(crate) fn counters(&self) -> &ChannelCounters {
        &self.counters
    }

    /// Handles one frame for this (open, not closing) channel.
    pub fn handle_frame(&mut self, ctx: &mut Ctx<'_>, frame: Frame) -> AmqpResult<()> {
        match frame {
            Frame::Method(_, method) => {
                self.expect_no_content()?;
                let method = *method;
                self.handle_method(ctx, &method)
                    .map_err(|e| if e.class_id == 0 { e.on(&method) } else { e })
            }
            Frame::Publish(_, p) => self
                .expect_no_content()
                .and_then(|()| {
                    ctx.access
                        .check_publish(&ctx.broker.access, p.exchange.as_str(), p.routing_key.as_str())
                })
                .and_then(|()| self.start_publish(p))
                .map_err(|e| e.on_ids(60, 40)),
            Frame::Header(_, header) => self.on_header(ctx, header),
            Frame::Body(_, body) => self.on_body(ctx, body),
            Frame::Heartbeat(ch) => Err(AmqpError::new(
                crate::amqp::error::FRAME_ERROR,
                format!("heartbeat frame on channel {ch}"),
            )),
        }
    }

    /// A method frame may come only between messages, not inside one's content.
    fn expect_no_content(&self) -> AmqpResult<()> {
        if matches!(self.content, Content::Idle) {
            return Ok(());
        }
        Err(AmqpError::unexpected_frame(format!(
            "expected content frame on channel {}, got a method frame",
            self.id
        )))
    }

    /// basic.publish: the channel now expects the message's content header.
    fn start_publish(&mut self, p: basic::Publish) -> AmqpResult<()> {
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        self.content = Content::Header(p);
        Ok(())
    }

    fn handle_method(&mut self, ctx: &mut Ctx<'_>, method: &AMQPClass) -> AmqpResult<()> {
        use AMQPClass as C;
        if !matches!(method, C::Basic(basic::AMQPMethod::Ack(_))) {
            // Every other method sees the acks before it settled, as if each had been settled on arrival.
            self.flush_acks(ctx);
        }
        match method {
            // The codec decodes publishes as `Frame::Publish`; a boxed one is handled the same way.
            C::Basic(basic::AMQPMethod::Publish(p)) => {
                ctx.access
                    .check_publish(&ctx.broker.access, p.exchange.as_str(), p.routing_key.as_str())?;
                self.start_publish(p.clone())
            }
            C::Basic(m) => self.handle_basic(ctx, m),
            C::Exchange(m) => self.handle_exchange(ctx, m),
            C::Queue(m) => self.handle_queue(ctx, m),
            C::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                ctx.send(
                    self.id,
                    C::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk { active: true })),
                );
                Ok(())
            }
            C::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            C::Confirm(confirm::AMQPMethod::Select(s)) => {
                if self.tx.is_some() {
                    return Err(AmqpError::precondition("cannot switch from tx to confirm mode"));
                }
                if self.confirm.is_none() {
                    self.confirm = Some(Confirms::default());
                }
                if !s.nowait {
                    ctx.send(self.id, C::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})));
                }
                Ok(())
            }
            C::Tx(m) => self.handle_tx(ctx, m),
            C::Access(amq_protocol::protocol::access::AMQPMethod::Request(_)) => {
                ctx.send(
                    self.id,
                    C::Access(amq_protocol::protocol::access::AMQPMethod::RequestOk(
                        amq_protocol::protocol::access::RequestOk {},
                    )),
                );
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "method {}.{} is not valid from a client on channel {}",
                other.get_amqp_class_id(),
                other.get_amqp_method_id(),
                self.id
            ))),
        }
    }

    fn on_header(&mut self, ctx: &mut Ctx<'_>, header: ContentHeader) -> AmqpResult<()> {
        let publish = match std::mem::replace(&mut self.content, Content::Idle) {
            Content::Header(p) => p,
            _ => {
                return Err(AmqpError::unexpected_frame(format!(
                    "content header on channel {} without a preceding basic.publish",
                    self.id
                )))
            }
        };
        if header.class_id != 60 {
            return Err(AmqpError::unexpected_frame(format!(
                "content header for class {}",
                header.class_id
            )));
        }
        if header.body_size > MAX_MESSAGE_SIZE {
            return Err(AmqpError::precondition(format!(
                "message size {} is larger than configured max size {MAX_MESSAGE_SIZE}",
                header.body_size
            )));
        }
        if header.body_size == 0 {
            return self.publish(ctx, publish, header, Bytes::new());
        }
        self.content = Content::Body {
            publish,
            header,
            body: BodyBuf::Empty,
        };
        Ok(())
    }

    fn on_body(&mut self, ctx: &mut Ctx<'_>, chunk: Bytes) -> AmqpResult<()> {
        let Content::Body { header, body, .. } = &mut self.content else {
            return Err(AmqpError::unexpected_frame(format!(
                "content body on channel {} without a content header",
                self.id
            )));
        };
        if (body.len() + chunk.len()) as u64 > header.body_size {
            return Err(AmqpError::unexpected_frame(format!(
                "content body larger than the {} bytes its header declared",
                header.body_size
            )));
        }
        body.push(chunk);
        if body.len() as u64 == header.body_size {
            if let Content::Body { publish, header, body } = std::mem::replace(&mut self.content, Content::Idle) {
                return self.publish(ctx, publish, header, body.freeze());
            }
        }
        Ok(())
    }

    /// A complete message arrived: route it, or buffer it in a transaction.
    fn publish(&mut self, ctx: &mut Ctx<'_>, p: basic::Publish, header: ContentHeader, body: Bytes) -> AmqpResult<()> {
        bump(&self.counters.published, 1);
        let mandatory = p.mandatory;
        let has_headers = header.summary.has_headers;
        let message = if header.summary.reply_to_pseudo {
            let Some(rc) = &self.reply_consumer else {
                return Err(AmqpError::precondition("fast reply consumer does not exist"));
            };
            let props = header
                .properties()
                .with_reply_to(format!("{REPLY_TO_PREFIX}{}", rc.key).into());
            Message::with_properties(p.exchange, p.routing_key, props, body)
        } else {
            Message::from_summary(p.exchange, p.routing_key, &header.summary, header.raw_properties, body)
        };
        let message = Arc::new(message);
        if let Some(tx) = &mut self.tx {
            if !ctx.vhost.has_exchange(message.exchange.as_str()) {
                return Err(AmqpError::not_found(format!(
                    "no exchange '{}' in vhost '{}'",
                    message.exchange, ctx.vhost.name
                )));
            }
            let owned = PendingPublishOwned {
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
                mandatory,
                headers: if has_headers {
                    message.properties().headers().clone()
                } else {
                    None
                },
            };
            tx.publishes.push((owned, message));
            return Ok(());
        }
        let outcome = self.route_and_enqueue(ctx, mandatory, has_headers, message)?;
        if let Some(c) = &mut self.confirm {
            bump(&self.counters.unconfirmed, 1);
            c.last_seq += 1;
            c.pending.push_back(PendingConfirm {
                seq: c.last_seq,
                ticket: outcome.ticket,
                nack: outcome.failed,
                await_flush: outcome.deferred,
                first_ticket: outcome.first_ticket,
            });
        }
        Ok(())
    }

    fn route_and_enqueue(
        &mut self,
        ctx: &mut Ctx<'_>,
        mandatory: bool,
        has_headers: bool,
        message: Arc<Message>,
    ) -> AmqpResult<Published> {
        let mut routed = false;
        let mut traced = false;
        let mut outcome = Published::default();
        let (exchange, routing_key) = (message.exchange.as_str(), message.routing_key.as_str());
        if exchange.is_empty() && routing_key.starts_with(REPLY_TO_PREFIX) {
            // Direct reply-to: straight to the requester's channel, no queue involved. Counts as routed even when
            // the requester is gone, as in RabbitMQ.
            routed = true;
            let key = &routing_key[REPLY_TO_PREFIX.len()..];
            if let Some(target) = ctx.broker.reply_target(key) {
                target.outbox.push(OutboxItem::Deliver(Delivery {
                    channel: target.channel,
                    consumer_tag: target.consumer_tag.clone(),
                    queue: None,
                    entry: Entry {
                        seq: 0,
                        message: message.clone(),
                        redelivered: false,
                        expires_at: None,
                        loc: None,
                        delivery_count: 0,
                        enqueued_ms: 0,
                    },
                    credit: None,
                    reserved: false,
                }));
            }
        } else {
            let generation = ctx.vhost.generation();
            let queues = match self.routes.get(generation, exchange, routing_key) {
                Some(queues) => queues,
                None => {
                    let mut queues = std::mem::take(&mut self.route_buf);
                    queues.clear();
                    let headers = if has_headers {
                        message.properties().headers().clone()
                    } else {
                        None
                    };
                    let routing = ctx
                        .vhost
                        .route(exchange, routing_key, headers.as_ref(), Some(&message), &mut queues);
                    let r = match routing {
                        Ok(r) => r,
                        Err(e) => {
                            self.route_buf = queues;
                            return Err(e);
                        }
                    };
                    // A duplicate (or a held delayed message) counts as routed: confirmed, never returned.
                    routed |= r.duplicate;
                    outcome.ticket = outcome.ticket.max(r.ticket);
                    let resolved: Route = Arc::from(&queues[..]);
                    self.route_buf = queues;
                    if r.cacheable {
                        self.routes.insert(exchange, routing_key, resolved.clone());
                    }
                    resolved
                }
            };
            // Off: one relaxed load per publish (see `crate::trace`).
            if ctx.vhost.trace.any() {
                traced = ctx
                    .vhost
                    .trace_publish(ctx.connection_id, ctx.access.user(), &message, &queues);
            }
            for q in queues.iter() {
                let p = q.publish_deferred(message.clone());
                routed |= p.routed;
                outcome.ticket = outcome.ticket.max(p.ticket);
                outcome.failed |= p.failed;
                if p.first_ticket > 0 {
                    outcome.first_ticket = match outcome.first_ticket {
                        0 => p.first_ticket,
                        f => f.min(p.first_ticket),
                    };
                }
                if p.deferred {
                    outcome.deferred = true;
                    if !ctx.flush.iter().any(|f| Arc::ptr_eq(f, q)) {
                        ctx.flush.push(q.clone());
                    }
                }
            }
        }
        if !routed && traced {
            let event = crate::trace::TraceEvent::Unroutable { returned: mandatory };
            ctx.vhost.trace.journal.record_message(&ctx.vhost.name, &message, event);
        }
        if !routed {
            if mandatory {
                self.send_return(ctx, &message);
            } else {
                bump(&self.counters.unroutable_dropped, 1);
            }
        }
        outcome.routed = routed;
        Ok(outcome)
    }

    /// Whether some confirm waits for a group-commit round.
    pub fn awaits_sync(&self) -> bool {
        self.confirm
            .as_ref()
            .is_some_and(|c| c.pending.iter().any(|p| p.ticket > 0))
    }

    /// Sends the confirms that are ready, in order: runs of acks as one cumulative `basic.ack`, nacks (storage
    /// failures) one by one. A confirm waiting for its sync round holds back every later one.
    /// The end of a read batch wrote the deferred records: confirms waiting for that now wait for `ticket` (or are
    /// nacked when the write failed).
    pub fn resolve_flush(&mut self, ticket: u64, failed: bool) {
        let Some(c) = &mut self.confirm else { return };
        for p in c.pending.iter_mut().filter(|p| p.await_flush) {
            p.await_flush = false;
            p.ticket = p.ticket.max(ticket);
            p.nack |= failed;
        }
    }

    pub fn flush_confirms(&mut self, out: &mut BytesMut, sync: Option<&SyncProgress>) {
        let Some(c) = &mut self.confirm else { return };
        let mut acked_run: Option<(u64, u64)> = None; // (first, last)
        let flush_run = |out: &mut BytesMut, run: &mut Option<(u64, u64)>, channel: u16| {
            if let Some((first, last)) = run.take() {
                let m = basic::Ack {
                    delivery_tag: last,
                    multiple: last > first,
                };
                encode_method(out, channel, AMQPClass::Basic(basic::AMQPMethod::Ack(m)));
            }
        };
        while let Some(p) = c.pending.front() {
            if p.await_flush {
                break;
            }
            let ok = if p.nack {
                false
            } else if p.ticket == 0 {
                true
            } else {
                let outcome = match p.first_ticket {
                    0 => sync.and_then(|s| s.outcome(p.ticket)),
                    first => sync.and_then(|s| s.outcome_range(first.min(p.ticket), p.ticket)),
                };
                match outcome {
                    Some(ok) => ok,
                    None => break,
                }
            };
            let seq = p.seq;
            c.pending.pop_front();
            drop_by(&self.counters.unconfirmed, 1);
            if ok {
                bump(&self.counters.confirmed, 1);
                acked_run = Some(match acked_run {
                    Some((first, _)) => (first, seq),
                    None => (seq, seq),
                });
            } else {
                flush_run(out, &mut acked_run, self.id);
                let m = basic::Nack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                };
                encode_method(out, self.id, AMQPClass::Basic(basic::AMQPMethod::Nack(m)));
            }
        }
        flush_run(out, &mut acked_run, self.id);
    }

    /// Applies a transaction atomically with respect to a crash (see `store::txlog`): persistent messages for
    /// durable queues are written but kept invisible, then one commit record (with the on-disk acks) is written and
    /// synced, then the messages become visible and the acks are applied.
    fn commit(&mut self, ctx: &mut Ctx<'_>, tx: TxState) -> AmqpResult<()> {
        let store = &ctx.broker.store;
        let txid = store.txlog.next_id();
        let mut staged: Vec<(Arc<Queue>, Staged, Arc<Message>)> = Vec::new();
        let mut later: Vec<(PendingPublishOwned, Arc<Message>)> = Vec::new();
        let failed = |e: std::io::Error| AmqpError::new(INTERNAL_ERROR, format!("cannot commit the transaction: {e}"));
        for (p, message) in tx.publishes {
            let reply = p.exchange.as_str().is_empty() && p.routing_key.as_str().starts_with(REPLY_TO_PREFIX);
            if !message.persistent || reply {
                later.push((p, message));
                continue;
            }
            let mut queues = Vec::new();
            let r = ctx.vhost.route(
                p.exchange.as_str(),
                p.routing_key.as_str(),
                p.headers.as_ref(),
                Some(&message),
                &mut queues,
            )?;
            if queues.is_empty() && !r.duplicate && p.mandatory {
                self.send_return(ctx, &message);
            }
            if ctx.vhost.trace.any() {
                ctx.vhost
                    .trace_publish(ctx.connection_id, ctx.access.user(), &message, &queues);
            }
            for q in queues {
                if q.is_durable() {
                    let s = q.stage(&message, txid).map_err(failed)?;
                    staged.push((q, s, message.clone()));
                } else {
                    q.publish(message.clone());
                }
            }
        }
        let mut acks = Vec::new();
        for a in &tx.acks {
            let (TxAck::Ack(pending)
            | TxAck::Reject {
                pending,
                requeue: false,
                ..
            }) = a
            else {
                continue;
            };
            for p in pending {
                if let (Some(loc), Some(dir)) = (p.entry.loc, p.queue.dir()) {
                    acks.push((dir, loc));
                }
            }
        }
        if !staged.is_empty() || !acks.is_empty() {
            let sync = store.fsync != crate::store::FsyncMode::Never;
            let mut files: Vec<Arc<std::fs::File>> = Vec::new();
            if sync {
                for (_, s, _) in &staged {
                    for f in s.file.iter().chain(&s.dir) {
                        if !files.iter().any(|x| Arc::ptr_eq(x, f)) {
                            files.push(f.clone());
                        }
                    }
                }
            }
            // The syncs and the commit record block: off the async worker, so other connections keep going.
            crate::store::blocking(|| {
                if sync {
                    store.budget.delay_sync();
                }
                for f in &files {
                    f.sync_data()?;
                }
                store.txlog.commit(txid, &acks, sync)?;
                // A cluster leader answers commit-ok once the in-sync followers hold the commit (the confirm rule).
                if crate::store::repl::installed().is_some() {
                    let round = store.syncer.barrier();
                    if !futures::executor::block_on(store.syncer.wait(round, round)) {
                        return Err(std::io::Error::other("the commit was not replicated"));
                    }
                }
                Ok(())
            })
            .map_err(failed)?;
        }
        for (q, s, m) in staged {
            q.expose(&s, m);
        }
        for (p, message) in later {
            self.route_and_enqueue(ctx, p.mandatory, p.headers.is_some(), message)?;
        }
        for a in tx.acks {
            match a {
                TxAck::Ack(pending) => self.settle(ctx, pending),
                TxAck::Reject { pending, requeue, nack } => self.reject_pending(ctx, pending, requeue, nack),
            }
        }
        Ok(())
    }

    fn send_return(&self, ctx: &mut Ctx<'_>, message: &Message) {
        ctx.broker.returned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bump(&self.counters.unroutable_returned, 1);
        ctx.send(
            self.id,
            AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: NO_ROUTE,
                reply_text: "NO_ROUTE".into(),
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
            })),
        );
        encode_content(ctx.out, self.id, &message.raw_properties, &message.body, ctx.frame_max);
    }

    fn handle_tx(&mut self, ctx: &mut Ctx<'_>, m: &tx::AMQPMethod) -> AmqpResult<()> {
        match m {
            tx::AMQPMethod::Select(_) => {
                if self.confirm.is_some() {
                    return Err(AmqpError::precondition("cannot switch from confirm to tx mode"));
                }
                if self.tx.is_none() {
                    self.tx = Some(TxState::default());
                }
                ctx.send(self.id, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
                let Some(tx) = self.tx.take() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                self.tx = Some(TxState::default());
                self.commit(ctx, tx)?;
                ctx.send(self.id, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})));
                Ok(())
            }
            tx::AMQPMethod::Rollback(_) => {
                let Some(tx) = self.tx.take() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                self.tx = Some(TxState::default());
                let mut back = Vec::new();
                for a in tx.acks {
                    match a {
                        TxAck::Ack(p) | TxAck::Reject { pending: p, .. } => back.extend(p),
                    }
                }
                self.unacked.restore(back);
                ctx.send(self.id, AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})));
                Ok(())
            }
            other => Err(AmqpError::command_invalid(format!(
                "tx method {other:?} is not valid from a client"
            ))),
        }
    }

    /// Tears the channel down: consumers go, unacked messages are requeued, a pending transaction is dropped.
    pub fn close_down(&mut self, ctx: &mut Ctx<'_>) {
        self.flush_acks(ctx);
        for (tag, c) in self.consumers.drain() {
            let removed = c.queue.remove_consumer(ctx.connection_id, self.id, &tag);
            if removed.auto_delete_now {
                ctx.vhost.remove_queue(&c.queue);
            }
        }
        if let Some(rc) = self.reply_consumer.take() {
            ctx.broker.unregister_reply_to(&rc.key);
        }
        let pending = self.unacked.take_all();
        let tx_pending: Vec<Pending> = self
            .tx
            .take()
            .map(|t| {
                t.acks
                    .into_iter()
                    .flat_map(|a| match a {
                        TxAck::Ack(p) | TxAck::Reject { pending: p, .. } => p,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut all: Vec<Pending> = pending.into_iter().chain(tx_pending).collect();
        all.sort_by_key(|p| p.tag);
        requeue_grouped(all);
        self.content = Content::Idle;
        if let Some(c) = self.confirm.take() {
            // Confirms that will never be sent.
            drop_by(&self.counters.unconfirmed, c.pending.len() as u64);
        }
    }
}
