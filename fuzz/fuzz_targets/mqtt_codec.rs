//! Fuzz target `mqtt_codec`: arbitrary bytes as what an MQTT client sends, decoded with `mqtt::codec::read` the way
//! a connection does: the first packet must be a CONNECT (its protocol level picks 3.1.1 or 5.0), then packets are
//! taken off the front of one `BytesMut`, arriving in reads of some size, until it answers `None` (wait for more)
//! or an error (close).
//!
//! Input: byte 0 picks the read size (1 to 256 bytes, or everything at once), byte 1 the packet size limit
//! (64 bytes to 16 KiB), the rest is the stream.
//!
//! What must hold, besides never panicking or looping: `None` consumes nothing; a packet consumes at least its fixed
//! header; every packet the server would answer with encodes (a PUBLISH echoed back, a SUBACK for a SUBSCRIBE).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_broker::mqtt::codec::{read, write, In, Out, Version};

fuzz_target!(|data: &[u8]| {
    let [read_size, limit, stream @ ..] = data else {
        return;
    };
    let chunk = match *read_size {
        0 => stream.len().max(1),
        n => n as usize,
    };
    let max = 64usize << (*limit % 9);
    let mut buf = BytesMut::new();
    let mut version: Option<Version> = None;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match read(&mut buf, version, max) {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "None consumes nothing");
                    break;
                }
                Ok(Some(p)) => {
                    assert!(buf.len() + 2 <= before, "a packet consumes its fixed header at least");
                    let v = version.unwrap_or(Version::V311);
                    let mut out = BytesMut::new();
                    match p {
                        In::Connect(c) if version.is_none() => version = Some(c.version),
                        In::Connect(_) => return,
                        In::Publish(p) => {
                            let _ = write(&Out::Publish(p), v, &mut out);
                        }
                        In::Subscribe { pkid, filters } => {
                            let codes = filters.iter().map(|f| f.qos.min(1)).collect();
                            let _ = write(&Out::SubAck { pkid, codes }, v, &mut out);
                        }
                        _ if version.is_none() => return,
                        _ => {}
                    }
                }
                Err(_) => return,
            }
        }
    }
});
