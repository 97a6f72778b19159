//! warren-perf's frame codec: pure functions over byte slices, no I/O.
//!
//! The hot frames are hand-encoded: a publish (method + content header + body frames) is encoded once per channel
//! into a [`PublishTemplate`], and each message is one `memcpy` of that template plus a 16-byte [`Stamp`] patched
//! into the body. Acks are written field by field. Everything else (the handshake, declares, consume, confirm
//! select) goes through `amq-protocol`'s generator, which is slower but off the hot path.
//!
//! Decoding ([`decode`]) reads the 7-byte frame header itself and refuses a frame larger than the negotiated
//! `frame_max` before waiting for its payload, so a peer cannot make the read buffer grow without bound. The frames
//! a load generator sees per message (basic.deliver, basic.ack, basic.nack, basic.publish at the sink, content
//! headers and bodies) are parsed by hand without allocating; any other method goes to `amq-protocol`'s parser,
//! after the broker's iterative nesting check has bounded the depth of its field tables.
//!
//! Invariants: `decode` never consumes part of a frame (it returns the length of a whole frame or nothing), and it
//! never allocates for a hot frame.

use amq_protocol::protocol::{parse_class, AMQPClass};
use bytes::{BufMut, BytesMut};
pub use warren_broker::amqp::codec::encode_method;
use warren_broker::amqp::codec::{begin_frame, end_frame, put_short_str};
use warren_broker::amqp::nesting;

/// The 8 bytes a client opens a connection with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

/// Frame type + channel + size before the payload, the end octet after it.
pub const FRAME_OVERHEAD: usize = 8;

/// The `frame_max` both sides may use before connection.tune has been agreed (spec: 4096).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// What the producer writes into the front of each body, so the consumer can measure latency and check order.
///
/// Layout (16 bytes, big-endian): send time in ns since the run's shared start instant (8), producer id (2),
/// sequence number (6, so 2^48 messages per producer). A body shorter than 16 bytes carries no stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When the message was meant to be sent (the intended time under a fixed rate), ns since the run started.
    pub sent_ns: u64,
    pub producer: u16,
    pub seq: u64,
}

impl Stamp {
    pub const LEN: usize = 16;

    pub fn write(&self, out: &mut [u8]) {
        if out.len() < Self::LEN {
            return;
        }
        out[0..8].copy_from_slice(&self.sent_ns.to_be_bytes());
        out[8..10].copy_from_slice(&self.producer.to_be_bytes());
        out[10..16].copy_from_slice(&self.seq.to_be_bytes()[2..8]);
    }

    pub fn read(body: &[u8]) -> Option<Stamp> {
        let b = body.get(..Self::LEN)?;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[0..8]);
        let mut seq = [0u8; 8];
        seq[2..8].copy_from_slice(&b[10..16]);
        Some(Stamp {
            sent_ns: u64::from_be_bytes(ts),
            producer: u16::from_be_bytes([b[8], b[9]]),
            seq: u64::from_be_bytes(seq),
        })
    }
}

/// One message's frames for a given channel, exchange, routing key, size and delivery mode, encoded once.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    /// Where the first body frame's payload starts, if the body is long enough to carry a stamp there.
    stamp_at: Option<usize>,
}

impl PublishTemplate {
    /// Encodes basic.publish, the content header (delivery mode 2 when persistent, no properties otherwise) and the
    /// body cut into frames of at most `frame_max - 8` bytes. Names longer than 255 bytes are cut (the caller
    /// validates them).
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        body_size: usize,
        persistent: bool,
        frame_max: u32,
    ) -> Self {
        let mut out = BytesMut::with_capacity(64 + body_size + FRAME_OVERHEAD);
        let start = begin_frame(&mut out, FRAME_METHOD, channel);
        out.put_u16(60);
        out.put_u16(40);
        out.put_u16(0); // reserved (ticket)
        put_short_str(&mut out, exchange);
        put_short_str(&mut out, routing_key);
        out.put_u8(0); // mandatory = immediate = false
        end_frame(&mut out, start);

        let start = begin_frame(&mut out, FRAME_HEADER, channel);
        out.put_u16(60);
        out.put_u16(0); // weight
        out.put_u64(body_size as u64);
        if persistent {
            out.put_u16(0x1000); // property flags: delivery-mode only
            out.put_u8(2);
        } else {
            out.put_u16(0);
        }
        end_frame(&mut out, start);

        let mut stamp_at = None;
        let max_chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
        let mut left = body_size;
        while left > 0 {
            let n = left.min(max_chunk);
            out.put_u8(FRAME_BODY);
            out.put_u16(channel);
            out.put_u32(n as u32);
            if stamp_at.is_none() && n >= Stamp::LEN {
                stamp_at = Some(out.len());
            }
            // A recognisable filler, so a body that arrives shifted or mixed up does not look like zeros.
            out.extend((0..n).map(|i| b'a' + (i % 26) as u8));
            out.put_u8(FRAME_END);
            left -= n;
        }
        PublishTemplate {
            bytes: out.to_vec(),
            stamp_at,
        }
    }

    /// Bytes per message on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends one message stamped with `stamp`.
    #[inline]
    pub fn encode(&self, out: &mut BytesMut, stamp: &Stamp) {
        let at = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(s) = self.stamp_at {
            stamp.write(&mut out[at + s..at + s + Stamp::LEN]);
        }
    }
}

/// Appends basic.ack (client to broker for deliveries, broker to client for confirms).
#[inline]
pub fn encode_ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(13);
    out.put_u16(60);
    out.put_u16(80);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(multiple));
    out.put_u8(FRAME_END);
}

/// One decoded inbound frame, borrowing the read buffer.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// basic.publish (the sink only counts these).
    Publish {
        channel: u16,
    },
    /// basic.deliver: what a consumer needs of it.
    Deliver {
        channel: u16,
        delivery_tag: u64,
        redelivered: bool,
    },
    /// basic.ack (`nack: false`) or basic.nack: a publisher confirm.
    Confirm {
        channel: u16,
        delivery_tag: u64,
        multiple: bool,
        nack: bool,
    },
    /// Any other method, parsed by `amq-protocol`.
    Method(u16, Box<AMQPClass>),
    Header {
        channel: u16,
        body_size: u64,
    },
    Body {
        channel: u16,
        payload: &'a [u8],
    },
    Heartbeat,
}

/// Why inbound bytes are not a frame this codec accepts; every one ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {size} bytes exceeds frame_max {frame_max}")]
    TooLarge { size: u64, frame_max: u32 },
    #[error("invalid frame end octet {0:#04x}")]
    BadFrameEnd(u8),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("could not decode {what} on channel {channel}")]
    Syntax { what: &'static str, channel: u16 },
}

/// Decodes the frame at the front of `buf`. `Ok(None)`: more bytes are needed. `Ok(Some((frame, n)))`: the frame
/// spans the first `n` bytes.
pub fn decode(buf: &[u8], frame_max: u32) -> Result<Option<(Inbound<'_>, usize)>, CodecError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let frame_type = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if size as u64 + FRAME_OVERHEAD as u64 > u64::from(frame_max) {
        return Err(CodecError::TooLarge {
            size: size as u64 + FRAME_OVERHEAD as u64,
            frame_max,
        });
    }
    if !matches!(frame_type, FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT) {
        return Err(CodecError::UnknownType(frame_type));
    }
    let total = size + FRAME_OVERHEAD;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(CodecError::BadFrameEnd(buf[total - 1]));
    }
    let payload = &buf[7..7 + size];
    let frame = match frame_type {
        FRAME_METHOD => decode_method(channel, payload)?,
        FRAME_HEADER => {
            let err = CodecError::Syntax {
                what: "content header",
                channel,
            };
            let b = payload.get(4..12).ok_or(err)?;
            let mut size = [0u8; 8];
            size.copy_from_slice(b);
            Inbound::Header {
                channel,
                body_size: u64::from_be_bytes(size),
            }
        }
        FRAME_BODY => Inbound::Body { channel, payload },
        _ => Inbound::Heartbeat,
    };
    Ok(Some((frame, total)))
}

fn decode_method(channel: u16, p: &[u8]) -> Result<Inbound<'static>, CodecError> {
    let syntax = |what| CodecError::Syntax { what, channel };
    if p.len() < 4 {
        return Err(syntax("method frame"));
    }
    let id = (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
    match id {
        (60, 40) => Ok(Inbound::Publish { channel }),
        (60, 60) => {
            // consumer-tag (short string), delivery-tag (u64), redelivered (bit), exchange, routing key
            let tag_len = *p.get(4).ok_or(syntax("basic.deliver"))? as usize;
            let at = 5 + tag_len;
            let fields = p.get(at..at + 9).ok_or(syntax("basic.deliver"))?;
            Ok(Inbound::Deliver {
                channel,
                delivery_tag: read_u64(&fields[..8]),
                redelivered: fields[8] & 1 != 0,
            })
        }
        (60, 80) | (60, 120) => {
            let fields = p.get(4..13).ok_or(syntax("basic.ack"))?;
            Ok(Inbound::Confirm {
                channel,
                delivery_tag: read_u64(&fields[..8]),
                multiple: fields[8] & 1 != 0,
                nack: id.1 == 120,
            })
        }
        _ => {
            if nesting::check_method(p).is_err() {
                return Err(syntax("method arguments (field tables nested too deep or malformed)"));
            }
            match parse_class(p) {
                Ok(([], m)) => Ok(Inbound::Method(channel, Box::new(m))),
                _ => Err(syntax("method arguments")),
            }
        }
    }
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::{parse_frame, AMQPFrame};
    use amq_protocol::protocol::{basic, queue};
    use amq_protocol::types::ShortString;

    /// Parses every frame in `buf` with amq-protocol's own parser.
    fn parse_all(mut buf: &[u8]) -> Vec<AMQPFrame> {
        let mut frames = Vec::new();
        while !buf.is_empty() {
            let (rest, f) = parse_frame(buf).expect("amq-protocol parses it");
            frames.push(f);
            buf = rest;
        }
        frames
    }

    #[test]
    fn publish_is_what_amq_protocol_parses() {
        for (size, persistent, frame_max) in [(16, false, 131072), (1024, true, 131072), (10_000, true, 4096)] {
            let t = PublishTemplate::new(3, "ex", "perf-test", size, persistent, frame_max);
            let mut out = BytesMut::new();
            let stamp = Stamp {
                sent_ns: 123_456_789,
                producer: 7,
                seq: (1 << 40) + 5,
            };
            t.encode(&mut out, &stamp);
            assert_eq!(out.len(), t.len());
            let frames = parse_all(&out);
            let expected = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: ShortString::from("ex"),
                routing_key: ShortString::from("perf-test"),
                mandatory: false,
                immediate: false,
            }));
            assert_eq!(frames[0], AMQPFrame::Method(3, expected));
            match &frames[1] {
                AMQPFrame::Header(3, h) => {
                    assert_eq!(h.class_id, 60);
                    assert_eq!(h.body_size, size as u64);
                    let mode = h.properties.delivery_mode();
                    assert_eq!(*mode, persistent.then_some(2));
                }
                other => panic!("expected a content header, got {other:?}"),
            }
            let mut body = Vec::new();
            for f in &frames[2..] {
                match f {
                    AMQPFrame::Body(3, b) => {
                        assert!(b.len() + FRAME_OVERHEAD <= frame_max as usize);
                        body.extend_from_slice(b);
                    }
                    other => panic!("expected a body frame, got {other:?}"),
                }
            }
            assert_eq!(body.len(), size);
            assert_eq!(Stamp::read(&body), Some(stamp));
        }
    }

    #[test]
    fn short_bodies_carry_no_stamp() {
        let t = PublishTemplate::new(1, "", "q", 8, false, 131072);
        let mut out = BytesMut::new();
        t.encode(
            &mut out,
            &Stamp {
                sent_ns: 1,
                producer: 1,
                seq: 1,
            },
        );
        let frames = parse_all(&out);
        assert!(matches!(&frames[2], AMQPFrame::Body(1, b) if b.len() == 8 && Stamp::read(b).is_none()));
        let t = PublishTemplate::new(1, "", "q", 0, false, 131072);
        assert_eq!(
            parse_all(&{
                let mut o = BytesMut::new();
                t.encode(
                    &mut o,
                    &Stamp {
                        sent_ns: 0,
                        producer: 0,
                        seq: 0,
                    },
                );
                o
            })
            .len(),
            2,
            "an empty body has no body frame"
        );
    }

    #[test]
    fn our_decoder_reads_our_publish_and_ack() {
        let t = PublishTemplate::new(2, "", "perf-test", 64, true, 131072);
        let mut out = BytesMut::new();
        let stamp = Stamp {
            sent_ns: 99,
            producer: 1,
            seq: 42,
        };
        t.encode(&mut out, &stamp);
        encode_ack(&mut out, 2, 1000, true);
        let mut pos = 0;
        let mut seen = Vec::new();
        while let Some((f, n)) = decode(&out[pos..], 131072).expect("decodes") {
            seen.push(format!("{f:?}"));
            if let Inbound::Body { payload, .. } = f {
                assert_eq!(Stamp::read(payload), Some(stamp));
            }
            pos += n;
        }
        assert_eq!(pos, out.len());
        assert_eq!(seen.len(), 4);
        assert!(seen[0].starts_with("Publish { channel: 2 }"));
        assert!(seen[1].starts_with("Header { channel: 2, body_size: 64 }"));
        assert!(seen[3].starts_with("Confirm { channel: 2, delivery_tag: 1000, multiple: true, nack: false }"));
    }

    #[test]
    fn ack_and_deliver_agree_with_amq_protocol() {
        let mut out = BytesMut::new();
        encode_ack(&mut out, 5, 77, false);
        let expected = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 77,
            multiple: false,
        }));
        assert_eq!(parse_all(&out), vec![AMQPFrame::Method(5, expected)]);

        // A deliver and a nack as a broker would send them, through amq-protocol's generator.
        let mut out = BytesMut::new();
        let deliver = basic::Deliver {
            consumer_tag: ShortString::from("amq.ctag-xyz"),
            delivery_tag: 1 << 33,
            redelivered: true,
            exchange: ShortString::from("x"),
            routing_key: ShortString::from("rk"),
        };
        encode_method(&mut out, 9, AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)));
        let nack = basic::Nack {
            delivery_tag: 12,
            multiple: true,
            requeue: false,
        };
        encode_method(&mut out, 9, AMQPClass::Basic(basic::AMQPMethod::Nack(nack)));
        let (f, n) = decode(&out, 4096).expect("ok").expect("whole");
        assert!(matches!(
            f,
            Inbound::Deliver {
                channel: 9,
                delivery_tag,
                redelivered: true
            } if delivery_tag == 1 << 33
        ));
        let (f, _) = decode(&out[n..], 4096).expect("ok").expect("whole");
        assert!(matches!(
            f,
            Inbound::Confirm {
                channel: 9,
                delivery_tag: 12,
                multiple: true,
                nack: true
            }
        ));
    }

    #[test]
    fn other_methods_go_through_amq_protocol() {
        let mut out = BytesMut::new();
        let ok = AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
            queue: "perf-test".into(),
            message_count: 3,
            consumer_count: 1,
        }));
        encode_method(&mut out, 1, ok.clone());
        match decode(&out, 4096) {
            Ok(Some((Inbound::Method(1, m), n))) => {
                assert_eq!(*m, ok);
                assert_eq!(n, out.len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bounded_and_partial() {
        let t = PublishTemplate::new(1, "", "q", 100, false, 131072);
        let mut out = BytesMut::new();
        t.encode(
            &mut out,
            &Stamp {
                sent_ns: 0,
                producer: 0,
                seq: 0,
            },
        );
        // Every cut inside the first frame waits for more; none consumes anything.
        let first = match decode(&out, 131072) {
            Ok(Some((_, n))) => n,
            other => panic!("unexpected {other:?}"),
        };
        for cut in 0..first {
            assert!(matches!(decode(&out[..cut], 131072), Ok(None)), "cut at {cut}");
        }
        // A frame that declares 4 GiB is refused from its header alone.
        assert!(matches!(
            decode(&[1, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF], 131072),
            Err(CodecError::TooLarge { .. })
        ));
        assert_eq!(
            decode(&[8, 0, 0, 0, 0, 0, 0, 0], 4096).err(),
            Some(CodecError::BadFrameEnd(0))
        );
        assert_eq!(
            decode(&[9, 0, 0, 0, 0, 0, 0, 0xCE], 4096).err(),
            Some(CodecError::UnknownType(9))
        );
        // A truncated deliver is a syntax error, not a panic.
        assert!(matches!(
            decode(&[1, 0, 1, 0, 0, 0, 5, 0, 60, 0, 60, 200, 0xCE], 4096),
            Err(CodecError::Syntax { .. })
        ));
    }
}
