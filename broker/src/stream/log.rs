//! A stream's append-only log on disk: segment files of records, each with a sparse index, appends at the tail,
//! reads from any offset, seeks by offset or time, and retention that drops whole segments from the oldest.
//!
//! Files, in the stream's directory: `<first offset, 20 digits>.seg` holds records in the durable store's format
//! (`store::record`: length, CRC32C, then `seq` = the message's offset, `enqueued_ms` = its timestamp, exchange,
//! routing key, properties, body); `<first offset>.idx` is a sealed segment's [`IndexFile`].
//!
//! Invariants:
//! - Offsets are dense and increasing across segments: a segment starts at the offset after the previous one's last.
//!   Timestamps never go back (each message gets the later of the clock and the last stamp).
//! - Only the last segment (the active one) is written to; it is sealed (its index file written) when it reaches
//!   `max_segment_bytes`, and a new one starts. Retention and truncation remove sealed segments only, oldest first,
//!   whole: a message is never removed from the middle of a stream.
//! - Recovery follows the store's rules (`store::scan`): a torn or damaged tail of the active segment is cut off,
//!   damage in the middle is skipped and counted, and never costs a good record after it. A sealed segment whose
//!   index is missing, damaged or does not match the segment's size has it rebuilt by scanning the segment.
//! - Reads go straight to the files with positioned reads (`pread`), a chunk at a time, from the index entry at or
//!   before the wanted offset: many readers share the page cache and none holds a copy of the stream in memory. A
//!   segment removed under a reader (retention) is skipped: the reader goes on from the oldest offset kept.
//!
//! - Appends are buffered (`append_buffered`): the encoded records wait in memory until the owner takes them
//!   (`take_writes`) and has them written in order (the syncer thread, for a stream queue), or `append` writes them
//!   at once. `written` says which offsets are in the files: a read never goes past it, so it never sees a record
//!   that is only half written, and the owner serves newer records from memory.
//! - Reads need no `&StreamLog`: `plan` takes, under the owner's lock, which segments and positions a read covers
//!   (a few numbers per segment), and `ReadPlan::read` reads them with no lock held.
//!
//! This is the storage only, owned by one caller: it does no fsync of its own (`sync` does, when the caller's
//! durability rules say so); reads and immediate appends must run off the async workers.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::index::{Entry, FilterSummary, IndexFile, Seal, SparseIndex};
use crate::store::record::{self, Meta, Record};
use crate::store::scan;

/// RabbitMQ's default `x-stream-max-segment-size-bytes` is 500 MB; Warren's is smaller, since the active segment is
/// scanned whole at start.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

/// One message to append.
#[derive(Debug, Clone, Copy, Default)]
pub struct Message<'a> {
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
    /// The content header's properties, as encoded on the wire.
    pub properties: &'a [u8],
    pub body: &'a [u8],
    /// Its `x-stream-filter-value`, for the segment's filter summary.
    pub filter: Option<&'a [u8]>,
}

/// Where a reader starts, as the `x-stream-offset` consumer argument says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    First,
    /// The last message (RabbitMQ: the last chunk; Warren's chunks are single messages).
    Last,
    /// Only messages published from now on.
    Next,
    Offset(u64),
    /// The first message stamped at or after this time (ms since the epoch).
    Timestamp(u64),
}

/// Which values a filtered reader wants (`x-stream-filter`, `x-stream-match-unfiltered`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub values: Vec<Vec<u8>>,
    pub match_unfiltered: bool,
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Where the next read goes on from.
    pub next: u64,
    /// Segments a filtered read skipped without reading them.
    pub segments_skipped: u64,
}

/// What recovery and retention did, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Damaged bytes skipped in the middle of segments, and torn or damaged tail bytes cut off, at open.
    pub damaged_bytes: u64,
    pub segments_removed: u64,
    pub bytes_removed: u64,
    /// Sealed segments whose index had to be rebuilt at open.
    pub indexes_rebuilt: u64,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    seal: Seal,
    index: SparseIndex,
}

impl Segment {
    fn empty(first: u64) -> Self {
        Segment {
            first,
            seal: Seal {
                next_offset: first,
                filters: FilterSummary::exact(),
                ..Seal::default()
            },
            index: SparseIndex::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.seal.next_offset == self.first
    }
}

pub struct StreamLog {
    dir: PathBuf,
    max_segment_bytes: u64,
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<Segment>,
    /// The active segment, open for writing at explicit positions.
    file: Arc<File>,
    stats: LogStats,
    /// Records appended to the active segment and not yet taken, and the position in it where they go.
    buf: BytesMut,
    buf_at: u64,
    /// Taken from `buf` at segment rolls, waiting for `take_writes`.
    ready: Vec<Handover>,
    /// Every offset below this is written to its segment file (readable by `ReadPlan::read`).
    written: Arc<AtomicU64>,
}

/// Appended records to write: `bytes` at `position` of `file`, in the order handed out.
pub struct Handover {
    pub file: Arc<File>,
    pub position: u64,
    pub bytes: Bytes,
    /// Once written, every offset before this one is in the files.
    pub end_offset: u64,
    /// The segment these bytes end was sealed: its index file, to write after them.
    pub seal: Option<SealWrite>,
}

/// A sealed segment's index file, written once the segment's last bytes are.
pub struct SealWrite {
    dir: PathBuf,
    first: u64,
    file: IndexFile,
}

impl SealWrite {
    /// Writes the index file (after the segment's last bytes are written).
    pub fn write_index(&self) -> io::Result<()> {
        write_index_file(&self.dir, self.first, &self.file)
    }
}

impl Handover {
    /// Writes the bytes (and the seal's index file), then marks the offsets written in `written`.
    pub fn write(&self, written: &AtomicU64) -> io::Result<()> {
        self.file.write_all_at(&self.bytes, self.position)?;
        crate::store::repl::written_shared(&self.file, self.position, &self.bytes);
        if let Some(seal) = &self.seal {
            write_index_file(&seal.dir, seal.first, &seal.file)?;
        }
        written.fetch_max(self.end_offset, Ordering::AcqRel);
        Ok(())
    }
}

fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn idx_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.idx"))
}

/// A record's `x-stream-filter-value`, read back from its encoded properties (the rebuild of an index's filter
/// summary). Properties that do not decode count as unfiltered.
fn filter_value_of(r: &Record) -> Option<Bytes> {
    let props = crate::amqp::nesting::parse_properties_bounded(&r.properties[..]).ok()?;
    super::state::filter_value(&props)
}

/// Scans a segment's file whole: its index, what it holds, and where its good bytes end.
fn rebuild(path: &Path, first: u64) -> io::Result<(Segment, u64, u64)> {
    let data = Bytes::from(fs::read(path)?);
    let found = scan::scan(&data);
    // The summary is rebuilt exactly, from each record's filter value.
    let mut seg = Segment::empty(first);
    let mut damaged: u64 = found.damaged.iter().map(|r| (r.end - r.start) as u64).sum();
    let mut good_end = data.len() as u64;
    if let Some(tail) = &found.tail {
        good_end = tail.start as u64;
        damaged += data.len() as u64 - good_end;
    }
    for f in &found.records {
        let r = &f.record;
        // A record out of order (a copy inside a damaged body, say) is not this segment's next offset.
        if r.seq < seg.seal.next_offset {
            continue;
        }
        if seg.is_empty() {
            seg.seal.first_timestamp_ms = r.enqueued_ms;
        }
        seg.index.observe(Entry {
            offset: r.seq,
            position: f.offset as u64,
            timestamp_ms: r.enqueued_ms,
        });
        seg.seal.filters.observe(filter_value_of(r).as_deref());
        seg.seal.next_offset = r.seq + 1;
        seg.seal.last_timestamp_ms = r.enqueued_ms;
    }
    seg.seal.size = good_end;
    Ok((seg, good_end, damaged))
}

impl StreamLog {
    /// Opens (or creates) the stream in `dir`: sealed segments from their index files, the active one by scanning
    /// it, its torn or damaged tail cut off.
    pub fn open(dir: &Path, max_segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut firsts: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut stats = LogStats::default();
        let mut segments = VecDeque::new();
        let last = firsts.pop();
        for first in firsts {
            let path = seg_path(dir, first);
            let size = fs::metadata(&path)?.len();
            let saved = fs::read(idx_path(dir, first))
                .ok()
                .and_then(|d| IndexFile::decode(&d))
                .filter(|f| f.seal.size == size);
            let seg = match saved {
                Some(f) => Segment {
                    first,
                    seal: f.seal,
                    index: f.index,
                },
                None => {
                    let (seg, _, damaged) = rebuild(&path, first)?;
                    stats.indexes_rebuilt += 1;
                    stats.damaged_bytes += damaged;
                    write_index(dir, &seg)?;
                    seg
                }
            };
            segments.push_back(seg);
        }
        let first = last.unwrap_or_else(|| segments.back().map_or(0, |s: &Segment| s.seal.next_offset));
        let path = seg_path(dir, first);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        let (active, good_end, damaged) = rebuild(&path, first)?;
        if file.metadata()?.len() > good_end {
            file.set_len(good_end)?;
        }
        stats.damaged_bytes += damaged;
        let next = active.seal.next_offset;
        segments.push_back(active);
        Ok(StreamLog {
            dir: dir.to_path_buf(),
            max_segment_bytes: max_segment_bytes.max(1),
            segments,
            file: Arc::new(file),
            stats,
            buf: BytesMut::new(),
            buf_at: good_end,
            ready: Vec::new(),
            written: Arc::new(AtomicU64::new(next)),
        })
    }

    fn active(&self) -> &Segment {
        // `open` always leaves one segment, and nothing removes the active one.
        &self.segments[self.segments.len() - 1]
    }

    /// The oldest offset kept.
    /// The size at which the active segment is sealed from now on (a policy changed it).
    pub fn set_max_segment_bytes(&mut self, bytes: u64) {
        self.max_segment_bytes = bytes.max(1);
    }

    pub fn first_offset(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| !s.is_empty())
            .map_or(self.next_offset(), |s| s.first)
    }

    /// The offset the next message gets.
    pub fn next_offset(&self) -> u64 {
        self.active().seal.next_offset
    }

    /// Bytes on disk in segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.seal.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// The oldest timestamp kept (0 when the stream is empty).
    pub fn first_timestamp_ms(&self) -> u64 {
        self.segments
            .iter()
            .find(|s| !s.is_empty())
            .map_or(0, |s| s.seal.first_timestamp_ms)
    }

    /// About when `offset` was appended, from the index (exact for index entries; otherwise the last entry before
    /// it, so never later than the truth). 0 when the stream does not hold it.
    pub fn timestamp_near(&self, offset: u64) -> u64 {
        let i = self.segments.partition_point(|s| s.seal.next_offset <= offset);
        let Some(seg) = self.segments.get(i).filter(|s| !s.is_empty() && s.first <= offset) else {
            return 0;
        };
        let entries = seg.index.entries();
        let j = entries.partition_point(|e| e.offset <= offset);
        entries
            .get(j.wrapping_sub(1))
            .map_or(seg.seal.first_timestamp_ms, |e| e.timestamp_ms)
    }

    /// The newest timestamp of the oldest sealed segment (what age retention removes first), if there is one.
    pub fn oldest_sealed_last_timestamp(&self) -> Option<u64> {
        (self.segments.len() > 1).then(|| self.segments[0].seal.last_timestamp_ms)
    }

    /// The newest timestamp in the stream (0 when it is empty).
    pub fn last_timestamp_ms(&self) -> u64 {
        self.segments
            .iter()
            .rev()
            .map(|s| s.seal.last_timestamp_ms)
            .find(|t| *t > 0)
            .unwrap_or(0)
    }

    /// Appends `messages` stamped at `now_ms` (or the last stamp, if the clock went back) and writes them at once;
    /// returns the offset of the first. Nothing is synced. If the write fails the segment is cut back to where it
    /// was; the log must then be reopened before it is used again.
    pub fn append(&mut self, messages: &[Message<'_>], now_ms: u64) -> io::Result<u64> {
        let start = self.buf_at;
        let first = self.append_buffered(messages, now_ms)?;
        for h in self.take_writes() {
            if let Err(e) = h.write(&self.written) {
                if h.file.set_len(start.min(h.position)).is_ok() {
                    crate::store::repl::truncated(&h.file, start.min(h.position));
                }
                return Err(e);
            }
        }
        Ok(first)
    }

    /// Appends `messages` to the buffer (see `append`); `take_writes` hands the bytes out for writing. Fails only
    /// when a new segment's file cannot be created.
    pub fn append_buffered(&mut self, messages: &[Message<'_>], now_ms: u64) -> io::Result<u64> {
        if self.active().seal.size >= self.max_segment_bytes {
            self.roll()?;
        }
        let timestamp = now_ms.max(self.last_timestamp_ms());
        let first = self.next_offset();
        let start = self.active().seal.size;
        let buf_start = self.buf.len();
        let n = self.segments.len();
        let active = &mut self.segments[n - 1];
        if active.is_empty() && !messages.is_empty() {
            active.seal.first_timestamp_ms = timestamp;
        }
        for (i, m) in messages.iter().enumerate() {
            let offset = first + i as u64;
            let position = start + (self.buf.len() - buf_start) as u64;
            record::encode(
                &mut self.buf,
                Meta {
                    seq: offset,
                    enqueued_ms: timestamp,
                    tx: 0,
                },
                m.exchange,
                m.routing_key,
                m.properties,
                m.body,
            );
            active.index.observe(Entry {
                offset,
                position,
                timestamp_ms: timestamp,
            });
            active.seal.filters.observe(m.filter);
        }
        active.seal.next_offset = first + messages.len() as u64;
        active.seal.size = start + (self.buf.len() - buf_start) as u64;
        if !messages.is_empty() {
            active.seal.last_timestamp_ms = timestamp;
        }
        Ok(first)
    }

    /// What was appended and not yet handed out, in the order it must be written.
    pub fn take_writes(&mut self) -> Vec<Handover> {
        if !self.buf.is_empty() {
            let bytes = self.buf.split().freeze();
            let position = self.buf_at;
            self.buf_at += bytes.len() as u64;
            self.ready.push(Handover {
                file: self.file.clone(),
                position,
                bytes,
                end_offset: self.next_offset(),
                seal: None,
            });
        }
        std::mem::take(&mut self.ready)
    }

    /// Offsets below this are in the files (see `Handover::write`).
    pub fn written(&self) -> &Arc<AtomicU64> {
        &self.written
    }

    /// Bytes appended and not yet handed out by `take_writes`.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() + self.ready.iter().map(|h| h.bytes.len()).sum::<usize>()
    }

    /// Makes what was written durable (fdatasync of the active segment).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Seals the active segment (its last bytes and its index file go out with the next `take_writes`) and starts a
    /// new one at the next offset.
    fn roll(&mut self) -> io::Result<()> {
        let first = self.next_offset();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(seg_path(&self.dir, first))?;
        crate::store::repl::created(&seg_path(&self.dir, first));
        let active = self.active();
        let seal = SealWrite {
            dir: self.dir.clone(),
            first: active.first,
            file: IndexFile {
                seal: active.seal.clone(),
                index: active.index.clone(),
            },
        };
        let bytes = self.buf.split().freeze();
        self.ready.push(Handover {
            file: std::mem::replace(&mut self.file, Arc::new(file)),
            position: self.buf_at,
            bytes,
            end_offset: first,
            seal: Some(seal),
        });
        self.buf_at = 0;
        self.segments.push_back(Segment::empty(first));
        Ok(())
    }

    /// The offset a reader starting at `spec` reads first.
    pub fn seek(&self, spec: OffsetSpec) -> io::Result<u64> {
        let (first, next) = (self.first_offset(), self.next_offset());
        Ok(match spec {
            OffsetSpec::First => first,
            OffsetSpec::Next => next,
            OffsetSpec::Last => next.saturating_sub(1).max(first),
            OffsetSpec::Offset(n) => n.clamp(first, next),
            OffsetSpec::Timestamp(t) => {
                let Some(seg) = self
                    .segments
                    .iter()
                    .find(|s| !s.is_empty() && s.seal.last_timestamp_ms >= t)
                else {
                    return Ok(next);
                };
                let mut found = seg.seal.next_offset;
                let span = self.span(seg, seg.index.position_for_time(t), false);
                scan_span(&self.dir, &span, &mut |r| {
                    if r.enqueued_ms >= t {
                        found = r.seq;
                        false
                    } else {
                        true
                    }
                })?;
                found
            }
        })
    }

    /// Reads up to `max_records` messages (and about `max_bytes` of them) from `from` on; with a `filter`, skips the
    /// segments whose summary cannot match (the records of the others come back whole: the caller matches each
    /// message's value). A `from` older than the oldest offset kept reads from the oldest. Reads only what is
    /// written.
    pub fn read(&self, from: u64, max_records: usize, max_bytes: usize, filter: Option<&Filter>) -> io::Result<Batch> {
        self.plan(from, filter, usize::MAX).read(max_records, max_bytes)
    }

    /// What a read from `from` covers (at most `max_segments` segments), for `ReadPlan::read` with no lock held.
    pub fn plan(&self, from: u64, filter: Option<&Filter>, max_segments: usize) -> ReadPlan {
        let from = from.max(self.first_offset());
        let start = self.segments.partition_point(|s| s.seal.next_offset <= from);
        let spans = self
            .segments
            .iter()
            .skip(start)
            .filter(|seg| !seg.is_empty())
            .take(max_segments)
            .map(|seg| {
                let skip = filter.is_some_and(|f| !seg.seal.filters.may_match(&f.values, f.match_unfiltered));
                let position = if seg.first < from {
                    seg.index.position_for_offset(from)
                } else {
                    0
                };
                self.span(seg, position, skip)
            })
            .collect();
        ReadPlan {
            dir: self.dir.clone(),
            spans,
            from,
            limit: self.written.load(Ordering::Acquire),
        }
    }

    fn span(&self, seg: &Segment, position: u64, skip: bool) -> Span {
        let active = std::ptr::eq(seg, self.active());
        Span {
            first: seg.first,
            position,
            // The active segment grows while it is read: read to what the file holds.
            size: if active { u64::MAX } else { seg.seal.size },
            next_offset: seg.seal.next_offset,
            skip,
        }
    }

    /// Removes sealed segments from the oldest while the stream is larger than `max_bytes`, or while the oldest's
    /// newest message is older than `max_age_ms` at `now_ms`. Returns how many it removed.
    pub fn retain(&mut self, max_bytes: Option<u64>, max_age_ms: Option<u64>, now_ms: u64) -> io::Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_big = max_bytes.is_some_and(|m| self.bytes() > m);
            let too_old = max_age_ms.is_some_and(|a| oldest.seal.last_timestamp_ms.saturating_add(a) < now_ms);
            if !(too_big || too_old) {
                break;
            }
            self.remove_oldest()?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes the sealed segments that hold only offsets before `offset` ("truncate before"). Returns how many.
    pub fn truncate_before(&mut self, offset: u64) -> io::Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].seal.next_offset <= offset {
            self.remove_oldest()?;
            removed += 1;
        }
        Ok(removed)
    }

    fn remove_oldest(&mut self) -> io::Result<()> {
        let Some(seg) = self.segments.front() else {
            return Ok(());
        };
        let (first, size) = (seg.first, seg.seal.size);
        // The index first: a crash between the two leaves a segment whose index is rebuilt, never an index alone.
        match fs::remove_file(idx_path(&self.dir, first)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
            Ok(()) => crate::store::repl::removed(&idx_path(&self.dir, first)),
        }
        fs::remove_file(seg_path(&self.dir, first))?;
        crate::store::repl::removed(&seg_path(&self.dir, first));
        self.segments.pop_front();
        self.stats.segments_removed += 1;
        self.stats.bytes_removed += size;
        Ok(())
    }
}

/// Writes a sealed segment's index file.
fn write_index(dir: &Path, seg: &Segment) -> io::Result<()> {
    let file = IndexFile {
        seal: seg.seal.clone(),
        index: seg.index.clone(),
    };
    write_index_file(dir, seg.first, &file)
}

/// Writes an index file (to a temporary name, then renamed: a crash leaves the old file or none).
fn write_index_file(dir: &Path, first: u64, file: &IndexFile) -> io::Result<()> {
    let tmp = dir.join(format!("{first:020}.idx.tmp"));
    let body = file.encode();
    fs::write(&tmp, &body)?;
    fs::rename(tmp, idx_path(dir, first))?;
    crate::store::repl::replaced(&idx_path(dir, first), &body);
    Ok(())
}

/// One segment's part of a read.
#[derive(Debug, Clone)]
struct Span {
    first: u64,
    /// Where to start scanning (an index entry at or before the wanted offset).
    position: u64,
    /// Bytes of the segment (`u64::MAX` for the active one: what the file holds).
    size: u64,
    /// The offset after the segment's last, when the plan was made.
    next_offset: u64,
    /// The filter cannot match here: not read.
    skip: bool,
}

/// A read taken under the owner's lock and done without it (`StreamLog::plan`).
#[derive(Debug, Clone)]
pub struct ReadPlan {
    dir: PathBuf,
    spans: Vec<Span>,
    from: u64,
    /// Offsets from here on may not be written yet: the read stops there.
    limit: u64,
}

impl ReadPlan {
    /// Offsets from here on were not written when the plan was made: the read stops there.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Reads up to `max_records` messages (and about `max_bytes`): see `StreamLog::read`. A segment removed since the
    /// plan was made (retention) is passed over.
    pub fn read(&self, max_records: usize, max_bytes: usize) -> io::Result<Batch> {
        let mut records = Vec::new();
        let mut bytes = 0usize;
        let (next, segments_skipped) = self.visit(&mut |r| {
            bytes += r.body.len() + r.properties.len();
            records.push(r);
            records.len() < max_records && bytes < max_bytes
        })?;
        Ok(Batch {
            records,
            next,
            segments_skipped,
        })
    }

    /// Feeds the messages the plan covers to `each`, in offset order, until it returns false or the plan's written
    /// end. Returns where a next read goes on from, and how many segments the filter skipped. A segment removed
    /// since the plan was made (retention) is passed over.
    pub fn visit(&self, each: &mut dyn FnMut(Record) -> bool) -> io::Result<(u64, u64)> {
        let (mut next, mut skipped) = (self.from, 0);
        for span in &self.spans {
            if next >= self.limit {
                break;
            }
            if span.skip {
                skipped += 1;
                next = next.max(span.next_offset.min(self.limit));
                continue;
            }
            let (from, limit) = (next, self.limit);
            let done = scan_span(&self.dir, span, &mut |r| {
                if r.seq < from {
                    return true;
                }
                if r.seq >= limit {
                    return false;
                }
                next = r.seq + 1;
                each(r)
            });
            match done {
                Ok(true) => next = next.max(span.next_offset.min(self.limit)),
                Ok(false) => return Ok((next, skipped)),
                // Removed by retention under this reader: go on with what is kept.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((next, skipped))
    }
}

/// Reads up to `len` bytes at `position`; fewer at the end of the file.
fn read_upto(file: &File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], position + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Feeds a span's records from its position on to `each` until it returns false (then false) or the segment ends
/// (then true).
fn scan_span(dir: &Path, span: &Span, each: &mut dyn FnMut(Record) -> bool) -> io::Result<bool> {
    let file = File::open(seg_path(dir, span.first))?;
    let mut chunk = CHUNK;
    let mut position = span.position;
    while position < span.size {
        let len = (chunk as u64).min(span.size - position) as usize;
        let data = Bytes::from(read_upto(&file, position, len)?);
        if data.is_empty() {
            return Ok(true);
        }
        let found = scan::scan(&data);
        let consumed = match &found.tail {
            Some(t) => t.start,
            None => data.len(),
        };
        for f in found.records {
            if !each(f.record) {
                return Ok(false);
            }
        }
        if consumed == 0 {
            // A record larger than the chunk, or damage up to the chunk's end: read more at once, up to the largest
            // record there can be; past that, the rest of the segment is damage (or not written yet).
            match record::declared_size(&data) {
                Some(size) if size <= record::MAX_RECORD && data.len() == len && len < size => {
                    chunk = size;
                    continue;
                }
                _ => return Ok(true),
            }
        }
        position += consumed as u64;
        chunk = CHUNK;
    }
    Ok(true)
}
