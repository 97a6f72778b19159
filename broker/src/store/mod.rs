//! Durable storage: the data directory, its lock, group commit, and the per-queue message logs.
//!
//! Data directory layout (see also the README):
//! ```text
//! <data-dir>/
//!   .lock                      held (flock) by the running broker; a second broker on the same dir is refused
//!   definitions.log            durable exchanges, queues, bindings and API policies per vhost: an append-only
//!                              log of changes, compacted now and then (see `definitions_log.rs`)
//!   definitions.json.migrated  the snapshot file of earlier versions, kept after its migration to the log
//!   queues/<sha256 of vhost and queue names>/   (see `queue_dir.rs`; `queues/<vhost-hex>/<queue-hex>/` before)
//!     name                     the vhost and queue names (JSON), to map the directory back to its queue
//!     NNNNNNNN.seg             message records (length + CRC32C + seq + message)
//!     NNNNNNNN.idx             a sealed segment's summary (seq, size, flags per record), so a restart need not read it
//!     NNNNNNNN.ack             offsets of records in that segment that are done with
//!     NNNNNNNN.<offset>.<crc>.corrupt   damaged bytes recovery skipped (see `recovery.rs`), kept for the operator
//!     delivered.log            seqs handed to consumers (for redelivered flags after a crash)
//! ```
//!
//! Threads of the store: the syncer (group commit, below), the sealer (`summary.rs`) and the read threads
//! (`io_pool.rs`), so that no async worker waits on a `pread` for a delivery.
//!
//! Group commit (`fsync = batch`, the default): a connection's publishes gather in their queues' write-behind
//! buffers; at the end of its read batch each queue hands its buffer to the syncer thread (`Syncer::submit`) and
//! gets a ticket. Each round the syncer writes what was handed over, runs `fdatasync` over every file dirtied since
//! its last round and then announces the round, so every publish that arrived while a sync ran is covered by the
//! next one. Channels hold a publisher confirm until its ticket's round is announced, then send one cumulative
//! `basic.ack` (or a `basic.nack` when a write or a sync of the round failed). With `fsync = never` a round only
//! writes. A failed write makes its queue drop the records it covered (`QueueLog::drop_unwritten`), so a nacked
//! message is never delivered or recovered later.

pub mod access_defs;
pub mod definitions;
pub mod definitions_log;
pub mod io_pool;
pub mod queue_dir;
pub mod queue_log;
pub mod record;
pub mod recovery;
pub mod repl;
pub mod scan;
pub mod summary;
pub mod txlog;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use serde::Deserialize;
use tokio::sync::watch;
use tracing::error;

/// When a publisher confirm for a persistent message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// fdatasync before every confirm, one message at a time: survives power loss, slowest.
    Always,
    /// Group commit: one fdatasync covers every message written while the previous one ran; confirms wait for it.
    /// Survives power loss.
    #[default]
    Batch,
    /// No fdatasync: confirmed once written to the OS. Survives a broker crash (kill -9), not a power loss.
    Never,
}

/// A cap on bytes the store may write, for tests of a full disk and for operators who want a quota. `None` means
/// only the filesystem limits it. Tests can also make syncs slow (`set_sync_delay`) and hold the read threads'
/// reads (`hold_reads`), to show what waits on them.
#[derive(Clone, Default)]
pub struct DiskBudget {
    bytes: Option<Arc<AtomicU64>>,
    sync_delay_ms: Arc<AtomicU64>,
    /// Syncs sitting in their delay right now.
    delayed_syncs: Arc<AtomicU64>,
    /// Whether the read threads' reads are held, and how many wait; the condvar wakes them on release.
    reads: Arc<(Mutex<ReadHold>, Condvar)>,
    /// Tests: the syncer's writes of handed-over buffers fail (as on a full disk) while set.
    fail_writes: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct ReadHold {
    held: bool,
    waiting: u64,
}

impl DiskBudget {
    pub fn limited(bytes: u64) -> Self {
        DiskBudget {
            bytes: Some(Arc::new(AtomicU64::new(bytes))),
            ..Default::default()
        }
    }

    /// Raises (or lowers) what is left, e.g. when space returns.
    pub fn set_remaining(&self, bytes: u64) {
        if let Some(b) = &self.bytes {
            b.store(bytes, Ordering::SeqCst);
        }
    }

    /// Takes `n` bytes from the budget, or fails as a full disk would.
    pub fn charge(&self, n: u64) -> io::Result<()> {
        let Some(b) = &self.bytes else { return Ok(()) };
        b.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(n))
            .map(|_| ())
            .map_err(|_| io::Error::from_raw_os_error(28)) // ENOSPC
    }

    /// Makes every transaction commit's sync take this much longer (tests: a slow disk).
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.sync_delay_ms
            .store(delay.as_millis().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Blocks for the configured sync delay, if any; called where a commit syncs.
    pub fn delay_sync(&self) {
        let ms = self.sync_delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            self.delayed_syncs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            self.delayed_syncs.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// How many syncs are in their delay now (tests wait on this instead of sleeping).
    pub fn delayed_syncs(&self) -> u64 {
        self.delayed_syncs.load(Ordering::SeqCst)
    }

    /// Makes the syncer thread's writes of handed-over buffers fail with ENOSPC (true) or work again (false).
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// The syncer's write fails now (see `fail_writes`).
    fn write_refused(&self) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    /// Holds (true) or lets go (false) every read of the store's read threads (tests: a stuck disk read).
    pub fn hold_reads(&self, hold: bool) {
        let (lock, wake) = &*self.reads;
        lock.lock().unwrap_or_else(|e| e.into_inner()).held = hold;
        wake.notify_all();
    }

    /// How many read batches wait for `hold_reads(false)` now (tests wait on this instead of sleeping).
    pub fn held_reads(&self) -> u64 {
        self.reads.0.lock().unwrap_or_else(|e| e.into_inner()).waiting
    }

    /// Blocks while reads are held; called by a read thread before each batch.
    pub(crate) fn wait_for_reads(&self) {
        let (lock, wake) = &*self.reads;
        let mut hold = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !hold.held {
            return;
        }
        hold.waiting += 1;
        while hold.held {
            hold = wake.wait(hold).unwrap_or_else(|e| e.into_inner());
        }
        hold.waiting -= 1;
    }
}

/// Runs disk work that blocks (fdatasync, a commit record) from async code without stalling an async worker: on
/// the multi-threaded runtime the worker hands its other tasks to another thread for the duration
/// (`block_in_place`), so every other connection keeps being served; elsewhere (a current-thread runtime, a plain
/// thread) it just runs. No lock may be held across it that an async task could wait for.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sync rounds completed so far, and recent rounds whose sync failed.
#[derive(Debug, Clone, Default)]
pub struct SyncProgress {
    pub completed: u64,
    pub failed: Vec<u64>,
}

impl SyncProgress {
    /// None while the round is pending, Some(true) when synced, Some(false) when the sync failed.
    pub fn outcome(&self, ticket: u64) -> Option<bool> {
        (ticket <= self.completed).then(|| !self.failed.contains(&ticket))
    }

    /// Like `outcome`, for every round from `first` to `last`: Some(true) only when all of them synced.
    pub fn outcome_range(&self, first: u64, last: u64) -> Option<bool> {
        (last <= self.completed).then(|| !self.failed.iter().any(|r| (first..=last).contains(r)))
    }
}

struct SyncState {
    /// The round that new appends join.
    round: u64,
    /// Write-behind buffers handed over since the last round began, in the order they were handed over.
    writes: Vec<WriteJob>,
    dirty: Vec<Arc<File>>,
    /// Rounds that fail whatever they do (see `fail_open_round`).
    poisoned: Vec<u64>,
    /// A round was asked for with nothing to write (`barrier`).
    forced: bool,
    stop: bool,
}

/// A handed-over write's state, shared by the queue's log (which serves reads from the buffer until it is
/// written) and the syncer.
pub const WRITE_PENDING: u8 = 0;
/// Written, by the syncer or by an immediate append of the queue that wrote it first (the same bytes at the same
/// offset).
pub const WRITE_DONE: u8 = 1;
/// Dropped by the queue after an earlier write of its segment failed: never to be written; its round fails.
pub const WRITE_DROPPED: u8 = 2;

/// A write-behind buffer handed to the syncer thread: `bytes` go at `offset` of `file`. On failure `failed` runs
/// (on the syncer thread, with no syncer lock held): the queue drops the records it covered.
pub struct WriteJob {
    pub file: Arc<File>,
    pub offset: u64,
    pub bytes: bytes::Bytes,
    pub state: Arc<std::sync::atomic::AtomicU8>,
    pub failed: Box<dyn FnOnce() + Send>,
    /// Runs once the bytes are written (and every write handed over before them): a sealed segment's summary,
    /// which must see the whole segment.
    pub then: Option<Box<dyn FnOnce() + Send>>,
}

/// The group-commit thread's handle: it writes what queues handed over, then syncs every file dirtied since its
/// last round (not with `fsync = never`), then announces the round.
pub struct Syncer {
    state: Mutex<SyncState>,
    wake: Condvar,
    progress: watch::Sender<SyncProgress>,
    /// `fsync = never`: a round only writes.
    sync: bool,
    /// The round new work joins now (mirrors `SyncState::round`, read without the lock).
    open_round: AtomicU64,
    /// Tests' failure injection (`DiskBudget::fail_writes`).
    budget: DiskBudget,
}

impl Syncer {
    /// A syncer and its state, with no thread yet.
    fn new(sync: bool, budget: DiskBudget) -> Arc<Self> {
        let (tx, _) = watch::channel(SyncProgress::default());
        Arc::new(Syncer {
            state: Mutex::new(SyncState {
                round: 1,
                writes: Vec::new(),
                dirty: Vec::new(),
                poisoned: Vec::new(),
                forced: false,
                stop: false,
            }),
            wake: Condvar::new(),
            progress: tx,
            sync,
            open_round: AtomicU64::new(1),
            budget,
        })
    }

    fn start(mode: FsyncMode, budget: DiskBudget) -> Arc<Self> {
        let s = Self::new(mode != FsyncMode::Never, budget);
        let worker = s.clone();
        let spawned = std::thread::Builder::new()
            .name("warren-sync".into())
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            error!(error = %e, "could not start the sync thread");
        }
        s
    }

    /// A syncer with no thread: what is handed to it stays queued (tests of what happens before a write).
    #[cfg(test)]
    pub(crate) fn idle() -> Arc<Self> {
        Self::new(false, DiskBudget::default())
    }

    /// How many writes wait for the next round (tests).
    #[cfg(test)]
    pub(crate) fn queued_writes(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).writes.len()
    }

    /// Marks a file as needing a sync; returns the round that will cover it.
    pub fn mark_dirty(&self, file: &Arc<File>) -> u64 {
        self.submit(None, std::slice::from_ref(file))
    }

    /// Hands over a write (if any) and marks `files` dirty; returns the round that will write and sync them.
    /// Writes run in the order they were handed over. Never blocks on the disk: a queue calls it under its lock.
    pub fn submit(&self, write: Option<WriteJob>, files: &[Arc<File>]) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.writes.extend(write);
        for file in files {
            if !st.dirty.iter().any(|f| Arc::ptr_eq(f, file)) {
                st.dirty.push(file.clone());
            }
        }
        let round = st.round;
        drop(st);
        self.wake.notify_one();
        round
    }

    /// A round that covers every change logged for replication so far, even with nothing to write: on a cluster
    /// leader it is announced once the in-sync followers have those changes (what a `tx.commit` waits for).
    pub fn barrier(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.forced = true;
        let round = st.round;
        drop(st);
        self.wake.notify_one();
        round
    }

    /// Makes the round open now fail: a queue dropped records after a failed write that were not handed over yet,
    /// so their publishers' confirms (which span every round from the one open when the record was appended to
    /// their ticket, see `Published::first_ticket`) must be nacked.
    pub fn fail_open_round(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let round = st.round;
        st.poisoned.push(round);
    }

    /// The round that work handed over now would join: no record appended from now on is written in an earlier one.
    pub fn open_round(&self) -> u64 {
        self.open_round.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> watch::Receiver<SyncProgress> {
        self.progress.subscribe()
    }

    /// Waits until rounds `first..=last` (the tickets of publishes) are done; whether all of them stored what they
    /// held.
    pub async fn wait(&self, first: u64, last: u64) -> bool {
        let mut rx = self.subscribe();
        loop {
            if let Some(ok) = rx.borrow_and_update().outcome_range(first, last) {
                return ok;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }

    fn run(&self) {
        use std::os::unix::fs::FileExt;
        loop {
            let (round, writes, files, poisoned) = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                while st.dirty.is_empty() && st.writes.is_empty() && !st.forced && !st.stop {
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.stop && st.dirty.is_empty() && st.writes.is_empty() {
                    return;
                }
                let round = st.round;
                st.forced = false;
                st.round += 1;
                self.open_round.store(st.round, Ordering::Release);
                let poisoned = st.poisoned.contains(&round);
                st.poisoned.retain(|r| *r > round);
                (
                    round,
                    std::mem::take(&mut st.writes),
                    std::mem::take(&mut st.dirty),
                    poisoned,
                )
            };
            let mut ok = !poisoned;
            for w in writes {
                match w.state.load(Ordering::Acquire) {
                    WRITE_DONE => continue,
                    WRITE_DROPPED => {
                        ok = false;
                        continue;
                    }
                    _ => {}
                }
                let written = match w.bytes.is_empty() {
                    true => Ok(()),
                    false => self
                        .budget
                        .write_refused()
                        .and_then(|()| w.file.write_all_at(&w.bytes, w.offset)),
                };
                match written {
                    Ok(()) => {
                        repl::written_shared(&w.file, w.offset, &w.bytes);
                        let _ =
                            w.state
                                .compare_exchange(WRITE_PENDING, WRITE_DONE, Ordering::AcqRel, Ordering::Acquire);
                        if let Some(then) = w.then {
                            then();
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "a queue's write failed; the publishes it covered are nacked and dropped");
                        ok = false;
                        (w.failed)();
                    }
                }
            }
            // Every op whose writer holds this round's ticket was logged before its ticket was taken.
            let lsn = repl::installed().map_or(0, |l| l.head());
            if self.sync {
                for f in &files {
                    if let Err(e) = f.sync_data() {
                        error!(error = %e, "fdatasync failed; the publishes it covered are nacked");
                        ok = false;
                    }
                }
            }
            match repl::installed() {
                // A cluster leader: announced once the in-sync followers have it too (the confirm rule).
                Some(log) => log.round_done(round, lsn, ok),
                None => self.announce(round, ok),
            }
        }
    }

    /// Tells the round's waiters it is done (and whether it stored everything it held).
    pub(crate) fn announce(&self, round: u64, ok: bool) {
        self.progress.send_modify(|p| {
            p.completed = round;
            if !ok {
                p.failed.push(round);
                if p.failed.len() > 64 {
                    p.failed.remove(0);
                }
            }
        });
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.wake.notify_one();
    }
}

/// Takes the data directory's `.lock` (creating the directory if needed): the one broker process that may write in
/// it. A cluster follower holds it for the copy it keeps, and hands it over when it starts leading.
pub fn lock(root: &Path) -> Result<File, StoreError> {
    fs::create_dir_all(root).map_err(|source| StoreError::Create {
        path: root.into(),
        source,
    })?;
    let lock_path = root.join(".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::Lock {
            lock: lock_path.clone(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Locked {
                path: root.into(),
                lock: lock_path,
            });
        }
        Err(fs::TryLockError::Error(source)) => {
            return Err(StoreError::Lock {
                lock: lock_path,
                source,
            })
        }
    }
    Ok(lock)
}

/// When a queue pages new transient messages out to its spill log instead of keeping them in memory.
#[derive(Clone, Debug)]
pub struct PagePolicy {
    /// Set by the memory monitor past the paging share of the watermark: every queue pages.
    pub pressure: Arc<std::sync::atomic::AtomicBool>,
    /// A queue whose transient messages in memory take this much (see `queue::spill::ENTRY_OVERHEAD`) pages the
    /// next ones, so a deep transient queue costs a few bytes per message in RAM, as a durable one does.
    pub ram_per_queue: usize,
    /// Once the messages in memory of all queues together take this much, every queue pages (`--total-queue-ram`).
    pub ram_total: usize,
    /// What the messages in memory of all queues take now (each queue's `queue::spill::MemUse` adds its share).
    pub in_memory: Arc<AtomicUsize>,
}

impl PagePolicy {
    /// No pressure yet, with these budgets.
    pub fn new(ram_per_queue: usize, ram_total: usize) -> Self {
        PagePolicy {
            pressure: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            ram_per_queue,
            ram_total,
            in_memory: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// `--queue-ram`'s default: about 60,000 small messages, or 15,000 of 1 KiB.
pub const DEFAULT_QUEUE_RAM: usize = 16 * 1024 * 1024;

/// `--total-queue-ram`'s default: 16 queues' worth of `DEFAULT_QUEUE_RAM` (100 flooded queues used to hold 1.6 GB).
pub const DEFAULT_TOTAL_QUEUE_RAM: usize = 256 * 1024 * 1024;

/// The data directory, locked for this broker's lifetime.
pub struct Store {
    pub root: PathBuf,
    /// Commit records of transactions (see `txlog.rs`).
    pub txlog: txlog::TxLog,
    pub fsync: FsyncMode,
    pub budget: DiskBudget,
    pub syncer: Arc<Syncer>,
    /// Writes the summaries of sealed segments (`summary.rs`); None when its thread could not start.
    pub sealer: Option<summary::Sealer>,
    /// Reads records back for queues, off the async workers (`io.rs`); None when no thread could start.
    pub reader: Option<io_pool::Reader>,
    /// When queues page new transient messages out to disk (see `queue::spill`).
    pub page_pressure: PagePolicy,
    /// Numbers the spill directories of this run.
    next_spill: AtomicU64,
    _lock: File,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("data directory {path} is in use by another broker (lock file {lock} is held); stop it or pick another --data-dir")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock {lock}: {source}")]
    Lock { lock: PathBuf, source: io::Error },
    #[error("cannot read definitions from {path}: {source}")]
    Definitions { path: PathBuf, source: io::Error },
    #[error(transparent)]
    DefinitionsLog(#[from] definitions_log::DefinitionsError),
}

impl Store {
    /// Sets how much memory each queue, and all of them together, may give their messages before they page the
    /// next transient ones out.
    pub fn with_queue_ram(mut self, per_queue: usize, total: usize) -> Self {
        self.page_pressure.ram_per_queue = per_queue;
        self.page_pressure.ram_total = total;
        self
    }

    pub fn open(root: &Path, fsync: FsyncMode, budget: DiskBudget) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join("queues")).map_err(|source| StoreError::Create {
            path: root.into(),
            source,
        })?;
        let lock = lock(root)?;
        let txlog = txlog::TxLog::open(root).map_err(|source| StoreError::Definitions {
            path: root.join("transactions.log"),
            source,
        })?;
        // Spilled transient messages do not survive a restart (taken only once the lock is ours).
        match fs::remove_dir_all(root.join("paging")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, "could not remove the paging directory of an earlier run")
            }
            _ => {}
        }
        let syncer = Syncer::start(fsync, budget.clone());
        if let Some(log) = repl::installed() {
            log.set_announcer(syncer.clone());
        }
        Ok(Store {
            root: root.to_path_buf(),
            txlog,
            fsync,
            reader: io_pool::Reader::start(budget.clone()),
            syncer,
            budget,
            sealer: summary::Sealer::start(),
            page_pressure: PagePolicy::new(DEFAULT_QUEUE_RAM, DEFAULT_TOTAL_QUEUE_RAM),
            next_spill: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// A fresh directory for one queue's spilled transient messages (`paging/<n>/`, created on first use).
    pub fn spill_dir(&self) -> PathBuf {
        let n = self.next_spill.fetch_add(1, Ordering::Relaxed);
        self.root.join("paging").join(n.to_string())
    }

    /// Every queue directory, in both layouts (see `queue_dir::list`), sorted: what is on disk whether or not the
    /// definitions name it, with the queue each holds when that can be told.
    pub fn queue_dirs(&self) -> io::Result<Vec<(PathBuf, Option<queue_dir::QueueName>)>> {
        match queue_dir::list(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        }
    }

    /// The directory of one durable queue, ready to open: named by a hash of the names (any legal name fits), with
    /// a legacy hex-named directory moved there first and a `name` file written (see `queue_dir.rs`).
    pub fn queue_dir(&self, vhost: &str, queue: &str) -> PathBuf {
        queue_dir::prepare(&self.root, vhost, queue)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.syncer.stop();
        if let Some(reader) = &self.reader {
            reader.stop();
        }
    }
}

/// A name as a directory name: lowercase hex of its bytes (`_` for the empty name). Only for names of at most 127
/// bytes (NAME_MAX is 255): queue directories are hashed instead (`queue_dir.rs`).
pub fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "_".to_string();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The name `hex` made `s` from, if it is one (and UTF-8).
pub fn unhex(s: &str) -> Option<String> {
    if s == "_" {
        return Some(String::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}
