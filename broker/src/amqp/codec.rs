//! The AMQP 0-9-1 frame codec: pure functions over byte buffers, no I/O.
//!
//! Decoding reads the 7-byte frame header itself so that a frame's declared size is checked against the
//! negotiated `frame_max` *before* any of its payload is buffered (`amq-protocol`'s `parse_frame` has no limit and
//! would let a peer that declares 4 GiB grow the buffer without bound). `decode_step` works on a byte slice and
//! says how many bytes a frame took, so the connection walks its read buffer with an offset and gives the bytes
//! back once per read. The hot path is decoded by hand, checked exactly as `amq-protocol` would check it:
//! `basic.publish` (`Frame::Publish`, no box) and the content header's property list (`properties::scan`, which
//! keeps the raw bytes and a summary instead of building `AMQPProperties`). Every other method goes to
//! `amq-protocol`'s parser after `nesting` has checked that no field table in it nests past its bound (the parser
//! recurses once per level). Small bodies are copied out of the read buffer; large ones are cut out as `Bytes`.
//!
//! Encoding writes straight into the connection's output `BytesMut`. The hot frames (deliver, content header,
//! body) are written by hand; everything else goes through `amq_protocol::frame::gen_frame`.

use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::basic::{AMQPProperties, Publish};
use amq_protocol::protocol::{basic, parse_class, AMQPClass};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::amqp::nesting::{self, NestingError};
use crate::amqp::properties::{self, PropertySummary, ScanError};

/// The 8 bytes a client opens a connection with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Frame type octets (spec section 4.2.3).
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;

/// Frame type + channel + size, then the end octet: what a frame costs beyond its payload.
pub const FRAME_OVERHEAD: usize = 8;

/// Bodies smaller than this are copied out of the read buffer instead of sliced from it, so that a queued 16-byte
/// message does not pin a whole 64 KiB read buffer in memory.
const COPY_BODY_BELOW: usize = 4096;

/// One decoded inbound frame. It lives on the stack for one dispatch, so the size gap between variants costs
/// nothing worth a heap allocation per message.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Frame {
    Method(u16, Box<AMQPClass>),
    /// basic.publish, decoded by hand (it is the one method on the hot path): no box, no parser combinators.
    Publish(u16, Publish),
    /// A content header: channel, body size, properties, and the raw property bytes so that a message can be
    /// delivered later without re-encoding them.
    Header(u16, ContentHeader),
    Body(u16, Bytes),
    Heartbeat(u16),
}

/// A decoded content header.
#[derive(Debug, Clone)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// The properties the broker acts on, scanned from `raw_properties` (which were checked in full).
    pub summary: PropertySummary,
    /// The encoded property flags and list, exactly as received.
    pub raw_properties: Bytes,
}

impl ContentHeader {
    /// Decodes the properties in full (for the paths that need more than the summary).
    pub fn properties(&self) -> AMQPProperties {
        // Checked at decode, so this parse succeeds; the bounded parse keeps the nesting rule in one place.
        nesting::parse_properties_bounded(&self.raw_properties).unwrap_or_default()
    }
}

/// Why a frame could not be decoded. Every variant is a connection error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("FRAME_ERROR - frame size {size} exceeds frame_max {frame_max}")]
    TooLarge { size: u64, frame_max: u32 },
    #[error("FRAME_ERROR - invalid frame end octet {0:#04x}")]
    BadFrameEnd(u8),
    #[error("FRAME_ERROR - unknown frame type {0}")]
    UnknownType(u8),
    #[error("NOT_IMPLEMENTED - unknown class or method id {class}.{method}")]
    UnknownMethod { class: u16, method: u16 },
    #[error("NOT_IMPLEMENTED - prefetch_size!=0 ({0})")]
    PrefetchSize(u32),
    #[error("SYNTAX_ERROR - could not decode {what} on channel {channel}")]
    Syntax { what: &'static str, channel: u16 },
    /// A field table or array nested past `nesting::MAX_DEPTH`, caught before any recursive decode.
    #[error("SYNTAX_ERROR - {what} on channel {channel}: field tables or arrays nested deeper than {max} levels")]
    TooDeep {
        what: &'static str,
        channel: u16,
        max: usize,
    },
}

impl FrameError {
    /// The AMQP reply code for a connection.close caused by this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } | FrameError::BadFrameEnd(_) | FrameError::UnknownType(_) => 501,
            FrameError::UnknownMethod { .. } | FrameError::PrefetchSize(_) => 540,
            FrameError::Syntax { .. } | FrameError::TooDeep { .. } => 502,
        }
    }
}

/// The class.method ids `amq-protocol` knows, client- and server-sent alike.
fn is_known_method(class: u16, method: u16) -> bool {
    match class {
        10 => matches!(
            method,
            10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61 | 70 | 71
        ),
        20 => matches!(method, 10 | 11 | 20 | 21 | 40 | 41),
        30 => matches!(method, 10 | 11),
        40 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 51),
        50 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51),
        60 => matches!(
            method,
            10 | 11 | 20 | 21 | 30 | 31 | 40 | 50 | 60 | 70 | 71 | 72 | 80 | 90 | 100 | 110 | 111 | 120
        ),
        85 => matches!(method, 10 | 11),
        90 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31),
        _ => false,
    }
}

/// Decodes one frame from the front of `buf`, advancing past it; `Ok(None)` until a whole frame is there (with room
/// reserved for the rest of it).
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    match decode_step(buf, frame_max)? {
        Step::Frame(frame, used) => {
            buf.advance(used);
            Ok(Some(frame))
        }
        Step::LargeBody { channel, size } => Ok(Some(Frame::Body(channel, cut_large_body(buf, 0, size)))),
        Step::Incomplete(need) => {
            buf.reserve(need.saturating_sub(buf.len()));
            Ok(None)
        }
    }
}

/// One step of decoding from the front of a byte slice (the connection walks its read buffer with an offset and
/// gives the consumed bytes back once per read, not once per frame).
#[derive(Debug)]
pub enum Step {
    /// A whole frame, and how many bytes it took.
    Frame(Frame, usize),
    /// A body frame too large to copy (`COPY_BODY_BELOW`): its `size`-byte payload starts 7 bytes in, and the caller
    /// cuts it out of the read buffer as `Bytes` with `cut_large_body`.
    LargeBody { channel: u16, size: usize },
    /// Not a whole frame yet: this many bytes make one.
    Incomplete(usize),
}

/// Decodes the frame at the front of `buf` without consuming it. The frame's declared size is checked against
/// `frame_max` from its 7-byte header, before any payload is waited for.
pub fn decode_step(buf: &[u8], frame_max: u32) -> Result<Step, FrameError> {
    if buf.len() < 7 {
        return Ok(Step::Incomplete(7));
    }
    let frame_type = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if (size as u64) + FRAME_OVERHEAD as u64 > frame_max as u64 {
        return Err(FrameError::TooLarge {
            size: size as u64 + FRAME_OVERHEAD as u64,
            frame_max,
        });
    }
    if !matches!(frame_type, FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT) {
        return Err(FrameError::UnknownType(frame_type));
    }
    let total = 7 + size + 1;
    if buf.len() < total {
        return Ok(Step::Incomplete(total));
    }
    let end = buf[7 + size];
    if end != FRAME_END {
        return Err(FrameError::BadFrameEnd(end));
    }
    let payload = &buf[7..7 + size];
    let frame = match frame_type {
        FRAME_METHOD => decode_method(channel, payload)?,
        FRAME_HEADER => Frame::Header(channel, decode_content_header(channel, payload)?),
        FRAME_BODY if size >= COPY_BODY_BELOW => return Ok(Step::LargeBody { channel, size }),
        FRAME_BODY => Frame::Body(channel, Bytes::copy_from_slice(payload)),
        _ => Frame::Heartbeat(channel),
    };
    Ok(Step::Frame(frame, total))
}

/// Cuts the payload of the large body frame that starts `at` bytes into `buf` out as `Bytes` (no copy), and drops
/// everything up to the end of that frame from `buf`.
pub fn cut_large_body(buf: &mut BytesMut, at: usize, size: usize) -> Bytes {
    buf.advance(at + 7);
    let body = buf.split_to(size).freeze();
    buf.advance(1);
    body
}

fn decode_method(channel: u16, payload: &[u8]) -> Result<Frame, FrameError> {
    if payload.len() < 4 {
        return Err(FrameError::Syntax {
            what: "method frame",
            channel,
        });
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    if !is_known_method(class, method) {
        return Err(FrameError::UnknownMethod { class, method });
    }
    // basic.qos: amq-protocol reads prefetch_size and drops it, so check it here. RabbitMQ answers 540.
    if (class, method) == (60, 10) && payload.len() >= 8 {
        let size = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        if size != 0 {
            return Err(FrameError::PrefetchSize(size));
        }
    }
    if (class, method) == (60, 40) {
        return decode_publish(channel, &payload[4..]);
    }
    if let Err(NestingError::TooDeep) = nesting::check_method(payload) {
        return Err(FrameError::TooDeep {
            what: "method arguments",
            channel,
            max: nesting::MAX_DEPTH,
        });
    }
    match parse_class(payload) {
        Ok((&[], m)) => Ok(Frame::Method(channel, Box::new(m))),
        _ => Err(FrameError::Syntax {
            what: "method arguments",
            channel,
        }),
    }
}

fn decode_content_header(channel: u16, payload: &[u8]) -> Result<ContentHeader, FrameError> {
    let err = FrameError::Syntax {
        what: "content header",
        channel,
    };
    if payload.len() < 14 {
        return Err(err);
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let mut size = [0u8; 8];
    size.copy_from_slice(&payload[4..12]);
    let body_size = u64::from_be_bytes(size);
    let raw = &payload[12..];
    match properties::scan(raw) {
        Ok(summary) => Ok(ContentHeader {
            class_id,
            body_size,
            summary,
            raw_properties: Bytes::copy_from_slice(raw),
        }),
        Err(ScanError::TooDeep) => Err(FrameError::TooDeep {
            what: "message headers",
            channel,
            max: nesting::MAX_DEPTH,
        }),
        Err(ScanError::Syntax) => Err(err),
    }
}

/// basic.publish's arguments (after class and method ids): a reserved short, the exchange and routing key as short
/// strings, then one octet of flags. Checked exactly as `amq-protocol`'s `parse_publish` checks them.
fn decode_publish(channel: u16, mut p: &[u8]) -> Result<Frame, FrameError> {
    let err = FrameError::Syntax {
        what: "method arguments",
        channel,
    };
    fn short_str<'a>(p: &mut &'a [u8]) -> Option<&'a str> {
        let (&len, rest) = p.split_first()?;
        let s = rest.get(..len as usize)?;
        *p = &rest[len as usize..];
        std::str::from_utf8(s).ok()
    }
    p = p.get(2..).ok_or(err.clone())?;
    let exchange = short_str(&mut p).ok_or(err.clone())?;
    let routing_key = short_str(&mut p).ok_or(err.clone())?;
    let [bits] = p else {
        return Err(err);
    };
    Ok(Frame::Publish(
        channel,
        basic::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory: bits & 1 != 0,
            immediate: bits & 2 != 0,
        },
    ))
}

/// Appends a method frame.
pub fn encode_method(out: &mut BytesMut, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    encode_frame(out, &frame);
}

/// Appends any frame through `amq-protocol`'s generator (control frames, not the hot path).
pub fn encode_frame(out: &mut BytesMut, frame: &AMQPFrame) {
    let v: Vec<u8> = Vec::with_capacity(64);
    // Generating into a growable Vec cannot run out of space; were it to fail anyway, the frame is logged and
    // dropped rather than sent half-written.
    match gen_frame(frame)(WriteContext::from(v)) {
        Ok(ctx) => out.extend_from_slice(&ctx.write),
        Err(e) => tracing::error!(error = ?e, "failed to encode a frame"),
    }
}

/// Appends a short string (length octet, then at most 255 bytes).
pub fn put_short_str(out: &mut BytesMut, s: &str) {
    // Short strings are at most 255 bytes; every one we write came in as a short string.
    let b = s.as_bytes();
    let len = b.len().min(255);
    out.put_u8(len as u8);
    out.put_slice(&b[..len]);
}

/// The fields of a basic.deliver or basic.get-ok/return, borrowed, for hand encoding on the hot path.
pub struct DeliverFields<'a> {
    pub consumer_tag: &'a str,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: &'a str,
    pub routing_key: &'a str,
}

/// Appends a basic.deliver method frame.
pub fn encode_deliver(out: &mut BytesMut, channel: u16, d: &DeliverFields<'_>) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(60);
    out.put_u16(60);
    put_short_str(out, d.consumer_tag);
    out.put_u64(d.delivery_tag);
    out.put_u8(u8::from(d.redelivered));
    put_short_str(out, d.exchange);
    put_short_str(out, d.routing_key);
    end_frame(out, start);
}

/// Appends a basic.get-ok method frame.
pub fn encode_get_ok(out: &mut BytesMut, channel: u16, d: &DeliverFields<'_>, message_count: u32) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(60);
    out.put_u16(71);
    out.put_u64(d.delivery_tag);
    out.put_u8(u8::from(d.redelivered));
    put_short_str(out, d.exchange);
    put_short_str(out, d.routing_key);
    out.put_u32(message_count);
    end_frame(out, start);
}

/// Appends a content header frame followed by the body, cut into frames of at most `frame_max - 8` bytes.
pub fn encode_content(out: &mut BytesMut, channel: u16, raw_properties: &[u8], body: &[u8], frame_max: u32) {
    let start = begin_frame(out, FRAME_HEADER, channel);
    out.put_u16(60);
    out.put_u16(0);
    out.put_u64(body.len() as u64);
    out.put_slice(raw_properties);
    end_frame(out, start);
    let max_chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    for chunk in body.chunks(max_chunk) {
        out.reserve(chunk.len() + FRAME_OVERHEAD);
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32(chunk.len() as u32);
        out.put_slice(chunk);
        out.put_u8(FRAME_END);
    }
}

/// Appends a heartbeat frame (exactly 8 bytes).
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Starts a frame of `frame_type` on `channel` with a size to fill in; returns where the size goes (for
/// [`end_frame`]). With `end_frame`, what hand-encoded frames are built from, here and in `warren-perf`.
pub fn begin_frame(out: &mut BytesMut, frame_type: u8, channel: u16) -> usize {
    out.put_u8(frame_type);
    out.put_u16(channel);
    let start = out.len();
    out.put_u32(0);
    start
}

/// Fills in the size of the frame [`begin_frame`] started and appends the frame-end octet.
pub fn end_frame(out: &mut BytesMut, size_at: usize) {
    let size = (out.len() - size_at - 4) as u32;
    out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::properties::encode_properties;
    use amq_protocol::protocol::{basic, channel, queue};
    use amq_protocol::types::{AMQPValue, FieldTable, ShortString};

    fn roundtrip(method: AMQPClass) -> AMQPClass {
        let mut out = BytesMut::new();
        encode_method(&mut out, 3, method);
        match decode_frame(&mut out, 131072) {
            Ok(Some(Frame::Method(3, m))) => {
                assert!(out.is_empty(), "the whole frame is consumed");
                *m
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn methods_roundtrip() {
        let mut args = FieldTable::default();
        args.insert("x-max-priority".into(), AMQPValue::LongInt(5));
        let cases = vec![
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "q".into(),
                durable: true,
                arguments: args,
                ..Default::default()
            })),
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 42,
                multiple: true,
            })),
        ];
        for m in cases {
            assert_eq!(roundtrip(m.clone()), m);
        }
    }

    #[test]
    fn publish_is_decoded_by_hand_as_amq_protocol_would() {
        for (exchange, routing_key, mandatory, immediate) in [
            ("", "q", false, false),
            ("amq.topic", "a.b.ü", true, false),
            ("x", "", false, true),
        ] {
            let p = basic::Publish {
                exchange: exchange.into(),
                routing_key: routing_key.into(),
                mandatory,
                immediate,
            };
            let mut out = BytesMut::new();
            encode_method(&mut out, 4, AMQPClass::Basic(basic::AMQPMethod::Publish(p.clone())));
            let whole = out.clone();
            match decode_frame(&mut out, 4096) {
                Ok(Some(Frame::Publish(4, got))) => assert_eq!(got, p),
                other => panic!("unexpected {other:?}"),
            }
            // Every shorter payload (with a fixed-up size and end octet) is a syntax error, as amq-protocol says.
            let payload = &whole[7..whole.len() - 1];
            for cut in 4..payload.len() {
                let mut f = BytesMut::new();
                f.put_u8(FRAME_METHOD);
                f.put_u16(4);
                f.put_u32(cut as u32);
                f.put_slice(&payload[..cut]);
                f.put_u8(FRAME_END);
                assert!(parse_class(&payload[..cut]).map_or(true, |(rest, _)| !rest.is_empty()));
                assert_eq!(
                    decode_frame(&mut f, 4096).err().map(|e| e.reply_code()),
                    Some(502),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut full = BytesMut::new();
        encode_method(
            &mut full,
            1,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        );
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert!(matches!(decode_frame(&mut part, 131072), Ok(None)), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_header() {
        // A header that claims 4 GiB: rejected before any payload is there.
        let mut buf = BytesMut::from(&[1u8, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert_eq!(decode_frame(&mut buf, 131072).err().map(|e| e.reply_code()), Some(501));
    }

    #[test]
    fn bad_frame_end_and_type() {
        let mut buf = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0x00][..]);
        assert_eq!(decode_frame(&mut buf, 4096).err(), Some(FrameError::BadFrameEnd(0)));
        let mut buf = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, 0xCE][..]);
        assert_eq!(decode_frame(&mut buf, 4096).err(), Some(FrameError::UnknownType(9)));
    }

    #[test]
    fn unknown_method_is_540() {
        let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 4, 0, 99, 0, 10, 0xCE][..]);
        assert_eq!(decode_frame(&mut buf, 4096).err().map(|e| e.reply_code()), Some(540));
    }

    #[test]
    fn deliver_is_what_amq_protocol_parses() {
        let mut out = BytesMut::new();
        let fields = DeliverFields {
            consumer_tag: "ctag",
            delivery_tag: 7,
            redelivered: true,
            exchange: "ex",
            routing_key: "rk",
        };
        encode_deliver(&mut out, 2, &fields);
        let expected = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: ShortString::from("ctag"),
            delivery_tag: 7,
            redelivered: true,
            exchange: "ex".into(),
            routing_key: "rk".into(),
        }));
        match decode_frame(&mut out, 4096) {
            Ok(Some(Frame::Method(2, m))) => assert_eq!(*m, expected),
            other => panic!("unexpected {other:?}"),
        }
        encode_get_ok(&mut out, 2, &fields, 9);
        match decode_frame(&mut out, 4096) {
            Ok(Some(Frame::Method(2, m))) => assert!(matches!(
                *m,
                AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag: 7,
                    message_count: 9,
                    ..
                }))
            )),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn content_is_split_and_roundtrips() {
        let props = AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2);
        let raw = encode_properties(&props);
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        encode_content(&mut out, 5, &raw, &body, 4096);
        let header = match decode_frame(&mut out, 4096) {
            Ok(Some(Frame::Header(5, h))) => h,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(header.body_size, 10_000);
        assert_eq!(header.properties(), props);
        assert!(header.summary.persistent);
        let mut got = Vec::new();
        while let Ok(Some(Frame::Body(5, b))) = decode_frame(&mut out, 4096) {
            assert!(b.len() <= 4096 - FRAME_OVERHEAD);
            got.extend_from_slice(&b);
        }
        assert_eq!(got, body);
    }
}
