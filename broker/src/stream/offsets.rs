//! Server-side consumer offsets: for each named consumer of a stream (`x-stream-consumer-name`), the next offset it
//! reads, kept in the stream's `offsets` file so that it survives reconnects, restarts and `kill -9`.
//!
//! The file is an append-only log of small records, each `u32 length, u32 crc32c, u8 name length, name, u64 offset`
//! (big-endian); the last record for a name wins, and `u64::MAX` as the offset removes the name. Opening replays it
//! and stops at the first record that is torn or fails its checksum (a crash mid-append); the log is rewritten whole
//! (to a temporary file, then renamed) at open and whenever it grows past four times what it holds.
//!
//! Invariants: a stored offset only moves when its consumer acks further, or when an operator resets it; appends
//! are page-cache writes of a few dozen bytes, made by the stream's owner under its lock (the same kind of write as a
//! classic queue's ack marks).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, BytesMut};

/// The longest consumer name kept (RabbitMQ's names are short strings as well).
pub const MAX_NAME: usize = 255;
const REMOVED: u64 = u64::MAX;
const FILE: &str = "offsets";
/// Rewritten once the log is this much larger than what it holds (and at least this big).
const COMPACT_AT: u64 = 64 * 1024;

pub struct Offsets {
    path: PathBuf,
    map: BTreeMap<String, u64>,
    file: File,
    len: u64,
}

fn encode(buf: &mut BytesMut, name: &str, offset: u64) {
    let mut payload = BytesMut::with_capacity(1 + name.len() + 8);
    payload.put_u8(name.len() as u8);
    payload.put_slice(name.as_bytes());
    payload.put_u64(offset);
    buf.put_u32(payload.len() as u32);
    buf.put_u32(crc32c::crc32c(&payload));
    buf.put_slice(&payload);
}

/// Replays a log's bytes; stops at the first record that does not hold.
pub fn decode(mut data: &[u8]) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    while data.len() >= 8 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let crc = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let Some(mut payload) = data.get(8..8 + len) else { break };
        if len < 9 || crc32c::crc32c(payload) != crc {
            break;
        }
        let n = payload.get_u8() as usize;
        if payload.len() != n + 8 {
            break;
        }
        let Ok(name) = std::str::from_utf8(&payload[..n]) else {
            break;
        };
        let name = name.to_string();
        payload.advance(n);
        let offset = payload.get_u64();
        if offset == REMOVED {
            map.remove(&name);
        } else {
            map.insert(name, offset);
        }
        data = &data[8 + len..];
    }
    map
}

impl Offsets {
    /// Opens (or creates) the offsets of the stream in `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(FILE);
        let map = match fs::read(&path) {
            Ok(data) => decode(&data),
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let (file, len) = rewrite(&path, &map)?;
        Ok(Offsets { path, map, file, len })
    }

    /// The next offset `name` reads, if it stored one.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.map.get(name).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.map.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Stores `offset` as the next one `name` reads (names longer than `MAX_NAME` bytes are refused at consume).
    pub fn store(&mut self, name: &str, offset: u64) -> io::Result<()> {
        if self.map.get(name) == Some(&offset) {
            return Ok(());
        }
        self.append(name, offset)?;
        self.map.insert(name.to_string(), offset);
        Ok(())
    }

    /// Forgets `name`'s offset.
    pub fn remove(&mut self, name: &str) -> io::Result<()> {
        if self.map.contains_key(name) {
            self.append(name, REMOVED)?;
            self.map.remove(name);
        }
        Ok(())
    }

    fn append(&mut self, name: &str, offset: u64) -> io::Result<()> {
        let name = truncated(name);
        let mut buf = BytesMut::new();
        encode(&mut buf, name, offset);
        self.file.write_all(&buf)?;
        crate::store::repl::appended(&self.file, &buf);
        self.len += buf.len() as u64;
        let live = self.map.len() as u64 * 48;
        if self.len > COMPACT_AT && self.len > live * 4 {
            let mut map = self.map.clone();
            map.insert(name.to_string(), offset);
            if offset == REMOVED {
                map.remove(name);
            }
            let (file, len) = rewrite(&self.path, &map)?;
            self.file = file;
            self.len = len;
        }
        Ok(())
    }
}

fn truncated(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Writes `map` as a fresh log (a temporary file renamed over the old one) and opens it for appending.
fn rewrite(path: &Path, map: &BTreeMap<String, u64>) -> io::Result<(File, u64)> {
    let mut buf = BytesMut::new();
    for (name, offset) in map {
        encode(&mut buf, truncated(name), *offset);
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &buf)?;
    fs::rename(&tmp, path)?;
    crate::store::repl::replaced(path, &buf);
    let file = OpenOptions::new().append(true).open(path)?;
    Ok((file, buf.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_reopening_and_a_torn_tail() {
        let dir = tempfile::tempdir().expect("dir");
        let mut o = Offsets::open(dir.path()).expect("open");
        o.store("billing", 10).expect("store");
        o.store("audit", 3).expect("store");
        o.store("billing", 12).expect("store");
        o.remove("audit").expect("remove");
        drop(o);
        // Half a record at the end: a crash mid-append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .expect("open");
        f.write_all(&[0, 0, 0, 20, 1, 2]).expect("tear");
        drop(f);
        let o = Offsets::open(dir.path()).expect("reopen");
        assert_eq!(o.get("billing"), Some(12));
        assert_eq!(o.get("audit"), None);
        assert_eq!(o.iter().count(), 1);
    }

    #[test]
    fn the_log_is_compacted_as_it_grows() {
        let dir = tempfile::tempdir().expect("dir");
        let mut o = Offsets::open(dir.path()).expect("open");
        for i in 0..10_000 {
            o.store("c", i).expect("store");
        }
        let len = fs::metadata(dir.path().join(FILE)).expect("stat").len();
        assert!(len <= COMPACT_AT + 64, "{len}");
        drop(o);
        assert_eq!(Offsets::open(dir.path()).expect("reopen").get("c"), Some(9_999));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        for n in 0..200u32 {
            let data: Vec<u8> = (0..n).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
            let _ = decode(&data);
        }
        let mut buf = BytesMut::new();
        encode(&mut buf, "x", 5);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_empty());
        }
        assert_eq!(decode(&buf).get("x"), Some(&5));
    }
}
