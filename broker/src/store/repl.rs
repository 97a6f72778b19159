//! The replication point (issue 17): every write to the data directory that a cluster follower must mirror is
//! reported here, after it took effect locally, as a blind, idempotent [`Op`] on a path relative to the data
//! directory. A cluster leader installs the process's [`ReplLog`] before it opens its store; its replication server
//! ships the log to followers, which apply it to their copy. Without a cluster nothing is installed, and every
//! report is one atomic load.
//!
//! Why a process-wide log: the data directory is process-wide (the broker holds its `.lock`), and a node leads at
//! most once per process (a leader that loses its lease exits), so the log lives exactly as long as the directory
//! it mirrors. Writers need no plumbing to reach it.
//!
//! Invariants:
//! - An op is logged after its local effect succeeded, so a failed write is never shipped (its cut-back is).
//! - Writes name their file by its descriptor; the path is read (`/proc/self/fd`) under the log's lock. A file
//!   unlinked before its write was logged is skipped, and its removal is logged after its last logged write, so a
//!   follower never resurrects a removed segment.
//! - Every op writes explicit bytes at explicit offsets (appends carry the offset they landed at), so replaying any
//!   suffix of the log onto a copy taken after the suffix began yields the leader's files: a full sync needs no pause.
//! - Node-local files are never logged: the lock, spilled transient messages (`paging/`), the trace journal, the
//!   cluster's own state, backups, and temporary or set-aside files.
//! - Memory is bounded: past `max_bytes` the oldest ops are dropped, and a follower that still needed them must
//!   sync in full again.
//!
//! The log is also the **confirm rule's gate**. The group-commit thread hands each finished round here with the
//! log's head as it was after the round's writes (every op whose writer holds that round's ticket was logged
//! before). The round is announced to its waiters (publisher confirms, MQTT PUBACKs, STOMP receipts, moves) only
//! once every *counted* follower acked that position, and only while at least `min_in_sync` followers are counted.
//! Rounds are announced in order. The cluster decides whom to count (the in-sync set, kept in etcd): it counts a
//! follower before etcd names it, and stops counting one only after etcd no longer names it, so a follower that
//! etcd would let lead always holds every confirmed write.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Seek;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

/// One change to one file, relative to the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create the file, empty, if it does not exist (and its directories).
    Create { path: String },
    /// Write `data` at `offset`, creating the file if needed.
    WriteAt { path: String, offset: u64, data: Bytes },
    /// Cut the file (or extend it with zeros) to `len`.
    SetLen { path: String, len: u64 },
    /// Replace the whole file with `data` (written aside, then renamed).
    Replace { path: String, data: Bytes },
    /// Remove the file, if present.
    Remove { path: String },
    /// Remove the directory and everything in it, if present.
    RemoveDir { path: String },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path }
            | Op::WriteAt { path, .. }
            | Op::SetLen { path, .. }
            | Op::Replace { path, .. }
            | Op::Remove { path }
            | Op::RemoveDir { path } => path,
        }
    }

    /// Bytes of payload it carries (what lag and the memory bound count).
    pub fn weight(&self) -> usize {
        64 + self.path().len()
            + match self {
                Op::WriteAt { data, .. } | Op::Replace { data, .. } => data.len(),
                _ => 0,
            }
    }
}

/// Whether a path relative to the data directory is this node's own, never replicated nor touched by a sync.
pub fn is_local(rel: &str) -> bool {
    let first = rel.split('/').next().unwrap_or("");
    matches!(first, ".lock" | "paging" | "trace" | "cluster" | "backups")
        || rel.ends_with(".tmp")
        || rel.ends_with(".corrupt")
        || rel.contains(".corrupt.")
}

/// Whether `rel` is a plain relative path that stays inside the directory it is joined to (what a follower accepts
/// from the wire).
pub fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && rel.len() <= 4096
        && !rel.contains('\0')
        && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// The log a leader ships. `lsn`s count ops from 0 since the process started.
pub struct ReplLog {
    root: PathBuf,
    canonical: PathBuf,
    inner: Mutex<Inner>,
    head: tokio::sync::watch::Sender<u64>,
    gate: Mutex<Gate>,
    /// Announces released rounds: the store's group-commit thread.
    announcer: OnceLock<Arc<super::Syncer>>,
}

/// Rounds done locally that wait for followers' acks.
struct Gate {
    /// (round, lsn the followers must ack, whether the round stored everything), in round order.
    pending: VecDeque<(u64, u64, bool)>,
    /// Counted followers and the lsn each acked.
    counted: BTreeMap<String, u64>,
    min_in_sync: usize,
    /// The highest lsn of a round announced so far: what a follower must have acked before it is counted again.
    released: u64,
    /// Shut until the cluster has replaced the previous term's in-sync set with this leader's: until then etcd
    /// may name a follower this leader does not count.
    open: bool,
}

struct Inner {
    /// The lsn of `ops[0]`.
    first: u64,
    ops: VecDeque<Arc<Op>>,
    bytes: usize,
    max_bytes: usize,
    /// Payload bytes logged since start (for lag in bytes).
    total_bytes: u64,
}

/// Ops a follower asked for are no longer kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Behind {
    pub oldest: u64,
}

static LOG: OnceLock<Arc<ReplLog>> = OnceLock::new();

/// Writes to the definitions log so far (declarations, deletions, bindings, policies, users): a connection that made
/// one answers only once the in-sync followers have it too.
static DEFINITIONS_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The definitions log was written (after the write was logged here).
pub fn definitions_written() {
    DEFINITIONS_WRITES.fetch_add(1, std::sync::atomic::Ordering::Release);
}

/// How many times the definitions log was written.
pub fn definitions_writes() -> u64 {
    DEFINITIONS_WRITES.load(std::sync::atomic::Ordering::Acquire)
}

/// Installs the process's log (a cluster leader, before it opens its store); the first call wins.
pub fn install(root: &Path, max_bytes: usize) -> Arc<ReplLog> {
    LOG.get_or_init(|| Arc::new(ReplLog::new(root, max_bytes))).clone()
}

/// The installed log, if this process leads a cluster.
pub fn installed() -> Option<&'static Arc<ReplLog>> {
    LOG.get()
}

/// `bytes` were written at `offset` of `file`.
pub fn written(file: &File, offset: u64, bytes: &[u8]) {
    if let Some(log) = LOG.get() {
        log.log_fd(file, |path| Op::WriteAt {
            path,
            offset,
            data: Bytes::copy_from_slice(bytes),
        });
    }
}

/// [`written`], for bytes already shared (the syncer's handed-over buffers): no copy.
pub fn written_shared(file: &File, offset: u64, bytes: &Bytes) {
    if let Some(log) = LOG.get() {
        log.log_fd(file, |path| Op::WriteAt {
            path,
            offset,
            data: bytes.clone(),
        });
    }
}

/// `bytes` were appended to `file` (opened with O_APPEND, one writer at a time): they landed just before the
/// descriptor's position.
pub fn appended(file: &File, bytes: &[u8]) {
    if let Some(log) = LOG.get() {
        let mut f = file;
        let Ok(end) = f.stream_position() else {
            return;
        };
        let offset = end.saturating_sub(bytes.len() as u64);
        log.log_fd(file, |path| Op::WriteAt {
            path,
            offset,
            data: Bytes::copy_from_slice(bytes),
        });
    }
}

/// `file` was cut to `len`.
pub fn truncated(file: &File, len: u64) {
    if let Some(log) = LOG.get() {
        log.log_fd(file, |path| Op::SetLen { path, len });
    }
}

/// The file at `path` was created (empty).
pub fn created(path: &Path) {
    if let Some(log) = LOG.get() {
        log.log_path(path, |path| Op::Create { path });
    }
}

/// The file at `path` now holds exactly `bytes` (a write aside and a rename).
pub fn replaced(path: &Path, bytes: &[u8]) {
    if let Some(log) = LOG.get() {
        log.log_path(path, |path| Op::Replace {
            path,
            data: Bytes::copy_from_slice(bytes),
        });
    }
}

/// The file at `path` was removed.
pub fn removed(path: &Path) {
    if let Some(log) = LOG.get() {
        log.log_path(path, |path| Op::Remove { path });
    }
}

/// The directory at `path` was removed with everything in it.
pub fn removed_dir(path: &Path) {
    if let Some(log) = LOG.get() {
        log.log_path(path, |path| Op::RemoveDir { path });
    }
}

impl ReplLog {
    pub fn new(root: &Path, max_bytes: usize) -> Self {
        let canonical = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        ReplLog {
            root: root.to_path_buf(),
            canonical,
            inner: Mutex::new(Inner {
                first: 0,
                ops: VecDeque::new(),
                bytes: 0,
                max_bytes: max_bytes.max(1 << 20),
                total_bytes: 0,
            }),
            head: tokio::sync::watch::channel(0).0,
            gate: Mutex::new(Gate {
                pending: VecDeque::new(),
                counted: BTreeMap::new(),
                min_in_sync: 0,
                released: 0,
                open: false,
            }),
            announcer: OnceLock::new(),
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's group-commit thread, which announces released rounds (set once, when the store opens).
    pub fn set_announcer(&self, syncer: Arc<super::Syncer>) {
        let _ = self.announcer.set(syncer);
        self.release(&mut self.gate());
    }

    /// Rounds may be announced from now on (the cluster wrote this term's in-sync set).
    pub fn open_gate(&self) {
        let mut g = self.gate();
        g.open = true;
        self.release(&mut g);
    }

    /// How many followers must be counted before any round is announced.
    pub fn set_min_in_sync(&self, n: usize) {
        let mut g = self.gate();
        g.min_in_sync = n;
        self.release(&mut g);
    }

    /// A round finished locally: announced once the counted followers acked `lsn`.
    pub fn round_done(&self, round: u64, lsn: u64, ok: bool) {
        let mut g = self.gate();
        g.pending.push_back((round, lsn, ok));
        self.release(&mut g);
    }

    /// `node` applied and synced every op before `lsn`.
    pub fn follower_acked(&self, node: &str, lsn: u64) {
        let mut g = self.gate();
        if let Some(a) = g.counted.get_mut(node) {
            *a = (*a).max(lsn);
            self.release(&mut g);
        }
    }

    /// From now on rounds wait for `node`'s acks too (before etcd names it in-sync).
    pub fn count(&self, node: &str, acked: u64) {
        let mut g = self.gate();
        g.counted.entry(node.to_string()).or_insert(acked);
        self.release(&mut g);
    }

    /// Rounds no longer wait for `node` (after etcd stopped naming it in-sync).
    pub fn uncount(&self, node: &str) {
        let mut g = self.gate();
        g.counted.remove(node);
        self.release(&mut g);
    }

    /// The followers rounds wait for.
    pub fn counted(&self) -> Vec<String> {
        self.gate().counted.keys().cloned().collect()
    }

    /// The highest position a released round needed: a follower that has acked it holds everything confirmed.
    pub fn released_lsn(&self) -> u64 {
        self.gate().released
    }

    /// Rounds done locally and not yet announced.
    pub fn waiting_rounds(&self) -> usize {
        self.gate().pending.len()
    }

    /// Whether fewer followers are counted than `min_in_sync` (publishers wait).
    pub fn short_of_replicas(&self) -> bool {
        let g = self.gate();
        g.counted.len() < g.min_in_sync
    }

    fn release(&self, g: &mut Gate) {
        let Some(syncer) = self.announcer.get() else {
            return;
        };
        if !g.open || g.counted.len() < g.min_in_sync {
            return;
        }
        let acked = g.counted.values().copied().min().unwrap_or(u64::MAX);
        while let Some(&(round, lsn, ok)) = g.pending.front() {
            if lsn > acked {
                break;
            }
            g.pending.pop_front();
            g.released = g.released.max(lsn);
            syncer.announce(round, ok);
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `path` relative to the data directory, if it is a replicated file under it.
    fn relative(&self, path: &Path) -> Option<String> {
        let rel = path
            .strip_prefix(&self.root)
            .or_else(|_| path.strip_prefix(&self.canonical))
            .ok()?;
        let rel = rel.to_str()?;
        (is_safe_relative(rel) && !is_local(rel)).then(|| rel.to_string())
    }

    fn log_fd(&self, file: &File, op: impl FnOnce(String) -> Op) {
        let mut inner = self.lock();
        // Read under the lock: see the module's invariants.
        let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
            return;
        };
        if path.to_string_lossy().ends_with(" (deleted)") {
            return;
        }
        if let Some(rel) = self.relative(&path) {
            self.push(&mut inner, op(rel));
        }
    }

    fn log_path(&self, path: &Path, op: impl FnOnce(String) -> Op) {
        if let Some(rel) = self.relative(path) {
            let mut inner = self.lock();
            self.push(&mut inner, op(rel));
        }
    }

    fn push(&self, inner: &mut Inner, op: Op) {
        let w = op.weight();
        inner.ops.push_back(Arc::new(op));
        inner.bytes += w;
        inner.total_bytes += w as u64;
        while inner.bytes > inner.max_bytes && inner.ops.len() > 1 {
            if let Some(old) = inner.ops.pop_front() {
                inner.bytes -= old.weight();
                inner.first += 1;
            }
        }
        let head = inner.first + inner.ops.len() as u64;
        self.head.send_replace(head);
    }

    /// The lsn the next op will get: a follower that has applied everything before it is caught up.
    pub fn head(&self) -> u64 {
        let inner = self.lock();
        inner.first + inner.ops.len() as u64
    }

    /// Payload bytes logged since the process started.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total_bytes
    }

    /// Wakes when the head moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Up to about `max_bytes` of ops from `from` on (at least one, if any).
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Arc<Op>>, Behind> {
        let inner = self.lock();
        if from < inner.first {
            return Err(Behind { oldest: inner.first });
        }
        let mut out = Vec::new();
        let mut size = 0;
        for op in inner.ops.iter().skip((from - inner.first) as usize) {
            if !out.is_empty() && size + op.weight() > max_bytes {
                break;
            }
            size += op.weight();
            out.push(op.clone());
        }
        Ok(out)
    }

    /// Logs an op directly (tests, and writers that already hold a relative path).
    pub fn push_op(&self, op: Op) {
        let mut inner = self.lock();
        self.push(&mut inner, op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn writes_are_named_relative_to_the_data_dir_and_local_files_are_not_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ReplLog::new(dir.path(), 1 << 20);
        std::fs::create_dir_all(dir.path().join("queues/q")).expect("mkdir");
        let f = File::create(dir.path().join("queues/q/00000001.seg")).expect("create");
        log.log_fd(&f, |path| Op::SetLen { path, len: 0 });
        log.log_path(&dir.path().join("paging/1/00000001.seg"), |path| Op::Remove { path });
        log.log_path(&dir.path().join("definitions.log.tmp"), |path| Op::Remove { path });
        std::fs::remove_file(dir.path().join("queues/q/00000001.seg")).expect("rm");
        log.log_fd(&f, |path| Op::SetLen { path, len: 0 });
        let ops = log.read(0, 1 << 20).expect("kept");
        assert_eq!(
            ops.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
            vec![Op::SetLen {
                path: "queues/q/00000001.seg".into(),
                len: 0
            }],
            "one write; the local files and the write to the unlinked file are not logged"
        );
    }

    #[test]
    fn appends_carry_the_offset_they_landed_at() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.ack");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"abcd").expect("write");
        f.write_all(b"ef").expect("write");
        let mut g = &f;
        let end = g.stream_position().expect("pos");
        assert_eq!(end - 2, 4);
    }

    #[test]
    fn the_log_is_bounded_and_says_when_a_reader_fell_behind() {
        let log = ReplLog::new(Path::new("/nowhere"), 1 << 20);
        for i in 0..10u64 {
            log.push_op(Op::WriteAt {
                path: "a".into(),
                offset: i,
                data: Bytes::from(vec![0u8; 300 << 10]),
            });
        }
        assert_eq!(log.head(), 10);
        let oldest = match log.read(0, 1) {
            Err(Behind { oldest }) => oldest,
            Ok(_) => panic!("the oldest ops were dropped"),
        };
        assert!(oldest > 0 && oldest < 10);
        assert_eq!(log.read(9, 1).expect("kept").len(), 1);
        assert!(log.read(10, 1).expect("nothing new").is_empty());
    }

    #[test]
    fn only_plain_relative_paths_are_safe() {
        for ok in ["definitions.log", "queues/ab/00000001.seg"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "queues/../../x", "a\0b", "./x"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
        assert!(is_local(".lock") && is_local("paging/1/x.seg") && is_local("queues/q/1.seg.corrupt"));
        assert!(!is_local("queues/q/00000001.seg"));
    }

    #[test]
    fn a_round_is_announced_only_once_every_counted_follower_acked_it() {
        let log = ReplLog::new(Path::new("/nowhere"), 1 << 20);
        let syncer = super::super::Syncer::idle();
        let progress = syncer.subscribe();
        log.set_announcer(syncer);
        log.set_min_in_sync(1);
        log.round_done(1, 10, true);
        assert_eq!(progress.borrow().completed, 0, "no follower counted: held");
        log.count("n2", 9);
        log.open_gate();
        assert_eq!(progress.borrow().completed, 0, "n2 has not got lsn 10 yet");
        log.round_done(2, 12, false);
        log.follower_acked("n2", 10);
        assert_eq!(
            (progress.borrow().completed, log.waiting_rounds()),
            (1, 1),
            "round 1 released, round 2 still waits"
        );
        log.count("n3", 11);
        log.follower_acked("n2", 12);
        assert_eq!(progress.borrow().completed, 1, "n3 is counted and has not got lsn 12");
        log.uncount("n3");
        let p = progress.borrow().clone();
        assert_eq!(
            (p.completed, p.outcome(2)),
            (2, Some(false)),
            "released when n3 no longer counts; it failed"
        );
        assert_eq!(log.waiting_rounds(), 0);
    }

    #[test]
    fn a_new_leaders_gate_stays_shut_until_its_in_sync_set_is_written() {
        let log = ReplLog::new(Path::new("/nowhere"), 1 << 20);
        let syncer = super::super::Syncer::idle();
        let progress = syncer.subscribe();
        log.set_announcer(syncer);
        log.set_min_in_sync(1);
        log.count("n2", 100);
        log.round_done(1, 10, true);
        assert_eq!(
            progress.borrow().completed,
            0,
            "counted and acked, but etcd may still name others"
        );
        log.open_gate();
        assert_eq!(progress.borrow().completed, 1);
    }

    #[test]
    fn a_barrier_is_a_round_with_nothing_to_write() {
        let syncer = super::super::Syncer::start(super::super::FsyncMode::Never, super::super::DiskBudget::default());
        let round = syncer.barrier();
        assert!(
            futures::executor::block_on(syncer.wait(round, round)),
            "announced, and it stored everything"
        );
        assert!(syncer.barrier() > round, "the next barrier is a later round");
        syncer.stop();
    }
}
