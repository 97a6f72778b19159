//! Recovering one segment at start: which of its records are live, acked or dropped, and what becomes of damage.
//!
//! `QueueLog::open` calls [`recover_segment`] for each segment in id order. A sealed segment with a summary it may
//! trust (`summary.rs`) is recovered from that alone. Any other is read whole: recovery asks
//! `scan.rs` where the good records are, replays the ack file over them, and deals with what is not a good record.
//!
//! Invariants:
//! - Recovery never panics, and never loses a record whose checksum holds (damage is resynced past, see `scan.rs`).
//! - A segment file is shortened only at a tail with no good record after it (torn or corrupt), so the offset of
//!   every good record, and every ack-file entry naming one, stays valid. Damage in the middle stays where it is:
//!   a recovered segment is never rewritten, and new records go to a fresh segment.
//! - Damaged bytes (middle ranges, corrupt tails, and whatever the scan gave up on) are copied to
//!   `NNNNNNNN.<offset>.<crc32c>.corrupt` beside the segment, synced, before anything is cut; a tail whose copy
//!   failed is not cut. A torn tail (a crash mid-write, whose message was never confirmed) is cut without a copy.
//!   The name depends on the bytes, so a restart that meets the same damage again writes nothing new.
//! - Each damaged range counts as one record already done with, so the segment is still deleted once its live records
//!   are acked; the `.corrupt` copies stay for the operator. A rest the scan gave up on counts as a record never
//!   done with, so that segment is kept.
//! - A missing ack file means its segment's records all count as unacked and maybe delivered (at-least-once).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tracing::warn;

use super::queue_log::{ack_path, seg_path, LiveRecord, Loc, DELIVERED};
use super::scan::{scan, TailKind};
use super::summary::{self, Facts, RecordInfo};
use super::txlog::TxView;

/// What recovery found: counts for the log line, and the highest seq.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Live messages.
    pub live: u64,
    /// Live messages that had been delivered before the stop (they come back redelivered).
    pub redelivered: u64,
    /// Transient messages found on disk and dropped (they do not survive a restart).
    pub transient: u64,
    /// Records of transactions that never committed, dropped.
    pub uncommitted: u64,
    pub max_seq: u64,
    /// Damaged ranges skipped (a record failing its checksum, or garbage up to the next good record).
    pub corrupt: u64,
    /// Bytes in those ranges; each range is copied to a `.corrupt` file beside its segment.
    pub corrupt_bytes: u64,
    /// Bytes cut from torn segment tails.
    pub torn_bytes: u64,
    /// Segments with records but no ack file.
    pub missing_ack_files: u64,
}

/// A recovered segment's figures, for `QueueLog` to track it.
pub(super) struct SegmentCounts {
    /// The file's size after any cut.
    pub size: u64,
    /// Good records plus damaged ranges.
    pub records: u32,
    /// Records already done with: acked ones plus damaged ranges.
    pub acked: u32,
}

/// Recovers segment `id` of the queue in `dir` (see the module's invariants). Live records go to `on_live` in file
/// order with how often they were delivered; records to drop now (transient, uncommitted) go to `drop_now`. A
/// segment with a summary recovery may trust (`summary.rs`) is not read; any other is read whole into `buf`.
#[allow(clippy::too_many_arguments)]
pub(super) fn recover_segment(
    dir: &Path,
    id: u32,
    rec: &mut Recovered,
    txs: &TxView<'_>,
    keep: &impl Fn(Facts) -> Option<u8>,
    drop_now: &mut Vec<Loc>,
    on_live: &mut impl FnMut(LiveRecord, u32),
    buf: &mut BytesMut,
) -> io::Result<SegmentCounts> {
    let path = seg_path(dir, id);
    let (acked, delivered, ack_missing) = read_ack_file(&ack_path(dir, id))?;
    let mut counts = SegmentCounts {
        size: 0,
        records: 0,
        acked: 0,
    };
    let mut decide = |r: &RecordInfo, counts: &mut SegmentCounts| {
        counts.records += 1;
        rec.max_seq = rec.max_seq.max(r.seq);
        let loc = Loc {
            segment: id,
            offset: r.offset,
        };
        if acked.contains(&r.offset) {
            counts.acked += 1;
        } else if r.tx != 0 && !txs.committed(r.tx) {
            // Written by a transaction that never committed: it never happened.
            rec.uncommitted += 1;
            drop_now.push(loc);
        } else if let Some(priority) = keep(r.facts) {
            if r.tx != 0 {
                txs.still_referenced(r.tx);
            }
            // Without its ack file nothing is known about a record: it may have been delivered.
            let times = delivered.get(&r.offset).copied().unwrap_or(u32::from(ack_missing));
            rec.live += 1;
            rec.redelivered += u64::from(times > 0);
            on_live(
                LiveRecord {
                    seq: r.seq,
                    loc,
                    priority,
                    size: r.size,
                },
                times,
            );
        } else {
            rec.transient += 1;
            drop_now.push(loc);
        }
    };
    // A sealed segment with a summary it may trust is not read at all.
    let file = File::open(&path)?;
    let size = file.metadata()?.len();
    if let Some(records) = summary::load(dir, id, &file, size) {
        for r in &records {
            decide(r, &mut counts);
        }
        counts.size = size;
        tracing::debug!(segment = %path.display(), records = counts.records, "recovered segment from its summary");
        finish(&path, rec, &counts, ack_missing);
        return Ok(counts);
    }
    drop(file);
    let data = read_whole(&path, buf)?;
    let found = scan(&data);
    for f in &found.records {
        decide(&RecordInfo::of(&f.record, f.offset), &mut counts);
    }
    let SegmentCounts {
        mut records,
        acked: mut acked_count,
        ..
    } = counts;
    for range in &found.damaged {
        // Counted as a record already done with, so the segment can still be reclaimed.
        records += 1;
        acked_count += 1;
        note_damage(dir, id, &path, &data, range.clone(), rec);
    }
    let mut size = data.len() as u64;
    if let Some(tail) = found.tail {
        let cut = (data.len() - tail.start) as u64;
        match tail.kind {
            TailKind::Torn => {
                warn!(segment = %path.display(), offset = tail.start, bytes = cut, "truncating a torn record at the end of a segment");
                rec.torn_bytes += cut;
                OpenOptions::new().write(true).open(&path)?.set_len(tail.start as u64)?;
                size = tail.start as u64;
            }
            TailKind::Unscanned => {
                // Counted as a record never done with: the segment, which may hold good records past this point,
                // is kept until the queue goes.
                records += 1;
                note_damage(dir, id, &path, &data, tail.start..data.len(), rec);
                warn!(segment = %path.display(), offset = tail.start, bytes = cut, "gave up resyncing past damage: the rest of the segment is left in place, unread, and the segment is kept");
            }
            TailKind::Corrupt => {
                records += 1;
                acked_count += 1;
                let copied = note_damage(dir, id, &path, &data, tail.start..data.len(), rec);
                // Nothing good follows: the damaged tail goes, as a torn one would, once its copy is on disk.
                if copied && File::open(dir).and_then(|d| d.sync_all()).is_ok() {
                    OpenOptions::new().write(true).open(&path)?.set_len(tail.start as u64)?;
                    size = tail.start as u64;
                }
            }
        }
    }
    let counts = SegmentCounts {
        size,
        records,
        acked: acked_count,
    };
    finish(&path, rec, &counts, ack_missing);
    drop(found);
    // The next segment reads into the same memory (no fresh pages to fault in and zero for every segment).
    if let Ok(m) = data.try_into_mut() {
        *buf = m;
    }
    Ok(counts)
}

/// The warning for a segment without its ack file.
fn finish(path: &Path, rec: &mut Recovered, counts: &SegmentCounts, ack_missing: bool) {
    if ack_missing && counts.records > 0 {
        rec.missing_ack_files += 1;
        warn!(
            segment = %path.display(),
            records = counts.records,
            "ack file missing: every record counts as unacked and comes back flagged redelivered"
        );
    }
}

/// Reads a whole file into `buf`'s memory (reused from segment to segment) and hands it out as `Bytes`.
pub(super) fn read_whole(path: &Path, buf: &mut BytesMut) -> io::Result<Bytes> {
    let mut f = File::open(path)?;
    let len = usize::try_from(f.metadata()?.len()).unwrap_or(usize::MAX);
    buf.clear();
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // A file that shrank meanwhile is taken as it is now; one that grew is read up to its size at open.
    buf.truncate(filled);
    Ok(buf.split().freeze())
}

/// Ack-file entries: acked offsets, delivery counts per offset, and whether the file is missing.
fn read_ack_file(path: &Path) -> io::Result<(HashSet<u32>, HashMap<u32, u32>, bool)> {
    let mut acked = HashSet::new();
    let mut delivered: HashMap<u32, u32> = HashMap::new();
    let mut b = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut b)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((acked, delivered, true)),
        Err(e) => return Err(e),
    }
    for v in b
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
    {
        if v & DELIVERED != 0 {
            *delivered.entry(v & !DELIVERED).or_default() += 1;
        } else {
            acked.insert(v);
        }
    }
    Ok((acked, delivered, false))
}

/// Counts, logs and copies aside one damaged range; returns whether the copy is safely on disk.
fn note_damage(dir: &Path, id: u32, path: &Path, data: &[u8], range: Range<usize>, rec: &mut Recovered) -> bool {
    let bytes = data.get(range.clone()).unwrap_or_default();
    rec.corrupt += 1;
    rec.corrupt_bytes += bytes.len() as u64;
    match set_aside(dir, id, range.start, bytes) {
        Ok(copy) => {
            warn!(segment = %path.display(), offset = range.start, bytes = bytes.len(), copy = %copy.display(), "skipping damaged bytes; good records after them are kept; the damaged bytes are copied aside");
            true
        }
        Err(e) => {
            warn!(segment = %path.display(), offset = range.start, bytes = bytes.len(), error = %e, "skipping damaged bytes; could not copy them aside");
            false
        }
    }
}

/// Writes `bytes` (damage found at `offset` of segment `id`) to a `.corrupt` file beside the segment, synced.
fn set_aside(dir: &Path, id: u32, offset: usize, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(format!("{id:08}.{offset:010}.{:08x}.corrupt", crc32c::crc32c(bytes)));
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::super::queue_log::recover_dir;
    use super::*;

    #[test]
    fn a_rest_the_scan_gave_up_on_is_copied_and_kept_in_place() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // Headers every 34 bytes declaring records up to the end, none of them good: past the resync budget.
        let n = 4 << 20;
        let mut data = Vec::with_capacity(n);
        while data.len() + 34 <= n {
            data.extend_from_slice(&((n - data.len() - 8) as u32).to_be_bytes());
            data.extend_from_slice(&[0u8; 30]);
        }
        data.resize(n, 0);
        let seg = seg_path(dir, 1);
        fs::write(&seg, &data).expect("segment");
        fs::write(ack_path(dir, 1), b"").expect("ack file");
        let (live, rec) = recover_dir(dir).expect("recover");
        assert!(live.is_empty());
        assert_eq!((rec.corrupt, rec.corrupt_bytes), (1, n as u64));
        assert_eq!(fs::read(&seg).expect("kept").len(), n, "neither cut nor deleted");
        let copies = fs::read_dir(dir)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "corrupt"))
            })
            .count();
        assert_eq!(copies, 1);
    }
}
