//! One STOMP connection's task: the CONNECT (version, login, vhost, heart-beats), then frames until the client
//! leaves, and deliveries from the queues its subscriptions consume. The frame handlers are in `commands`.
//!
//! Invariants:
//! - A RECEIPT is sent only once what its frame did is done, and for a SEND (or a COMMIT) once every queue the
//!   message reached has stored it (the group commit of a persistent message on a durable queue): receipts of one
//!   read batch wait for one sync together, in order.
//! - A delivery to an `auto` subscription is settled once written; to a `client` or `client-individual` one it stays
//!   unacked in its queue until ACK or NACK. When the connection ends, what is unacked goes back to its queue
//!   (redelivered), and open transactions are dropped.
//! - After an ERROR frame the connection is closed, as the specification asks (a subscription cancelled because its
//!   queue was deleted is the one ERROR that leaves the connection open, as in RabbitMQ).
//! - Heart-beats: the broker sends one when it has written nothing for the agreed interval, and closes a connection
//!   it has heard nothing from for twice the client's interval. While a memory or disk alarm blocks publishers the
//!   socket is not read, and no heart-beat is expected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::codec::{self, Decoded, Frame, Limits};
use super::destination::Destination;
use super::mapping;
use crate::amqp::access::ConnAccess;
use crate::broker::{Broker, ConnectionEntry};
use crate::counters::bump;
use crate::outbox::{Outbox, OutboxItem};
use crate::queue::{ConsumerCredit, Credit, Entry, Queue};
use crate::vhost::VHost;

/// How long a client has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a connection accepts before it has logged in.
const LIMITS_UNAUTHENTICATED: Limits = Limits {
    max_header_bytes: 8 * 1024,
    max_headers: 32,
    max_body: 0,
};
/// The shortest heart-beat interval the broker agrees to, either way.
const MIN_HEART_BEAT: Duration = Duration::from_secs(1);
/// The versions spoken, oldest first.
const VERSIONS: &str = "1.0,1.1,1.2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Version {
    V10,
    V11,
    V12,
}

impl Version {
    /// The highest version both sides speak, from CONNECT's `accept-version` (absent: 1.0).
    fn negotiate(accept: Option<&str>) -> Option<Version> {
        let Some(accept) = accept else {
            return Some(Version::V10);
        };
        accept
            .split(',')
            .filter_map(|v| match v.trim() {
                "1.0" => Some(Version::V10),
                "1.1" => Some(Version::V11),
                "1.2" => Some(Version::V12),
                _ => None,
            })
            .max()
    }

    fn number(self) -> &'static str {
        match self {
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }

    /// The protocol as the admin API names it.
    fn name(self) -> &'static str {
        match self {
            Version::V10 => "STOMP 1.0",
            Version::V11 => "STOMP 1.1",
            Version::V12 => "STOMP 1.2",
        }
    }
}

/// How a subscription's deliveries are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckMode {
    Auto,
    /// ACK and NACK are cumulative: they cover every earlier delivery of the subscription.
    Client,
    ClientIndividual,
}

/// A subscription: a consumer of one queue.
pub(super) struct Sub {
    pub id: String,
    pub destination: String,
    pub queue: Arc<Queue>,
    pub ack: AckMode,
}

/// A delivery awaiting ACK or NACK.
pub(super) struct Unacked {
    pub tag: Arc<str>,
    pub queue: Arc<Queue>,
    pub entry: Entry,
    pub credit: Option<Arc<ConsumerCredit>>,
}

/// Why a frame failed: the ERROR frame's `message` header and body. The connection closes after it.
#[derive(Debug)]
pub(super) struct Failure {
    pub message: String,
    pub detail: String,
}

impl Failure {
    pub fn new(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            detail: detail.into(),
        }
    }
}

pub(super) struct Session {
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub access: ConnAccess,
    pub entry: Arc<ConnectionEntry>,
    pub id: u64,
    pub version: Version,
    /// By consumer tag (`stomp:<subscription id>`).
    pub subs: HashMap<Arc<str>, Sub>,
    /// By ack id, in delivery order.
    pub unacked: BTreeMap<u64, Unacked>,
    pub next_ack: u64,
    pub outbox: Arc<Outbox>,
    /// The connection-wide prefetch (none: each subscription has its own `prefetch-count`).
    pub credit: Arc<Credit>,
    /// Open transactions: the frames each holds until COMMIT.
    pub txs: HashMap<String, super::commands::Tx>,
    /// Queues `/queue/…` destinations already made sure of.
    pub declared: HashSet<String>,
    /// Frames (receipts) sent once the batch's messages are stored.
    pub after_sync: Vec<Frame>,
    pub tickets: Option<(u64, u64)>,
    pub store_failed: bool,
    pub limits: Limits,
    pub out: BytesMut,
}

pub async fn serve(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let (mut rd, mut wr) = stream.into_split();
    let mut inbuf = BytesMut::with_capacity(8 * 1024);
    let connect = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut rd, &mut inbuf)) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                debug!(%peer, error = %e.message, "STOMP connection closed before CONNECT");
                let mut out = BytesMut::new();
                codec::encode(&error_frame(&e, None), &mut out);
                let _ = wr.write_all(&out).await;
                return;
            }
            Err(_) => {
                debug!(%peer, "no STOMP CONNECT in time");
                return;
            }
        },
    };
    let (mut session, beats) = match Session::start(&broker, &connect, peer, local) {
        Ok(s) => s,
        Err(e) => {
            info!(%peer, error = %e.message, "STOMP login refused");
            let mut out = BytesMut::new();
            codec::encode(&error_frame(&e, connect.get("receipt")), &mut out);
            let _ = wr.write_all(&out).await;
            return;
        }
    };
    session.run(&mut rd, &mut wr, inbuf, beats, shutdown).await;
    session.close();
}

async fn read_connect(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Frame, Failure> {
    loop {
        match codec::decode(buf, &LIMITS_UNAUTHENTICATED) {
            Ok(Some(Decoded::Frame(f))) if f.command == "CONNECT" || f.command == "STOMP" => return Ok(f),
            Ok(Some(Decoded::Frame(f))) => {
                return Err(Failure::new(
                    "Bad CONNECT",
                    format!("the first frame must be CONNECT or STOMP, not {}", f.command),
                ))
            }
            Ok(Some(Decoded::HeartBeat)) | Ok(None) => {}
            Err(e) => return Err(Failure::new("Bad CONNECT", e.to_string())),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(Failure::new("closed", "")),
            Ok(_) => {}
            Err(e) => return Err(Failure::new("closed", e.to_string())),
        }
    }
}

/// An ERROR frame (with `receipt-id` when the failed frame asked for a receipt).
pub(super) fn error_frame(e: &Failure, receipt: Option<&str>) -> Frame {
    let mut f = Frame::new("ERROR")
        .header("message", &e.message)
        .header("content-type", "text/plain");
    if let Some(r) = receipt {
        f = f.header("receipt-id", r);
    }
    f.body = e.detail.clone().into_bytes().into();
    f
}

/// The heart-beat intervals agreed: (the broker sends every, the broker expects at least every).
type Beats = (Option<Duration>, Option<Duration>);

/// CONNECT's `heart-beat: cx,cy` and the broker's answer `sx,sy`.
fn heart_beats(header: Option<&str>) -> Result<(Beats, String), Failure> {
    let Some(h) = header else {
        return Ok(((None, None), "0,0".into()));
    };
    let bad = || {
        Failure::new(
            "Invalid heart-beat header",
            format!("expected two numbers, 'cx,cy': {h:?}"),
        )
    };
    let (cx, cy) = h.split_once(',').ok_or_else(bad)?;
    let cx: u64 = cx.trim().parse().map_err(|_| bad())?;
    let cy: u64 = cy.trim().parse().map_err(|_| bad())?;
    let floor = |ms: u64| Duration::from_millis(ms).max(MIN_HEART_BEAT);
    let send = (cy > 0).then(|| floor(cy));
    let expect = (cx > 0).then(|| floor(cx));
    let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis());
    Ok(((send, expect), format!("{},{}", ms(send), ms(expect))))
}

impl Session {
    fn start(
        broker: &Arc<Broker>,
        c: &Frame,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<(Session, Beats), Failure> {
        let version = Version::negotiate(c.get("accept-version")).ok_or_else(|| {
            Failure::new(
                "Version mismatch",
                format!("Supported protocol versions are {VERSIONS}"),
            )
        })?;
        let (beats, beat_header) = heart_beats(c.get("heart-beat"))?;
        // No login is guest (from loopback only, as guest always is), as RabbitMQ's default_user.
        let user = c.get("login").unwrap_or("guest");
        let password = c
            .get("passcode")
            .unwrap_or(if c.get("login").is_none() { "guest" } else { "" });
        let found = broker
            .access
            .authenticate("STOMP", user, password, peer.ip())
            .map_err(|e| Failure::new("Bad CONNECT", format!("Access refused for user '{user}': {e}")))?;
        // The `host` header names the vhost when it is one; clients that put the server's host name there
        // (stomp.py does by default) get the default vhost.
        let vhost_name = match c.get("host") {
            Some(h) if broker.vhost(h).is_some() => h.to_string(),
            _ => "/".to_string(),
        };
        let refused = || {
            Failure::new(
                "Bad CONNECT",
                format!("Access refused for user '{}' to vhost '{vhost_name}'", found.name),
            )
        };
        let access = ConnAccess::open(&broker.access, &found.name, &vhost_name).ok_or_else(refused)?;
        let vhost = broker.vhost(&vhost_name).ok_or_else(refused)?;
        let id = broker.next_connection_id();
        let entry = Arc::new(ConnectionEntry::new(
            id,
            peer,
            local,
            version.name(),
            &found.name,
            &vhost_name,
            c.get("client-id").map(|s| s.chars().take(200).collect()),
            broker.clock.now_ms(),
        ));
        broker.register_connection(entry.clone());
        broker.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut s = Session {
            broker: broker.clone(),
            vhost,
            access,
            entry,
            id,
            version,
            subs: HashMap::new(),
            unacked: BTreeMap::new(),
            next_ack: 0,
            outbox: Arc::new(Outbox::default()),
            credit: Arc::new(Credit::new(0)),
            txs: HashMap::new(),
            declared: HashSet::new(),
            after_sync: Vec::new(),
            tickets: None,
            store_failed: false,
            limits: Limits::default(),
            out: BytesMut::new(),
        };
        info!(connection = id, %peer, user = %found.name, vhost = %vhost_name, protocol = version.name(), "STOMP connection open");
        let mut connected = Frame::new("CONNECTED")
            .header("version", version.number())
            .header("session", &format!("session-{id}"))
            .header("server", concat!("Warren/", env!("CARGO_PKG_VERSION")));
        if version >= Version::V11 {
            connected = connected.header("heart-beat", &beat_header);
        }
        s.send_frame(&connected);
        Ok((s, beats))
    }

    pub(super) fn send_frame(&mut self, f: &Frame) {
        codec::encode(f, &mut self.out);
    }

    async fn run(
        &mut self,
        rd: &mut OwnedReadHalf,
        wr: &mut OwnedWriteHalf,
        mut inbuf: BytesMut,
        (send_every, expect_every): Beats,
        shutdown: CancellationToken,
    ) {
        let mut alarms = self.broker.alarms.subscribe();
        let mut spare = Vec::new();
        let mut last_heard = Instant::now();
        let mut last_written = Instant::now();
        // A CONNECT may arrive with frames behind it.
        let mut pending = !inbuf.is_empty();
        // A frame ends with a NUL: while one is incomplete, the buffer is decoded again only when a NUL arrives or
        // it has doubled (so a limit is still caught), not on every read (a large body arriving in small reads
        // would be scanned again and again).
        let mut retry_at = 0;
        loop {
            if !self.out.is_empty() {
                if wr.write_all(&self.out).await.is_err() {
                    return;
                }
                self.out.clear();
                last_written = Instant::now();
            }
            if pending {
                pending = false;
                if !self.process(&mut inbuf).await {
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
                retry_at = inbuf.len().saturating_mul(2);
                continue;
            }
            let blocked = self.broker.alarms.state().any();
            if blocked {
                // Not reading: the client's heart-beats wait in the socket.
                last_heard = Instant::now();
            }
            let beat_due = send_every.map(|d| last_written + d);
            let silent_by = expect_every.filter(|_| !blocked).map(|d| last_heard + d * 2);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.send_frame(&error_frame(&Failure::new("Server shutdown", "the broker is shutting down"), None));
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
                _ = self.entry.close.cancelled() => {
                    let reason = self.entry.close_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    self.send_frame(&error_frame(&Failure::new("Connection closed", reason), None));
                    let _ = wr.write_all(&self.out).await;
                    return;
                }
                r = rd.read_buf(&mut inbuf), if !blocked => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        last_heard = Instant::now();
                        pending = inbuf[inbuf.len() - n..].contains(&0) || inbuf.len() >= retry_at;
                    }
                },
                _ = alarms.changed(), if blocked => {}
                _ = self.outbox.notified() => self.deliver(&mut spare),
                _ = sleep_until(beat_due), if beat_due.is_some() => self.out.extend_from_slice(b"\n"),
                _ = sleep_until(silent_by), if silent_by.is_some() => {
                    info!(connection = self.id, "STOMP client missed its heart-beats; closing");
                    return;
                }
            }
        }
    }

    /// Handles every whole frame in `inbuf`, then sends the batch's receipts once their messages are stored. False
    /// ends the connection.
    async fn process(&mut self, inbuf: &mut BytesMut) -> bool {
        let mut go_on = true;
        loop {
            let limits = self.limits;
            match codec::decode(inbuf, &limits) {
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(Some(Decoded::Frame(f))) => {
                    let receipt = f.get("receipt").map(str::to_string);
                    match self.handle(f) {
                        Ok(true) => {}
                        Ok(false) => {
                            go_on = false;
                            break;
                        }
                        Err(e) => {
                            info!(connection = self.id, error = %e.message, detail = %e.detail, "STOMP frame refused; closing");
                            self.flush_receipts().await;
                            self.send_frame(&error_frame(&e, receipt.as_deref()));
                            return false;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    info!(connection = self.id, error = %e, "STOMP protocol error; closing");
                    self.flush_receipts().await;
                    self.send_frame(&error_frame(&Failure::new("Malformed frame", e.to_string()), None));
                    return false;
                }
            }
        }
        self.flush_receipts().await && go_on
    }

    /// Waits until the batch's messages are stored, then sends its receipts. False if they could not be stored.
    async fn flush_receipts(&mut self) -> bool {
        if let Some((first, last)) = self.tickets.take() {
            if !self.broker.store.syncer.wait(first, last).await {
                self.store_failed = true;
            }
        }
        let receipts = std::mem::take(&mut self.after_sync);
        if self.store_failed {
            self.store_failed = false;
            self.send_frame(&error_frame(
                &Failure::new(
                    "Message not stored",
                    "the broker could not store a message (disk full or I/O error)",
                ),
                None,
            ));
            return false;
        }
        for r in &receipts {
            self.send_frame(r);
        }
        true
    }

    /// Writes what the queues handed over as MESSAGE frames: `auto` deliveries are settled at once, others wait for
    /// ACK or NACK.
    fn deliver(&mut self, spare: &mut Vec<OutboxItem>) {
        self.outbox.take(spare);
        for item in spare.drain(..) {
            let d = match item {
                OutboxItem::Deliver(d) => d,
                OutboxItem::Cancel { consumer_tag, .. } => {
                    if let Some(sub) = self.subs.remove(&consumer_tag) {
                        let e = Failure::new(
                            "Subscription cancelled",
                            format!(
                                "the queue behind subscription '{}' ({}) was deleted",
                                sub.id, sub.destination
                            ),
                        );
                        let mut f = error_frame(&e, None);
                        f.headers.push(("subscription".into(), sub.id.clone()));
                        self.send_frame(&f);
                    }
                    continue;
                }
            };
            let Some(queue) = d.queue else { continue };
            let Some(sub) = self.subs.get(&d.consumer_tag) else {
                queue.requeue([d.entry]);
                continue;
            };
            let ack = self.next_ack;
            self.next_ack += 1;
            let m = &d.entry.message;
            let mut f = Frame::new("MESSAGE")
                .header("subscription", &sub.id)
                .header(
                    "destination",
                    &Destination::of_message(m.exchange.as_str(), m.routing_key.as_str()),
                )
                .header("message-id", &ack.to_string())
                .header("redelivered", if d.entry.redelivered { "true" } else { "false" });
            if self.version == Version::V12 && sub.ack != AckMode::Auto {
                f = f.header("ack", &ack.to_string());
            }
            mapping::message_headers(&m.properties(), &mut f.headers);
            f.body = m.body.clone();
            codec::encode(&f, &mut self.out);
            let c = &self.entry.counters;
            bump(
                if sub.ack == AckMode::Auto {
                    &c.delivered
                } else {
                    &c.delivered_ack
                },
                1,
            );
            if d.entry.redelivered {
                bump(&c.redelivered, 1);
            }
            if sub.ack == AckMode::Auto {
                queue.settle([&d.entry]);
                if d.credit.as_ref().is_some_and(|c| c.release()) {
                    queue.dispatch();
                }
                continue;
            }
            self.unacked.insert(
                ack,
                Unacked {
                    tag: d.consumer_tag,
                    queue,
                    entry: d.entry,
                    credit: d.credit,
                },
            );
        }
        if self.outbox.take_held_back() {
            for s in self.subs.values() {
                s.queue.dispatch();
            }
        }
    }

    /// The connection ended: unacked deliveries go back, consumers go (and the queues made for them).
    fn close(mut self) {
        // Consumers first, so that nothing given back is handed to this connection again.
        for (tag, sub) in std::mem::take(&mut self.subs) {
            if sub.queue.remove_consumer(self.id, 0, &tag).auto_delete_now {
                self.vhost.remove_queue(&sub.queue);
            }
        }
        let mut back: Vec<Unacked> = std::mem::take(&mut self.unacked).into_values().collect();
        // Deliveries that reached the outbox and were never written go back too.
        let mut items = Vec::new();
        self.outbox.take(&mut items);
        back.extend(items.into_iter().filter_map(|i| match i {
            OutboxItem::Deliver(d) => d.queue.map(|queue| Unacked {
                tag: d.consumer_tag,
                queue,
                entry: d.entry,
                credit: d.credit,
            }),
            OutboxItem::Cancel { .. } => None,
        }));
        super::commands::by_queue(back, |q, entries| q.requeue(entries));
        self.broker.unregister_connection(self.id);
        self.broker
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        info!(connection = self.id, "STOMP connection closed");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_common_version_is_chosen_and_none_is_1_0() {
        assert_eq!(Version::negotiate(None), Some(Version::V10));
        assert_eq!(Version::negotiate(Some("1.1,1.2")), Some(Version::V12));
        assert_eq!(Version::negotiate(Some("1.0, 1.1")), Some(Version::V11));
        assert_eq!(Version::negotiate(Some("2.0")), None);
    }

    #[test]
    fn heart_beats_are_agreed_with_a_floor_and_bad_headers_refused() {
        let ((send, expect), answer) = heart_beats(Some("4000,500")).expect("valid");
        assert_eq!(
            send,
            Some(Duration::from_secs(1)),
            "the client wants one every 500 ms: floored"
        );
        assert_eq!(expect, Some(Duration::from_secs(4)));
        assert_eq!(answer, "1000,4000");
        assert_eq!(
            heart_beats(Some("0,0")).expect("valid"),
            ((None, None), "0,0".to_string())
        );
        assert_eq!(heart_beats(None).expect("valid").1, "0,0");
        assert!(heart_beats(Some("fast")).is_err());
        assert!(heart_beats(Some("1,-1")).is_err());
    }
}
