//! Fuzz target `stomp_codec`: arbitrary bytes as what a STOMP client sends, decoded with `stomp::codec::decode` the
//! way a connection does: frames and heart-beats taken off the front of one `BytesMut`, arriving in reads of some
//! size, until it answers `None` (wait for more) or an error (close). Each frame is also parsed as the session
//! would: its destination, and (for SEND) its headers as AMQP properties.
//!
//! Input: byte 0 picks the read size (1 to 255 bytes, or everything at once), byte 1 the limits (header bytes from
//! 64 B to 16 KiB, body from 0 to 64 KiB), the rest is the stream.
//!
//! What must hold, besides never panicking or looping: `None` consumes nothing; whatever is decoded consumes at
//! least one byte; a decoded frame's body is within the limit; a frame encoded again decodes to the same frame.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_broker::stomp::codec::{decode, encode, Decoded, Limits};
use warren_broker::stomp::destination::Destination;
use warren_broker::stomp::mapping;

fuzz_target!(|data: &[u8]| {
    let [read_size, limit, stream @ ..] = data else {
        return;
    };
    let chunk = match *read_size {
        0 => stream.len().max(1),
        n => n as usize,
    };
    let limits = Limits {
        max_header_bytes: 64usize << (*limit % 9),
        max_headers: 32,
        max_body: (1usize << (*limit / 16)) - 1,
    };
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode(&mut buf, &limits) {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "None consumes nothing");
                    break;
                }
                Ok(Some(Decoded::HeartBeat)) => assert!(buf.len() < before),
                Ok(Some(Decoded::Frame(f))) => {
                    assert!(buf.len() < before, "a frame consumes its bytes");
                    assert!(f.body.len() <= limits.max_body);
                    if let Some(d) = f.get("destination") {
                        let _ = Destination::parse(d).map(|d| d.target().0.len());
                    }
                    if f.command == "SEND" {
                        let _ = mapping::properties(&f);
                    }
                    // Encoded again (as the broker writes frames), it reads back the same.
                    let mut out = BytesMut::new();
                    encode(&f, &mut out);
                    let big = Limits {
                        max_header_bytes: usize::MAX,
                        max_headers: usize::MAX,
                        max_body: usize::MAX,
                    };
                    if let Ok(Some(Decoded::Frame(again))) = decode(&mut out, &big) {
                        assert_eq!(again.command, f.command);
                        assert_eq!(again.body, f.body);
                    }
                }
                Err(_) => return,
            }
        }
    }
});
