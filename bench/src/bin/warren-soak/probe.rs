//! The broker process seen from outside, through `/proc/<pid>`: resident memory and open file descriptors.
//!
//! Readings are `None` when there is no pid to watch or the process is gone (the caller tells a dead broker apart
//! with `alive`). Samples are kept for the whole run (one a second: 3,600 an hour) so the end can compare the first
//! half of the load with the second and tell a plateau from growth.

use std::time::Duration;

/// One reading of the broker process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Sample {
    /// Since the soak started.
    pub at_s: f64,
    pub rss_kb: u64,
    pub fds: u64,
}

pub struct Probe {
    pid: Option<u32>,
}

impl Probe {
    pub fn new(pid: Option<u32>) -> Self {
        Probe { pid }
    }

    pub fn watching(&self) -> bool {
        self.pid.is_some()
    }

    pub fn alive(&self) -> bool {
        self.pid
            .is_none_or(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    }

    fn status_kb(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Resident memory now (VmRSS).
    pub fn rss_kb(&self) -> Option<u64> {
        self.status_kb("VmRSS:")
    }

    /// The most resident memory the process ever had (VmHWM, kept by the kernel: no peak between samples is missed).
    pub fn peak_rss_kb(&self) -> Option<u64> {
        self.status_kb("VmHWM:")
    }

    /// Open file descriptors now: sockets, segment files, the listeners, epoll and the like.
    pub fn fds(&self) -> Option<u64> {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", self.pid?)).ok()?;
        Some(dir.count() as u64)
    }

    pub fn sample(&self, at: Duration) -> Option<Sample> {
        Some(Sample {
            at_s: at.as_secs_f64(),
            rss_kb: self.rss_kb()?,
            fds: self.fds()?,
        })
    }
}

/// `kB` as `12.3 MB`.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
