//! A follower's copy of the leader's data directory (issue 17): listing and checksumming the replicated files for
//! the full sync, applying the leader's ops, and setting aside what the leader does not have. Blocking file I/O:
//! callers run it on a blocking thread.
//!
//! Invariants: every path is relative and plain (checked again here, not only by the wire decoder), and node-local
//! files ([`is_local`]) are never listed, written or set aside. What a follower holds that the leader does not
//! (a former leader's unreplicated tail) is moved under `backups/<stamp>/`, never deleted; the newest two
//! backups are kept.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::wire::FileEntry;
use crate::store::repl::{is_local, is_safe_relative, Op};

/// How deep a data directory goes (`queues/<vhost>/<queue>/<file>`, `exchanges/…`, `mqtt/retained/…`), with room.
const MAX_DEPTH: usize = 12;

fn checked(root: &Path, rel: &str) -> io::Result<PathBuf> {
    if !is_safe_relative(rel) || is_local(rel) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused path '{rel}'"),
        ));
    }
    Ok(root.join(rel))
}

/// Every replicated file under `root`, with its length and checksum, sorted by path.
pub fn list(root: &Path) -> io::Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    walk(root, root, 0, &mut |rel, path| {
        let (len, sha256) = checksum(path)?;
        out.push(FileEntry {
            path: rel.to_string(),
            len,
            sha256,
        });
        Ok(())
    })?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, depth: usize, f: &mut dyn FnMut(&str, &Path) -> io::Result<()>) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let Some(rel) = path.strip_prefix(root).ok().and_then(|r| r.to_str()) else {
            continue;
        };
        if is_local(rel) || !is_safe_relative(rel) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &path, depth + 1, f)?;
        } else if kind.is_file() {
            match f(rel, &path) {
                // Removed while we looked: the log says so later.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

fn checksum(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.finalize().into()))
}

/// Reads up to `max` bytes of `rel` from `offset` (empty at its end; NotFound when it is gone).
pub fn read_piece(root: &Path, rel: &str, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let f = File::open(checked(root, rel)?)?;
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        let n = f.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// The paths a follower must fetch (differing or missing here), and those it holds that the leader does not.
pub fn compare(leader: &[FileEntry], mine: &[FileEntry]) -> (Vec<String>, Vec<String>) {
    let have: std::collections::HashMap<&str, &FileEntry> = mine.iter().map(|e| (e.path.as_str(), e)).collect();
    let theirs: BTreeSet<&str> = leader.iter().map(|e| e.path.as_str()).collect();
    let want = leader
        .iter()
        .filter(|e| {
            have.get(e.path.as_str())
                .is_none_or(|m| m.len != e.len || m.sha256 != e.sha256)
        })
        .map(|e| e.path.clone())
        .collect();
    let extra = mine
        .iter()
        .filter(|e| !theirs.contains(e.path.as_str()))
        .map(|e| e.path.clone())
        .collect();
    (want, extra)
}

/// Files written or created since the last [`Touched::sync`], to make durable before an ack.
#[derive(Default)]
pub struct Touched {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Touched {
    /// fdatasyncs every touched file and fsyncs the directories whose entries changed.
    pub fn sync(&mut self) -> io::Result<()> {
        for f in std::mem::take(&mut self.files) {
            match File::open(&f) {
                Ok(file) => file.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for d in std::mem::take(&mut self.dirs) {
            match File::open(&d) {
                Ok(dir) => dir.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn entry_changed(&mut self, path: &Path) {
        if let Some(parent) = path.parent() {
            self.dirs.insert(parent.to_path_buf());
        }
    }
}

fn open_for_write(path: &Path, touched: &mut Touched) -> io::Result<File> {
    let open = || OpenOptions::new().create(true).write(true).truncate(false).open(path);
    match open() {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
                for d in parent.ancestors().take(4) {
                    touched.dirs.insert(d.to_path_buf());
                }
            }
            touched.entry_changed(path);
            open()
        }
        Err(e) => Err(e),
    }
}

/// Applies one op of the leader's log to the copy at `root`.
pub fn apply(root: &Path, op: &Op, touched: &mut Touched) -> io::Result<()> {
    let path = checked(root, op.path())?;
    match op {
        Op::Create { .. } => {
            if !path.exists() {
                open_for_write(&path, touched)?;
                touched.entry_changed(&path);
            }
        }
        Op::WriteAt { offset, data, .. } => {
            let f = open_for_write(&path, touched)?;
            f.write_all_at(data, *offset)?;
            touched.files.insert(path);
        }
        Op::SetLen { len, .. } => {
            let f = open_for_write(&path, touched)?;
            f.set_len(*len)?;
            touched.files.insert(path);
        }
        Op::Replace { data, .. } => {
            let tmp = path.with_extension("repl.tmp");
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            {
                let f = File::create(&tmp)?;
                f.write_all_at(data, 0)?;
                f.sync_data()?;
            }
            fs::rename(&tmp, &path)?;
            touched.entry_changed(&path);
        }
        Op::Remove { .. } => match fs::remove_file(&path) {
            Ok(()) => touched.entry_changed(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
        Op::RemoveDir { .. } => match fs::remove_dir_all(&path) {
            Ok(()) => touched.entry_changed(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
    }
    Ok(())
}

/// Writes a piece of a file sent by the full sync: the first piece (offset 0) replaces whatever was there.
pub fn write_piece(root: &Path, rel: &str, offset: u64, data: &[u8], touched: &mut Touched) -> io::Result<()> {
    let path = checked(root, rel)?;
    let f = open_for_write(&path, touched)?;
    if offset == 0 {
        f.set_len(0)?;
    }
    f.write_all_at(data, offset)?;
    touched.files.insert(path);
    Ok(())
}

/// Moves `paths` (files the leader does not have) under `backups/<stamp>/`, keeping the newest two backups.
pub fn set_aside(root: &Path, paths: &[String], stamp: u64) -> io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let backups = root.join("backups");
    let dest = backups.join(format!("{stamp:020}"));
    for rel in paths {
        let from = checked(root, rel)?;
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::rename(&from, &to) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let mut all: Vec<_> = fs::read_dir(&backups)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    all.sort();
    while all.len() > 2 {
        let old = all.remove(0);
        let _ = fs::remove_dir_all(old);
    }
    File::open(root)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn read(root: &Path) -> Vec<(String, Vec<u8>)> {
        list(root)
            .expect("list")
            .into_iter()
            .map(|e| {
                let data = fs::read(root.join(&e.path)).expect("read");
                (e.path, data)
            })
            .collect()
    }

    /// A small deterministic generator (no extra crate for one property test).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn random_op(r: &mut Rng) -> Op {
        let path = format!("q{}/{:08}.seg", r.next(2), r.next(3));
        match r.next(10) {
            0 => Op::Create { path },
            1 => Op::SetLen { path, len: r.next(64) },
            2 => Op::Replace {
                path,
                data: Bytes::from(vec![r.next(256) as u8; r.next(40) as usize]),
            },
            3 => Op::Remove { path },
            4 => Op::RemoveDir {
                path: format!("q{}", r.next(2)),
            },
            _ => Op::WriteAt {
                path,
                offset: r.next(64),
                data: Bytes::from(vec![r.next(256) as u8; 1 + r.next(30) as usize]),
            },
        }
    }

    /// The full sync's premise: a copy taken at any moment after lsn `s` (here: the state after some later op `c`),
    /// with every op from `s` replayed onto it, equals the leader's files.
    #[test]
    fn replaying_a_suffix_onto_a_later_copy_gives_the_leaders_files() {
        for seed in 1..200u64 {
            let mut r = Rng(seed * 7919);
            let ops: Vec<Op> = (0..40).map(|_| random_op(&mut r)).collect();
            let s = r.next(ops.len() as u64) as usize;
            let c = s + r.next((ops.len() - s) as u64 + 1) as usize;
            let leader = tempfile::tempdir().expect("tempdir");
            let copy = tempfile::tempdir().expect("tempdir");
            let mut t = Touched::default();
            for (i, op) in ops.iter().enumerate() {
                if i == c {
                    for e in list(leader.path()).expect("list") {
                        let data = fs::read(leader.path().join(&e.path)).expect("read");
                        write_piece(copy.path(), &e.path, 0, &data, &mut t).expect("piece");
                    }
                }
                apply(leader.path(), op, &mut t).expect("apply");
            }
            if c == ops.len() {
                for e in list(leader.path()).expect("list") {
                    let data = fs::read(leader.path().join(&e.path)).expect("read");
                    write_piece(copy.path(), &e.path, 0, &data, &mut t).expect("piece");
                }
            }
            for op in &ops[s..] {
                apply(copy.path(), op, &mut t).expect("replay");
            }
            assert_eq!(read(copy.path()), read(leader.path()), "seed {seed}: s={s} c={c}");
        }
    }

    #[test]
    fn compare_names_what_to_fetch_and_what_to_set_aside() {
        let e = |p: &str, b: u8| FileEntry {
            path: p.into(),
            len: 1,
            sha256: [b; 32],
        };
        let (want, extra) = compare(&[e("a", 1), e("b", 2), e("c", 3)], &[e("a", 1), e("b", 9), e("d", 4)]);
        assert_eq!(want, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(extra, vec!["d".to_string()]);
    }

    #[test]
    fn local_and_climbing_paths_are_refused_and_extra_files_are_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Touched::default();
        for bad in ["../x", ".lock", "paging/1/x"] {
            assert!(
                apply(dir.path(), &Op::Create { path: bad.into() }, &mut t).is_err(),
                "{bad}"
            );
        }
        write_piece(dir.path(), "queues/q/1.seg", 0, b"mine", &mut t).expect("piece");
        set_aside(dir.path(), &["queues/q/1.seg".into()], 5).expect("aside");
        assert!(!dir.path().join("queues/q/1.seg").exists());
        assert_eq!(
            fs::read(dir.path().join("backups/00000000000000000005/queues/q/1.seg")).expect("kept"),
            b"mine"
        );
        assert!(list(dir.path()).expect("list").is_empty(), "backups are not listed");
    }
}
