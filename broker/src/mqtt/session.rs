//! One MQTT connection's task: the CONNECT (login, vhost, client id, session takeover), then the session until the
//! client leaves: publishes routed through the exchange, subscriptions as bindings of the session's queue,
//! deliveries from the queues' consumers, QoS 1 acks both ways, keep-alive, the will.
//!
//! Invariants:
//! - A QoS 1 (or 2) publish is acknowledged only once every queue it reached has stored it (the group commit of a
//!   persistent message on a durable queue); acks of one read batch wait for one sync together, in order.
//! - A delivery at QoS 1 stays unacked in its queue until the client's PUBACK; at QoS 0 it is settled when written.
//!   When the connection ends, what is unacked goes back to its queue (a persistent session's queue keeps it for
//!   the next connection; `dup` is set when it is delivered again).
//! - One connection holds a client id at a time: a new CONNECT with the same id cancels the old connection and waits
//!   (bounded) until it has let go before the new one takes the session.
//! - A clean session's queue is deleted when the connection ends; a persistent session's queue is durable, and with
//!   an MQTT 5 session expiry it carries `x-expires`, so the broker removes it once unused that long.
//! - Nothing here blocks an async worker: retained-message writes run on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::codec::{self, CodecError, ConnCode, Connect, Filter, In, Out, Publish, Version, Will};
use super::mapping;
use super::{Holder, Mqtt};
use crate::amqp::access::ConnAccess;
use crate::auth::{Kind, Perm};
use crate::broker::{Broker, ConnectionEntry};
use crate::counters::bump;
use crate::message::Message;
use crate::outbox::{Outbox, OutboxItem};
use crate::queue::{ConsumerCredit, Credit, Entry, Queue, QueueConsumer};
use crate::routing::{Binding, Destination};
use crate::vhost::{QueueDeclare, VHost};

/// How long a client has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest packet before login (RabbitMQ's `mqtt.max_packet_size_unauthenticated`), and after.
const MAX_PACKET_UNAUTHENTICATED: usize = 65_536;
pub const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Unacked QoS 1 deliveries per connection when the client names no receive maximum (RabbitMQ's `mqtt.prefetch`).
const DEFAULT_PREFETCH: u16 = 10;
/// Topic aliases a client may use (MQTT 5).
const TOPIC_ALIAS_MAX: u16 = 64;
/// How long a takeover waits for the old connection to let go of the session.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// The header of a subscription binding that says its QoS.
const QOS_ARG: &str = "x-mqtt-qos";
/// The consumer tag on the session's own queue; shared subscriptions' are `mqtt-shared:<filter>`.
const OWN_TAG: &str = "mqtt";

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mqtt: Arc<Mqtt>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(8 * 1024);
    let connect = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut rd, &mut inbuf)) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "MQTT connection closed before CONNECT");
                return;
            }
            Err(_) => {
                debug!(%peer, "no MQTT CONNECT in time");
                return;
            }
        },
    };
    let version = connect.version;
    let mut out = BytesMut::new();
    let mut session = match Session::start(&broker, &mqtt, *connect, peer, local).await {
        Ok(s) => s,
        Err(code) => {
            let _ = codec::write(&connack(false, code, None, None), version, &mut out);
            let _ = wr.write_all(&out).await;
            return;
        }
    };
    session.run(&mut rd, &mut wr, inbuf, shutdown).await;
    session.close().await;
}

async fn read_connect(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Box<Connect>, String> {
    loop {
        match codec::read(buf, None, MAX_PACKET_UNAUTHENTICATED) {
            Ok(Some(In::Connect(c))) => return Ok(c),
            Ok(Some(_)) => return Err("the first packet was not CONNECT".into()),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err("closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn connack(session_present: bool, code: ConnCode, assigned: Option<String>, receive_maximum: Option<u16>) -> Out {
    Out::ConnAck {
        session_present,
        code,
        assigned_client_id: assigned,
        receive_maximum,
        topic_alias_max: Some(TOPIC_ALIAS_MAX),
        reason: None,
    }
}

/// A subscription of the session.
struct Sub {
    filter: String,
    qos: u8,
    /// A shared subscription's queue and consumer tag.
    shared: Option<(Arc<Queue>, Arc<str>)>,
}

/// A QoS 1 delivery awaiting the client's PUBACK (a retained message delivered on subscribe has no queue).
struct Inflight {
    queue: Option<Arc<Queue>>,
    entry: Option<Entry>,
    credit: Option<Arc<ConsumerCredit>>,
}

struct Session {
    broker: Arc<Broker>,
    mqtt: Arc<Mqtt>,
    vhost: Arc<VHost>,
    access: ConnAccess,
    entry: Arc<ConnectionEntry>,
    id: u64,
    version: Version,
    client_id: String,
    /// The session outlives the connection.
    persistent: bool,
    session_expiry_s: Option<u32>,
    queue_name: String,
    queue: Option<Arc<Queue>>,
    subs: Vec<Sub>,
    consumers: Vec<(Arc<Queue>, Arc<str>, Arc<ConsumerCredit>)>,
    outbox: Arc<Outbox>,
    credit: Arc<Credit>,
    prefetch: u16,
    inflight: HashMap<u16, Inflight>,
    next_pkid: u16,
    /// QoS 2 publishes received whose PUBREL has not come yet (a duplicate is not routed again).
    incoming_qos2: HashSet<u16>,
    aliases: HashMap<u16, String>,
    will: Option<Will>,
    keep_alive: Option<Duration>,
    /// The client said DISCONNECT (normal): no will.
    clean_exit: bool,
    /// Acks of this read batch, sent once the group commit covers them: (packet, first ticket, last ticket).
    acks: Vec<Out>,
    tickets: Option<(u64, u64)>,
    store_failed: bool,
    gone: CancellationToken,
    out: BytesMut,
}

impl Session {
    async fn start(
        broker: &Arc<Broker>,
        mqtt: &Arc<Mqtt>,
        c: Connect,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<Session, ConnCode> {
        // RabbitMQ's forms: a vhost may prefix the user name ("vhost:user"); no credentials log in as guest (from
        // loopback only, as guest always is).
        let (vhost_name, user, password) = match (&c.username, &c.password) {
            (Some(u), p) => match u.split_once(':') {
                Some((v, u)) => (v.to_string(), u.to_string(), p.clone().unwrap_or_default()),
                None => ("/".to_string(), u.clone(), p.clone().unwrap_or_default()),
            },
            (None, _) => ("/".to_string(), "guest".to_string(), "guest".to_string()),
        };
        let found = broker
            .access
            .authenticate("MQTT", &user, &password, peer.ip())
            .map_err(|e| {
                info!(%peer, user, error = %e, "MQTT login refused");
                match e {
                    crate::auth::AuthError::LoopbackOnly(_) => ConnCode::NotAuthorized,
                    _ => ConnCode::BadCredentials,
                }
            })?;
        let access = ConnAccess::open(&broker.access, &found.name, &vhost_name).ok_or(ConnCode::NotAuthorized)?;
        let vhost = broker.vhost(&vhost_name).ok_or(ConnCode::NotAuthorized)?;
        let (client_id, assigned) = match (c.client_id.is_empty(), c.version) {
            (false, _) => (c.client_id.clone(), None),
            (true, Version::V5) => {
                let id = format!("warren-{}", crate::vhost::generate_queue_name());
                (id.clone(), Some(id))
            }
            (true, Version::V311) if c.clean_start => (format!("warren-{}", crate::vhost::generate_queue_name()), None),
            (true, Version::V311) => return Err(ConnCode::BadClientId),
        };
        if client_id.len() > 200 {
            return Err(ConnCode::BadClientId);
        }
        let persistent = match c.version {
            Version::V311 => !c.clean_start,
            Version::V5 => c.session_expiry_s.is_some_and(|s| s > 0),
        };
        let id = broker.next_connection_id();
        let entry = Arc::new(ConnectionEntry::new(
            id,
            peer,
            local,
            c.version.name(),
            &found.name,
            &vhost_name,
            Some(client_id.clone()),
            broker.clock.now_ms(),
        ));
        // Take the session over from a connection that holds it.
        let gone = CancellationToken::new();
        let previous = mqtt.lock().insert(
            (vhost_name.clone(), client_id.clone()),
            Holder {
                connection: id,
                close: entry.close.clone(),
                gone: gone.clone(),
            },
        );
        if let Some(p) = previous {
            info!(client_id, old = p.connection, new = id, "MQTT session taken over");
            p.close.cancel();
            let _ = tokio::time::timeout(TAKEOVER_WAIT, p.gone.cancelled()).await;
        }
        let queue_name = format!("mqtt-subscription-{client_id}qos1");
        let existing = vhost.queue(&queue_name);
        if c.clean_start && existing.is_some() {
            let _ = vhost.delete_queue(&queue_name, false, false, id);
        }
        let session_present = !c.clean_start && existing.is_some();
        broker.register_connection(entry.clone());
        broker.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefetch = c.receive_maximum.unwrap_or(DEFAULT_PREFETCH).max(1);
        let mut s = Session {
            broker: broker.clone(),
            mqtt: mqtt.clone(),
            vhost,
            access,
            entry,
            id,
            version: c.version,
            client_id,
            persistent,
            session_expiry_s: c.session_expiry_s,
            queue_name,
            queue: None,
            subs: Vec::new(),
            consumers: Vec::new(),
            outbox: Arc::new(Outbox::default()),
            credit: Arc::new(Credit::new(u32::from(prefetch))),
            prefetch,
            inflight: HashMap::new(),
            next_pkid: 0,
            incoming_qos2: HashSet::new(),
            aliases: HashMap::new(),
            will: c.will,
            keep_alive: (c.keep_alive_s > 0).then(|| Duration::from_millis(u64::from(c.keep_alive_s) * 1500)),
            clean_exit: false,
            acks: Vec::new(),
            tickets: None,
            store_failed: false,
            gone,
            out: BytesMut::new(),
        };
        if session_present {
            s.restore_subscriptions();
        }
        info!(connection = id, %peer, client_id = %s.client_id, protocol = s.version.name(), session_present, "MQTT session started");
        s.send(&connack(session_present, ConnCode::Accepted, assigned, Some(prefetch)));
        Ok(s)
    }

    fn send(&mut self, out: &Out) {
        if let Err(e) = codec::write(out, self.version, &mut self.out) {
            debug!(connection = self.id, error = %e, "an MQTT packet could not be encoded; dropped");
        }
    }

    fn disconnect(&mut self, reason: u8, text: &str) {
        if self.version == Version::V5 {
            self.send(&Out::Disconnect {
                reason,
                text: Some(text.to_string()),
            });
        }
    }

    async fn run(
        &mut self,
        rd: &mut OwnedReadHalf,
        wr: &mut OwnedWriteHalf,
        mut inbuf: BytesMut,
        shutdown: CancellationToken,
    ) {
        let mut alarms = self.broker.alarms.subscribe();
        let mut spare = Vec::new();
        let mut last_heard = tokio::time::Instant::now();
        // A CONNECT may arrive with packets behind it.
        let mut pending = !inbuf.is_empty();
        loop {
            if !self.out.is_empty() {
                if wr.write_all(&self.out).await.is_err() {
                    return;
                }
                self.out.clear();
            }
            if pending {
                pending = false;
                if !self.process(&mut inbuf).await {
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
                continue;
            }
            let blocked = self.broker.alarms.state().any();
            let deadline = self.keep_alive.map(|k| last_heard + k);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.disconnect(0x8B, "the broker is shutting down");
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
                _ = self.entry.close.cancelled() => {
                    let reason = self.entry.close_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if reason.is_empty() {
                        self.disconnect(0x8E, "session taken over by another connection with this client id");
                    } else {
                        self.disconnect(0x98, &reason);
                    }
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
                r = rd.read_buf(&mut inbuf), if !blocked => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        last_heard = tokio::time::Instant::now();
                        pending = true;
                    }
                },
                _ = alarms.changed(), if blocked => {}
                _ = self.outbox.notified() => self.deliver(&mut spare),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    info!(connection = self.id, client_id = %self.client_id, "MQTT keep-alive timed out");
                    self.disconnect(0x8D, "keep-alive timeout");
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
            }
        }
    }

    /// Handles every whole packet in `inbuf`, then sends the batch's acks once their messages are stored. False
    /// ends the connection.
    async fn process(&mut self, inbuf: &mut BytesMut) -> bool {
        let mut go_on = true;
        loop {
            match codec::read(inbuf, Some(self.version), MAX_PACKET) {
                Ok(Some(p)) => {
                    if !self.handle(p).await {
                        go_on = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    info!(connection = self.id, client_id = %self.client_id, error = %e, "MQTT protocol error; closing");
                    match e {
                        CodecError::TooLarge(_) => self.disconnect(0x95, "packet too large"),
                        _ => self.disconnect(0x81, &e.to_string()),
                    }
                    go_on = false;
                    break;
                }
            }
        }
        if let Some((first, last)) = self.tickets.take() {
            if !self.broker.store.syncer.wait(first, last).await {
                self.store_failed = true;
            }
        }
        let acks = std::mem::take(&mut self.acks);
        if self.store_failed {
            // The messages may not be stored: no ack; the client publishes them again on its next connection.
            self.store_failed = false;
            self.disconnect(0x80, "the broker could not store the messages");
            return false;
        }
        for a in &acks {
            self.send(a);
        }
        go_on
    }

    async fn handle(&mut self, p: In) -> bool {
        match p {
            In::Connect(_) => {
                self.disconnect(0x82, "a second CONNECT");
                return false;
            }
            In::Publish(p) => return self.publish(p).await,
            In::PubAck(pkid) | In::PubComp(pkid) => self.acked(pkid),
            In::PubRec(_) => {}
            In::PubRel(pkid) => {
                self.incoming_qos2.remove(&pkid);
                self.send(&Out::PubComp(pkid));
            }
            In::Subscribe { pkid, filters } => self.subscribe(pkid, filters).await,
            In::Unsubscribe { pkid, filters } => self.unsubscribe(pkid, &filters),
            In::PingReq => self.send(&Out::PingResp),
            In::Disconnect {
                reason,
                session_expiry_s,
            } => {
                if let Some(s) = session_expiry_s {
                    self.session_expiry_s = Some(s);
                    self.persistent = s > 0;
                }
                self.clean_exit = reason != 0x04;
                return false;
            }
        }
        true
    }

    async fn publish(&mut self, mut p: Publish) -> bool {
        if let Some(alias) = p.props.topic_alias.take() {
            if alias == 0 || alias > TOPIC_ALIAS_MAX {
                self.disconnect(0x94, "topic alias out of range");
                return false;
            }
            if p.topic.is_empty() {
                match self.aliases.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        self.disconnect(0x82, "unknown topic alias");
                        return false;
                    }
                }
            } else {
                self.aliases.insert(alias, p.topic.clone());
            }
        }
        if !mapping::valid_topic(&p.topic) {
            self.disconnect(0x90, "invalid topic name");
            return false;
        }
        let key = mapping::topic_to_key(&p.topic);
        let exchange = self.mqtt.exchange.clone();
        if let Err(e) = self.access.check_publish(&self.broker.access, &exchange, &key) {
            info!(connection = self.id, client_id = %self.client_id, error = %e.text, "MQTT publish refused");
            if self.version == Version::V5 && p.qos == 1 {
                self.acks.push(Out::PubAck {
                    pkid: p.pkid,
                    reason: 135,
                });
                return true;
            }
            self.disconnect(0x87, &e.text);
            return false;
        }
        if p.qos >= 2 {
            // QoS 2 is accepted as QoS 1 (as RabbitMQ does): PUBREC once stored, PUBCOMP on PUBREL; a duplicate
            // before the PUBREL is not routed again.
            if !self.incoming_qos2.insert(p.pkid) {
                self.send(&Out::PubRec(p.pkid));
                return true;
            }
        }
        let message = Arc::new(mapping::to_message(&p, &exchange));
        bump(&self.entry.counters.published, 1);
        if p.retain {
            let kept = (!p.payload.is_empty()).then(|| message.clone());
            let (mqtt, vhost, topic) = (self.mqtt.clone(), self.vhost.name.clone(), p.topic.clone());
            let saved = tokio::task::spawn_blocking(move || mqtt.retained.set(&vhost, &topic, kept)).await;
            if !matches!(saved, Ok(Ok(()))) {
                info!(connection = self.id, topic = %p.topic, "could not store a retained message");
            }
        }
        let routed = self.route(&exchange, &key, &message);
        match p.qos {
            0 => {}
            1 => self.acks.push(Out::PubAck {
                pkid: p.pkid,
                reason: if routed { 0 } else { 16 },
            }),
            _ => self.acks.push(Out::PubRec(p.pkid)),
        }
        true
    }

    /// Routes `message` and publishes it to every queue reached; notes the group-commit rounds its ack waits for.
    fn route(&mut self, exchange: &str, key: &str, message: &Arc<Message>) -> bool {
        let mut queues = Vec::new();
        let headers = message.properties().headers().clone();
        if self
            .vhost
            .route(exchange, key, headers.as_ref(), Some(message), &mut queues)
            .is_err()
        {
            return false;
        }
        for q in &queues {
            let p = q.publish(message.clone());
            self.store_failed |= p.failed;
            p.widen(&mut self.tickets);
        }
        !queues.is_empty()
    }

    /// The session's own queue, declared (and consumed from) on first need.
    fn own_queue(&mut self) -> Result<Arc<Queue>, String> {
        if let Some(q) = &self.queue {
            return Ok(q.clone());
        }
        // A persistent session's queue from an earlier connection is taken as it is (its session expiry may have
        // been another: declaring it again with other arguments would be refused).
        if let Some(q) = self.vhost.queue(&self.queue_name) {
            self.consume(&q, OWN_TAG.into())?;
            self.queue = Some(q.clone());
            return Ok(q);
        }
        let mut args = FieldTable::default();
        if let Some(s) = self.session_expiry_s.filter(|s| self.persistent && *s < u32::MAX) {
            args.insert("x-expires".into(), AMQPValue::LongLongInt(i64::from(s.max(1)) * 1000));
        }
        let q = self
            .vhost
            .declare_queue(&QueueDeclare {
                name: &self.queue_name,
                passive: false,
                durable: self.persistent,
                exclusive: false,
                auto_delete: false,
                arguments: &args,
                connection_id: self.id,
            })
            .map_err(|e| e.text)?;
        self.consume(&q, OWN_TAG.into())?;
        self.queue = Some(q.clone());
        Ok(q)
    }

    fn consume(&mut self, q: &Arc<Queue>, tag: Arc<str>) -> Result<(), String> {
        let credit = Arc::new(ConsumerCredit::new(u32::from(self.prefetch), self.credit.clone()));
        q.add_consumer(QueueConsumer {
            tag: tag.clone(),
            channel: 0,
            connection_id: self.id,
            outbox: self.outbox.clone(),
            credit: credit.clone(),
            exclusive: false,
            priority: 0,
            ack_required: true,
        })
        .map_err(|e| e.text)?;
        self.consumers.push((q.clone(), tag, credit));
        Ok(())
    }

    /// A persistent session's subscriptions, from its queue's bindings (their keys and `x-mqtt-qos`).
    fn restore_subscriptions(&mut self) {
        let exchange = self.mqtt.exchange.clone();
        for (source, b) in self.vhost.bindings() {
            if source != exchange || b.destination != Destination::Queue(self.queue_name.clone()) {
                continue;
            }
            let qos = crate::args::get_i64(&b.arguments, QOS_ARG).unwrap_or(0).clamp(0, 1) as u8;
            self.subs.push(Sub {
                filter: key_to_filter(&b.routing_key),
                qos,
                shared: None,
            });
        }
        if let Err(e) = self.own_queue() {
            info!(connection = self.id, error = %e, "could not resume the MQTT session's queue");
        }
    }

    fn binding(&self, filter: &str, qos: u8, queue: &str) -> Binding {
        let mut arguments = FieldTable::default();
        arguments.insert(QOS_ARG.into(), AMQPValue::ShortShortUInt(qos));
        Binding {
            destination: Destination::Queue(queue.to_string()),
            routing_key: mapping::filter_to_key(filter),
            arguments,
        }
    }

    /// Checks what a subscription needs: read on the exchange, configure and write on the queue.
    fn may_subscribe(&mut self, queue: &str) -> bool {
        let exchange = self.mqtt.exchange.clone();
        let a = &self.broker.access;
        self.access.check(a, Perm::Read, Kind::Exchange, &exchange).is_ok()
            && self.access.check(a, Perm::Configure, Kind::Queue, queue).is_ok()
            && self.access.check(a, Perm::Write, Kind::Queue, queue).is_ok()
    }

    async fn subscribe(&mut self, pkid: u16, filters: Vec<Filter>) {
        let mut codes = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for f in filters {
            let granted = f.qos.min(1);
            let exchange = self.mqtt.exchange.clone();
            if let Some((group, filter)) = mapping::shared(&f.filter) {
                if !mapping::valid_filter(filter) {
                    codes.push(143);
                    continue;
                }
                let name = format!("mqtt-shared-{group}-{}", mapping::filter_to_key(filter));
                if !self.may_subscribe(&name) {
                    codes.push(135);
                    continue;
                }
                if self.subs.iter().any(|s| s.filter == f.filter) {
                    codes.push(granted);
                    continue;
                }
                let declared = self.vhost.declare_queue(&QueueDeclare {
                    name: &name,
                    passive: false,
                    durable: false,
                    exclusive: false,
                    auto_delete: true,
                    arguments: &FieldTable::default(),
                    connection_id: self.id,
                });
                let binding = self.binding(filter, granted, &name);
                let tag: Arc<str> = format!("mqtt-shared:{}", f.filter).into();
                let done = declared
                    .map_err(|e| e.text)
                    .and_then(|q| self.vhost.bind(&exchange, binding).map(|()| q).map_err(|e| e.text))
                    .and_then(|q| self.consume(&q, tag.clone()).map(|()| q));
                match done {
                    Ok(q) => {
                        self.subs.push(Sub {
                            filter: f.filter.clone(),
                            qos: granted,
                            shared: Some((q, tag)),
                        });
                        codes.push(granted);
                    }
                    Err(e) => {
                        info!(connection = self.id, error = %e, "MQTT shared subscription failed");
                        codes.push(128);
                    }
                }
                continue;
            }
            if !mapping::valid_filter(&f.filter) {
                codes.push(143);
                continue;
            }
            let name = self.queue_name.clone();
            if !self.may_subscribe(&name) {
                codes.push(135);
                continue;
            }
            let result = self.own_queue().and_then(|_| {
                if let Some(i) = self
                    .subs
                    .iter()
                    .position(|s| s.filter == f.filter && s.shared.is_none())
                {
                    let old = self.subs.remove(i);
                    let _ = self.vhost.unbind(&exchange, &self.binding(&old.filter, old.qos, &name));
                }
                self.vhost
                    .bind(&exchange, self.binding(&f.filter, granted, &name))
                    .map_err(|e| e.text)
            });
            match result {
                Ok(()) => {
                    self.subs.push(Sub {
                        filter: f.filter.clone(),
                        qos: granted,
                        shared: None,
                    });
                    retained.push((f.filter.clone(), granted));
                    codes.push(granted);
                }
                Err(e) => {
                    info!(connection = self.id, error = %e, "MQTT subscription failed");
                    codes.push(128);
                }
            }
        }
        self.send(&Out::SubAck { pkid, codes });
        // Retained messages follow the SUBACK.
        for (filter, granted) in retained {
            for (topic, m) in self.mqtt.retained.matching(&self.vhost.name, &filter) {
                let qos = granted.min(mapping::published_qos(&m));
                let mut publish = mapping::to_publish(&m, qos, true, self.version == Version::V5);
                publish.topic = topic;
                if qos > 0 {
                    publish.pkid = self.pkid();
                    self.inflight.insert(
                        publish.pkid,
                        Inflight {
                            queue: None,
                            entry: None,
                            credit: None,
                        },
                    );
                }
                self.send(&Out::Publish(publish));
            }
        }
    }

    fn unsubscribe(&mut self, pkid: u16, filters: &[String]) {
        let exchange = self.mqtt.exchange.clone();
        for f in filters {
            let Some(i) = self.subs.iter().position(|s| &s.filter == f) else {
                continue;
            };
            let sub = self.subs.remove(i);
            match sub.shared {
                Some((q, tag)) => {
                    if q.remove_consumer(self.id, 0, &tag).auto_delete_now {
                        self.vhost.remove_queue(&q);
                    }
                    self.consumers.retain(|(_, t, _)| t != &tag);
                }
                None => {
                    let name = self.queue_name.clone();
                    let _ = self.vhost.unbind(&exchange, &self.binding(&sub.filter, sub.qos, &name));
                }
            }
        }
        self.send(&Out::UnsubAck {
            pkid,
            count: filters.len(),
        });
    }

    fn pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Writes what the queues handed over: QoS 1 deliveries wait for a PUBACK, QoS 0 ones are settled at once.
    fn deliver(&mut self, spare: &mut Vec<OutboxItem>) {
        self.outbox.take(spare);
        let v5 = self.version == Version::V5;
        for item in spare.drain(..) {
            let d = match item {
                OutboxItem::Deliver(d) => d,
                OutboxItem::Cancel { consumer_tag, .. } => {
                    self.consumers.retain(|(_, t, _)| t != &consumer_tag);
                    continue;
                }
            };
            let Some(queue) = d.queue else { continue };
            let m = d.entry.message.clone();
            let topic = mapping::key_to_topic(m.routing_key.as_str());
            let sub_qos = if d.consumer_tag.as_ref() == OWN_TAG {
                self.subs
                    .iter()
                    .filter(|s| s.shared.is_none() && mapping::matches(&s.filter, &topic))
                    .map(|s| s.qos)
                    .max()
                    .unwrap_or(0)
            } else {
                self.subs
                    .iter()
                    .find(|s| s.shared.as_ref().is_some_and(|(_, t)| t == &d.consumer_tag))
                    .map_or(0, |s| s.qos)
            };
            // The publish QoS (a header: parsing the properties) matters only when the subscription is above 0.
            let qos = if sub_qos == 0 {
                0
            } else {
                sub_qos.min(mapping::published_qos(&m))
            };
            let mut publish = mapping::to_publish(&m, qos, false, v5);
            let c = &self.entry.counters;
            bump(if qos == 0 { &c.delivered } else { &c.delivered_ack }, 1);
            if d.entry.redelivered {
                bump(&c.redelivered, 1);
            }
            if qos == 0 {
                self.send(&Out::Publish(publish));
                queue.settle([&d.entry]);
                if d.credit.as_ref().is_some_and(|c| c.release()) {
                    queue.dispatch();
                }
                continue;
            }
            publish.pkid = self.pkid();
            publish.dup = d.entry.redelivered;
            self.send(&Out::Publish(publish.clone()));
            self.inflight.insert(
                publish.pkid,
                Inflight {
                    queue: Some(queue),
                    entry: Some(d.entry),
                    credit: d.credit,
                },
            );
        }
        if self.outbox.take_held_back() {
            for (q, _, _) in &self.consumers {
                q.dispatch();
            }
        }
    }

    fn acked(&mut self, pkid: u16) {
        let Some(i) = self.inflight.remove(&pkid) else { return };
        if let (Some(q), Some(e)) = (i.queue, i.entry) {
            bump(&self.entry.counters.acked, 1);
            q.settle([&e]);
            if i.credit.is_some_and(|c| c.release()) {
                q.dispatch();
            }
        }
    }

    /// The connection ended: unacked deliveries go back, consumers go, a clean session's queue goes, the will is
    /// published unless the client said goodbye.
    async fn close(mut self) {
        // Consumers first, so that nothing given back is handed to this connection again; what is unacked, and
        // what reached the outbox and was never written, goes back.
        let mut emptied = Vec::new();
        for (q, tag, _) in std::mem::take(&mut self.consumers) {
            // A shared subscription's queue goes with its last member.
            if q.remove_consumer(self.id, 0, &tag).auto_delete_now {
                emptied.push(q);
            }
        }
        let mut items = Vec::new();
        self.outbox.take(&mut items);
        let unsent = items.into_iter().filter_map(|i| match i {
            OutboxItem::Deliver(d) => d.queue.map(|q| (q, d.entry)),
            OutboxItem::Cancel { .. } => None,
        });
        let inflight = self.inflight.drain().filter_map(|(_, i)| i.queue.zip(i.entry));
        for (q, e) in inflight.collect::<Vec<_>>().into_iter().chain(unsent) {
            q.requeue([e]);
        }
        for q in emptied {
            self.vhost.remove_queue(&q);
        }
        if !self.persistent && self.queue.is_some() {
            let _ = self.vhost.delete_queue(&self.queue_name, false, false, self.id);
        }
        if let Some(w) = self.will.take().filter(|_| !self.clean_exit) {
            if mapping::valid_topic(&w.topic) {
                let p = Publish {
                    topic: w.topic,
                    qos: w.qos.min(1),
                    retain: w.retain,
                    dup: false,
                    pkid: 0,
                    payload: w.payload,
                    props: w.props,
                };
                let exchange = self.mqtt.exchange.clone();
                let key = mapping::topic_to_key(&p.topic);
                if self.access.check_publish(&self.broker.access, &exchange, &key).is_ok() {
                    let message = Arc::new(mapping::to_message(&p, &exchange));
                    if p.retain {
                        let kept = (!p.payload.is_empty()).then(|| message.clone());
                        let (mqtt, vhost, topic) = (self.mqtt.clone(), self.vhost.name.clone(), p.topic.clone());
                        let _ = tokio::task::spawn_blocking(move || mqtt.retained.set(&vhost, &topic, kept)).await;
                    }
                    self.route(&exchange, &key, &message);
                    info!(connection = self.id, client_id = %self.client_id, topic = %p.topic, "MQTT will published");
                }
            }
        }
        {
            let mut sessions = self.mqtt.lock();
            let key = (self.vhost.name.clone(), self.client_id.clone());
            if sessions.get(&key).is_some_and(|h| h.connection == self.id) {
                sessions.remove(&key);
            }
        }
        self.gone.cancel();
        self.broker.unregister_connection(self.id);
        self.broker
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        info!(connection = self.id, client_id = %self.client_id, "MQTT connection closed");
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A binding key back as the MQTT filter it came from.
fn key_to_filter(key: &str) -> String {
    key.split('.')
        .map(|level| match level {
            "*" => "+".to_string(),
            l => l.replace('/', "."),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn binding_keys_read_back_as_their_filters() {
        for f in ["sensors/+/temp", "a/#", "v1.0/+", "#"] {
            assert_eq!(super::key_to_filter(&super::mapping::filter_to_key(f)), f);
        }
    }
}
