//! Where a durable queue's files live: one directory per queue, named by a hash so that every legal name fits.
//!
//! Layout: `<data-dir>/queues/<sha256 hex>/`, the hash taken over the vhost and queue names (each length-prefixed),
//! so the name is 64 characters whatever the names are. AMQP allows 255-byte queue names; the hex names used before
//! took two characters a byte and failed past 127 bytes (NAME_MAX is 255), so such a queue could not be declared
//! durable (541). A `name` file inside (JSON: `{"vhost": .., "queue": ..}`) maps a directory back to its queue.
//!
//! Legacy layout (data directories written before): `<data-dir>/queues/<vhost hex>/<queue hex>/`. [`prepare`]
//! moves a queue's legacy directory to its new place with one rename when the queue is opened, then writes the
//! `name` file.
//!
//! Invariants:
//! - A queue's directory is a pure function of (vhost, queue): [`hashed`]. Recovery finds queues through
//!   `definitions.json` and computes their directories; nothing needs to list them (but [`list`] can, both layouts).
//! - A legacy directory is only ever renamed whole, never copied or rewritten: its segment offsets and ack files stay
//!   valid. The transaction log names directories too: its acks are applied when the store opens, before any queue's
//!   directory moves, and it is compacted without them once every queue has recovered.
//! - If the move fails, [`prepare`] answers the legacy directory, used where it is: nothing stored is left behind.
//! - The new directory's entry and its `name` file are synced before the queue uses it (as the queue log did for
//!   the directories it created), so a power cut cannot lose a queue whose messages were confirmed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::hex;

/// The file inside a queue's directory that names the queue.
pub const NAME_FILE: &str = "name";

/// What the `name` file holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueName {
    pub vhost: String,
    pub queue: String,
}

/// The directory of a queue in the current layout.
pub fn hashed(root: &Path, vhost: &str, queue: &str) -> PathBuf {
    let mut h = Sha256::new();
    for part in [vhost, queue] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    root.join("queues").join(hex(&h.finalize()))
}

/// The directory of a queue in the legacy layout (hex names).
pub fn legacy(root: &Path, vhost: &str, queue: &str) -> PathBuf {
    root.join("queues")
        .join(hex(vhost.as_bytes()))
        .join(hex(queue.as_bytes()))
}

fn is_dir(p: &Path) -> bool {
    // A legacy path for a long name is too long to exist: that is an error here, and means "no".
    fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false)
}

/// The directory to open for a queue: a legacy directory is moved to the current layout first; a new one is created
/// with its `name` file (see the module's invariants). On a failure it logs and answers the best directory it has:
/// the legacy one if the move failed, else the new one (the queue log then reports what is wrong with it).
pub fn prepare(root: &Path, vhost: &str, queue: &str) -> PathBuf {
    let dir = hashed(root, vhost, queue);
    let old = legacy(root, vhost, queue);
    if !is_dir(&dir) && is_dir(&old) {
        if let Err(e) = fs::rename(&old, &dir) {
            warn!(from = %old.display(), to = %dir.display(), error = %e, "cannot move a queue's directory to the current layout; using it where it is");
            return old;
        }
        // The vhost's legacy directory goes once its last queue has moved (this fails while others are left).
        if let Some(parent) = old.parent() {
            let _ = fs::remove_dir(parent);
        }
        tracing::info!(vhost, queue, from = %old.display(), to = %dir.display(), "moved a queue's directory to the current layout");
    } else if is_dir(&old) {
        warn!(vhost, queue, ignored = %old.display(), used = %dir.display(), "a queue has directories in both layouts; the legacy one is ignored");
    }
    if let Err(e) = write_name(&dir, vhost, queue) {
        warn!(dir = %dir.display(), error = %e, "cannot write a queue directory's name file");
    }
    dir
}

/// Creates `dir` if needed and writes its `name` file if missing, syncing what it creates.
fn write_name(dir: &Path, vhost: &str, queue: &str) -> io::Result<()> {
    let path = dir.join(NAME_FILE);
    if path.exists() {
        return Ok(());
    }
    let created = !dir.exists();
    fs::create_dir_all(dir)?;
    let body = serde_json::to_vec(&QueueName {
        vhost: vhost.to_string(),
        queue: queue.to_string(),
    })
    .map_err(io::Error::other)?;
    let tmp = dir.join(".name.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    super::repl::replaced(&path, &body);
    File::open(dir)?.sync_all()?;
    if created {
        // The new directory's entry (queues/) and that of queues/ itself (the data directory).
        for d in dir.ancestors().skip(1).take(2) {
            File::open(d)?.sync_all()?;
        }
    }
    Ok(())
}

/// The queue a directory holds, from its `name` file.
pub fn read_name(dir: &Path) -> io::Result<QueueName> {
    let body = fs::read(dir.join(NAME_FILE))?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Every queue directory under `root`, in both layouts, with the queue it holds (None when it cannot be told: a
/// current-layout directory without a readable `name` file).
pub fn list(root: &Path) -> io::Result<Vec<(PathBuf, Option<QueueName>)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(root.join("queues"))? {
        let p = e?.path();
        if !p.is_dir() {
            continue;
        }
        if p.join(NAME_FILE).exists() {
            let name = read_name(&p).ok();
            out.push((p, name));
            continue;
        }
        let vhost = p.file_name().and_then(|n| unhex(&n.to_string_lossy()));
        let Some(vhost) = vhost else {
            // A current-layout directory whose name file is missing (or not a legacy vhost directory at all).
            out.push((p, None));
            continue;
        };
        for q in fs::read_dir(&p)? {
            let q = q?.path();
            if q.is_dir() {
                let queue = q.file_name().and_then(|n| unhex(&n.to_string_lossy()));
                let name = queue.map(|queue| QueueName {
                    vhost: vhost.clone(),
                    queue,
                });
                out.push((q, name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The inverse of `hex` (`_` is the empty name); None when `s` is not such a name.
fn unhex(s: &str) -> Option<String> {
    if s == "_" {
        return Some(String::new());
    }
    if !s.len().is_multiple_of(2) || s.len() == 64 {
        // 64 hex characters is a current-layout name (a 32-byte legacy vhost name would be too: it has no name file,
        // so it is listed as unknown rather than guessed).
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_gets_a_short_distinct_directory() {
        let root = Path::new("/data");
        let long = "q".repeat(255);
        let a = hashed(root, "/", &long);
        assert_eq!(a.file_name().map(|n| n.len()), Some(64));
        assert_ne!(
            hashed(root, "/", "ab"),
            hashed(root, "/a", "b"),
            "the names are length-prefixed"
        );
        assert_eq!(hashed(root, "/", "q"), hashed(root, "/", "q"));
    }

    #[test]
    fn a_legacy_directory_is_moved_and_named_and_listed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let old = legacy(root, "/", "orders");
        fs::create_dir_all(&old).expect("mkdir");
        fs::write(old.join("00000001.seg"), b"records").expect("segment");
        let dir = prepare(root, "/", "orders");
        assert_eq!(dir, hashed(root, "/", "orders"));
        assert!(!old.exists() && !root.join("queues").join("2f").exists());
        assert_eq!(fs::read(dir.join("00000001.seg")).expect("moved"), b"records");
        let name = QueueName {
            vhost: "/".into(),
            queue: "orders".into(),
        };
        assert_eq!(read_name(&dir).expect("name"), name);
        // A second legacy queue, not yet opened, is listed too.
        let other = legacy(root, "/", "");
        fs::create_dir_all(&other).expect("mkdir");
        let listed = list(root).expect("list");
        assert!(listed.contains(&(dir.clone(), Some(name))), "{listed:?}");
        let empty = QueueName {
            vhost: "/".into(),
            queue: String::new(),
        };
        assert!(listed.contains(&(other, Some(empty))), "{listed:?}");
        assert_eq!(prepare(root, "/", "orders"), dir, "idempotent");
    }
}
