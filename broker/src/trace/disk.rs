//! The journal on disk: one JSON line per event, appended to `journal.log` under the data directory's `trace/` by
//! a thread of its own, so that recording never waits on a write.
//!
//! Invariants:
//! - Bounded: when `journal.log` would pass half of `max_bytes` it becomes `journal.1.log` (replacing the older
//!   one) and a new `journal.log` starts, so both together stay within `max_bytes`.
//! - Recovery reads `journal.1.log`, then `journal.log`, and skips any line that does not parse (a torn tail
//!   after a crash, or damage); the live file is cut back to its last whole line before appending, so a torn
//!   line never runs into the next one.
//! - Not synced: the journal is a diagnostic record; what the page cache held at a crash may be lost, never the
//!   broker's messages.
//! - The channel to the thread is bounded; a full channel drops the line (the caller counts it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use serde::{Deserialize, Serialize};
use warren_shared::trace::JourneyStep;

use super::ring::Parent;

/// Lines waiting for the writer thread at most.
const QUEUED_LINES: usize = 16_384;

pub const CURRENT: &str = "journal.log";
pub const ROTATED: &str = "journal.1.log";

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    #[serde(rename = "v")]
    pub vhost: String,
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Parent,
    #[serde(rename = "s")]
    pub step: JourneyStep,
}

/// The sending side of the writer thread; dropping it ends the thread after what was sent is written.
pub struct DiskLog {
    tx: Option<SyncSender<Line>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DiskLog {
    /// Lets the thread write what it was sent, then waits for it (the broker's last moments, or a test's).
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl DiskLog {
    /// Cuts `journal.log` back to its last whole line and starts the writer thread.
    pub fn start(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let path = dir.join(CURRENT);
        let size = cut_to_last_line(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let (tx, rx) = sync_channel(QUEUED_LINES);
        let writer = Writer {
            dir: dir.to_path_buf(),
            out: BufWriter::new(file),
            size,
            half: (max_bytes / 2).max(1),
        };
        let thread = std::thread::Builder::new()
            .name("warren-trace-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(DiskLog {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a line to the writer; false when it could not take it (behind, or gone).
    pub fn send(&self, line: Line) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

struct Writer {
    dir: PathBuf,
    out: BufWriter<File>,
    /// Bytes in `journal.log`.
    size: u64,
    /// Rotate before `journal.log` passes this.
    half: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Line>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(line) = next {
                if let Err(e) = self.write(&line) {
                    tracing::warn!(error = %e, "could not write the trace journal");
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = self.out.flush() {
                tracing::warn!(error = %e, "could not write the trace journal");
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, line: &Line) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        if self.size > 0 && self.size + bytes.len() as u64 > self.half {
            self.rotate()?;
        }
        self.out.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        std::fs::rename(self.dir.join(CURRENT), self.dir.join(ROTATED))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(CURRENT))?;
        self.out = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

/// Truncates `path` after its last `\n` (a torn last line goes); returns the size left (0 if there is no file).
fn cut_to_last_line(path: &Path) -> std::io::Result<u64> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        f.set_len(end)?;
    }
    Ok(end)
}

/// Every line of the rotated file, then of the current one, that parses; the others are skipped.
pub fn recover(dir: &Path) -> std::io::Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut skipped = 0u64;
    for name in [ROTATED, CURRENT] {
        let file = match File::open(dir.join(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for raw in BufReader::new(file).split(b'\n') {
            match serde_json::from_slice::<Line>(&raw?) {
                Ok(line) => out.push(line),
                Err(_) => skipped += 1,
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, dir = %dir.display(), "damaged trace journal lines were skipped");
    }
    Ok(out)
}
