//! The null sink: an AMQP server that does just enough to let a client publish, and then discards everything.
//!
//! It answers the handshake (connection.start/tune/open), channel.open, the declares and binds, basic.qos,
//! basic.consume (and never delivers) and confirm.select, counts each basic.publish without reading its content,
//! and on confirm channels acks everything published so far with one `multiple` basic.ack per channel per read.
//! What a client reaches against it is the client's own limit: the broker costs nothing.

use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::codec::{self, Inbound, PROTOCOL_HEADER};
use super::conn::READ_CHUNK;
use super::PerfError;

const FRAME_MAX: u32 = 131_072;
const CHANNEL_MAX: u16 = 2047;

/// Accepts connections until `stop`; each is served by a task of its own.
pub async fn serve(listener: TcpListener, stop: CancellationToken) -> std::io::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => r?,
            _ = stop.cancelled() => return Ok(()),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = serve_connection(stream) => {
                    if let Err(e) = r {
                        eprintln!("sink: connection from {peer}: {e}");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Per channel: whether it is in confirm mode, what was published, what was acked.
#[derive(Debug, Default, Clone, Copy)]
struct ChannelState {
    confirm: bool,
    published: u64,
    acked: u64,
}

async fn serve_connection(mut stream: TcpStream) -> Result<(), PerfError> {
    stream
        .set_nodelay(true)
        .map_err(|e| PerfError::Io("set TCP_NODELAY".into(), e))?;
    let mut header = [0u8; 8];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| PerfError::Io("read the protocol header".into(), e))?;
    if &header != PROTOCOL_HEADER {
        let _ = stream.write_all(PROTOCOL_HEADER).await;
        return Err(PerfError::Protocol("not an AMQP 0-9-1 client".into()));
    }
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut props = FieldTable::default();
    props.insert("product".into(), AMQPValue::LongString("warren-perf sink".into()));
    let mut caps = FieldTable::default();
    for cap in ["publisher_confirms", "basic.nack", "consumer_cancel_notify"] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    codec::encode_method(
        &mut wbuf,
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: props,
            mechanisms: LongString::from("PLAIN AMQPLAIN"),
            locales: LongString::from("en_US"),
        })),
    );
    let mut channels = vec![ChannelState::default(); CHANNEL_MAX as usize + 1];
    let mut dirty: Vec<u16> = Vec::new();
    loop {
        if !wbuf.is_empty() {
            stream
                .write_all(&wbuf)
                .await
                .map_err(|e| PerfError::Io("write".into(), e))?;
            wbuf.clear();
        }
        rbuf.reserve(READ_CHUNK);
        let n = stream
            .read_buf(&mut rbuf)
            .await
            .map_err(|e| PerfError::Io("read".into(), e))?;
        if n == 0 {
            return Ok(());
        }
        let mut pos = 0;
        while let Some((frame, n)) = codec::decode(&rbuf[pos..], FRAME_MAX)? {
            pos += n;
            match frame {
                Inbound::Publish { channel } => {
                    if let Some(c) = channels.get_mut(channel as usize).filter(|c| c.confirm) {
                        if c.published == c.acked {
                            dirty.push(channel);
                        }
                        c.published += 1;
                    }
                }
                Inbound::Method(ch, m) => {
                    if let Some(reply) = answer(&m, &mut channels, ch) {
                        codec::encode_method(&mut wbuf, ch, reply);
                    }
                    if matches!(
                        *m,
                        AMQPClass::Connection(connection::AMQPMethod::Close(_) | connection::AMQPMethod::CloseOk(_))
                    ) {
                        let _ = stream.write_all(&wbuf).await;
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        rbuf.advance(pos);
        for ch in dirty.drain(..) {
            if let Some(c) = channels.get_mut(ch as usize) {
                if c.published > c.acked {
                    codec::encode_ack(&mut wbuf, ch, c.published, true);
                    c.acked = c.published;
                }
            }
        }
    }
}

/// The reply a minimal broker gives to a method, if any.
fn answer(m: &AMQPClass, channels: &mut [ChannelState], ch: u16) -> Option<AMQPClass> {
    use AMQPClass as C;
    Some(match m {
        C::Connection(connection::AMQPMethod::StartOk(_)) => {
            C::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: CHANNEL_MAX,
                frame_max: FRAME_MAX,
                heartbeat: 0,
            }))
        }
        C::Connection(connection::AMQPMethod::Open(_)) => {
            C::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {}))
        }
        C::Connection(connection::AMQPMethod::Close(_)) => {
            C::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}))
        }
        C::Channel(channel::AMQPMethod::Open(_)) => {
            if let Some(c) = channels.get_mut(ch as usize) {
                *c = ChannelState::default();
            }
            C::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}))
        }
        C::Channel(channel::AMQPMethod::Close(_)) => C::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
        C::Queue(queue::AMQPMethod::Declare(d)) if !d.nowait => {
            let name = if d.queue.as_str().is_empty() {
                ShortString::from(format!("amq.gen-sink-{ch}"))
            } else {
                d.queue.clone()
            };
            C::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                queue: name,
                message_count: 0,
                consumer_count: 0,
            }))
        }
        C::Queue(queue::AMQPMethod::Bind(b)) if !b.nowait => C::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
        C::Queue(queue::AMQPMethod::Purge(p)) if !p.nowait => {
            C::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: 0 }))
        }
        C::Queue(queue::AMQPMethod::Delete(d)) if !d.nowait => {
            C::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: 0 }))
        }
        C::Exchange(exchange::AMQPMethod::Declare(d)) if !d.nowait => {
            C::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}))
        }
        C::Basic(basic::AMQPMethod::Qos(_)) => C::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
        C::Basic(basic::AMQPMethod::Consume(c)) if !c.nowait => {
            let tag = if c.consumer_tag.as_str().is_empty() {
                ShortString::from(format!("amq.ctag-sink-{ch}"))
            } else {
                c.consumer_tag.clone()
            };
            C::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk { consumer_tag: tag }))
        }
        C::Confirm(confirm::AMQPMethod::Select(_)) => {
            if let Some(c) = channels.get_mut(ch as usize) {
                c.confirm = true;
            }
            C::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {}))
        }
        _ => return None,
    })
}
