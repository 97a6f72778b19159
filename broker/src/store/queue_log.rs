//! One durable queue's messages on disk: segment files of records, and one ack file per segment.
//!
//! Files in the queue's directory:
//! - `NNNNNNNN.seg`: records (see `record.rs`), appended; a new segment starts past `SEGMENT_SIZE`.
//! - `NNNNNNNN.idx`: the summary of a sealed segment (see `summary.rs`): what a restart needs of its records, so it
//!   need not read them.
//! - `NNNNNNNN.ack`: u32 (big-endian) entries about records of that segment: the record's offset when it was acked
//!   or dropped, or the offset with the top bit set when it was handed to a consumer (so that after a crash it
//!   comes back with redelivered=true). Deliveries are written before they reach the socket.
//!
//! Invariants:
//! - A record is live until its offset is in its segment's ack file; a segment whose records are all acked (and
//!   that is not the one being written) is deleted with its ack file.
//! - A failed append (ENOSPC, I/O error) truncates the segment back to where it was, so a partial record never
//!   stays behind; nothing already stored is rewritten.
//! - Deferred appends gather in a write-behind buffer. With a writer (a durable queue: the store's syncer thread)
//!   the buffer is handed over (`hand_over`) and written there, in hand-over order; until then its records are read
//!   from the handed-over bytes. Segment files are written at explicit offsets, so an immediate append can write
//!   what was handed over and not yet written itself (the same bytes at the same offsets) before its own record:
//!   a file never has a gap. A handed-over write that fails drops its records and every later one of that segment
//!   (`drop_unwritten`): the segment is cut back, its counts lowered, acks naming the dropped records ignored, and
//!   new appends go to a new segment, so a location never names two records.
//! - Recovery (`recovery.rs`) never panics and keeps every record whose checksum holds: damage in the middle of a
//!   segment is resynced past and copied to a `.corrupt` file beside it, never cut; only a tail with no good record
//!   after it is truncated; a missing ack file means its segment's records all count as unacked (at-least-once).
//! - Recovered segments are never appended to (new records start a fresh segment), so a damaged hole in one leaves
//!   the offsets of the records after it, and the ack-file entries naming them, as they were.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::warn;

use super::io_pool::ReadRequest;
use super::record::{self, Decoded, Record};
use super::recovery::recover_segment;
pub use super::recovery::Recovered;
use super::repl;
use super::summary::{self, Facts, SealJob, Sealer};
use super::txlog::TxView;
use super::{DiskBudget, Syncer, WriteJob, WRITE_DONE, WRITE_DROPPED, WRITE_PENDING};

/// The top bit of an ack-file entry: "delivered", not "acked".
pub(super) const DELIVERED: u32 = 0x8000_0000;

/// Start a new segment once the current one is past this size (offsets stay below `DELIVERED`).
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
    budget: DiskBudget,
    scratch: BytesMut,
    /// A segment file was created since the last `dir_to_sync`: the directory entry must be synced too.
    new_entry: bool,
    /// When a record was last appended (see `retire_idle`).
    last_append: std::time::Instant,
    /// Records appended but not yet written: every append passes through it; `append` writes it out at once,
    /// deferred appends (and every append of a spill log) leave it to `flush_pending` or to a full buffer.
    pending: Pending,
    /// A spill log: every append is deferred.
    spill: bool,
    /// Segments that took a deferred append since the last `take_dirty` (what the group commit must sync).
    dirty: Vec<(u32, Arc<File>)>,
    /// Where sealed segments go to be summarised (`summary.rs`), and whether to sync them first.
    sealer: Option<(Sealer, bool)>,
    /// Where write-behind buffers go to be written (the syncer thread), and what to call when one fails. None: the
    /// log writes them itself (`flush_pending`; spill logs, tools, tests).
    writer: Option<Writer>,
    /// Buffers handed to the writer and not known written yet, oldest first: reads of their records are served
    /// from here, and an immediate append writes them first (see `write_handed_over`).
    handed: Vec<Handoff>,
    /// A write of the active segment failed and its tail was dropped: the next append starts a new segment, so a
    /// location is never used by two records.
    seal_active: bool,
}

/// The syncer thread that writes a queue's handed-over buffers, and the queue's answer to a failed write (called
/// on the syncer thread with the segment and the offset the failed write started at).
#[derive(Clone)]
pub struct Writer {
    pub syncer: Arc<Syncer>,
    pub failed: Arc<dyn Fn(u32, u64) + Send + Sync>,
}

/// A write-behind buffer handed to the writer.
struct Handoff {
    segment: u32,
    from: u64,
    bytes: Bytes,
    records: u32,
    file: Arc<File>,
    state: Arc<AtomicU8>,
}

/// Records appended to the active segment but not yet written to its file.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// The offset in the active segment where `buf` starts.
    from: u64,
    /// How many records `buf` holds.
    records: u32,
}

/// A write-behind buffer is written out once it holds this much.
const WRITE_BEHIND: usize = 256 * 1024;

/// Where `QueueLog::locate` found a record.
pub enum Located {
    /// Still in memory (the write-behind buffer): decoded already.
    Here(Record),
    /// On file: to read.
    On(ReadRequest),
}

/// A record that recovery found live.
#[derive(Debug, Clone, Copy)]
pub struct LiveRecord {
    pub seq: u64,
    pub loc: Loc,
    pub priority: u8,
    pub size: u32,
}

/// Decodes a record at the front of `buf` (a write-behind buffer).
fn read_buffered(buf: &[u8], loc: Loc) -> io::Result<Record> {
    let size = buf.get(..record::PREFIX).and_then(record::declared_size).unwrap_or(0);
    let Some(bytes) = buf.get(..size).filter(|_| size >= record::PREFIX) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no record at {loc:?}"),
        ));
    };
    match record::decode(&Bytes::copy_from_slice(bytes)) {
        Decoded::Ok(r, _) => Ok(r),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record at {loc:?} failed its checksum"),
        )),
    }
}

pub(super) fn seg_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.seg"))
}
pub(super) fn ack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.ack"))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).read(true).append(true).open(path)
}

/// A segment file: written at explicit offsets (`write_all_at`), since buffers handed to the writer thread and
/// immediate appends may reach it out of order. (Not `O_APPEND`: Linux would ignore the offsets.)
fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
}

/// Recovers a queue directory as the broker would at start, keeping every record (as if all were persistent) and
/// knowing of no committed transaction, then closes it: the live records in order, and the counts. For tools and the
/// `segment_recovery` fuzz target.
pub fn recover_dir(dir: &Path) -> io::Result<(Vec<LiveRecord>, Recovered)> {
    let mut live = Vec::new();
    let (_log, rec) = QueueLog::open(
        dir,
        DiskBudget::default(),
        &TxView(None),
        |_| Some(0),
        |r, _| live.push(r),
    )?;
    Ok((live, rec))
}

impl QueueLog {
    /// Opens (creating if needed) a queue's directory and recovers what it holds.
    /// `keep` looks at a record's encoded properties and says whether it survives a restart (and at which
    /// priority): transient messages are written to disk like the rest but dropped here.
    /// Every live record is handed to `on_live` in seq order, with how many times it had been delivered (each
    /// delivery wrote a mark; a missing ack file counts as one).
    pub fn open(
        dir: &Path,
        budget: DiskBudget,
        txs: &TxView<'_>,
        keep: impl Fn(Facts) -> Option<u8>,
        mut on_live: impl FnMut(LiveRecord, u32),
    ) -> io::Result<(Self, Recovered)> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            // The new directories' entries are synced too (queues/<vhost>/<queue>), so that a power cut cannot
            // lose a queue whose messages were confirmed.
            for d in dir.ancestors().skip(1).take(2) {
                File::open(d)?.sync_all()?;
            }
        }
        let mut rec = Recovered::default();
        let mut ids: Vec<u32> = Vec::new();
        let mut summaries: Vec<u32> = Vec::new();
        for e in fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                ids.push(id);
            } else if let Some(id) = name.strip_suffix(".idx").and_then(|n| n.parse().ok()) {
                summaries.push(id);
            } else if name.ends_with(".idx.tmp") {
                let _ = fs::remove_file(dir.join(&*name));
            }
        }
        ids.sort_unstable();
        // Summaries whose segment is gone (it was deleted while its summary was being written).
        for id in summaries.into_iter().filter(|id| ids.binary_search(id).is_err()) {
            let _ = fs::remove_file(summary::idx_path(dir, id));
        }
        let mut segments = BTreeMap::new();
        let mut drop_now: Vec<Loc> = Vec::new();
        let mut buf = BytesMut::new();
        for id in ids {
            let counts = recover_segment(dir, id, &mut rec, txs, &keep, &mut drop_now, &mut on_live, &mut buf)?;
            let segment = Segment {
                file: Arc::new(open_segment(&seg_path(dir, id))?),
                size: counts.size,
                records: counts.records,
                acked: counts.acked,
                ack_file: Some(open_append(&ack_path(dir, id))?),
                ack_buf: Vec::new(),
            };
            segments.insert(id, segment);
        }
        if rec.corrupt > 0 {
            warn!(
                dir = %dir.display(),
                damaged_ranges = rec.corrupt,
                damaged_bytes = rec.corrupt_bytes,
                live = rec.live,
                "recovered a queue with damaged segments: every record whose checksum holds is kept; the damaged bytes \
                 are in .corrupt files beside their segments"
            );
        }
        let active = segments.keys().next_back().copied().unwrap_or(0);
        let mut log = QueueLog {
            dir: dir.to_path_buf(),
            segments,
            active,
            budget,
            scratch: BytesMut::new(),
            new_entry: false,
            last_append: std::time::Instant::now(),
            pending: Pending::default(),
            spill: false,
            dirty: Vec::new(),
            sealer: None,
            writer: None,
            handed: Vec::new(),
            seal_active: false,
        };
        // New records go to a fresh segment, so recovered ones are never appended after a truncated tail. It is
        // created by the first append (the active id names no segment yet): a queue that never gets a message holds
        // no open file.
        log.active += 1;
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

    /// Every append from now on is deferred (written behind). For logs whose records need not survive a crash (the
    /// spill log): nothing is synced, and a crash loses what was buffered.
    pub fn write_behind(&mut self) {
        self.spill = true;
    }

    /// Writes the deferred records to the active segment, after any buffer handed to the writer that is not written
    /// yet (so the file never has a gap). On failure the part of the buffer that reached the file is cut back and
    /// the records stay buffered (and readable); the next append or flush tries again.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        self.write_handed_over()?;
        let p = &mut self.pending;
        if p.buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.segments.get(&self.active) else {
            return Err(io::Error::other("no active segment"));
        };
        if let Err(e) = seg.file.write_all_at(&p.buf, p.from) {
            if seg.file.metadata().is_ok_and(|m| m.len() > p.from) && seg.file.set_len(p.from).is_ok() {
                repl::truncated(&seg.file, p.from);
            }
            return Err(e);
        }
        repl::written(&seg.file, p.from, &p.buf);
        p.from += p.buf.len() as u64;
        p.buf.clear();
        p.records = 0;
        Ok(())
    }

    /// Writes, here and now, every handed-over buffer the writer has not written yet (the same bytes at the same
    /// offsets: whichever of the two writes first, the file is the same). For immediate appends, which must not
    /// leave a gap before their record.
    fn write_handed_over(&mut self) -> io::Result<()> {
        self.handed.retain(|h| h.state.load(Ordering::Acquire) == WRITE_PENDING);
        for h in &self.handed {
            h.file.write_all_at(&h.bytes, h.from)?;
            repl::written_shared(&h.file, h.from, &h.bytes);
            let _ = h
                .state
                .compare_exchange(WRITE_PENDING, WRITE_DONE, Ordering::AcqRel, Ordering::Acquire);
        }
        self.handed.clear();
        Ok(())
    }

    /// Hands the write-behind buffer to the writer thread (with a writer; otherwise writes it here), and marks the
    /// files a confirm must wait for dirty: the segments that took deferred appends since the last call, the active
    /// one, and the directory when a segment was created. Returns the writer's round that covers them (0 without a
    /// writer). Never touches the disk with a writer.
    pub fn hand_over(&mut self) -> io::Result<u64> {
        let Some(writer) = self.writer.clone() else {
            self.flush_pending()?;
            return Ok(0);
        };
        let job = self.take_pending(&writer);
        let mut files = self.take_dirty();
        if let Some(active) = self.active_file() {
            if !files.iter().any(|f| Arc::ptr_eq(f, &active)) {
                files.push(active);
            }
        }
        files.extend(self.dir_to_sync());
        Ok(writer.syncer.submit(job, &files))
    }

    /// The pending buffer as a job for the writer (None when empty); it stays readable in `handed`.
    fn take_pending(&mut self, writer: &Writer) -> Option<WriteJob> {
        self.handed.retain(|h| h.state.load(Ordering::Acquire) == WRITE_PENDING);
        let seg = self.segments.get(&self.active)?;
        let p = &mut self.pending;
        if p.buf.is_empty() {
            return None;
        }
        let bytes = Bytes::from(std::mem::take(&mut p.buf));
        let state = Arc::new(AtomicU8::new(WRITE_PENDING));
        let (segment, from) = (self.active, p.from);
        self.handed.push(Handoff {
            segment,
            from,
            bytes: bytes.clone(),
            records: std::mem::take(&mut p.records),
            file: seg.file.clone(),
            state: state.clone(),
        });
        p.from += bytes.len() as u64;
        let failed = writer.failed.clone();
        Some(WriteJob {
            file: seg.file.clone(),
            offset: from,
            bytes,
            state,
            failed: Box::new(move || failed(segment, from)),
            then: None,
        })
    }

    /// Whether a failed write (of the buffer handed over at `from` in `segment`) still stands for records the
    /// queue believes in: false when it was written meanwhile by an immediate append, or dropped already.
    pub fn write_lost(&self, segment: u32, from: u64) -> bool {
        self.handed
            .iter()
            .any(|h| h.segment == segment && h.from == from && h.state.load(Ordering::Acquire) == WRITE_PENDING)
    }

    /// A handed-over write failed (see `write_lost`): every record of `segment` from `from` on is dropped (that
    /// buffer, later ones handed over, and what is still pending there), the file is cut back to `from`, and new
    /// appends go to a new segment. The queue must drop those records too (`MessageStore::drop_unwritten`).
    pub fn drop_unwritten(&mut self, segment: u32, from: u64) {
        let mut records = 0;
        for h in self.handed.iter().filter(|h| h.segment == segment && h.from >= from) {
            h.state.store(WRITE_DROPPED, Ordering::Release);
            records += h.records;
        }
        self.handed.retain(|h| !(h.segment == segment && h.from >= from));
        if segment == self.active {
            let pending = std::mem::take(&mut self.pending.records);
            if pending > 0 {
                // Their publishers' batches have not handed them over yet: the round they will wait for fails.
                if let Some(w) = &self.writer {
                    w.syncer.fail_open_round();
                }
            }
            records += pending;
            self.pending.buf.clear();
            self.pending.from = from;
            self.seal_active = true;
        }
        if let Some(seg) = self.segments.get_mut(&segment) {
            seg.size = from;
            seg.records = seg.records.saturating_sub(records);
            if seg.file.metadata().is_ok_and(|m| m.len() > from) {
                match seg.file.set_len(from) {
                    Ok(()) => repl::truncated(&seg.file, from),
                    Err(e) => {
                        warn!(dir = %self.dir.display(), error = %e, "could not cut back a segment after a failed write")
                    }
                }
            }
        }
    }

    /// Whether `loc` names a record this log holds (not one dropped after a failed write).
    pub fn holds(&self, loc: Loc) -> bool {
        self.segments
            .get(&loc.segment)
            .is_some_and(|s| (loc.offset as u64) < s.size)
    }

    /// Sends write-behind buffers to `writer` from now on (see `hand_over`).
    pub fn set_writer(&mut self, writer: Option<Writer>) {
        self.writer = writer;
    }

    /// The segments that took deferred appends since the last call: a confirm for those records waits for their
    /// sync.
    pub fn take_dirty(&mut self) -> Vec<Arc<File>> {
        self.dirty.drain(..).map(|(_, f)| f).collect()
    }

    /// Sealed segments are summarised by `sealer` from now on (synced first when `sync`), so a restart need not
    /// read them.
    pub fn with_sealer(mut self, sealer: Option<Sealer>, sync: bool) -> Self {
        self.sealer = sealer.map(|s| (s, sync));
        self
    }

    fn start_segment(&mut self, id: u32) -> io::Result<()> {
        // A summary left under this id by an earlier segment must never describe this one.
        match fs::remove_file(summary::idx_path(&self.dir, id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
            Ok(()) => repl::removed(&summary::idx_path(&self.dir, id)),
        }
        let file = open_segment(&seg_path(&self.dir, id))?;
        repl::created(&seg_path(&self.dir, id));
        // The ack file exists from the start, so a missing one always means it was lost.
        let ack_file = open_append(&ack_path(&self.dir, id))?;
        repl::created(&ack_path(&self.dir, id));
        // What the old segment still buffers goes first: to the writer (its confirms wait for a later round), or
        // to the file here. (After the fallible steps, so a buffer taken here is always handed over.)
        let writer = self.writer.clone().filter(|_| !self.spill);
        let mut tail = match &writer {
            Some(writer) => self.take_pending(writer),
            None => {
                self.flush_pending()?;
                None
            }
        };
        self.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                size: 0,
                records: 0,
                acked: 0,
                ack_file: Some(ack_file),
                ack_buf: Vec::new(),
            },
        );
        let sealed = std::mem::replace(&mut self.active, id);
        let old = self
            .segments
            .get(&sealed)
            .filter(|s| s.records > 0)
            .map(|s| s.file.clone());
        if let (Some((sealer, sync)), Some(file)) = (&self.sealer, &old) {
            let (sealer, job) = (
                sealer.clone(),
                SealJob {
                    dir: self.dir.clone(),
                    id: sealed,
                    sync: *sync,
                },
            );
            match &writer {
                // Summarised once the writer has written the whole segment (its writes run in order): after the
                // tail, or after an empty write behind what it has still to write.
                Some(_) => {
                    let then: Box<dyn FnOnce() + Send> = Box::new(move || sealer.seal(job));
                    match &mut tail {
                        Some(t) => t.then = Some(then),
                        None => {
                            tail = Some(WriteJob {
                                file: file.clone(),
                                offset: 0,
                                bytes: Bytes::new(),
                                state: Arc::new(AtomicU8::new(WRITE_PENDING)),
                                failed: Box::new(|| {}),
                                then: Some(then),
                            })
                        }
                    }
                }
                None => sealer.seal(job),
            }
        }
        if let Some(writer) = &writer {
            if tail.is_some() {
                writer.syncer.submit(tail, old.as_slice());
            }
        }
        self.new_entry = true;
        self.seal_active = false;
        self.pending.from = 0;
        Ok(())
    }

    /// The queue's directory, to sync with the next group commit, when a segment was created since the last call:
    /// a synced file whose directory entry is not could vanish in a power cut.
    pub fn dir_to_sync(&mut self) -> Option<Arc<File>> {
        if !std::mem::take(&mut self.new_entry) {
            return None;
        }
        match File::open(&self.dir) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot open the queue directory to sync it");
                None
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a sync must cover after an append.
    pub fn active_file(&self) -> Option<Arc<File>> {
        self.segments.get(&self.active).map(|s| s.file.clone())
    }

    /// Appends one message record and writes it (with any deferred records before it) to the file; on any error the
    /// record is not appended and no partial record remains in the file.
    pub fn append(
        &mut self,
        meta: record::Meta,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: &[u8],
    ) -> io::Result<Loc> {
        let defer = self.spill;
        self.append_inner(meta, [exchange, routing_key, properties, body], defer)
    }

    /// Appends one message record to the write-behind buffer: it reaches the file with the next `flush_pending`
    /// (or `append`, or once the buffer holds `WRITE_BEHIND` bytes). Until then it is readable, but a crash loses
    /// it, so nothing may confirm it before `flush_pending` succeeded.
    pub fn append_deferred(
        &mut self,
        meta: record::Meta,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: &[u8],
    ) -> io::Result<Loc> {
        self.append_inner(meta, [exchange, routing_key, properties, body], true)
    }

    fn append_inner(&mut self, meta: record::Meta, parts: [&[u8]; 4], defer: bool) -> io::Result<Loc> {
        if self.seal_active || self.segments.get(&self.active).is_none_or(|s| s.size >= SEGMENT_SIZE) {
            let next = self.active + 1;
            self.start_segment(next)?;
        }
        self.scratch.clear();
        let [exchange, routing_key, properties, body] = parts;
        let n = record::encode(&mut self.scratch, meta, exchange, routing_key, properties, body);
        let Some(seg) = self.segments.get_mut(&self.active) else {
            return Err(io::Error::other("no active segment"));
        };
        let at = seg.size;
        self.budget.charge(n as u64)?;
        let before = self.pending.buf.len();
        if before == 0 {
            self.pending.from = at;
        }
        self.pending.buf.extend_from_slice(&self.scratch);
        self.pending.records += 1;
        seg.size += n as u64;
        seg.records += 1;
        if defer && !self.spill && self.dirty.last().is_none_or(|(id, _)| *id != self.active) {
            self.dirty.push((self.active, seg.file.clone()));
        }
        self.last_append = std::time::Instant::now();
        if defer && !self.spill && self.pending.buf.len() >= WRITE_BEHIND {
            if let Some(writer) = self.writer.clone() {
                // A full buffer goes to the writer; the records' confirms wait for the round that writes it.
                let job = self.take_pending(&writer);
                let file = self.active_file();
                writer.syncer.submit(job, file.as_slice());
            }
        }
        if !defer || self.pending.buf.len() >= WRITE_BEHIND {
            if let Err(e) = self.flush_pending() {
                if !defer {
                    // This record is not appended; deferred ones before it stay buffered.
                    self.pending.buf.truncate(before);
                    self.pending.records -= 1;
                    if let Some(seg) = self.segments.get_mut(&self.active) {
                        seg.size -= n as u64;
                        seg.records -= 1;
                    }
                    return Err(e);
                }
                tracing::debug!(dir = %self.dir.display(), error = %e, "write-behind failed; the records stay buffered");
            }
        }
        Ok(Loc {
            segment: self.active,
            offset: at as u32,
        })
    }

    /// Reads a record back (in place: a pread on the caller's thread unless it is still buffered).
    pub fn read(&self, loc: Loc) -> io::Result<Record> {
        match self.locate(loc)? {
            Located::Here(r) => Ok(r),
            Located::On(req) => super::io_pool::read_record(&req.file, req.offset),
        }
    }

    /// Where a record can be read: decoded at once when it is still in the write-behind buffer, or the segment
    /// file and offset to read it from (on a read thread, see `store::io`). Err when its segment is gone.
    pub fn locate(&self, loc: Loc) -> io::Result<Located> {
        let p = &self.pending;
        if !p.buf.is_empty() && loc.segment == self.active && loc.offset as u64 >= p.from {
            let start = usize::try_from(loc.offset as u64 - p.from).unwrap_or(usize::MAX);
            return read_buffered(p.buf.get(start..).unwrap_or_default(), loc).map(Located::Here);
        }
        let at = loc.offset as u64;
        if let Some(h) = self
            .handed
            .iter()
            .find(|h| h.segment == loc.segment && (h.from..h.from + h.bytes.len() as u64).contains(&at))
        {
            let start = usize::try_from(at - h.from).unwrap_or(usize::MAX);
            return read_buffered(h.bytes.get(start..).unwrap_or_default(), loc).map(Located::Here);
        }
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("segment {} is gone", loc.segment)))?;
        Ok(Located::On(ReadRequest {
            file: seg.file.clone(),
            offset: loc.offset as u64,
        }))
    }

    /// Records that a message is done with (acked, dropped, purged); written by the next `flush_acks`.
    pub fn ack(&mut self, loc: Loc) {
        // A record dropped after a failed write is no longer counted (offset past the segment's size).
        if let Some(seg) = self
            .segments
            .get_mut(&loc.segment)
            .filter(|s| (loc.offset as u64) < s.size)
        {
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
                        Ok(f) => {
                            repl::created(&ack_path(&self.dir, *id));
                            seg.ack_file = Some(f)
                        }
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
                    repl::appended(f, &seg.ack_buf);
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
        for path in [
            seg_path(&self.dir, id),
            ack_path(&self.dir, id),
            summary::idx_path(&self.dir, id),
        ] {
            if fs::remove_file(&path).is_ok() {
                repl::removed(&path);
            }
        }
    }

    /// Closes and deletes the active segment when every record in it is acked and nothing was appended for `idle`:
    /// a durable queue that emptied holds no open files. The next append starts a new segment. Returns whether it
    /// retired one.
    pub fn retire_idle(&mut self, idle: std::time::Duration) -> bool {
        if !self.active_done() || self.last_append.elapsed() < idle {
            return false;
        }
        self.remove_segment(self.active);
        self.active += 1;
        // Every record it held was acked with the segment.
        self.pending.buf.clear();
        self.pending.records = 0;
        self.pending.from = 0;
        true
    }

    /// Every record of the active segment is acked (and the acks written): it could be retired once idle.
    fn active_done(&self) -> bool {
        self.segments
            .get(&self.active)
            .is_some_and(|s| s.acked >= s.records && s.ack_buf.is_empty())
    }

    /// How long until `retire_idle(idle)` would retire the active segment (zero: now), or None while it has records
    /// not yet acked, or no segment is open.
    pub fn idle_remaining(&self, idle: std::time::Duration) -> Option<std::time::Duration> {
        self.active_done()
            .then(|| idle.saturating_sub(self.last_append.elapsed()))
    }

    /// Notes that a record was handed to a consumer; written by the next `flush_acks`, which must run before the
    /// delivery reaches the socket.
    pub fn note_delivered(&mut self, loc: Loc) {
        if let Some(seg) = self
            .segments
            .get_mut(&loc.segment)
            .filter(|s| (loc.offset as u64) < s.size)
        {
            seg.ack_buf.extend_from_slice(&(loc.offset | DELIVERED).to_be_bytes());
        }
    }

    /// Deletes the queue's files (queue deleted).
    pub fn destroy(self) {
        let dir = self.dir.clone();
        drop(self);
        match fs::remove_dir_all(&dir) {
            Ok(()) => repl::removed_dir(&dir),
            Err(e) => warn!(dir = %dir.display(), error = %e, "could not remove a deleted queue's files"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(log: &mut QueueLog, seq: u64) -> Loc {
        let meta = record::Meta {
            seq,
            enqueued_ms: 0,
            tx: 0,
        };
        log.append(meta, b"", b"q", &[], format!("message {seq}").as_bytes())
            .expect("append")
    }

    fn live(dir: &Path) -> Vec<(u64, Loc)> {
        let (live, _) = recover_dir(dir).expect("recover");
        live.iter().map(|r| (r.seq, r.loc)).collect()
    }

    fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn deferred_appends_are_readable_at_once_and_reach_the_file_only_when_flushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join("q");
        let (mut log, _) =
            QueueLog::open(&q, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("open");
        let meta = |seq| record::Meta {
            seq,
            enqueued_ms: 0,
            tx: 0,
        };
        let a = log.append_deferred(meta(1), b"", b"q", &[], b"one").expect("append");
        let b = log.append_deferred(meta(2), b"", b"q", &[], b"two").expect("append");
        assert_eq!(&log.read(b).expect("read from the buffer").body[..], b"two");
        let on_file = || {
            files(&q, "seg")
                .iter()
                .map(|f| fs::metadata(f).map_or(0, |m| m.len()))
                .sum::<u64>()
        };
        assert_eq!(on_file(), 0, "nothing deferred is on file before the flush");
        let dirty = log.take_dirty();
        assert_eq!(dirty.len(), 1, "the segment that took them must be synced");
        log.flush_pending().expect("flush");
        assert_eq!(live(&q).iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(&log.read(a).expect("read from the file").body[..], b"one");
        // An immediate append writes what was deferred before it, in order.
        log.append_deferred(meta(3), b"", b"q", &[], b"three").expect("append");
        append(&mut log, 4);
        assert_eq!(live(&q).iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }

    /// Gives `log` a writer that never writes (a syncer with no thread): what is handed over stays queued there.
    fn with_idle_writer(log: &mut QueueLog) -> Arc<Syncer> {
        let syncer = Syncer::idle();
        log.set_writer(Some(Writer {
            syncer: syncer.clone(),
            failed: Arc::new(|_, _| {}),
        }));
        syncer
    }

    #[test]
    fn handed_over_records_are_readable_until_written_and_an_immediate_append_writes_them_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join("q");
        let (mut log, _) =
            QueueLog::open(&q, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("open");
        let syncer = with_idle_writer(&mut log);
        let meta = |seq| record::Meta {
            seq,
            enqueued_ms: 0,
            tx: 0,
        };
        let a = log.append_deferred(meta(1), b"", b"q", &[], b"one").expect("append");
        let round = log.hand_over().expect("hand over");
        assert_eq!(
            (round, syncer.queued_writes()),
            (1, 1),
            "handed to the writer, not written here"
        );
        let on_file = files(&q, "seg")
            .iter()
            .map(|f| fs::metadata(f).map_or(0, |m| m.len()))
            .sum::<u64>();
        assert_eq!(on_file, 0, "nothing on file yet");
        assert_eq!(&log.read(a).expect("read from the handed-over buffer").body[..], b"one");
        assert!(
            matches!(log.locate(a), Ok(Located::Here(_))),
            "a read-ahead needs no file either"
        );
        // An immediate append (a dead letter, a transaction) writes what was handed over first: no gap.
        append(&mut log, 2);
        assert_eq!(live(&q).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_failed_handed_over_write_drops_its_records_and_later_ones_and_appends_go_to_a_new_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join("q");
        let (mut log, _) =
            QueueLog::open(&q, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("open");
        let first = append(&mut log, 1);
        let _syncer = with_idle_writer(&mut log);
        let meta = |seq| record::Meta {
            seq,
            enqueued_ms: 0,
            tx: 0,
        };
        let lost = log.append_deferred(meta(2), b"", b"q", &[], b"two").expect("append");
        log.hand_over().expect("hand over");
        let later = log.append_deferred(meta(3), b"", b"q", &[], b"three").expect("append");
        assert!(log.write_lost(lost.segment, lost.offset as u64));
        log.drop_unwritten(lost.segment, lost.offset as u64);
        assert!(!log.write_lost(lost.segment, lost.offset as u64), "handled once");
        assert!(log.holds(first) && !log.holds(lost) && !log.holds(later));
        // Their acks are ignored: the segment's live count is not pushed below its real records.
        log.ack(lost);
        log.flush_acks().expect("acks");
        let next = append(&mut log, 4);
        assert!(next.segment > first.segment, "a location is never used twice");
        drop(log);
        assert_eq!(live(&q).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 4]);
    }

    #[test]
    fn a_damaged_hole_keeps_later_offsets_acks_and_appends_working() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let locs: Vec<Loc> = {
            let (mut log, _) =
                QueueLog::open(dir, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("open");
            (1..=5).map(|seq| append(&mut log, seq)).collect()
        };
        let seg = seg_path(dir, locs[0].segment);
        let mut bytes = fs::read(&seg).expect("segment");
        bytes[locs[1].offset as usize + 2] ^= 0x04; // a length bit of record 2
        fs::write(&seg, &bytes).expect("write");

        let expected: Vec<(u64, Loc)> = [1, 3, 4, 5].iter().map(|s| (*s, locs[*s as usize - 1])).collect();
        let (mut log, rec) =
            QueueLog::open(dir, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("reopen");
        assert_eq!((rec.live, rec.corrupt), (4, 1));
        assert_eq!(
            fs::metadata(&seg).expect("meta").len(),
            bytes.len() as u64,
            "not shortened"
        );
        assert_eq!(files(dir, "corrupt").len(), 1, "the damaged record is set aside");
        // An ack against the damaged segment names the right record, and appends go on in a new segment.
        log.ack(locs[3]);
        log.flush_acks().expect("flush");
        let new = append(&mut log, 6);
        assert!(new.segment > locs[0].segment);
        drop(log);
        let mut want: Vec<(u64, Loc)> = expected.into_iter().filter(|(s, _)| *s != 4).collect();
        want.push((6, new));
        assert_eq!(live(dir), want);
        assert_eq!(live(dir), want, "the same again: the damage is met and set aside once");
        assert_eq!(files(dir, "corrupt").len(), 1);
    }

    #[test]
    fn a_damaged_last_record_is_set_aside_then_cut() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let locs: Vec<Loc> = {
            let (mut log, _) =
                QueueLog::open(dir, DiskBudget::default(), &TxView(None), |_| Some(0), |_, _| {}).expect("open");
            (1..=3).map(|seq| append(&mut log, seq)).collect()
        };
        let seg = seg_path(dir, locs[0].segment);
        let mut bytes = fs::read(&seg).expect("segment");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&seg, &bytes).expect("write");
        assert_eq!(live(dir).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(fs::metadata(&seg).expect("meta").len(), u64::from(locs[2].offset));
        let copies = files(dir, "corrupt");
        assert_eq!(copies.len(), 1);
        assert_eq!(fs::read(&copies[0]).expect("copy"), bytes[locs[2].offset as usize..]);
    }
}
