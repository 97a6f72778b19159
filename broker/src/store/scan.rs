//! Finding the records in a segment file's bytes, damaged or not: a pure function, no I/O.
//!
//! Recovery (`recovery.rs`) reads a segment whole and asks [`scan`] which of its bytes are good records, which are
//! damage in the middle, and whether the file ends in a torn or damaged tail. The answer must never cost a good
//! record: one flipped bit in a length field once made recovery take the rest of an 8 MiB segment for a torn tail.
//!
//! Invariants:
//! - The pieces tile the input: `records` and `damaged` ranges, in offset order, without gaps or overlaps, then the
//!   `tail` (if any) up to the end.
//! - Every [`Found`] decodes as `Decoded::Ok` at its offset with its size.
//! - Damage never hides a good record after it. Past a record that does not decode, the scan moves to the next offset
//!   where one does (its length plausible, its header consistent, its checksum holding), byte by byte. It does not
//!   trust a damaged record's declared length to skip it whole: the length may be the damage, and one flipped bit can
//!   make it end exactly where a later record starts, hiding the good ones between. The price: a message body that
//!   holds a whole record image, inside a record that is damaged, comes back as a message of its own.
//! - Every good record is either found or lies inside one that was (a record image within a message body).
//! - Only damage with no good record after it, up to the end of the input, is a [`Tail`].
//! - Bounded work: every offset costs a few byte reads (`record::plausible_size`); checksums while resyncing are
//!   computed only where those hold, and their total is capped at [`resync_budget`]. Past the cap the scan stops and
//!   reports the rest as [`TailKind::Unscanned`], which callers must neither drop nor truncate.

use std::ops::Range;

use bytes::Bytes;

use super::record::{self, Decoded, Record};

/// A good record: where it starts, its total size on disk, and what it holds (sharing the scanned buffer).
#[derive(Debug, Clone)]
pub struct Found {
    pub offset: usize,
    pub size: usize,
    pub record: Record,
}

/// How the bytes after the last good record end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailKind {
    /// The start of a record that was not fully written (a crash mid-write): nothing follows it.
    Torn,
    /// A record that fails its checksum or is implausible, with no good record after it.
    Corrupt,
    /// The resync budget ran out: nothing is known about these bytes, so they must stay where they are.
    Unscanned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    pub start: usize,
    pub kind: TailKind,
}

/// What a segment's bytes hold.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub records: Vec<Found>,
    /// Damaged ranges with a good record after each.
    pub damaged: Vec<Range<usize>>,
    pub tail: Option<Tail>,
}

/// Checksum bytes a resync may compute for a segment of `len` bytes: many times the file, so that real damage is
/// always scanned past, yet bounded, so that a crafted body (record-shaped headers every few bytes, each declaring a
/// long length) cannot make a restart quadratic.
pub fn resync_budget(len: usize) -> usize {
    len.saturating_mul(64).max(64 << 20)
}

/// Splits a segment's bytes into good records, damaged ranges and a tail (see the module's invariants).
pub fn scan(data: &Bytes) -> Scan {
    let mut out = Scan::default();
    let mut budget = resync_budget(data.len());
    let mut at = 0usize;
    while at < data.len() {
        let first = match record::decode(&data.slice(at..)) {
            Decoded::Ok(record, size) => {
                out.records.push(Found {
                    offset: at,
                    size,
                    record,
                });
                at += size;
                continue;
            }
            other => other,
        };
        match resync(data, at + 1, &mut budget) {
            Resync::Found(next) => {
                out.damaged.push(at..next);
                at = next;
            }
            Resync::NoneBefore => {
                let kind = if first == Decoded::Torn {
                    TailKind::Torn
                } else {
                    TailKind::Corrupt
                };
                out.tail = Some(Tail { start: at, kind });
                break;
            }
            Resync::GaveUp => {
                out.tail = Some(Tail {
                    start: at,
                    kind: TailKind::Unscanned,
                });
                break;
            }
        }
    }
    out
}

enum Resync {
    /// A good record starts here.
    Found(usize),
    /// No good record starts anywhere before the end.
    NoneBefore,
    /// The budget ran out before the search finished.
    GaveUp,
}

/// The first offset at or after `from` where a good record starts.
fn resync(data: &Bytes, from: usize, budget: &mut usize) -> Resync {
    for offset in from..data.len() {
        let Some(size) = record::plausible_size(&data[offset..]) else {
            continue;
        };
        let Some(left) = budget.checked_sub(size) else {
            return Resync::GaveUp;
        };
        *budget = left;
        if let Decoded::Ok(..) = record::decode(&data.slice(offset..)) {
            return Resync::Found(offset);
        }
    }
    Resync::NoneBefore
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::store::record::{encode, Meta};

    /// `n` records of `body_len` bytes each; returns the bytes and each record's offset.
    fn segment(n: u64, body_len: usize) -> (BytesMut, Vec<usize>) {
        let mut out = BytesMut::new();
        let mut offsets = Vec::new();
        for seq in 1..=n {
            offsets.push(out.len());
            let body = vec![seq as u8; body_len];
            let meta = Meta {
                seq,
                enqueued_ms: 1_700_000_000_000,
                tx: 0,
            };
            encode(&mut out, meta, b"", b"k", &[0x10, 0, 2], &body);
        }
        (out, offsets)
    }

    fn seqs(s: &Scan) -> Vec<u64> {
        s.records.iter().map(|f| f.record.seq).collect()
    }

    #[test]
    fn a_clean_segment_is_all_records() {
        let (data, offsets) = segment(20, 100);
        let s = scan(&data.freeze());
        assert_eq!(s.records.iter().map(|f| f.offset).collect::<Vec<_>>(), offsets);
        assert!(s.damaged.is_empty() && s.tail.is_none());
    }

    #[test]
    fn every_flipped_length_bit_costs_only_its_record() {
        let (data, offsets) = segment(20, 100);
        let victim = 10;
        let at = offsets[victim];
        for bit in 0..32 {
            let mut bad = data.clone();
            bad[at + bit / 8] ^= 0x80 >> (bit % 8);
            let s = scan(&bad.freeze());
            let expected: Vec<u64> = (1..=20).filter(|seq| *seq != victim as u64 + 1).collect();
            assert_eq!(seqs(&s), expected, "bit {bit}");
            assert_eq!(s.damaged, vec![at..offsets[victim + 1]], "bit {bit}");
            assert_eq!(s.tail, None, "bit {bit}");
        }
    }

    #[test]
    fn a_record_image_inside_a_damaged_record_comes_back() {
        // The victim's body is itself a good record: the scan cannot tell it from a real one.
        let (inner, _) = segment(1, 10);
        let (mut data, _) = segment(1, 50);
        let victim = data.len();
        encode(
            &mut data,
            Meta {
                seq: 2,
                enqueued_ms: 0,
                tx: 0,
            },
            b"",
            b"",
            &[],
            &inner,
        );
        let next = data.len();
        data.extend_from_slice(&segment(1, 50).0);
        data[victim + 8] ^= 0xFF; // the victim's seq: its checksum fails, the embedded record's still holds
        let inner_at = next - inner.len();
        let s = scan(&data.freeze());
        assert_eq!(seqs(&s), vec![1, 1, 1]);
        assert_eq!(s.damaged, vec![victim..inner_at]);
    }

    #[test]
    fn a_flipped_length_that_lands_on_a_later_record_skips_nothing_good() {
        // Records of 64 bytes: flipping the length's 64 bit makes record 3 end exactly where record 5 starts.
        let (data, offsets) = segment(8, 22);
        assert_eq!(offsets[1] - offsets[0], 64);
        let mut bad = data.clone();
        bad[offsets[2] + 3] ^= 64;
        let s = scan(&bad.freeze());
        assert_eq!(seqs(&s), vec![1, 2, 4, 5, 6, 7, 8]);
        assert_eq!(s.damaged, vec![offsets[2]..offsets[3]]);
    }

    #[test]
    fn damage_at_the_end_is_a_tail() {
        let (data, offsets) = segment(5, 100);
        let torn = data.clone().freeze().slice(..data.len() - 3);
        let s = scan(&torn);
        assert_eq!(seqs(&s), vec![1, 2, 3, 4]);
        assert_eq!(
            s.tail,
            Some(Tail {
                start: offsets[4],
                kind: TailKind::Torn
            })
        );
        let mut bad = data.clone();
        bad[offsets[4] + 20] ^= 1;
        let s = scan(&bad.freeze());
        assert_eq!(seqs(&s), vec![1, 2, 3, 4]);
        assert_eq!(
            s.tail,
            Some(Tail {
                start: offsets[4],
                kind: TailKind::Corrupt
            })
        );
    }

    #[test]
    fn a_length_pointing_past_the_end_is_not_a_torn_tail_when_records_follow() {
        let (mut data, offsets) = segment(5, 100);
        data[offsets[1]] = 0x01; // 16 MiB: beyond the end of the file, so it looks torn
        let s = scan(&data.freeze());
        assert_eq!(seqs(&s), vec![1, 3, 4, 5]);
        assert_eq!(s.damaged, vec![offsets[1]..offsets[2]]);
        assert_eq!(s.tail, None);
    }

    #[test]
    fn garbage_between_records_is_skipped() {
        let (a, _) = segment(3, 40);
        let mut data = BytesMut::from(&b"\x00\x00\x00\x40garbage"[..]);
        data.extend_from_slice(&a);
        data.extend_from_slice(&[0xAB; 333]);
        data.extend_from_slice(&a);
        let s = scan(&data.freeze());
        assert_eq!(seqs(&s), vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(s.damaged.len(), 2);
    }

    #[test]
    fn crafted_headers_cannot_make_the_scan_quadratic() {
        // Every 34 bytes a header declaring a record up to the end of the buffer that fails its checksum.
        let n = 4 << 20;
        let mut data = BytesMut::with_capacity(n);
        while data.len() + 34 <= n {
            let len = (n - data.len() - 8) as u32;
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&[0u8; 30]);
        }
        data.resize(n, 0);
        let started = std::time::Instant::now();
        let s = scan(&data.freeze());
        assert!(s.records.is_empty());
        assert_eq!(s.tail.map(|t| t.kind), Some(TailKind::Unscanned));
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "bounded");
    }
}
