//! Fuzzes segment recovery: arbitrary bytes as a segment file, plus an ack file, recovered as the broker would at
//! start (`warren_broker::store::queue_log::recover_dir`).
//!
//! The input is either the segment itself (first byte < 0x80; the seeds in `corpus/segment_recovery/` are real
//! segments), or (first byte >= 0x80) a little program that writes good records among garbage, flips bits and cuts
//! the file. The ack file is derived from the input's last byte: missing, or acking and marking delivered some of
//! the good records, with stray entries.
//!
//! What must hold, besides never panicking:
//! - the scan tiles the file, and every record it reports decodes at its offset;
//! - every offset where a record decodes (checked by brute force) is a reported record or lies inside one;
//! - recovery's live records are exactly the reported records that are not acked (and carry no transaction, as no
//!   transaction committed);
//! - the file keeps every byte up to the end of its last good record, and a second recovery finds the same.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren_broker::store::queue_log::recover_dir;
use warren_broker::store::record::{self, Decoded, Meta};
use warren_broker::store::scan::scan;

const DELIVERED: u32 = 0x8000_0000;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let segment = match data.first() {
        Some(b) if b & 0x80 != 0 => synthesize(&data[1..]),
        _ => data.to_vec(),
    };
    let seg = Bytes::from(segment);
    let ctl = data.last().copied().unwrap_or(0);

    // Brute force: every offset where a record decodes.
    let valid: Vec<(usize, usize, u64)> = (0..seg.len())
        .filter_map(|o| match record::decode(&seg.slice(o..)) {
            Decoded::Ok(r, n) => Some((o, n, r.seq)),
            _ => None,
        })
        .collect();

    let s = scan(&seg);
    let mut pieces: Vec<(usize, usize)> = s.records.iter().map(|f| (f.offset, f.offset + f.size)).collect();
    pieces.extend(s.damaged.iter().map(|r| (r.start, r.end)));
    pieces.sort_unstable();
    let mut at = 0;
    for (start, end) in pieces {
        assert_eq!(start, at, "pieces tile the file");
        assert!(end > start);
        at = end;
    }
    match s.tail {
        Some(t) => assert_eq!(t.start, at, "the tail follows the last piece"),
        None => assert_eq!(at, seg.len(), "no tail: the pieces reach the end"),
    }
    for f in &s.records {
        assert!(
            matches!(record::decode(&seg.slice(f.offset..)), Decoded::Ok(_, n) if n == f.size),
            "a reported record decodes"
        );
    }
    // Good records overlap only when one is an image inside another's body (or they are forged): the scan keeps
    // the first, and no good record may be missed without a reported one claiming its bytes.
    for (o, n, _) in &valid {
        let kept = s.records.iter().any(|f| f.offset < o + n && *o < f.offset + f.size);
        assert!(kept, "the good record at {o} ({n} bytes) was lost");
    }

    // The ack file.
    let ack = match ctl % 8 {
        7 => None,
        _ => {
            let mut b = Vec::new();
            for (o, _, seq) in &valid {
                let k = seq.wrapping_add(u64::from(ctl));
                if k % 4 == 1 {
                    b.extend_from_slice(&(*o as u32 | DELIVERED).to_be_bytes());
                }
                if k % 3 == 0 {
                    b.extend_from_slice(&(*o as u32).to_be_bytes());
                }
            }
            if ctl & 0x40 != 0 {
                b.extend_from_slice(&1u32.to_be_bytes());
                b.extend_from_slice(&(DELIVERED - 1).to_be_bytes());
            }
            if ctl & 0x20 != 0 {
                b.extend_from_slice(&[0xAB, 0xCD]); // a torn entry
            }
            Some(b)
        }
    };
    let acked: HashSet<u32> = ack
        .iter()
        .flat_map(|b| b.chunks_exact(4))
        .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
        .filter(|v| v & DELIVERED == 0)
        .collect();
    let expected: Vec<(u32, u64)> = s
        .records
        .iter()
        .filter(|f| !acked.contains(&(f.offset as u32)) && f.record.tx == 0)
        .map(|f| (f.offset as u32, f.record.seq))
        .collect();

    let base = Path::new("/dev/shm");
    let tmp = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    };
    let tmp = tmp.expect("temp dir");
    let dir = tmp.path().join("q");
    std::fs::create_dir_all(&dir).expect("queue dir");
    let seg_path = dir.join("00000001.seg");
    std::fs::write(&seg_path, &seg).expect("segment");
    if let Some(b) = &ack {
        std::fs::write(dir.join("00000001.ack"), b).expect("ack file");
    }

    let live = |label: &str| -> Vec<(u32, u64)> {
        let (live, _) = recover_dir(&dir).unwrap_or_else(|e| panic!("{label} recovery failed: {e}"));
        live.iter()
            .inspect(|r| assert_eq!(r.loc.segment, 1))
            .map(|r| (r.loc.offset, r.seq))
            .collect()
    };
    assert_eq!(live("first"), expected, "live = good records not acked");
    let good_end = s.records.last().map(|f| f.offset + f.size).unwrap_or(0);
    if let Ok(after) = std::fs::read(&seg_path) {
        assert!(after.len() >= good_end, "cut before the end of a good record");
        assert_eq!(after[..good_end], seg[..good_end], "good bytes changed");
    } else {
        assert!(expected.is_empty(), "a segment with live records was deleted");
    }
    assert_eq!(live("second"), expected, "a second recovery finds the same");
}

/// Builds a segment from a little program (see the module doc).
fn synthesize(program: &[u8]) -> Vec<u8> {
    let mut p = program.iter().copied();
    let mut seg: Vec<u8> = Vec::new();
    let mut seq = 0u64;
    let mut out = BytesMut::new();
    while let Some(op) = p.next() {
        match op % 5 {
            0 | 1 => {
                seq += 1;
                let body_len = usize::from(p.next().unwrap_or(0)) * 2;
                let body: Vec<u8> = p.by_ref().take(body_len).collect();
                let key: Vec<u8> = p.by_ref().take(usize::from(op >> 5)).collect();
                let tx = if op & 0x08 != 0 { seq } else { 0 };
                let meta = Meta {
                    seq,
                    enqueued_ms: seq,
                    tx,
                };
                out.clear();
                record::encode(&mut out, meta, b"x", &key, &[], &body);
                seg.extend_from_slice(&out);
            }
            2 => {
                let n = usize::from(p.next().unwrap_or(0));
                seg.extend(p.by_ref().take(n));
            }
            3 if !seg.is_empty() => {
                let at = usize::from(u16::from_be_bytes([p.next().unwrap_or(0), p.next().unwrap_or(0)]));
                let bit = p.next().unwrap_or(0) % 8;
                let len = seg.len();
                seg[at % len] ^= 1 << bit;
            }
            4 => {
                let at = usize::from(u16::from_be_bytes([p.next().unwrap_or(0), p.next().unwrap_or(0)]));
                let keep = at % (seg.len() + 1);
                seg.truncate(keep);
            }
            _ => {}
        }
    }
    seg
}
