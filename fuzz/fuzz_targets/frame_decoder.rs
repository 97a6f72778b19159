//! Fuzz target `frame_decoder`: arbitrary bytes as what a client sends after the protocol header, decoded with
//! `codec::decode_frame` the way a connection does: the bytes arrive in reads of some size, and after each read
//! frames are taken off the front of one `BytesMut` until it answers `None` (wait for more) or an error (close).
//!
//! Input: byte 0 picks the read size (1 to 256 bytes, or everything at once), bytes 1-2 pick `frame_max` in
//! 4096..=131072, the rest is the stream.
//!
//! What must hold, besides never panicking, looping or overflowing the stack:
//! - progress: each frame consumes exactly its 8 bytes of overhead plus the size its header declares, which is
//!   within `frame_max`; `None` consumes nothing;
//! - reads of any size give the same frames and the same final answer as the whole stream at once;
//! - a method's field tables nest at most `MAX_DEPTH` deep, and the method re-encodes with `codec::encode_method`
//!   into one frame that decodes to the same method (floats compared by their bits: a NaN is not equal to itself);
//! - a content header's raw property bytes parse to its properties; a body is as long as its frame said.

#![no_main]

use amq_protocol::protocol::AMQPClass;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren_broker::amqp::codec::{decode_frame, encode_method, Frame, FrameError, FRAME_OVERHEAD};
use warren_broker::amqp::nesting::{parse_properties_bounded, MAX_DEPTH};
use warren_broker::amqp::properties::PropertySummary;
use warren_fuzz::{encode_method_frame, method_tables, same_table, table_depth};

fuzz_target!(|data: &[u8]| {
    let [read, hi, lo, stream @ ..] = data else {
        return;
    };
    let pick = u64::from(u16::from_be_bytes([*hi, *lo]));
    let frame_max = (4096 + pick * (131_072 - 4096) / 65_535) as u32;
    let whole = decode_stream(stream, stream.len().max(1), frame_max);
    if *read != 0 {
        let chunked = decode_stream(stream, usize::from(*read), frame_max);
        assert_eq!(
            chunked, whole,
            "reads of {read} bytes decode differently from the whole stream"
        );
    }
});

/// What the decoder answered, in a form two runs can be compared by.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Channel and the method as text (`AMQPClass` holds floats, and a NaN is not equal to itself).
    Method(u16, String),
    /// Channel, class id, body size and the raw properties (the parsed properties follow from these).
    Header(u16, u16, u64, Bytes),
    Body(u16, Bytes),
    Heartbeat(u16),
    Error(FrameError),
    /// The stream ended inside a frame, or on a frame boundary.
    Waiting,
}

/// Feeds `stream` in reads of `read` bytes, decoding after each; returns what was decoded, ending with the final
/// answer.
fn decode_stream(stream: &[u8], read: usize, frame_max: u32) -> Vec<Seen> {
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        loop {
            // What the call must not touch when it answers None, and the header it consumes otherwise (cheaper
            // than a copy of the whole buffer before every call, when reads are one byte).
            let before_len = buf.len();
            let mut head = [0u8; 7];
            let n = before_len.min(7);
            head[..n].copy_from_slice(&buf[..n]);
            match decode_frame(&mut buf, frame_max) {
                Ok(Some(frame)) => {
                    assert!(n == 7, "a frame was decoded from {before_len} bytes");
                    let declared = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
                    assert!(
                        declared + FRAME_OVERHEAD <= frame_max as usize,
                        "a frame over frame_max was taken"
                    );
                    assert_eq!(
                        before_len - buf.len(),
                        declared + FRAME_OVERHEAD,
                        "a frame consumed other than its size"
                    );
                    seen.push(check_frame(frame, declared));
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before_len, "None consumed bytes");
                    assert_eq!(buf[..n], head[..n], "None changed the buffer");
                    break;
                }
                Err(e) => {
                    seen.push(Seen::Error(e));
                    return seen;
                }
            }
        }
    }
    seen.push(Seen::Waiting);
    seen
}

fn check_frame(frame: Frame, declared: usize) -> Seen {
    match frame {
        Frame::Method(channel, m) => {
            for t in method_tables(&m) {
                assert!(
                    table_depth(t) <= MAX_DEPTH,
                    "a table {} deep got past the bound",
                    table_depth(t)
                );
            }
            method_round_trip(channel, &m);
            Seen::Method(channel, format!("{m:?}"))
        }
        Frame::Publish(channel, p) => {
            // The hand-decoded publish re-encodes through amq-protocol and decodes to the same arguments.
            let m = AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Publish(p));
            method_round_trip(channel, &m);
            Seen::Method(channel, format!("{m:?}"))
        }
        Frame::Header(channel, h) => {
            match parse_properties_bounded(&h.raw_properties) {
                Ok(p) => {
                    assert_eq!(format!("{p:?}"), format!("{:?}", h.properties()));
                    assert_eq!(h.summary, PropertySummary::of(&p), "the scan's summary differs from the full parse");
                }
                Err(e) => panic!("a decoded header's raw properties do not parse: {e}"),
            }
            Seen::Header(channel, h.class_id, h.body_size, h.raw_properties)
        }
        Frame::Body(channel, b) => {
            assert_eq!(b.len(), declared);
            Seen::Body(channel, b)
        }
        Frame::Heartbeat(channel) => Seen::Heartbeat(channel),
    }
}

fn method_round_trip(channel: u16, m: &AMQPClass) {
    let mut out = BytesMut::new();
    encode_method(&mut out, channel, m.clone());
    let again = match decode_frame(&mut out, u32::MAX) {
        Ok(Some(Frame::Method(c, again))) if c == channel => again,
        Ok(Some(Frame::Publish(c, p))) if c == channel => {
            Box::new(AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Publish(p)))
        }
        other => panic!("{m:?} re-encoded decodes as {other:?}"),
    };
    assert!(out.is_empty(), "a re-encoded method left {} bytes", out.len());
    // `==` unless a float in a table is NaN; then the tables must match bit for bit and the rest by `==`.
    let same = *m == *again || {
        let (a, b) = (method_tables(m), method_tables(&again));
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| same_table(x, y))
            && encode_method_frame(channel, m) == encode_method_frame(channel, &again)
    };
    assert!(same, "round trip changed the method:\n{m:?}\n{again:?}");
}
