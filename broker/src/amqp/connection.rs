//! One client connection, served by one task: handshake, frame loop, heartbeats, close handshakes, and the write
//! side.
//!
//! Shape of the loop: read whatever the socket has into one growable buffer, decode and handle every complete
//! frame in it, then finish the batch (cumulative confirms, re-dispatch of queues whose credit came back), then
//! drain the outbox (deliveries queued for this connection by queues) into the same output buffer, and write it
//! with as few syscalls as the socket allows. Reading pauses while the output buffer is above its high-water mark,
//! which pushes back on a client that publishes faster than it reads.
//!
//! The stream is plain TCP or TLS (`super::stream`): the loop is the same, generic over the two halves. Over TLS,
//! a client that presented a verified certificate is offered the EXTERNAL mechanism, which logs in as the
//! certificate's CN.
//!
//! While a memory or disk alarm is on (`alarm.rs`), a connection that has published stops reading its socket and
//! keeps writing: deliveries still go out, a publisher's queued frames wait in the kernel.
//!
//! Invariants:
//! - After sending connection.close we drop every frame except connection.close / close-ok (spec 2.2.4).
//! - After sending channel.close we drop every frame on that channel except channel.close / close-ok, and answer a
//!   crossing channel.close with close-ok while still waiting for the close-ok to ours.
//! - After the close handshake the write side is shut and input is read and discarded until the client hangs up
//!   (or `CLOSE_TIMEOUT`), so a client with frames still in flight reads its close-ok instead of a reset.
//! - On exit, every consumer is removed, every unacked or in-flight delivery is requeued, and this connection's
//!   exclusive queues are deleted, whatever the cause of the exit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Interval};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::alarm::AlarmState;
use crate::amqp::access::ConnAccess;
use crate::amqp::channel::{Channel, Ctx};
use crate::amqp::codec::{cut_large_body, decode_step, encode_heartbeat, encode_method, Frame, Step, PROTOCOL_HEADER};
use crate::amqp::error::{AmqpError, ACCESS_REFUSED, CHANNEL_ERROR, CONNECTION_FORCED, FRAME_ERROR, NOT_ALLOWED};
use crate::amqp::stream::{ReadHalf, WriteHalf};
use crate::amqp::unacked::{requeue_grouped, Pending};
use crate::broker::Broker;
use crate::counters::bump;
use crate::outbox::{Outbox, OutboxItem};
use crate::queue::Queue;
use crate::store::SyncProgress;
use crate::vhost::VHost;

/// frame_max before tune-ok, as RabbitMQ uses.
const PRE_TUNE_FRAME_MAX: u32 = 8192;
/// The smallest frame_max a client may ask for (spec).
const MIN_FRAME_MAX: u32 = 4096;
/// Stop reading (and draining the outbox) while this much output is waiting for the socket.
const OUT_HIGH_WATER: usize = 1024 * 1024;
/// How long a client has to send the protocol header and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection busy-polls (its socket and its outbox) after the client last sent data or deliveries last
/// went out, before sleeping in the reactor. Measured with `scripts/bench --pipeline 1`: 60 µs lifts a lapin
/// publisher that awaits each publish from ~15k to ~40k msg/s, and the matching no-ack consumer from ~28k to ~33k
/// msg/s end to end, on the 2-core machines, at the price of up to 60 µs of polling after each burst.
const SPIN_WINDOW: Duration = Duration::from_micros(60);
/// Frames a connection handles from its read buffer before it lets other tasks run. A publisher streaming small
/// messages reads 64 KiB (about 1,400 messages of 16 B) at a time; handled in one go, a hundred such publishers kept a
/// consumer's connection waiting about 50 ms for each turn, so it took under 1,000 msg/s while they published
/// millions. 768 frames is 256 small messages per turn: a tenth of a millisecond.
const FRAMES_PER_TURN: usize = 768;
/// How long to wait for close-ok after sending connection.close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close and wait for close-ok.
    Closing,
    /// Flush what is left to write, then drop the socket.
    Done,
}

/// What the client's capabilities table says it can handle.
#[derive(Default)]
struct ClientCaps {
    cancel_notify: bool,
    auth_failure_close: bool,
    connection_blocked: bool,
}

pub struct Connection {
    /// What the admin API sees of this connection, and its close handle.
    entry: Arc<crate::broker::ConnectionEntry>,
    id: u64,
    peer: SocketAddr,
    /// The CN of the client certificate verified in the TLS handshake: EXTERNAL is offered and logs in as it.
    peer_cn: Option<String>,
    broker: Arc<Broker>,
    state: State,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    caps: ClientCaps,
    user: String,
    vhost: Option<Arc<VHost>>,
    /// The user's permissions on the vhost (nothing until connection.open).
    access: ConnAccess,
    /// By channel id, hashed with foldhash: looked up once per frame.
    channels: HashMap<u16, Channel, foldhash::fast::RandomState>,
    outbox: Arc<Outbox>,
    /// Encoded frames waiting for the socket.
    out: BytesMut,
    /// Queues to dispatch again at the end of the batch.
    kick: Vec<Arc<Queue>>,
    /// Queues holding deferred records of this read batch (see `Queue::publish_deferred`).
    flush: Vec<Arc<Queue>>,
    /// Reused between outbox drains.
    spare: Vec<OutboxItem>,
    close_deadline: Option<Instant>,
    /// Group-commit progress, for confirms that wait for a sync.
    sync_rx: watch::Receiver<SyncProgress>,
    last_read: Instant,
    /// When deliveries last came through the outbox (a streaming consumer is polled for like a streaming publisher).
    last_delivery: Instant,
    wrote_since_tick: bool,
    /// The broker's memory and disk alarms.
    alarms: watch::Receiver<AlarmState>,
    /// This connection has sent a basic.publish: an alarm blocks it.
    publisher: bool,
    /// Reading is stopped by an alarm (and the client was told with connection.blocked if it asked to be).
    blocked: bool,
}

enum Event {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Outbox,
    Tick,
    /// A group-commit round finished: confirms may be due.
    Synced,
    Shutdown,
    /// An operator closed this connection through the admin API.
    ClosedByOperator,
    CloseTimeout,
    /// An alarm was set or cleared.
    Alarm,
}

/// Serves one accepted socket until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let (rd, wr) = stream.into_split();
    serve_halves(rd, wr, (peer, local, false), None, broker, shutdown).await;
}

/// Serves one connection whose TLS handshake is done, until it closes.
pub async fn serve_tls(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let peer_cn = crate::tls::peer_common_name(stream.get_ref().1);
    let local = stream.get_ref().0.local_addr().ok();
    let (rd, wr) = tokio::io::split(stream);
    serve_halves(rd, wr, (peer, local, true), peer_cn, broker, shutdown).await;
}

async fn serve_halves<R: ReadHalf, W: WriteHalf>(
    rd: R,
    wr: W,
    (peer, local, tls): (SocketAddr, Option<SocketAddr>, bool),
    peer_cn: Option<String>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let id = broker.next_connection_id();
    let sync_rx = broker.store.syncer.subscribe();
    let alarms = broker.alarms.subscribe();
    let entry = Arc::new(crate::broker::ConnectionEntry {
        id,
        peer,
        local,
        tls,
        protocol: "AMQP 0-9-1",
        user: std::sync::Mutex::new(String::new()),
        vhost: std::sync::Mutex::new(String::new()),
        connected_at_ms: broker.clock.now_ms(),
        channels: std::sync::Mutex::new(Default::default()),
        close: CancellationToken::new(),
        close_reason: std::sync::Mutex::new(String::new()),
        counters: Arc::default(),
        client: std::sync::Mutex::new(Default::default()),
    });
    let mut conn = Connection {
        entry,
        id,
        peer,
        peer_cn,
        broker,
        state: State::AwaitStartOk,
        frame_max: PRE_TUNE_FRAME_MAX,
        channel_max: 0,
        heartbeat: 0,
        caps: ClientCaps::default(),
        user: String::new(),
        vhost: None,
        access: ConnAccess::default(),
        channels: HashMap::default(),
        outbox: Arc::new(Outbox::default()),
        out: BytesMut::with_capacity(16 * 1024),
        kick: Vec::new(),
        flush: Vec::new(),
        spare: Vec::new(),
        close_deadline: None,
        sync_rx,
        last_read: Instant::now(),
        last_delivery: Instant::now(),
        wrote_since_tick: false,
        alarms,
        publisher: false,
        blocked: false,
    };
    debug!(connection = id, %peer, "accepted");
    conn.broker
        .connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    conn.broker.register_connection(conn.entry.clone());
    if let Err(e) = conn.run(rd, wr, shutdown).await {
        debug!(connection = id, %peer, error = %e, "connection ended with an I/O error");
    }
    conn.cleanup();
    conn.broker.unregister_connection(id);
    conn.broker
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    debug!(connection = id, %peer, "closed");
}

/// After the close handshake: read and discard until the client closes its side, for at most `CLOSE_TIMEOUT`.
/// Hanging up with unread input makes the kernel answer with a reset, and a client still writing (publishes queued
/// behind its connection.close) then gets EPIPE or ECONNRESET instead of its close-ok, as RabbitMQ avoids.
async fn linger(rd: &mut impl ReadHalf, buf: &mut BytesMut, shutdown: &CancellationToken) {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    loop {
        buf.clear();
        if buf.capacity() < 64 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            r = tokio::time::timeout_at(deadline, rd.read_buf(buf)) => match r {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn tick(hb: &mut Option<Interval>) {
    match hb {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Writes some of `out`, or, when it is empty, flushes what the writer buffered (only TLS does: `stream`).
async fn write_or_flush<W: WriteHalf>(wr: &mut W, out: &[u8]) -> std::io::Result<usize> {
    if out.is_empty() {
        wr.flush().await?;
        return Ok(0);
    }
    wr.write(out).await
}

impl Connection {
    async fn run<R: ReadHalf, W: WriteHalf>(
        &mut self,
        mut rd: R,
        mut wr: W,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        // Bytes the writer holds that a flush must push out (never for plain TCP, see `stream`).
        let mut unflushed = false;
        let mut inbuf = BytesMut::with_capacity(64 * 1024);

        // Protocol header.
        let header_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        while inbuf.len() < 8 {
            match tokio::time::timeout_at(header_deadline, rd.read_buf(&mut inbuf)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
            if inbuf.len() < 8 && !PROTOCOL_HEADER.starts_with(&inbuf[..]) {
                break;
            }
        }
        if inbuf.len() < 8 || &inbuf[..8] != PROTOCOL_HEADER {
            debug!(
                connection = self.id,
                "wrong protocol header; answering with ours and closing"
            );
            wr.write_all(PROTOCOL_HEADER).await?;
            let _ = wr.shutdown().await;
            return Ok(());
        }
        inbuf.advance(8);
        self.send_start();
        self.close_deadline = Some(Instant::now() + HANDSHAKE_TIMEOUT);

        let mut hb: Option<Interval> = None;
        loop {
            let definitions = crate::store::repl::definitions_writes();
            let more_input = self.process_input(&mut inbuf);
            self.end_of_batch();
            if crate::store::repl::installed().is_some() && crate::store::repl::definitions_writes() != definitions {
                // A cluster leader answers a declaration, deletion or binding once its in-sync followers have it.
                let syncer = &self.broker.store.syncer;
                let round = syncer.barrier();
                if !syncer.wait(round, round).await {
                    warn!(connection = self.id, "a definitions change could not be replicated");
                }
            }
            if self.state == State::Open && self.out.len() < OUT_HIGH_WATER {
                // Deliveries queued while handling this batch go out in the same write, before the next command
                // is read (a client that consumes and then cancels sees what was ready when it consumed).
                self.drain_outbox();
            }
            if hb.is_none() && self.heartbeat > 0 && self.state != State::AwaitTuneOk {
                let period = Duration::from_millis(self.heartbeat as u64 * 500);
                hb = Some(tokio::time::interval_at(Instant::now() + period, period));
            }
            if self.state == State::Done && self.out.is_empty() {
                let _ = wr.shutdown().await;
                linger(&mut rd, &mut inbuf, &shutdown).await;
                return Ok(());
            }
            self.follow_alarms();
            let can_take_more = self.out.len() < OUT_HIGH_WATER && self.state != State::Done;
            let can_read = can_take_more && !self.blocked;
            if more_input && can_read && self.out.is_empty() {
                // A turn's worth of frames was handled and more are buffered: other connections (the consumers
                // of what this one publishes, above all) run before the rest.
                tokio::task::yield_now().await;
                continue;
            }
            if can_read && self.out.is_empty() && self.state == State::Open {
                // Busy-poll briefly while a client is streaming: a client that sends one message per write (most
                // clients, awaiting each publish) otherwise costs a sleep and a wakeup per message. Only while data
                // arrived in the last SPIN_WINDOW, and by yielding to the runtime, so other tasks still run. Stops
                // at once when a delivery for this connection comes in (a client that publishes and consumes on one
                // connection, as in request-reply, must not wait out the window for its reply).
                let mut got = false;
                while (self.last_read.elapsed() < SPIN_WINDOW || self.last_delivery.elapsed() < SPIN_WINDOW)
                    && !self.outbox.has_items()
                {
                    match rd.try_read_buf(&mut inbuf) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {
                            got = true;
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tokio::task::yield_now().await,
                        Err(e) => return Err(e),
                    }
                }
                if got {
                    self.last_read = Instant::now();
                    continue;
                }
                if self.outbox.has_items() {
                    continue;
                }
            }
            if inbuf.capacity() - inbuf.len() < 4096 {
                inbuf.reserve(64 * 1024);
            }
            let outbox = self.outbox.clone();
            let deadline = self.close_deadline;
            let awaits_sync = self.channels.values().any(Channel::awaits_sync);
            let closed_by_operator = self.entry.close.clone();
            let mut sync_rx = self.sync_rx.clone();
            let mut alarms = self.alarms.clone();
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !matches!(self.state, State::Closing | State::Done) => Event::Shutdown,
                _ = closed_by_operator.cancelled(), if self.state == State::Open => Event::ClosedByOperator,
                r = write_or_flush(&mut wr, &self.out), if !self.out.is_empty() || unflushed => Event::Wrote(r),
                r = rd.read_buf(&mut inbuf), if can_read => Event::Read(r),
                _ = outbox.notified(), if can_take_more && self.state == State::Open => Event::Outbox,
                _ = sync_rx.changed(), if awaits_sync => Event::Synced,
                r = alarms.changed(), if self.state == State::Open && self.publisher => match r {
                    Ok(()) => Event::Alarm,
                    // The broker is going away; shutdown follows.
                    Err(_) => Event::Synced,
                },
                _ = tick(&mut hb) => Event::Tick,
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending::<()>().await,
                    }
                } => Event::CloseTimeout,
            };
            match event {
                Event::Read(Ok(0)) => return Ok(()),
                Event::Read(Ok(_)) => self.last_read = Instant::now(),
                Event::Read(Err(e)) => return Err(e),
                Event::Wrote(Ok(n)) => {
                    // n == 0 with nothing to write: the flush is done.
                    unflushed = W::BUFFERS && n > 0;
                    self.out.advance(n);
                    self.wrote_since_tick = true;
                }
                Event::Wrote(Err(e)) => return Err(e),
                Event::Outbox => self.drain_outbox(),
                Event::Synced | Event::Alarm => {}
                Event::Tick => {
                    if self.heartbeat > 0 {
                        // While blocked we do not read, so the client's heartbeats wait unread in the socket.
                        if self.blocked {
                            self.last_read = Instant::now();
                        }
                        let silent = self.last_read.elapsed();
                        if silent > Duration::from_secs(self.heartbeat as u64 * 2) {
                            warn!(
                                connection = self.id,
                                peer = %self.peer,
                                timeout_s = self.heartbeat,
                                "missed heartbeats from client; closing the connection"
                            );
                            return Ok(());
                        }
                        if !self.wrote_since_tick {
                            encode_heartbeat(&mut self.out);
                        }
                        self.wrote_since_tick = false;
                    }
                }
                Event::ClosedByOperator => {
                    let reason = self
                        .entry
                        .close_reason
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    self.start_close(AmqpError::new(CONNECTION_FORCED, reason));
                }
                Event::Shutdown if self.state == State::Open => {
                    self.start_close(AmqpError::new(CONNECTION_FORCED, "broker shutdown"));
                }
                // Not yet open: nothing to hand back, just hang up.
                Event::Shutdown => return Ok(()),
                Event::CloseTimeout => {
                    if self.state != State::Open {
                        debug!(connection = self.id, state = ?self.state, "handshake or close timed out");
                        return Ok(());
                    }
                    self.close_deadline = None;
                }
            }
        }
    }

    /// Blocks or unblocks reading as the alarms say: only a connection that publishes is blocked, so consumers keep
    /// draining. Clients that advertised the `connection.blocked` capability are told either way.
    fn follow_alarms(&mut self) {
        let alarm = *self.alarms.borrow_and_update();
        let block = self.state == State::Open && self.publisher && alarm.any();
        if block == self.blocked {
            return;
        }
        self.blocked = block;
        if block {
            info!(connection = self.id, peer = %self.peer, reason = alarm.reason(), "connection blocked by an alarm");
            if self.caps.connection_blocked {
                encode_method(
                    &mut self.out,
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                        reason: alarm.reason().into(),
                    })),
                );
            }
        } else {
            info!(connection = self.id, peer = %self.peer, "connection unblocked");
            self.last_read = Instant::now();
            if self.caps.connection_blocked {
                encode_method(
                    &mut self.out,
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {})),
                );
            }
        }
    }

    /// Handles the complete frames in `inbuf`, at most `FRAMES_PER_TURN` of them; true when it stopped at that
    /// budget with more buffered (the caller lets other tasks run, then comes back without reading).
    fn process_input(&mut self, inbuf: &mut BytesMut) -> bool {
        // Frames are decoded in place from an offset; the buffer gives the consumed bytes back once, at the end.
        let mut pos = 0;
        let mut budget = FRAMES_PER_TURN;
        while self.state != State::Done {
            if budget == 0 {
                inbuf.advance(pos);
                return true;
            }
            budget -= 1;
            match decode_step(&inbuf[pos..], self.frame_max) {
                Ok(Step::Frame(frame, used)) => {
                    pos += used;
                    self.handle_frame(frame);
                }
                Ok(Step::LargeBody { channel, size }) => {
                    let body = cut_large_body(inbuf, pos, size);
                    pos = 0;
                    self.handle_frame(Frame::Body(channel, body));
                }
                Ok(Step::Incomplete(need)) => {
                    inbuf.advance(pos);
                    inbuf.reserve(need.saturating_sub(inbuf.len()));
                    return false;
                }
                Err(e) => {
                    if self.state == State::Closing {
                        self.state = State::Done;
                    } else {
                        let text = e.to_string();
                        let text = text.split_once(" - ").map(|(_, t)| t.to_string()).unwrap_or(text);
                        self.start_close(AmqpError::new(e.reply_code(), text));
                    }
                    inbuf.clear();
                    return false;
                }
            }
        }
        inbuf.clear();
        false
    }

    /// Sends connection.close and waits for close-ok, dropping everything else.
    fn start_close(&mut self, e: AmqpError) {
        if matches!(self.state, State::Closing | State::Done) {
            return;
        }
        info!(connection = self.id, peer = %self.peer, code = e.code, text = %e.text, "closing connection");
        encode_method(
            &mut self.out,
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: e.code,
                reply_text: e.text.as_str().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        self.state = State::Closing;
        self.close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
        // Channels stop now: their messages go back to the queues at once, not after the close handshake.
        self.close_all_channels();
    }

    fn handle_frame(&mut self, frame: Frame) {
        let channel_id = match &frame {
            Frame::Method(ch, _)
            | Frame::Publish(ch, _)
            | Frame::Header(ch, _)
            | Frame::Body(ch, _)
            | Frame::Heartbeat(ch) => *ch,
        };
        if self.state == State::Closing {
            if let Frame::Method(0, m) = &frame {
                match **m {
                    AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                        encode_method(
                            &mut self.out,
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                        );
                        self.state = State::Done;
                    }
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => self.state = State::Done,
                    _ => {}
                }
            }
            return;
        }
        if let Frame::Heartbeat(ch) = frame {
            if ch != 0 {
                // Spec 4.2.3: heartbeat frames must use channel 0; anything else is a frame error (501).
                self.start_close(AmqpError::new(
                    FRAME_ERROR,
                    format!("heartbeat frame on channel {ch}; heartbeats use channel 0"),
                ));
            }
            return;
        }
        if channel_id == 0 {
            match frame {
                Frame::Publish(_, p) => {
                    if let Err(e) = self.handle_connection_method(AMQPClass::Basic(basic::AMQPMethod::Publish(p))) {
                        self.start_close(e);
                    }
                }
                Frame::Method(_, m) => {
                    if let Err(e) = self.handle_connection_method(*m) {
                        self.start_close(e);
                    }
                }
                Frame::Heartbeat(_) => {}
                Frame::Header(..) | Frame::Body(..) => {
                    self.start_close(AmqpError::command_invalid("content frame on channel 0"))
                }
            }
            return;
        }
        if self.state != State::Open {
            self.start_close(AmqpError::command_invalid(format!(
                "frame on channel {channel_id} before the connection was opened"
            )));
            return;
        }
        if let Frame::Publish(..) = &frame {
            self.publisher = true;
        }
        if let Err(e) = self.handle_channel_frame(channel_id, frame) {
            self.start_close(e);
        }
    }

    fn handle_connection_method(&mut self, m: AMQPClass) -> Result<(), AmqpError> {
        use connection::AMQPMethod as C;
        let method = match &m {
            AMQPClass::Connection(c) => c,
            _ => {
                return Err(AmqpError::command_invalid(format!(
                    "class {} method on channel 0",
                    m.get_amqp_class_id()
                )))
            }
        };
        match (self.state, method) {
            (State::AwaitStartOk, C::StartOk(s)) => {
                self.read_client_caps(&s.client_properties);
                match self.login(s.mechanism.as_str(), s.response.as_bytes()) {
                    Ok(user) => self.user = user.name,
                    Err(e) => {
                        warn!(connection = self.id, peer = %self.peer, error = %e, "login refused");
                        if self.caps.auth_failure_close {
                            let text = e.to_string();
                            let text = text.split_once(" - ").map(|(_, t)| t.to_string()).unwrap_or(text);
                            return Err(AmqpError::new(ACCESS_REFUSED, text));
                        }
                        self.state = State::Done;
                        return Ok(());
                    }
                }
                encode_method(
                    &mut self.out,
                    0,
                    AMQPClass::Connection(C::Tune(connection::Tune {
                        channel_max: self.broker.config.channel_max,
                        frame_max: self.broker.config.frame_max,
                        heartbeat: self.broker.config.heartbeat,
                    })),
                );
                self.state = State::AwaitTuneOk;
                Ok(())
            }
            (State::AwaitTuneOk, C::TuneOk(t)) => {
                let max = self.broker.config.frame_max;
                let frame_max = if t.frame_max == 0 { max } else { t.frame_max };
                if frame_max > max {
                    return Err(AmqpError::new(
                        NOT_ALLOWED,
                        format!("negotiated frame_max = {frame_max} is larger than the maximum allowed value ({max})"),
                    ));
                }
                if frame_max < MIN_FRAME_MAX {
                    return Err(AmqpError::new(
                        NOT_ALLOWED,
                        format!("frame_max={frame_max} < {MIN_FRAME_MAX} min size"),
                    ));
                }
                self.frame_max = frame_max;
                let cmax = self.broker.config.channel_max;
                self.channel_max = if t.channel_max == 0 || t.channel_max > cmax {
                    cmax
                } else {
                    t.channel_max
                };
                self.heartbeat = t.heartbeat;
                self.state = State::AwaitOpen;
                Ok(())
            }
            (State::AwaitOpen, C::Open(o)) => {
                let name = o.virtual_host.as_str();
                let Some(vhost) = self.broker.vhost(name) else {
                    return Err(AmqpError::new(NOT_ALLOWED, format!("vhost {name} not found")));
                };
                self.access = self.open_access(name)?;
                self.vhost = Some(vhost);
                encode_method(
                    &mut self.out,
                    0,
                    AMQPClass::Connection(C::OpenOk(connection::OpenOk {})),
                );
                self.state = State::Open;
                self.close_deadline = None;
                info!(connection = self.id, peer = %self.peer, user = %self.user, vhost = name, "connection opened");
                *self.entry.user.lock().unwrap_or_else(|e| e.into_inner()) = self.user.clone();
                *self.entry.vhost.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
                Ok(())
            }
            (_, C::Close(c)) => {
                debug!(connection = self.id, code = c.reply_code, text = %c.reply_text, "client closed the connection");
                self.close_all_channels();
                // Exclusive queues are gone before close-ok, so the client may redeclare them at once.
                if let Some(vhost) = &self.vhost {
                    vhost.remove_exclusive_queues(self.id);
                }
                encode_method(
                    &mut self.out,
                    0,
                    AMQPClass::Connection(C::CloseOk(connection::CloseOk {})),
                );
                self.state = State::Done;
                Ok(())
            }
            (State::Open, C::CloseOk(_) | C::Blocked(_) | C::Unblocked(_)) => Ok(()),
            (State::Open, C::UpdateSecret(u)) => {
                // As RabbitMQ's internal backend does: the new secret must be this user's valid password, or the
                // connection ends with 403.
                let mut response = Vec::with_capacity(self.user.len() + u.new_secret.as_bytes().len() + 2);
                response.push(0);
                response.extend_from_slice(self.user.as_bytes());
                response.push(0);
                response.extend_from_slice(u.new_secret.as_bytes());
                if let Err(e) = self.broker.access.login("PLAIN", &response, self.peer.ip()) {
                    warn!(connection = self.id, peer = %self.peer, error = %e, "update-secret refused");
                    return Err(AmqpError::new(
                        ACCESS_REFUSED,
                        format!("new secret for user '{}' was refused", self.user),
                    ));
                }
                info!(connection = self.id, user = %self.user, reason = %u.reason, "secret updated");
                encode_method(
                    &mut self.out,
                    0,
                    AMQPClass::Connection(C::UpdateSecretOk(connection::UpdateSecretOk {})),
                );
                Ok(())
            }
            (state, other) => Err(AmqpError::command_invalid(format!(
                "connection method {} is not expected in state {state:?}",
                m.get_amqp_method_id()
            ))
            .on(&AMQPClass::Connection(other.clone()))),
        }
    }

    /// Checks connection.start-ok's mechanism and response. EXTERNAL logs in as the verified client certificate's
    /// CN (the response is ignored, as RabbitMQ's rabbitmq_auth_mechanism_ssl does); it is unknown without one.
    fn login(
        &self,
        mechanism: &str,
        response: &[u8],
    ) -> Result<crate::store::access_defs::UserDef, crate::auth::AuthError> {
        match (mechanism, &self.peer_cn) {
            ("EXTERNAL", Some(cn)) => self.broker.access.login_external(cn, self.peer.ip()),
            _ => self.broker.access.login(mechanism, response, self.peer.ip()),
        }
    }

    /// connection.open's checks beyond the vhost's existence: the user needs permissions on the vhost, and the
    /// vhost's and the user's connection limits must allow one more (RabbitMQ's 530 texts).
    fn open_access(&self, vhost: &str) -> Result<ConnAccess, AmqpError> {
        let user = &self.user;
        let refused = |why: String| {
            self.broker.audit.record(crate::audit::Event {
                user,
                peer: Some(self.peer.ip()),
                action: "connection_refused",
                vhost: Some(vhost),
                object: &format!("connection {}", self.id),
                messages: None,
                result: &why,
            });
            AmqpError::new(NOT_ALLOWED, why)
        };
        let Some(access) = ConnAccess::open(&self.broker.access, user, vhost) else {
            return Err(refused(format!("access to vhost '{vhost}' refused for user '{user}'")));
        };
        let others = self.broker.connection_entries();
        let count = |f: &dyn Fn(&crate::broker::ConnectionEntry) -> bool| {
            others.iter().filter(|c| c.id != self.id && f(c)).count() as u64
        };
        if let Some(max) = self.broker.access.vhost_limits(vhost).max_connections {
            if count(&|c| *c.vhost.lock().unwrap_or_else(|e| e.into_inner()) == vhost) >= max {
                return Err(refused(format!(
                    "access to vhost '{vhost}' refused for user '{user}': connection limit ({max}) is reached"
                )));
            }
        }
        if let Some(max) = self.broker.access.user_limits(user).max_connections {
            if count(&|c| *c.user.lock().unwrap_or_else(|e| e.into_inner()) == *user) >= max {
                return Err(refused(format!(
                    "connection refused for user '{user}': user connection limit ({max}) is reached"
                )));
            }
        }
        Ok(access)
    }

    fn read_client_caps(&mut self, props: &FieldTable) {
        let text = |k: &str| crate::args::get_str(props, k).map(|s| s.chars().take(200).collect::<String>());
        let product = match (text("product"), text("version")) {
            (Some(p), Some(v)) => Some(format!("{p} {v}")),
            (p, _) => p,
        };
        *self.entry.client.lock().unwrap_or_else(|e| e.into_inner()) = crate::broker::ClientInfo {
            name: text("connection_name"),
            product,
        };
        if let Some(AMQPValue::FieldTable(caps)) = props.inner().get("capabilities") {
            let flag = |k: &str| matches!(caps.inner().get(k), Some(AMQPValue::Boolean(true)));
            self.caps.cancel_notify = flag("consumer_cancel_notify");
            self.caps.auth_failure_close = flag("authentication_failure_close");
            self.caps.connection_blocked = flag("connection.blocked");
        }
    }

    fn send_start(&mut self) {
        let mut caps = FieldTable::default();
        for c in [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "authentication_failure_close",
            "per_consumer_qos",
            "direct_reply_to",
            "consumer_priorities",
        ] {
            caps.insert(c.into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        let s = |v: &str| AMQPValue::LongString(LongString::from(v));
        props.insert("product".into(), s("Warren"));
        props.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
        props.insert("platform".into(), s("Rust"));
        props.insert("copyright".into(), s("The Warren authors"));
        props.insert("information".into(), s("Licensed under the MIT license"));
        props.insert("cluster_name".into(), s("warren"));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        encode_method(
            &mut self.out,
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: props,
                mechanisms: if self.peer_cn.is_some() {
                    "PLAIN AMQPLAIN EXTERNAL".into()
                } else {
                    "PLAIN AMQPLAIN".into()
                },
                locales: "en_US".into(),
            })),
        );
    }

    /// Builds a channel context from the connection's fields (split borrows, so the channels map stays free).
    #[allow(clippy::too_many_arguments)]
    fn ctx<'a>(
        broker: &'a Arc<Broker>,
        vhost: &'a Arc<VHost>,
        id: u64,
        outbox: &'a Arc<Outbox>,
        out: &'a mut BytesMut,
        frame_max: u32,
        cancel_notify: bool,
        kick: &'a mut Vec<Arc<Queue>>,
        flush: &'a mut Vec<Arc<Queue>>,
        access: &'a mut ConnAccess,
    ) -> Ctx<'a> {
        Ctx {
            broker,
            vhost,
            connection_id: id,
            outbox,
            out,
            frame_max,
            cancel_notify,
            kick,
            flush,
            access,
        }
    }

    fn handle_channel_frame(&mut self, id: u16, frame: Frame) -> Result<(), AmqpError> {
        let Some(vhost) = self.vhost.clone() else {
            return Err(AmqpError::command_invalid("connection not open"));
        };
        let open =
            matches!(&frame, Frame::Method(_, m) if matches!(**m, AMQPClass::Channel(channel::AMQPMethod::Open(_))));
        if open {
            // A channel we closed whose close-ok never came (the client answered our channel.close with its own):
            // the client moved on, so may we.
            if self.channels.get(&id).is_some_and(|ch| ch.closing) {
                self.remove_channel(id);
            }
            if self.channels.contains_key(&id) {
                return Err(AmqpError::channel_error(format!(
                    "second 'channel.open' seen on channel {id}"
                )));
            }
            if id > self.channel_max {
                return Err(AmqpError::new(
                    NOT_ALLOWED,
                    format!("channel {id} is above the negotiated channel_max {}", self.channel_max),
                ));
            }
            if let Some(max) = self.broker.access.user_limits(&self.user).max_channels {
                let open: u64 = self
                    .broker
                    .connection_entries()
                    .iter()
                    .filter(|c| *c.user.lock().unwrap_or_else(|e| e.into_inner()) == self.user)
                    .map(|c| c.channels.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
                    .sum();
                if open >= max {
                    return Err(AmqpError::new(
                        NOT_ALLOWED,
                        format!(
                            "number of channels opened for user '{}' has reached the maximum allowed user limit of ({max})",
                            self.user
                        ),
                    ));
                }
            }
            self.channels.insert(id, Channel::new(id, self.entry.counters.clone()));
            bump(&self.entry.counters.channels_opened, 1);
            self.entry.channels.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
            encode_method(
                &mut self.out,
                id,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            );
            return Ok(());
        }
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(AmqpError::new(
                CHANNEL_ERROR,
                format!("expected 'channel.open' for channel {id}"),
            ));
        };
        let mut ctx = Self::ctx(
            &self.broker,
            &vhost,
            self.id,
            &self.outbox,
            &mut self.out,
            self.frame_max,
            self.caps.cancel_notify,
            &mut self.kick,
            &mut self.flush,
            &mut self.access,
        );
        if let Frame::Method(_, m) = &frame {
            match **m {
                AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                    // Crossed closes (we sent channel.close and the client sent its own before reading ours):
                    // answer theirs, and keep the channel until the close-ok for ours arrives (spec 2.2.4: after
                    // sending close, accept only close and close-ok).
                    let crossed = ch.closing;
                    if !crossed {
                        ch.close_down(&mut ctx);
                    }
                    ctx.send(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    if !crossed {
                        self.remove_channel(id);
                    }
                    return Ok(());
                }
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                    if ch.closing {
                        self.remove_channel(id);
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        if ch.closing {
            return Ok(());
        }
        match ch.handle_frame(&mut ctx, frame) {
            Ok(()) => Ok(()),
            Err(e) if e.is_hard() => Err(e),
            Err(e) => {
                debug!(connection = self.id, channel = id, code = e.code, text = %e.text, "closing channel");
                ch.close_down(&mut ctx);
                ch.closing = true;
                ctx.send(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                        reply_code: e.code,
                        reply_text: e.text.as_str().into(),
                        class_id: e.class_id,
                        method_id: e.method_id,
                    })),
                );
                Ok(())
            }
        }
    }

    fn remove_channel(&mut self, id: u16) {
        if self.channels.remove(&id).is_some() {
            bump(&self.entry.counters.channels_closed, 1);
        }
        self.entry
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// End of a read batch: one cumulative confirm per channel, and one dispatch per queue whose credit came back.
    fn end_of_batch(&mut self) {
        // Acks gathered in this batch: one settle per queue, before the queues they unblock are dispatched.
        if self.channels.values().any(|ch| !ch.acked.is_empty()) {
            if let Some(vhost) = self.vhost.clone() {
                let mut ctx = Self::ctx(
                    &self.broker,
                    &vhost,
                    self.id,
                    &self.outbox,
                    &mut self.out,
                    self.frame_max,
                    self.caps.cancel_notify,
                    &mut self.kick,
                    &mut self.flush,
                    &mut self.access,
                );
                for ch in self.channels.values_mut() {
                    ch.flush_acks(&mut ctx);
                }
            }
        }
        // Deferred records reach their files (one write per queue) and get their group-commit round before any
        // confirm is sent.
        if !self.flush.is_empty() {
            let (mut ticket, mut failed) = (0, false);
            for q in self.flush.drain(..) {
                match q.flush_writes() {
                    Ok(t) => ticket = ticket.max(t),
                    Err(e) => {
                        warn!(connection = self.id, queue = %q.spec.name, error = %e, "could not write messages; they are nacked");
                        failed = true;
                    }
                }
            }
            for ch in self.channels.values_mut() {
                ch.resolve_flush(ticket, failed);
            }
        }
        let progress = self.sync_rx.borrow_and_update().clone();
        for ch in self.channels.values_mut() {
            ch.flush_confirms(&mut self.out, Some(&progress));
        }
        for q in self.kick.drain(..) {
            q.dispatch();
        }
    }

    /// Encodes what queues handed this connection.
    fn drain_outbox(&mut self) {
        let Some(vhost) = self.vhost.clone() else {
            return;
        };
        let mut items = std::mem::take(&mut self.spare);
        self.outbox.take(&mut items);
        if !items.is_empty() {
            self.last_delivery = Instant::now();
        }
        let mut orphans: Vec<Pending> = Vec::new();
        {
            let mut ctx = Self::ctx(
                &self.broker,
                &vhost,
                self.id,
                &self.outbox,
                &mut self.out,
                self.frame_max,
                self.caps.cancel_notify,
                &mut self.kick,
                &mut self.flush,
                &mut self.access,
            );
            let mut delivered_on: Vec<u16> = Vec::new();
            for item in items.drain(..) {
                match item {
                    OutboxItem::Deliver(d) => {
                        let channel = d.channel;
                        let result = match self.channels.get_mut(&channel) {
                            Some(ch) if !ch.closing => ch.deliver(&mut ctx, d),
                            _ => Err(d),
                        };
                        if result.is_ok() && delivered_on.last() != Some(&channel) && !delivered_on.contains(&channel) {
                            delivered_on.push(channel);
                        }
                        if let Err(d) = result {
                            // The consumer went away while this was in flight: back to its queue.
                            if let Some(queue) = d.queue {
                                orphans.push(Pending {
                                    tag: 0,
                                    queue,
                                    entry: d.entry,
                                    credit: d.credit,
                                });
                            }
                        }
                    }
                    OutboxItem::Cancel { channel, consumer_tag } => {
                        if let Some(ch) = self.channels.get_mut(&channel) {
                            ch.server_cancel(&mut ctx, &consumer_tag);
                        }
                    }
                }
            }
            // No-ack deliveries are done with once written: settle them per queue, now.
            for channel in delivered_on {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.flush_acks(&mut ctx);
                }
            }
        }
        self.spare = items;
        if !orphans.is_empty() {
            orphans.sort_by_key(|p| p.entry.seq);
            requeue_grouped(orphans);
        }
        // A queue held deliveries back while this outbox was full: there is room again.
        if self.outbox.take_held_back() {
            for ch in self.channels.values() {
                for c in ch.consumers.values() {
                    if !self.kick.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                        self.kick.push(c.queue.clone());
                    }
                }
            }
        }
        // Deliveries may have returned no-ack credit.
        for q in self.kick.drain(..) {
            q.dispatch();
        }
    }

    fn close_all_channels(&mut self) {
        let Some(vhost) = self.vhost.clone() else {
            return;
        };
        let mut scratch = BytesMut::new();
        let mut ctx = Self::ctx(
            &self.broker,
            &vhost,
            self.id,
            &self.outbox,
            &mut scratch,
            self.frame_max,
            false,
            &mut self.kick,
            &mut self.flush,
            &mut self.access,
        );
        for (_, mut ch) in self.channels.drain() {
            ch.close_down(&mut ctx);
            bump(&self.entry.counters.channels_closed, 1);
        }
    }

    /// Whatever ended the connection: release everything it held.
    fn cleanup(&mut self) {
        self.close_all_channels();
        // Deliveries that reached the outbox after the consumers were removed go back to their queues.
        let mut items = Vec::new();
        self.outbox.take(&mut items);
        let orphans: Vec<Pending> = items
            .into_iter()
            .filter_map(|i| match i {
                OutboxItem::Deliver(d) => d.queue.map(|queue| Pending {
                    tag: 0,
                    queue,
                    entry: d.entry,
                    credit: d.credit,
                }),
                OutboxItem::Cancel { .. } => None,
            })
            .collect();
        requeue_grouped(orphans);
        if let Some(vhost) = &self.vhost {
            vhost.remove_exclusive_queues(self.id);
        }
        self.kick.clear();
    }
}
