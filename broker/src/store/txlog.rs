//! The transaction log: what makes `tx.commit` atomic across a crash.
//!
//! A commit first appends its persistent messages to their queues' segments, marked with the transaction id, without
//! making them visible; then writes one commit record here (the transaction id and the on-disk acks it makes),
//! synced; only then are the messages made visible and the acks applied. On recovery, a marked record whose
//! transaction has no commit record is dropped, and every committed transaction's acks are applied (again, which is
//! harmless). So a crash leaves a transaction either wholly applied or not at all.
//!
//! File `<data-dir>/transactions.log`, records: `u32 len, u32 crc32c, u64 tx, u32 acks, acks × (u16 dir_len, dir,
//! u32 segment, u32 offset)`. `dir` is relative to the data directory (so that a cluster follower's copy, at another path,
//! names its own queues); records written before 2026-12 hold absolute paths, still read. After recovery the file is rewritten with only the transactions whose messages are
//! still on disk (without their acks, which are applied by then).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::queue_log::Loc;

pub struct TxLog {
    root: PathBuf,
    path: PathBuf,
    file: Mutex<File>,
    next: AtomicU64,
    committed: HashSet<u64>,
    /// Committed transactions whose messages recovery found still live.
    referenced: Mutex<HashSet<u64>>,
}

/// What queue recovery asks about transactions.
pub struct TxView<'a>(pub Option<&'a TxLog>);

impl TxView<'_> {
    pub fn committed(&self, tx: u64) -> bool {
        self.0.is_some_and(|l| l.committed.contains(&tx))
    }
    pub fn still_referenced(&self, tx: u64) {
        if let Some(l) = self.0 {
            l.referenced.lock().unwrap_or_else(|e| e.into_inner()).insert(tx);
        }
    }
}

fn encode(tx: u64, acks: &[(PathBuf, Loc)], root: &Path) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&tx.to_be_bytes());
    body.extend_from_slice(&(acks.len() as u32).to_be_bytes());
    for (dir, loc) in acks {
        let d = dir.strip_prefix(root).unwrap_or(dir).to_string_lossy();
        let d = &d.as_bytes()[..d.len().min(u16::MAX as usize)];
        body.extend_from_slice(&(d.len() as u16).to_be_bytes());
        body.extend_from_slice(d);
        body.extend_from_slice(&loc.segment.to_be_bytes());
        body.extend_from_slice(&loc.offset.to_be_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn decode(body: &[u8]) -> Option<(u64, Vec<(PathBuf, Loc)>)> {
    let tx = u64::from_be_bytes(body.get(0..8)?.try_into().ok()?);
    let n = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let mut at = 12;
    let mut acks = Vec::new();
    for _ in 0..n {
        let dl = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
        let dir = PathBuf::from(String::from_utf8_lossy(body.get(at + 2..at + 2 + dl)?).into_owned());
        at += 2 + dl;
        let segment = u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        let offset = u32::from_be_bytes(body.get(at + 4..at + 8)?.try_into().ok()?);
        at += 8;
        acks.push((dir, Loc { segment, offset }));
    }
    Some((tx, acks))
}

impl TxLog {
    /// Opens the log, applies committed acks to the queues' ack files, and remembers committed transactions.
    pub fn open(root: &Path) -> io::Result<Self> {
        let path = root.join("transactions.log");
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut committed = HashSet::new();
        let mut max = 0;
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            let Some(body) = bytes.get(at + 8..at + 8 + len) else {
                break;
            }; // torn tail: not committed
            if crc32c::crc32c(body) != crc {
                tracing::warn!(file = %path.display(), offset = at, "skipping a damaged transaction record");
                at += 8 + len;
                continue;
            }
            if let Some((tx, acks)) = decode(body) {
                max = max.max(tx);
                committed.insert(tx);
                for (dir, loc) in acks {
                    let dir = root.join(dir); // a relative dir is the data dir's; an old absolute one stays as it was
                    let ack = dir.join(format!("{:08}.ack", loc.segment));
                    if dir.join(format!("{:08}.seg", loc.segment)).exists() {
                        let mut f = OpenOptions::new().create(true).append(true).open(&ack)?;
                        f.write_all(&loc.offset.to_be_bytes())?;
                    }
                }
            }
            at += 8 + len;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(TxLog {
            root: root.to_path_buf(),
            path,
            file: Mutex::new(file),
            next: AtomicU64::new(max + 1),
            committed,
            referenced: Mutex::new(HashSet::new()),
        })
    }

    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes a commit record; `sync` makes it durable before returning (the commit point).
    pub fn commit(&self, tx: u64, acks: &[(PathBuf, Loc)], sync: bool) -> io::Result<()> {
        let rec = encode(tx, acks, &self.root);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&rec)?;
        super::repl::appended(&f, &rec);
        if sync {
            f.sync_data()?;
        }
        Ok(())
    }

    /// After every queue recovered: keep only the transactions whose messages are still on disk.
    pub fn compact(&self) -> io::Result<()> {
        let keep = self.referenced.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let tmp = self.path.with_extension("log.tmp");
        let mut buf = Vec::new();
        {
            let mut f = File::create(&tmp)?;
            let mut ids: Vec<u64> = keep.into_iter().collect();
            ids.sort_unstable();
            for tx in ids {
                buf.extend_from_slice(&encode(tx, &[], &self.root));
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        super::repl::replaced(&self.path, &buf);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        *f = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_transactions_and_their_acks_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = dir.path().join("q");
        fs::create_dir_all(&q).expect("mkdir");
        fs::write(q.join("00000001.seg"), b"").expect("segment");
        {
            let log = TxLog::open(dir.path()).expect("open");
            let t = log.next_id();
            log.commit(t, &[(q.clone(), Loc { segment: 1, offset: 40 })], true)
                .expect("commit");
            // A torn record after it is not a commit.
            log.file
                .lock()
                .expect("lock")
                .write_all(&[0, 0, 0, 50, 1, 2])
                .expect("torn");
        }
        let log = TxLog::open(dir.path()).expect("reopen");
        let view = TxView(Some(&log));
        assert!(view.committed(1));
        assert!(!view.committed(2));
        assert_eq!(fs::read(q.join("00000001.ack")).expect("ack file"), 40u32.to_be_bytes());
        assert!(log.next_id() > 1);
    }

    /// A cluster follower's copy of the data directory lives at another path: the log names queues relative to its
    /// own directory, so opening the copy applies acks to the copy's queues, never the original's.
    #[test]
    fn a_copied_log_applies_its_acks_to_the_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for root in [&a, &b] {
            fs::create_dir_all(root.join("queues/q")).expect("mkdir");
            fs::write(root.join("queues/q/00000001.seg"), b"").expect("segment");
        }
        {
            let log = TxLog::open(&a).expect("open");
            let t = log.next_id();
            log.commit(t, &[(a.join("queues/q"), Loc { segment: 1, offset: 8 })], true)
                .expect("commit");
        }
        fs::copy(a.join("transactions.log"), b.join("transactions.log")).expect("copy");
        let _ = fs::remove_file(a.join("queues/q/00000001.ack"));
        TxLog::open(&b).expect("open the copy");
        assert_eq!(
            fs::read(b.join("queues/q/00000001.ack")).expect("the copy's ack"),
            8u32.to_be_bytes()
        );
        assert!(!a.join("queues/q/00000001.ack").exists(), "the original is untouched");
    }
}
