//! One durable queue's persistent messages on disk: segment files of records, one ack file per segment, and a
//! delivered log.
//!
//! Files in the queue's directory:
//! - `NNNNNNNN.seg`: records (see `record.rs`), appended; a new segment starts past `SEGMENT_SIZE`.
//! - `NNNNNNNN.ack`: the offsets (u32, big-endian) of records in that segment that were acked or dropped.
//! - `delivered.log`: seqs (u64) of messages handed to a consumer, so that after a crash they come back with
//!   redelivered=true. It is written before the delivery reaches the socket.
//!
//! Invariants:
//! - A record is live until its offset is in its segment's ack file; a segment whose records are all acked (and
//!   that is not the one being written) is deleted with its ack file.
//! - A failed append (ENOSPC, I/O error) truncates the segment back to where it was, so a partial record never
//!   stays behind; nothing already stored is rewritten.
//! - Recovery never panics: a torn tail is truncated, a record failing its checksum is skipped and counted, a
//!   missing ack file means its segment's records all count as unacked (at-least-once).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::warn;

use super::record::{self, Decoded, Record};
use super::DiskBudget;

/// Start a new segment once the current one is past this size.
pub const SEGMENT_SIZE: u64 = 8 * 1024 * 1024;

/// Where a record lives: segment id and byte offset, packed into a u64 for the queue's compact index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub segment: u32,
    pub offset: u32,
}

impl Loc {
    pub fn pack(self) -> u64 {
        ((self.segment as u64) << 32) | self.offset as u64
    }
    pub fn unpack(v: u64) -> Self {
        Loc {
            segment: (v >> 32) as u32,
            offset: v as u32,
        }
    }
}

struct Segment {
    file: Arc<File>,
    size: u64,
    records: u32,
    acked: u32,
    ack_file: Option<File>,
    /// Acks not yet written (see `flush_acks`).
    ack_buf: Vec<u8>,
}

pub struct QueueLog {
    dir: PathBuf,
    segments: BTreeMap<u32, Segment>,
    /// The segment being appended to.
    active: u32,
    delivered: File,
    delivered_buf: Vec<u8>,
    budget: DiskBudget,
    scratch: BytesMut,
}

/// A record that recovery found live.
#[derive(Debug, Clone, Copy)]
pub struct LiveRecord {
    pub seq: u64,
    pub loc: Loc,
    pub priority: u8,
    pub size: u32,
}

/// What recovery found: live records in file order, and counts for the log line.
#[derive(Default)]
pub struct Recovered {
    pub live: Vec<LiveRecord>,
    /// Transient messages found on disk and dropped (they do not survive a restart).
    pub transient: u64,
    /// Seqs that had been delivered when the broker stopped.
    pub delivered: HashSet<u64>,
    pub max_seq: u64,
    /// Records skipped because they failed their checksum.
    pub corrupt: u64,
    /// Bytes cut from torn segment tails.
    pub torn_bytes: u64,
    /// Segments with records but no ack file.
    pub missing_ack_files: u64,
}

fn seg_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.seg"))
}
fn ack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.ack"))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).read(true).append(true).open(path)
}

impl QueueLog {
    /// Opens (creating if needed) a queue's directory and recovers what it holds.
    /// `keep` looks at a record's encoded properties and says whether it survives a restart (and at which
    /// priority): transient messages are written to disk like the rest but dropped here.
    pub fn open(dir: &Path, budget: DiskBudget, keep: impl Fn(&Bytes) -> Option<u8>) -> io::Result<(Self, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut rec = Recovered::default();
        let mut ids: Vec<u32> = Vec::new();
        for e in fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut drop_now: Vec<Loc> = Vec::new();
        for id in ids {
            let (seg, live) = recover_segment(dir, id, &mut rec, &keep, &mut drop_now)?;
            rec.live.extend(live);
            segments.insert(id, seg);
        }
        let delivered_path = dir.join("delivered.log");
        let mut all = Vec::new();
        if let Ok(mut f) = File::open(&delivered_path) {
            f.read_to_end(&mut all)?;
        }
        let live_seqs: HashSet<u64> = rec.live.iter().map(|r| r.seq).collect();
        rec.delivered = all
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_be_bytes))
            .filter(|s| live_seqs.contains(s))
            .collect();
        // Rewrite the delivered log with only what is still live.
        let tmp = dir.join("delivered.log.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::with_capacity(rec.delivered.len() * 8);
            for s in &rec.delivered {
                buf.extend_from_slice(&s.to_be_bytes());
            }
            f.write_all(&buf)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, &delivered_path)?;
        let delivered = open_append(&delivered_path)?;
        let active = segments.keys().next_back().copied().unwrap_or(0);
        let mut log = QueueLog {
            dir: dir.to_path_buf(),
            segments,
            active,
            delivered,
            delivered_buf: Vec::new(),
            budget,
            scratch: BytesMut::new(),
        };
        // New records go to a fresh segment, so recovered ones are never appended after a truncated tail.
        let next = log.active + 1;
        log.start_segment(next)?;
        for loc in drop_now {
            log.ack(loc);
        }
        log.flush_acks()?;
        // Fully acked segments left from before are removed now.
        let done: Vec<u32> = log
            .segments
            .iter()
            .filter(|(id, s)| **id != log.active && s.acked >= s.records)
            .map(|(i, _)| *i)
            .collect();
        for id in done {
            log.remove_segment(id);
        }
        Ok((log, rec))
    }

    fn start_segment(&mut self, id: u32) -> io::Result<()> {
        let file = open_append(&seg_path(&self.dir, id))?;
        self.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                size: 0,
                records: 0,
                acked: 0,
                ack_file: None,
                ack_buf: Vec::new(),
            },
        );
        self.active = id;
        Ok(())
    }

    /// The file a sync must cover after an append.
    pub fn active_file(&self) -> Option<Arc<File>> {
        self.segments.get(&self.active).map(|s| s.file.clone())
    }

    /// Appends one message record; on any error the segment is cut back so no partial record remains.
    pub fn append(
        &mut self,
        seq: u64,
        enqueued_ms: u64,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: &[u8],
    ) -> io::Result<Loc> {
        if self.segments.get(&self.active).is_none_or(|s| s.size >= SEGMENT_SIZE) {
            let next = self.active + 1;
            self.start_segment(next)?;
        }
        self.scratch.clear();
        let n = record::encode(
            &mut self.scratch,
            seq,
            enqueued_ms,
            exchange,
            routing_key,
            properties,
            body,
        );
        let Some(seg) = self.segments.get_mut(&self.active) else {
            return Err(io::Error::other("no active segment"));
        };
        let at = seg.size;
        let result = self
            .budget
            .charge(n as u64)
            .and_then(|()| (&*seg.file).write_all(&self.scratch));
        if let Err(e) = result {
            // Cut back whatever part of the record reached the file.
            let _ = seg.file.set_len(at);
            return Err(e);
        }
        seg.size += n as u64;
        seg.records += 1;
        Ok(Loc {
            segment: self.active,
            offset: at as u32,
        })
    }

    /// Reads a record back.
    pub fn read(&self, loc: Loc) -> io::Result<Record> {
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("segment {} is gone", loc.segment)))?;
        let mut prefix = [0u8; record::PREFIX];
        seg.file.read_exact_at(&mut prefix, loc.offset as u64)?;
        let size = record::declared_size(&prefix).unwrap_or(0);
        if !(record::PREFIX..=record::MAX_RECORD + record::PREFIX).contains(&size) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "implausible record length"));
        }
        let mut buf = vec![0u8; size];
        seg.file.read_exact_at(&mut buf, loc.offset as u64)?;
        match record::decode(&Bytes::from(buf)) {
            Decoded::Ok(r, _) => Ok(r),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record at {loc:?} failed its checksum"),
            )),
        }
    }

    /// Records that a message is done with (acked, dropped, purged); written by the next `flush_acks`.
    pub fn ack(&mut self, loc: Loc) {
        if let Some(seg) = self.segments.get_mut(&loc.segment) {
            seg.ack_buf.extend_from_slice(&loc.offset.to_be_bytes());
            seg.acked += 1;
        }
    }

    /// Writes buffered acks, one write per segment, and deletes segments that are now fully acked.
    pub fn flush_acks(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        let mut done = Vec::new();
        for (id, seg) in self.segments.iter_mut() {
            if !seg.ack_buf.is_empty() {
                if seg.ack_file.is_none() {
                    match open_append(&ack_path(&self.dir, *id)) {
                        Ok(f) => seg.ack_file = Some(f),
                        Err(e) => {
                            result = Err(e);
                            continue;
                        }
                    }
                }
                if let Some(f) = &mut seg.ack_file {
                    if let Err(e) = f.write_all(&seg.ack_buf) {
                        result = Err(e);
                        continue;
                    }
                }
                seg.ack_buf.clear();
            }
            if *id != self.active && seg.acked >= seg.records {
                done.push(*id);
            }
        }
        for id in done {
            self.remove_segment(id);
        }
        result
    }

    fn remove_segment(&mut self, id: u32) {
        self.segments.remove(&id);
        let _ = fs::remove_file(seg_path(&self.dir, id));
        let _ = fs::remove_file(ack_path(&self.dir, id));
    }

    /// Notes a delivery (buffered until `flush_delivered`).
    pub fn note_delivered(&mut self, seq: u64) {
        self.delivered_buf.extend_from_slice(&seq.to_be_bytes());
    }

    /// Writes the noted deliveries; called before they are handed to connections.
    pub fn flush_delivered(&mut self) {
        if self.delivered_buf.is_empty() {
            return;
        }
        if let Err(e) = self.delivered.write_all(&self.delivered_buf) {
            warn!(dir = %self.dir.display(), error = %e, "could not record deliveries; a crash now may redeliver without the redelivered flag");
        }
        self.delivered_buf.clear();
    }

    /// Deletes the queue's files (queue deleted).
    pub fn destroy(self) {
        let dir = self.dir.clone();
        drop(self);
        if let Err(e) = fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "could not remove a deleted queue's files");
        }
    }
}

fn recover_segment(
    dir: &Path,
    id: u32,
    rec: &mut Recovered,
    keep: &impl Fn(&Bytes) -> Option<u8>,
    drop_now: &mut Vec<Loc>,
) -> io::Result<(Segment, Vec<LiveRecord>)> {
    let path = seg_path(dir, id);
    let mut data = Vec::new();
    File::open(&path)?.read_to_end(&mut data)?;
    let data = Bytes::from(data);
    let acked: HashSet<u32> = match File::open(ack_path(dir, id)) {
        Ok(mut f) => {
            let mut b = Vec::new();
            f.read_to_end(&mut b)?;
            b.chunks_exact(4)
                .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
                .collect()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => return Err(e),
    };
    let mut live = Vec::new();
    let mut at = 0usize;
    let mut records = 0u32;
    let mut acked_count = 0u32;
    while at < data.len() {
        match record::decode(&data.slice(at..)) {
            Decoded::Ok(r, size) => {
                records += 1;
                rec.max_seq = rec.max_seq.max(r.seq);
                let loc = Loc {
                    segment: id,
                    offset: at as u32,
                };
                if acked.contains(&(at as u32)) {
                    acked_count += 1;
                } else if let Some(priority) = keep(&r.properties) {
                    live.push(LiveRecord {
                        seq: r.seq,
                        loc,
                        priority,
                        size: r.body.len() as u32,
                    });
                } else {
                    rec.transient += 1;
                    drop_now.push(loc);
                }
                at += size;
            }
            Decoded::Torn => {
                let cut = (data.len() - at) as u64;
                warn!(segment = %path.display(), offset = at, bytes = cut, "truncating a torn record at the end of a segment");
                rec.torn_bytes += cut;
                OpenOptions::new().write(true).open(&path)?.set_len(at as u64)?;
                break;
            }
            Decoded::Corrupt(size) if size > 0 && at + size <= data.len() => {
                warn!(segment = %path.display(), offset = at, size, "skipping a record that fails its checksum");
                rec.corrupt += 1;
                // Count it as a record that is already done with, so the segment can still be reclaimed.
                records += 1;
                acked_count += 1;
                at += size;
            }
            Decoded::Corrupt(_) => {
                let cut = (data.len() - at) as u64;
                warn!(segment = %path.display(), offset = at, bytes = cut, "unreadable record length; dropping the rest of the segment");
                rec.corrupt += 1;
                OpenOptions::new().write(true).open(&path)?.set_len(at as u64)?;
                break;
            }
        }
    }
    let has_ack_file = ack_path(dir, id).exists();
    if !has_ack_file && records > 0 {
        // Nothing acked yet, or the ack file was lost: either way every record counts as unacked (at-least-once).
        rec.missing_ack_files += 1;
        tracing::debug!(segment = %path.display(), records, "no ack file: every record counts as unacked");
    }
    let file = open_append(&path)?;
    let size = at as u64;
    tracing::debug!(segment = %path.display(), records, live = live.len(), "recovered segment");
    let ack_file = if has_ack_file {
        Some(open_append(&ack_path(dir, id))?)
    } else {
        None
    };
    Ok((
        Segment {
            file: Arc::new(file),
            size,
            records,
            acked: acked_count,
            ack_file,
            ack_buf: Vec::new(),
        },
        live,
    ))
}
