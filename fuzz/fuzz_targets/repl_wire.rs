//! Fuzz target `repl_wire`: arbitrary bytes as what a replication peer sends (a follower to the leader, or the
//! leader to a follower), decoded with `cluster::wire::decode` the way a connection does: frames taken off the
//! front of a buffer that grows in reads of some size, until it answers `None` (wait for more) or an error (close).
//!
//! Input: byte 0 picks the read size (1 to 255 bytes, or everything at once), the rest is the stream.
//!
//! What must hold, besides never panicking, looping or allocating past the limits: a decoded frame used at least
//! five bytes and at most what was buffered; every path in it is a plain relative path; encoded again, it decodes to
//! the same frame.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_broker::cluster::wire::{decode, encode, Frame};
use warren_broker::store::repl::is_safe_relative;

fuzz_target!(|data: &[u8]| {
    let [read_size, stream @ ..] = data else {
        return;
    };
    let chunk = match *read_size {
        0 => stream.len().max(1),
        n => n as usize,
    };
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decode(&buf) {
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    assert!(used >= 5 && used <= buf.len());
                    let paths: Vec<&str> = match &frame {
                        Frame::Want { paths } => paths.iter().map(String::as_str).collect(),
                        Frame::FileList { files } => files.iter().map(|f| f.path.as_str()).collect(),
                        Frame::FileData { path, .. } => vec![path.as_str()],
                        Frame::Ops { ops, .. } => ops.iter().map(|o| o.path()).collect(),
                        _ => vec![],
                    };
                    assert!(paths.iter().all(|p| is_safe_relative(p)), "{paths:?}");
                    let mut again = BytesMut::new();
                    encode(&frame, &mut again);
                    let (back, _) = decode(&again).expect("re-encoded decodes").expect("whole");
                    assert_eq!(back, frame);
                    let _ = buf.split_to(used);
                }
                Err(_) => return,
            }
        }
    }
});
