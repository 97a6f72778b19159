//! Segment summaries: what recovery needs to know about each record of a sealed segment, without reading it.
//!
//! A segment is sealed when its queue log moves on to the next one; from then on its bytes never change (acks go to
//! the ack file). The sealer thread ([`Sealer`]) then reads it once, checks every record's checksum, and writes
//! `NNNNNNNN.idx` beside it: per record its offset, seq, transaction, body size and the two facts recovery asks of
//! its properties (persistent, priority). A restart reads these few bytes per record instead of the segment (1 KiB
//! messages: 25 bytes instead of about 1,100), so recovering millions of messages takes a fraction of a second.
//!
//! Layout (big-endian): `u64 MAGIC`, `u64 segment size`, `u32 count`, `count` entries of [`ENTRY`] bytes
//! (`u32 offset, u64 seq, u64 tx, u32 body size, u8 flags, u8 priority`), then `u32 crc32c` of everything before it.
//!
//! Invariants:
//! - A summary is only a cache of what scanning its segment gives: it is written only for a segment whose every
//!   byte is a good record, after the segment was synced (unless `fsync = never`), through a temporary file renamed
//!   into place, so a torn summary never has a valid name.
//! - Recovery trusts a summary only when its checksum holds, the segment's size is the one it names, and the first and
//!   last records it lists carry the seqs it says. Anything else, and the segment is scanned as before. A summary
//!   is never needed: deleting every `.idx` file only makes the next start slower.
//! - A summary without its segment (the segment was deleted while it was being written) is removed at recovery; a
//!   new segment never inherits an old summary, because starting a segment removes any summary of its id.
//! - Damage that happens to a sealed segment after its summary was written is found when the record is read (its
//!   checksum), as for any record, and handled by the queue's unreadable-record rule.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::BytesMut;
use tracing::{debug, error};

use super::record::{self, Record};
use super::scan::scan;

const MAGIC: u64 = u64::from_be_bytes(*b"WSUMMRY1");
const HEADER: usize = 8 + 8 + 4;
/// Bytes per record in a summary.
pub const ENTRY: usize = 4 + 8 + 8 + 4 + 1 + 1;
const PERSISTENT: u8 = 0x80;
const PARSED: u8 = 0x40;
const EXPIRES: u8 = 0x20;

/// What recovery knows of one record, from a scan or from a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset: u32,
    pub seq: u64,
    pub tx: u64,
    /// The body's size.
    pub size: u32,
    pub facts: Facts,
}

/// What recovery asks of a record's properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// The property list could be read.
    pub parsed: bool,
    /// `delivery_mode` 2.
    pub persistent: bool,
    pub priority: u8,
    /// An `expiration` is set (a recovered queue then knows its heads may expire).
    pub expires: bool,
}

impl Facts {
    /// The facts of an encoded property list. The summary scan reads it without building it; a list it refuses (it
    /// is stricter about trailing bytes than amq-protocol) gets the full, nesting-bounded parse.
    pub fn of(properties: &[u8]) -> Facts {
        if let Ok(p) = crate::amqp::properties::scan(properties) {
            return Facts {
                parsed: true,
                persistent: p.persistent,
                priority: p.priority,
                expires: p.expiration_ms.is_some(),
            };
        }
        match crate::amqp::nesting::parse_properties_bounded(properties) {
            Ok(p) => Facts {
                parsed: true,
                persistent: p.delivery_mode() == &Some(2),
                priority: p.priority().unwrap_or(0),
                expires: p.expiration().is_some(),
            },
            Err(_) => Facts::default(),
        }
    }

    fn flags(self) -> u8 {
        (if self.persistent { PERSISTENT } else { 0 })
            | (if self.parsed { PARSED } else { 0 })
            | (if self.expires { EXPIRES } else { 0 })
    }
}

impl RecordInfo {
    pub fn of(r: &Record, offset: usize) -> RecordInfo {
        RecordInfo {
            offset: offset as u32,
            seq: r.seq,
            tx: r.tx,
            size: r.body.len() as u32,
            facts: Facts::of(&r.properties),
        }
    }
}

pub fn idx_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.idx"))
}

/// A segment summary's bytes.
pub fn encode(segment_size: u64, records: &[RecordInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + records.len() * ENTRY + 4);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&segment_size.to_be_bytes());
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        out.extend_from_slice(&r.offset.to_be_bytes());
        out.extend_from_slice(&r.seq.to_be_bytes());
        out.extend_from_slice(&r.tx.to_be_bytes());
        out.extend_from_slice(&r.size.to_be_bytes());
        out.push(r.facts.flags());
        out.push(r.facts.priority);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The records a summary lists, when it is whole and made for a segment of `segment_size` bytes.
pub fn decode(b: &[u8], segment_size: u64) -> Option<Vec<RecordInfo>> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let u64_at = |at: usize| {
        body.get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_be_bytes)
    };
    let u32_at = |at: usize| {
        body.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
    };
    if u64_at(0)? != MAGIC || u64_at(8)? != segment_size {
        return None;
    }
    let count = u32_at(16)? as usize;
    if body.len() != HEADER.checked_add(count.checked_mul(ENTRY)?)? {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for e in body[HEADER..].chunks_exact(ENTRY) {
        let at = |i: usize| &e[i..];
        let flags = e[24];
        out.push(RecordInfo {
            offset: u32::from_be_bytes(at(0)[..4].try_into().ok()?),
            seq: u64::from_be_bytes(at(4)[..8].try_into().ok()?),
            tx: u64::from_be_bytes(at(12)[..8].try_into().ok()?),
            size: u32::from_be_bytes(at(20)[..4].try_into().ok()?),
            facts: Facts {
                parsed: flags & PARSED != 0,
                persistent: flags & PERSISTENT != 0,
                priority: e[25],
                expires: flags & EXPIRES != 0,
            },
        });
    }
    Some(out)
}

/// The records of segment `seg` (of `segment_size` bytes, open as `file`) from its summary, when there is one that
/// recovery may trust (see the module's invariants).
pub fn load(dir: &Path, id: u32, file: &File, segment_size: u64) -> Option<Vec<RecordInfo>> {
    let bytes = match fs::read(idx_path(dir, id)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            debug!(segment = id, error = %e, "cannot read a segment summary; scanning the segment");
            return None;
        }
    };
    let records = decode(&bytes, segment_size)?;
    // The ends must be where the summary says: a summary left from another segment of the same id cannot pass.
    for r in [records.first()?, records.last()?] {
        let mut head = [0u8; record::PREFIX + 8];
        file.read_exact_at(&mut head, u64::from(r.offset)).ok()?;
        if u64::from_be_bytes(head[record::PREFIX..].try_into().ok()?) != r.seq {
            return None;
        }
    }
    Some(records)
}

/// A sealed segment to summarise.
pub struct SealJob {
    pub dir: PathBuf,
    pub id: u32,
    /// Sync the segment first (anything but `fsync = never`), so a summary never describes bytes a power cut
    /// could take back.
    pub sync: bool,
}

/// The handle queue logs send sealed segments to; one thread per data directory writes their summaries.
#[derive(Clone, Debug)]
pub struct Sealer {
    tx: mpsc::Sender<SealJob>,
}

impl Sealer {
    /// Starts the sealer thread; it ends when every handle is gone.
    pub fn start() -> Option<Sealer> {
        let (tx, rx) = mpsc::channel::<SealJob>();
        let spawned = std::thread::Builder::new().name("warren-seal".into()).spawn(move || {
            let mut buf = BytesMut::new();
            while let Ok(job) = rx.recv() {
                if let Err(e) = summarise(&job, &mut buf) {
                    debug!(segment = job.id, dir = %job.dir.display(), error = %e, "no summary for a sealed segment; a restart scans it");
                }
            }
        });
        match spawned {
            Ok(_) => Some(Sealer { tx }),
            Err(e) => {
                error!(error = %e, "could not start the segment sealer thread; restarts scan every segment");
                None
            }
        }
    }

    /// A handle whose jobs go to `tx` (tests run them by hand with [`summarise`]).
    #[cfg(test)]
    pub fn to(tx: mpsc::Sender<SealJob>) -> Sealer {
        Sealer { tx }
    }

    pub fn seal(&self, job: SealJob) {
        let _ = self.tx.send(job);
    }
}

/// Writes the summary of one sealed segment (see the module's invariants).
pub fn summarise(job: &SealJob, buf: &mut BytesMut) -> io::Result<()> {
    let path = super::queue_log::seg_path(&job.dir, job.id);
    let file = File::open(&path)?;
    if job.sync {
        file.sync_data()?;
    }
    let data = super::recovery::read_whole(&path, buf)?;
    let found = scan(&data);
    if !found.damaged.is_empty() || found.tail.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the segment is not all good records",
        ));
    }
    let records: Vec<RecordInfo> = found
        .records
        .iter()
        .map(|f| RecordInfo::of(&f.record, f.offset))
        .collect();
    let size = data.len() as u64;
    drop(found);
    if let Ok(m) = data.try_into_mut() {
        *buf = m;
    }
    if records.is_empty() {
        return Ok(());
    }
    let tmp = job.dir.join(format!("{:08}.idx.tmp", job.id));
    let mut f = File::create(&tmp)?;
    let body = encode(size, &records);
    f.write_all(&body)?;
    drop(f);
    fs::rename(&tmp, idx_path(&job.dir, job.id))?;
    super::repl::replaced(&idx_path(&job.dir, job.id), &body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue_log::{Loc, QueueLog};
    use crate::store::txlog::TxView;
    use crate::store::DiskBudget;

    /// Persistent messages at priority `seq % 7` for even seqs, transient ones for odd seqs.
    fn properties(seq: u64) -> Vec<u8> {
        if seq.is_multiple_of(2) {
            vec![0x18, 0x00, 2, (seq % 7) as u8]
        } else {
            vec![0x10, 0x00, 1]
        }
    }

    /// What a reopen recovers: (seq, loc, priority, size, times delivered), and the counts.
    type Live = Vec<(u64, Loc, u8, u32, u32)>;
    fn reopen(dir: &Path) -> (Live, crate::store::queue_log::Recovered) {
        let mut live = Vec::new();
        let keep = |f: Facts| f.persistent.then_some(f.priority);
        let (_log, rec) = QueueLog::open(dir, DiskBudget::default(), &TxView(None), keep, |r, times| {
            live.push((r.seq, r.loc, r.priority, r.size, times))
        })
        .expect("reopen");
        (live, rec)
    }

    #[test]
    fn sealed_segments_recover_from_their_summaries_alone_and_anything_doubtful_is_scanned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (tx, rx) = mpsc::channel();
        let body = vec![7u8; 200 * 1024];
        let locs: Vec<Loc> = {
            let (log, _) =
                QueueLog::open(dir, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("open");
            let mut log = log.with_sealer(Some(Sealer::to(tx)), true);
            let locs: Vec<Loc> = (1..=200u64)
                .map(|seq| {
                    let meta = record::Meta {
                        seq,
                        enqueued_ms: 0,
                        tx: 0,
                    };
                    log.append(
                        meta,
                        b"x",
                        b"k",
                        &properties(seq),
                        &body[..50_000 + (seq as usize * 997) % 150_000],
                    )
                    .expect("append")
                })
                .collect();
            // Acks and delivery marks work on summarised segments as on scanned ones.
            for l in locs.iter().step_by(5) {
                log.ack(*l);
            }
            for l in locs.iter().skip(1).step_by(3) {
                log.note_delivered(*l);
            }
            log.flush_acks().expect("acks");
            locs
        };
        let sealed: Vec<SealJob> = rx.try_iter().collect();
        let mut segments: Vec<u32> = locs.iter().map(|l| l.segment).collect();
        segments.dedup();
        assert!(segments.len() >= 3);
        assert_eq!(
            sealed.iter().map(|j| j.id).collect::<Vec<_>>(),
            segments[..segments.len() - 1],
            "every segment but the last was sealed"
        );
        let (scanned, scanned_rec) = reopen(dir);
        assert!(!scanned.is_empty());

        let mut buf = BytesMut::new();
        for job in &sealed {
            summarise(job, &mut buf).expect("summarise");
            assert!(idx_path(dir, job.id).exists());
        }
        let (summarised, rec) = reopen(dir);
        assert_eq!(
            summarised, scanned,
            "the same records, places, priorities, sizes and delivery counts"
        );
        // (The first reopen acked the transient records it dropped.)
        assert_eq!((rec.live, rec.max_seq), (scanned_rec.live, scanned_rec.max_seq));

        // Proof that a summarised segment is not read: damage inside one of its records goes unseen at recovery
        // (a read of that record finds it, by its checksum).
        let first = sealed[0].id;
        let victim = locs
            .iter()
            .filter(|l| l.segment == first)
            .nth(2)
            .expect("a middle record");
        let seg = crate::store::queue_log::seg_path(dir, first);
        let mut bytes = fs::read(&seg).expect("segment");
        bytes[victim.offset as usize + 100] ^= 0x01;
        fs::write(&seg, &bytes).expect("write");
        let (unseen, rec) = reopen(dir);
        assert_eq!((unseen, rec.corrupt), (scanned.clone(), 0));

        // A summary that does not hold is not trusted: the segment is scanned, and the damage found.
        let idx = idx_path(dir, first);
        let mut s = fs::read(&idx).expect("idx");
        s[30] ^= 0x01;
        fs::write(&idx, &s).expect("write");
        let (_, rec) = reopen(dir);
        assert_eq!(rec.corrupt, 1, "scanned, so the damaged record was found");

        // Nor is one made for a segment of another size.
        let second = sealed[1].id;
        let seg2 = crate::store::queue_log::seg_path(dir, second);
        let len = fs::metadata(&seg2).expect("meta").len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg2)
            .expect("open")
            .set_len(len - 3)
            .expect("cut");
        let (_, rec) = reopen(dir);
        assert!(rec.torn_bytes > 0, "scanned, so the torn tail was found");

        // A summary without its segment goes.
        fs::write(idx_path(dir, 9_999), b"left over").expect("write");
        reopen(dir);
        assert!(!idx_path(dir, 9_999).exists());
    }

    fn info(offset: u32, seq: u64) -> RecordInfo {
        RecordInfo {
            offset,
            seq,
            tx: seq % 3,
            size: 7,
            facts: Facts {
                parsed: true,
                persistent: seq.is_multiple_of(2),
                priority: (seq % 256) as u8,
                expires: seq % 3 == 1,
            },
        }
    }

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let records: Vec<_> = (0..50).map(|i| info(i * 100, 1000 + u64::from(i))).collect();
        let b = encode(5_000, &records);
        assert_eq!(decode(&b, 5_000), Some(records));
        assert_eq!(decode(&b, 5_001), None, "made for another size");
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad, 5_000), None, "flipped byte {i}");
        }
        for n in 0..b.len() {
            assert_eq!(decode(&b[..n], 5_000), None, "cut at {n}");
        }
    }
}
