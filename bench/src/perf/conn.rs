//! One client connection: the socket with its read and write buffers, the AMQP handshake, and the synchronous
//! calls the setup phase makes (channel.open, declares, qos, consume, confirm.select).
//!
//! The hot loops in `producer` and `consumer` then drive the same buffers with `try_read`/`try_write` on readiness,
//! so a connection is always one task and never splits its socket.

use std::io;
use std::time::Duration;

use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use amq_protocol::uri::AMQPUri;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, CodecError, Inbound, FRAME_MIN_SIZE, PROTOCOL_HEADER};
use super::PerfError;

/// The largest frame this client asks for; brokers offer 128 KiB (Warren, RabbitMQ) or 128 KiB (LavinMQ).
const CLIENT_FRAME_MAX: u32 = 131_072;

/// What the read buffer grows to between reads: large enough that one read takes in thousands of small messages.
pub const READ_CHUNK: usize = 256 * 1024;

/// Where to connect and as whom, parsed from an `amqp://user:pass@host:port/vhost` URI.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl Endpoint {
    pub fn parse(uri: &str) -> Result<Endpoint, PerfError> {
        let u: AMQPUri = uri
            .parse()
            .map_err(|e| PerfError::Usage(format!("invalid --uri '{uri}': {e}")))?;
        Ok(Endpoint {
            host: u.authority.host,
            port: u.authority.port,
            user: u.authority.userinfo.username,
            password: u.authority.userinfo.password,
            vhost: u.vhost,
        })
    }
}

pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    /// As agreed in connection.tune: bounds every inbound frame and cuts outbound bodies.
    pub frame_max: u32,
}

impl Conn {
    /// Connects and runs the handshake up to connection.open-ok (PLAIN login, heartbeats off).
    pub async fn open(ep: &Endpoint) -> Result<Conn, PerfError> {
        let stream = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| PerfError::Io(format!("connect to {}:{}", ep.host, ep.port), e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| PerfError::Io("set TCP_NODELAY".into(), e))?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            frame_max: FRAME_MIN_SIZE,
        };
        c.wbuf.extend_from_slice(PROTOCOL_HEADER);
        c.flush().await?;
        match c.next_method(0).await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(_)) => {}
            other => return Err(unexpected("connection.start", &other)),
        }
        let mut props = FieldTable::default();
        props.insert("product".into(), AMQPValue::LongString("warren-perf".into()));
        let mut caps = FieldTable::default();
        caps.insert("publisher_confirms".into(), AMQPValue::Boolean(true));
        caps.insert("basic.nack".into(), AMQPValue::Boolean(true));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let response = format!("\0{}\0{}", ep.user, ep.password);
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: ShortString::from("PLAIN"),
                response: LongString::from(response),
                locale: ShortString::from("en_US"),
            })),
        );
        c.flush().await?;
        let tune = match c.next_method(0).await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(unexpected("connection.tune", &other)),
        };
        let frame_max = match tune.frame_max {
            0 => CLIENT_FRAME_MAX,
            n => n.min(CLIENT_FRAME_MAX),
        };
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat: 0,
            })),
        );
        c.frame_max = frame_max.max(FRAME_MIN_SIZE);
        c.call(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ep.vhost.as_str().into(),
            })),
            "connection.open-ok",
            |m| matches!(m, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))),
        )
        .await?;
        Ok(c)
    }

    /// Appends a method frame to the write buffer.
    pub fn send(&mut self, channel: u16, method: AMQPClass) {
        codec::encode_method(&mut self.wbuf, channel, method);
    }

    pub async fn flush(&mut self) -> Result<(), PerfError> {
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(|e| PerfError::Io("write".into(), e))?;
        self.wbuf.clear();
        Ok(())
    }

    /// Sends `method` and waits for the reply `is_reply` accepts (setup only: anything else is an error).
    pub async fn call(
        &mut self,
        channel: u16,
        method: AMQPClass,
        reply: &'static str,
        is_reply: impl Fn(&AMQPClass) -> bool,
    ) -> Result<AMQPClass, PerfError> {
        self.send(channel, method);
        self.flush().await?;
        let m = self.next_method(channel).await?;
        if is_reply(&m) {
            Ok(m)
        } else {
            Err(unexpected(reply, &m))
        }
    }

    /// Reads until the next method frame (setup only). A close from the broker becomes an error that says why.
    pub async fn next_method(&mut self, channel: u16) -> Result<AMQPClass, PerfError> {
        loop {
            let decoded = match codec::decode(&self.rbuf, self.frame_max)? {
                Some((Inbound::Method(ch, m), n)) => Some((ch, m, n)),
                Some((Inbound::Heartbeat, n)) => {
                    self.rbuf.advance(n);
                    continue;
                }
                Some((other, _)) => {
                    return Err(PerfError::Protocol(format!(
                        "unexpected {other:?} while setting up channel {channel}"
                    )))
                }
                None => None,
            };
            if let Some((ch, m, n)) = decoded {
                self.rbuf.advance(n);
                check_close(ch, &m)?;
                return Ok(*m);
            }
            self.rbuf.reserve(READ_CHUNK);
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| PerfError::Io("read".into(), e))?;
            if n == 0 {
                return Err(PerfError::Protocol("the broker closed the connection".into()));
            }
        }
    }

    pub async fn open_channel(&mut self, ch: u16) -> Result<(), PerfError> {
        self.call(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            "channel.open-ok",
            |m| matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))),
        )
        .await
        .map(|_| ())
    }

    /// A durable queue, with `x-queue-type` when `kind` is given.
    pub async fn declare_queue(&mut self, ch: u16, name: &str, kind: Option<&str>) -> Result<(), PerfError> {
        let mut arguments = FieldTable::default();
        if let Some(k) = kind {
            arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from(k)));
        }
        self.call(
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                durable: true,
                arguments,
                ..Default::default()
            })),
            "queue.declare-ok",
            |m| matches!(m, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))),
        )
        .await
        .map(|_| ())
    }

    pub async fn declare_exchange(&mut self, ch: u16, name: &str, kind: &str) -> Result<(), PerfError> {
        self.call(
            ch,
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: name.into(),
                kind: kind.into(),
                durable: true,
                ..Default::default()
            })),
            "exchange.declare-ok",
            |m| matches!(m, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_))),
        )
        .await
        .map(|_| ())
    }

    pub async fn bind_queue(&mut self, ch: u16, q: &str, exchange: &str, key: &str) -> Result<(), PerfError> {
        self.call(
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: q.into(),
                exchange: exchange.into(),
                routing_key: key.into(),
                ..Default::default()
            })),
            "queue.bind-ok",
            |m| matches!(m, AMQPClass::Queue(queue::AMQPMethod::BindOk(_))),
        )
        .await
        .map(|_| ())
    }

    pub async fn confirm_select(&mut self, ch: u16) -> Result<(), PerfError> {
        self.call(
            ch,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })),
            "confirm.select-ok",
            |m| matches!(m, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))),
        )
        .await
        .map(|_| ())
    }

    pub async fn qos(&mut self, ch: u16, prefetch: u16) -> Result<(), PerfError> {
        self.call(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: prefetch,
                global: false,
            })),
            "basic.qos-ok",
            |m| matches!(m, AMQPClass::Basic(basic::AMQPMethod::QosOk(_))),
        )
        .await
        .map(|_| ())
    }

    pub async fn consume(&mut self, ch: u16, q: &str, no_ack: bool) -> Result<(), PerfError> {
        self.call(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: q.into(),
                consumer_tag: format!("warren-perf-{ch}").as_str().into(),
                no_ack,
                ..Default::default()
            })),
            "basic.consume-ok",
            |m| matches!(m, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))),
        )
        .await
        .map(|_| ())
    }

    /// Sends connection.close and waits (at most `wait`) for connection.close-ok, dropping whatever else arrives
    /// (deliveries still in flight); a broker busy with a backlog may take longer, and then the socket is simply
    /// dropped.
    pub async fn close(mut self, wait: Duration) {
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: 200,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            })),
        );
        let _ = tokio::time::timeout(wait, async {
            self.flush().await?;
            loop {
                let mut pos = 0;
                while let Some((frame, n)) = codec::decode(&self.rbuf[pos..], self.frame_max)? {
                    pos += n;
                    if let Inbound::Method(_, m) = frame {
                        if matches!(*m, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) {
                            return Ok(());
                        }
                    }
                }
                self.rbuf.advance(pos);
                self.rbuf.reserve(READ_CHUNK);
                let n = self
                    .stream
                    .read_buf(&mut self.rbuf)
                    .await
                    .map_err(|e| PerfError::Io("read".into(), e))?;
                if n == 0 {
                    return Ok::<(), PerfError>(());
                }
            }
        })
        .await;
    }
}

/// A connection.close or channel.close from the broker, as an error that quotes its reply.
pub fn check_close(channel: u16, m: &AMQPClass) -> Result<(), PerfError> {
    match m {
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Err(PerfError::Closed(format!(
            "the broker closed the connection: {} {}",
            c.reply_code, c.reply_text
        ))),
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Err(PerfError::Closed(format!(
            "the broker closed channel {channel}: {} {}",
            c.reply_code, c.reply_text
        ))),
        _ => Ok(()),
    }
}

/// What a running producer or consumer does with a method that is not one of its hot frames: a close or a consumer
/// cancel from the broker ends the run with its reason, channel.flow is answered, anything else is ignored.
pub fn answer_control(wbuf: &mut BytesMut, ch: u16, m: &AMQPClass) -> Result<(), PerfError> {
    check_close(ch, m)?;
    match m {
        AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => Err(PerfError::Closed(format!(
            "the broker cancelled the consumer on channel {ch}"
        ))),
        AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
            let ok = channel::FlowOk { active: f.active };
            codec::encode_method(wbuf, ch, AMQPClass::Channel(channel::AMQPMethod::FlowOk(ok)));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The item for `channel` among a connection's channels. They are numbered 1..=n in order, so this is an index;
/// the search is a fallback.
pub fn by_channel<T>(items: &mut [T], channel: u16, id: impl Fn(&T) -> u16) -> Option<&mut T> {
    let idx = (channel as usize).wrapping_sub(1);
    let idx = if items.get(idx).is_some_and(|c| id(c) == channel) {
        Some(idx)
    } else {
        items.iter().position(|c| id(c) == channel)
    };
    idx.and_then(|i| items.get_mut(i))
}

fn unexpected(wanted: &str, got: &AMQPClass) -> PerfError {
    PerfError::Protocol(format!("expected {wanted}, got {got:?}"))
}

impl From<CodecError> for PerfError {
    fn from(e: CodecError) -> Self {
        PerfError::Protocol(e.to_string())
    }
}

/// Reads what is there without waiting: `Ok(true)` if bytes came in, `Ok(false)` if none were ready.
pub fn try_read(stream: &TcpStream, rbuf: &mut BytesMut) -> Result<bool, PerfError> {
    rbuf.reserve(READ_CHUNK);
    match stream.try_read_buf(rbuf) {
        Ok(0) => Err(PerfError::Protocol("the broker closed the connection".into())),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(PerfError::Io("read".into(), e)),
    }
}

/// Writes what the socket takes without waiting: `Ok(true)` if anything was written.
pub fn try_write(stream: &TcpStream, wbuf: &mut BytesMut) -> Result<bool, PerfError> {
    if wbuf.is_empty() {
        return Ok(false);
    }
    match stream.try_write(wbuf) {
        Ok(n) => {
            wbuf.advance(n);
            Ok(n > 0)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(PerfError::Io("write".into(), e)),
    }
}
