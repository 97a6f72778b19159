//! Resource alarms, as RabbitMQ has them: a memory high watermark and a disk free limit; and, on a cluster leader,
//! a replication alarm while fewer followers are in sync than `--cluster-min-in-sync` (its confirms would wait).
//!
//! A monitor task samples the process's resident memory (`/proc/self/statm`) and the free space of the data
//! directory's filesystem (`statvfs`) every `SAMPLE_EVERY`, and publishes the alarm state on a `watch` channel.
//! While either alarm is on, every connection that publishes stops reading its socket (after telling clients that
//! asked with `connection.blocked`); deliveries keep flowing out, so consumers drain the queues; when the alarm
//! clears, `connection.unblocked` follows and reading resumes. This bounds memory under a flood to the watermark
//! plus what is already in flight: one read buffer per publishing connection.
//!
//! Invariants:
//! - The state only changes in `Alarms::check` (or when an operator moves a limit), and every change is logged.
//! - A limit of 0 turns its alarm off for good (the default watermark is never 0).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the monitor samples memory and disk.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The watermark used when none is configured: this share of the memory the process may use.
pub const DEFAULT_WATERMARK_FRACTION: f64 = 0.4;

/// Past this share of the memory high watermark, queues page new transient messages to disk (`queue::spill`), so
/// that memory holds below the watermark and publishers are blocked only when paging cannot keep up.
pub const PAGING_SHARE: f64 = 0.5;

/// The disk free limit used when none is configured (RabbitMQ's default is 50 MB; production guides say more).
pub const DEFAULT_DISK_FREE_LIMIT: u64 = 1024 * 1024 * 1024;

/// Which alarms are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    pub memory: bool,
    pub disk: bool,
    /// A cluster leader with too few followers in sync.
    pub replication: bool,
}

impl AlarmState {
    pub fn any(self) -> bool {
        self.memory || self.disk || self.replication
    }

    /// The reason a `connection.blocked` carries, as RabbitMQ words it.
    pub fn reason(self) -> &'static str {
        match (self.memory, self.disk, self.replication) {
            (true, true, _) => "low on memory and disk space",
            (true, false, _) => "low on memory",
            (false, true, _) => "low on disk space",
            (false, false, true) => "not enough in-sync replicas",
            (false, false, false) => "",
        }
    }
}

/// `--memory-high-watermark`: a share of the memory available to the process, or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    Fraction(f64),
    Bytes(u64),
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark::Fraction(DEFAULT_WATERMARK_FRACTION)
    }
}

impl Watermark {
    /// The watermark in bytes, given what the process may use.
    pub fn resolve(self, available: u64) -> u64 {
        match self {
            Watermark::Bytes(b) => b,
            Watermark::Fraction(f) => (available as f64 * f) as u64,
        }
    }
}

impl FromStr for Watermark {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(f) = s.parse::<f64>() {
            if f > 0.0 && f <= 1.0 {
                return Ok(Watermark::Fraction(f));
            }
            if f > 1.0 && f.fract() == 0.0 {
                return Ok(Watermark::Bytes(f as u64));
            }
            return Err(format!(
                "'{s}': a fraction must be in (0, 1], a size in bytes a whole number"
            ));
        }
        parse_bytes(s).map(Watermark::Bytes)
    }
}

impl<'de> Deserialize<'de> for Watermark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => n.to_string().parse(),
            NumberOrText::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A size in bytes: `1073741824`, `1GiB`, `512MB`, `800 MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(pub u64);

impl FromStr for ByteCount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_bytes(s).map(ByteCount)
    }
}

impl<'de> Deserialize<'de> for ByteCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) if n >= 0.0 && n.fract() == 0.0 => Ok(ByteCount(n as u64)),
            NumberOrText::Number(n) => Err(serde::de::Error::custom(format!("{n} is not a size in bytes"))),
            NumberOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("'{s}' is not a size (such as 1GiB or 512MB): {e}"))
}

/// What the process may use: the smallest of physical memory, the cgroup's memory limit, `RLIMIT_AS` and
/// `RLIMIT_DATA`. None when none of them can be read.
pub fn available_memory() -> Option<u64> {
    let mut candidates = Vec::new();
    if let Ok(info) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(kb) = info
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            candidates.push(kb * 1024);
        }
    }
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Some(n) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            candidates.push(n);
        }
    }
    for resource in [rlimit::Resource::AS, rlimit::Resource::DATA] {
        if let Ok((soft, _)) = resource.get() {
            if soft != rlimit::INFINITY {
                candidates.push(soft);
            }
        }
    }
    candidates.into_iter().min()
}

/// The process's resident set size.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`.
pub fn disk_free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The alarms and their limits; one per broker.
pub struct Alarms {
    memory_limit: AtomicU64,
    disk_free_limit: AtomicU64,
    memory_used: AtomicU64,
    disk_free: AtomicU64,
    /// Set by the monitor from the replication log's gate (a cluster leader only).
    replication_short: AtomicBool,
    state: watch::Sender<AlarmState>,
    /// Set past `PAGING_SHARE` of the watermark (shared with the store, whose queues read it).
    paging: Arc<AtomicBool>,
}

impl Alarms {
    /// Alarms for these limits; `paging` is raised and lowered with the paging share of the watermark.
    pub fn new(memory_limit: u64, disk_free_limit: u64, paging: Arc<AtomicBool>) -> Self {
        Alarms {
            memory_limit: AtomicU64::new(memory_limit),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            memory_used: AtomicU64::new(0),
            disk_free: AtomicU64::new(u64::MAX),
            replication_short: AtomicBool::new(false),
            state: watch::channel(AlarmState::default()).0,
            paging,
        }
    }

    /// Whether queues page new transient messages to disk now.
    pub fn paging(&self) -> bool {
        self.paging.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self) -> watch::Receiver<AlarmState> {
        self.state.subscribe()
    }

    pub fn state(&self) -> AlarmState {
        *self.state.borrow()
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.disk_free_limit.load(Ordering::Relaxed)
    }

    /// The last samples: resident bytes, and free bytes on the data directory's filesystem.
    pub fn memory_used(&self) -> u64 {
        self.memory_used.load(Ordering::Relaxed)
    }

    pub fn disk_free(&self) -> u64 {
        self.disk_free.load(Ordering::Relaxed)
    }

    /// Moves the watermark (bytes; 0 turns the memory alarm off); takes effect at once.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
        self.check(self.memory_used(), self.disk_free());
    }

    /// Moves the disk free limit (bytes; 0 turns the disk alarm off); takes effect at once.
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
        self.check(self.memory_used(), self.disk_free());
    }

    /// Takes one sample and sets or clears the alarms.
    pub fn check(&self, memory_used: u64, disk_free: u64) {
        self.memory_used.store(memory_used, Ordering::Relaxed);
        self.disk_free.store(disk_free, Ordering::Relaxed);
        let (mem_limit, disk_limit) = (self.memory_limit(), self.disk_free_limit());
        let page = mem_limit > 0 && memory_used as f64 > mem_limit as f64 * PAGING_SHARE;
        // Debug, not info: memory hovering at the paging share flips this often.
        if self.paging.swap(page, Ordering::Relaxed) != page {
            tracing::debug!(
                used = memory_used,
                limit = mem_limit,
                paging = page,
                "paging of transient messages"
            );
        }
        let next = AlarmState {
            memory: mem_limit > 0 && memory_used > mem_limit,
            disk: disk_limit > 0 && disk_free < disk_limit,
            replication: self.replication_short.load(Ordering::Relaxed),
        };
        self.state.send_if_modified(|s| {
            if *s == next {
                return false;
            }
            if next.memory != s.memory {
                if next.memory {
                    tracing::warn!(
                        used = memory_used,
                        limit = mem_limit,
                        "memory alarm set: publishers are blocked"
                    );
                } else {
                    tracing::info!(used = memory_used, limit = mem_limit, "memory alarm cleared");
                }
            }
            if next.disk != s.disk {
                if next.disk {
                    tracing::warn!(
                        free = disk_free,
                        limit = disk_limit,
                        "disk alarm set: publishers are blocked"
                    );
                } else {
                    tracing::info!(free = disk_free, limit = disk_limit, "disk alarm cleared");
                }
            }
            if next.replication != s.replication {
                if next.replication {
                    tracing::warn!("replication alarm set: too few followers in sync; publishers are blocked");
                } else {
                    tracing::info!("replication alarm cleared");
                }
            }
            *s = next;
            true
        });
    }

    /// Sets or clears the replication alarm (too few followers in sync) and re-checks.
    pub fn set_replication_short(&self, short: bool) {
        if self.replication_short.swap(short, Ordering::Relaxed) != short {
            self.check(self.memory_used(), self.disk_free());
        }
    }
}

/// Samples memory and disk until shutdown.
pub async fn monitor(alarms: Arc<Alarms>, data_dir: PathBuf, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let memory = resident_bytes().unwrap_or(0);
        let disk = disk_free_bytes(&data_dir).unwrap_or(u64::MAX);
        let short = crate::store::repl::installed().is_some_and(|l| l.short_of_replicas());
        alarms.replication_short.store(short, Ordering::Relaxed);
        alarms.check(memory, disk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_parse_as_fractions_or_sizes() {
        assert_eq!("0.4".parse(), Ok(Watermark::Fraction(0.4)));
        assert_eq!("1GiB".parse(), Ok(Watermark::Bytes(1 << 30)));
        assert_eq!("512MB".parse(), Ok(Watermark::Bytes(512_000_000)));
        assert_eq!("2000000".parse(), Ok(Watermark::Bytes(2_000_000)));
        assert!("1.5".parse::<Watermark>().is_err());
        assert!("lots".parse::<Watermark>().is_err());
        assert_eq!(Watermark::Fraction(0.5).resolve(1000), 500);
        assert_eq!("1GiB".parse(), Ok(ByteCount(1 << 30)));
        let t: ByteCount = serde_json::from_str("1024").expect("number");
        assert_eq!(t, ByteCount(1024));
    }

    #[test]
    fn alarms_follow_their_limits() {
        let a = Alarms::new(1000, 100, Arc::default());
        let rx = a.subscribe();
        a.check(400, 1000);
        assert!(!a.state().any() && !a.paging());
        a.check(600, 1000);
        assert!(
            !a.state().any() && a.paging(),
            "past half the watermark: paging, no alarm yet"
        );
        a.check(1500, 1000);
        assert_eq!(
            a.state(),
            AlarmState {
                memory: true,
                disk: false,
                replication: false
            }
        );
        assert!(rx.has_changed().unwrap_or(false));
        a.check(1500, 50);
        assert_eq!(a.state().reason(), "low on memory and disk space");
        a.set_memory_limit(0);
        a.set_disk_free_limit(10);
        assert!(!a.state().any(), "0 turns the memory alarm off; 50 free is above 10");
        a.set_replication_short(true);
        assert_eq!(a.state().reason(), "not enough in-sync replicas");
        a.check(10, 1000);
        assert!(a.state().replication, "a sample keeps the replication alarm");
        a.set_replication_short(false);
        assert!(!a.state().any());
    }

    #[test]
    fn this_machine_can_be_measured() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
        assert!(available_memory().is_some_and(|b| b > 0));
        assert!(disk_free_bytes(Path::new(".")).is_some());
    }
}
