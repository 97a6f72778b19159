//! `definitions.log`: the durable definitions as an append-only log of changes, compacted now and then (as
//! LavinMQ keeps its definitions).
//!
//! A record is `u32 length (LE) | u32 CRC32C of the payload (LE) | payload`, the payload one `DefOp` as JSON.
//! Invariants:
//! - `append` returns Ok only once its records are written and fdatasync'd; on an error nothing of it counts
//!   (the bytes are cut off again before the next append), so a caller that undoes its change on an error keeps
//!   memory and disk in agreement. Changes that stand although they could not be stored (`defer`: deletions the
//!   broker makes by itself) are written ahead of the next append's, so the log keeps the order of changes.
//! - Only the last record can be torn (every append is synced before the next): recovery cuts off an incomplete
//!   or zero-filled final record, and refuses to start on a damaged record that has records after it, rather than
//!   silently dropping definitions.
//! - Compaction writes the live set to a temp file, fsyncs it, renames it over the log and fsyncs the directory, so
//!   the log is always the old or the new file. It runs when the log holds more than `COMPACT_FACTOR` times the
//!   live records (and at least `COMPACT_MIN_RECORDS`); a failed compaction costs nothing but a retry later.
//! - A data directory with no definitions at all but with queue directories is refused (`Missing`): starting empty
//!   would hide those queues and their messages. `force_empty` starts anyway and leaves the directories alone.
//! - An old `definitions.json` is migrated on first start: the log is written and made durable first, then the
//!   JSON is renamed to `definitions.json.migrated`. A log always wins over a JSON file beside it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::definitions::{DefOp, Definitions, Model};
use super::DiskBudget;

pub const LOG_FILE: &str = "definitions.log";
/// The snapshot file of earlier versions, read once to migrate.
pub const OLD_JSON_FILE: &str = "definitions.json";
pub const MIGRATED_JSON_FILE: &str = "definitions.json.migrated";

const HEADER: usize = 8;
/// No definition comes near this; a larger length is damage, not a record.
const MAX_RECORD: usize = 16 << 20;
const COMPACT_FACTOR: u64 = 2;
const COMPACT_MIN_RECORDS: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error("cannot read or write the definitions {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} is damaged at byte {offset} ({reason}) and {after} bytes of records follow: refusing to start \
         without them. Restore the file from a backup, or move it away and start with --force-empty-definitions"
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
        after: u64,
    },
    #[error("{path} is not valid: {source}")]
    BadJson { path: PathBuf, source: serde_json::Error },
    #[error(
        "data directory {dir} has {count} queue director{plural} under queues/ (e.g. {example}) but no \
         definitions (neither {LOG_FILE} nor {OLD_JSON_FILE}): starting empty would hide those queues and their \
         messages. Restore the definitions file, or start with --force-empty-definitions \
         (WARREN_FORCE_EMPTY_DEFINITIONS=true) to start without them; the queue directories are left alone",
        plural = if *count == 1 { "y" } else { "ies" }
    )]
    Missing {
        dir: PathBuf,
        count: usize,
        example: PathBuf,
    },
}

/// Owns `definitions.log`: appends changes, and keeps the live model that a compaction writes.
pub struct DefinitionsLog {
    path: PathBuf,
    budget: DiskBudget,
    state: Mutex<LogState>,
}

struct LogState {
    file: File,
    /// Bytes of whole, synced records. Anything after it is a failed append, cut off before the next one.
    len: u64,
    tail_dirty: bool,
    model: Model,
    /// Records in the file (a compaction brings it down to the live set).
    records: u64,
    /// Compact once `records` reaches this.
    compact_at: u64,
    /// Changes that stand in memory but could not be stored yet (`defer`).
    pending: Vec<DefOp>,
}

impl DefinitionsLog {
    /// Opens the log (replaying it), or migrates `definitions.json`, or starts an empty log. `queue_dirs` are the
    /// queue directories in the data directory: with no definitions at all they are refused unless `force_empty`.
    pub fn open(
        root: &Path,
        budget: DiskBudget,
        queue_dirs: &[PathBuf],
        force_empty: bool,
    ) -> Result<(Self, Definitions), DefinitionsError> {
        let path = root.join(LOG_FILE);
        let json = root.join(OLD_JSON_FILE);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DefinitionsError::Io { path, source }
        };
        // A compaction that a crash interrupted leaves its temp file; the log itself is whole either way.
        let _ = fs::remove_file(path.with_extension("log.tmp"));
        let (file, len, model, records) = match fs::read(&path) {
            Ok(bytes) => {
                let (model, records, good) = replay(&bytes, &path)?;
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                if good < bytes.len() as u64 {
                    tracing::warn!(
                        path = %path.display(),
                        torn_bytes = bytes.len() as u64 - good,
                        "cut off an incomplete last record of the definitions log (a crash during a change that \
                         was never confirmed)"
                    );
                    file.set_len(good)
                        .and_then(|()| file.sync_all())
                        .map_err(io_err(&path))?;
                }
                if json.exists() {
                    fs::rename(&json, root.join(MIGRATED_JSON_FILE))
                        .and_then(|()| sync_dir(root))
                        .map_err(io_err(&json))?;
                }
                (file, good, model, records)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let model = match fs::read(&json) {
                    Ok(bytes) => {
                        let defs: Definitions =
                            serde_json::from_slice(&bytes).map_err(|source| DefinitionsError::BadJson {
                                path: json.clone(),
                                source,
                            })?;
                        Model::from_definitions(&defs)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if let Some(example) = queue_dirs.first() {
                            if !force_empty {
                                return Err(DefinitionsError::Missing {
                                    dir: root.to_path_buf(),
                                    count: queue_dirs.len(),
                                    example: example.clone(),
                                });
                            }
                            tracing::warn!(
                                data_dir = %root.display(),
                                queue_dirs = queue_dirs.len(),
                                "starting without definitions (--force-empty-definitions): the queue directories \
                                 are left alone, and a queue declared again under its old name gets its messages back"
                            );
                        }
                        Model::default()
                    }
                    Err(e) => return Err(io_err(&json)(e)),
                };
                let (file, len, records) = write_snapshot(&path, &model, &budget).map_err(io_err(&path))?;
                if json.exists() {
                    fs::rename(&json, root.join(MIGRATED_JSON_FILE))
                        .and_then(|()| sync_dir(root))
                        .map_err(io_err(&json))?;
                    tracing::info!(
                        from = %json.display(),
                        to = %path.display(),
                        records,
                        "migrated the definitions to the append-only log"
                    );
                }
                (file, len, model, records)
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let defs = model.definitions();
        let compact_at = next_compaction(records, model.len() as u64);
        let log = DefinitionsLog {
            path,
            budget,
            state: Mutex::new(LogState {
                file,
                len,
                tail_dirty: false,
                model,
                records,
                compact_at,
                pending: Vec::new(),
            }),
        };
        Ok((log, defs))
    }

    /// Appends changes (after any deferred ones) as one write and one fdatasync. On an error none of them is
    /// stored (see the module doc).
    pub fn append(&self, ops: &[DefOp]) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::new();
        for op in st.pending.iter().chain(ops) {
            encode(op, &mut buf)?;
        }
        if st.tail_dirty {
            st.file.set_len(st.len)?;
            super::repl::truncated(&st.file, st.len);
            st.tail_dirty = false;
        }
        self.budget.charge(buf.len() as u64)?;
        if let Err(e) = st.file.write_all_at(&buf, st.len).and_then(|()| st.file.sync_data()) {
            st.tail_dirty = st.file.set_len(st.len).is_err();
            if !st.tail_dirty {
                super::repl::truncated(&st.file, st.len);
            }
            return Err(e);
        }
        super::repl::written(&st.file, st.len, &buf);
        super::repl::definitions_written();
        st.len += buf.len() as u64;
        let pending = std::mem::take(&mut st.pending);
        st.records += (pending.len() + ops.len()) as u64;
        for op in pending.into_iter().chain(ops.iter().cloned()) {
            st.model.apply(op);
        }
        if st.records >= st.compact_at {
            self.compact(&mut st);
        }
        Ok(())
    }

    /// Keeps changes that could not be stored but stand anyway (deletions the broker made by itself); the next
    /// `append` writes them first, so the log keeps the order of changes.
    pub fn defer(&self, ops: Vec<DefOp>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pending.extend(ops);
    }

    /// Rewrites the log as the live set. A failure is only logged: the log stays as it was, and is tried again
    /// after as many records again.
    fn compact(&self, st: &mut LogState) {
        let live = st.model.len() as u64;
        match write_snapshot(&self.path, &st.model, &self.budget) {
            Ok((file, len, records)) => {
                tracing::debug!(before = st.records, after = records, "compacted the definitions log");
                st.file = file;
                st.len = len;
                st.tail_dirty = false;
                st.records = records;
                st.compact_at = next_compaction(records, live);
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "could not compact the definitions log");
                st.compact_at = st.records + live.max(COMPACT_MIN_RECORDS);
            }
        }
    }

    /// Records in the log file now (for tests of compaction).
    pub fn records(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).records
    }
}

fn next_compaction(records: u64, live: u64) -> u64 {
    (live * COMPACT_FACTOR).max(records).max(COMPACT_MIN_RECORDS) + 1
}

fn encode(op: &DefOp, buf: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(op).map_err(io::Error::other)?;
    if payload.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a definition of {} bytes is too large to store", payload.len()),
        ));
    }
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Replays a log: the model, the number of records, and the length of the whole records (a torn last record is
/// left out; a damaged record with more after it is an error).
fn replay(bytes: &[u8], path: &Path) -> Result<(Model, u64, u64), DefinitionsError> {
    let mut model = Model::default();
    let mut records = 0u64;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let Some((len, crc)) = header(rest) else {
            break; // an incomplete header can only be the torn end
        };
        let end = HEADER.saturating_add(len);
        let damage = if len == 0 || len > MAX_RECORD {
            Some("impossible length")
        } else if rest.len() < end {
            None
        } else if crc32c::crc32c(&rest[HEADER..end]) != crc {
            Some("checksum mismatch")
        } else {
            match serde_json::from_slice::<DefOp>(&rest[HEADER..end]) {
                Ok(op) => {
                    model.apply(op);
                    records += 1;
                    pos += end;
                    continue;
                }
                Err(_) => Some("not a definition"),
            }
        };
        // The torn end of the log: the record runs past the end of the file, or the rest is zeros (space the
        // filesystem had allocated when the crash came).
        let torn = rest.len() <= end || rest.iter().all(|b| *b == 0);
        match damage {
            Some(reason) if !torn => {
                return Err(DefinitionsError::Damaged {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    reason,
                    after: rest.len().saturating_sub(end) as u64,
                })
            }
            _ => break,
        }
    }
    Ok((model, records, pos as u64))
}

fn header(b: &[u8]) -> Option<(usize, u32)> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    Some((len as usize, crc))
}

/// Writes the model as a fresh log (temp file, fsync, rename, directory fsync); returns the open file, its length
/// and its record count.
fn write_snapshot(path: &Path, model: &Model, budget: &DiskBudget) -> io::Result<(File, u64, u64)> {
    let ops = model.snapshot();
    let mut buf = Vec::new();
    for op in &ops {
        encode(op, &mut buf)?;
    }
    budget.charge(buf.len() as u64)?;
    let tmp = path.with_extension("log.tmp");
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(&buf).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    super::repl::replaced(path, &buf);
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    let file = File::options().read(true).write(true).open(path)?;
    Ok((file, buf.len() as u64, ops.len() as u64))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "definitions_log_tests.rs"]
mod tests;
