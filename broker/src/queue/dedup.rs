//! Message de-duplication (`x-message-deduplication`), for exactly-once publishing: a message whose key was seen
//! recently is confirmed but not enqueued. Compatible with LavinMQ and RabbitMQ's de-duplication plugin.
//!
//! - The key is the `x-deduplication-header` header if present, else the `message-id` property; a message with
//!   neither is never a duplicate.
//! - The cache holds at most `x-cache-size` keys (oldest evicted first; unbounded when absent) for `x-cache-ttl`
//!   milliseconds each (forever when absent).
//! - A durable queue writes each new key to `dedup.log` in its directory, so its cache survives a restart; the file
//!   is compacted when the queue is opened.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use amq_protocol::types::FieldTable;

use crate::args;
use crate::clock::Clock;
use crate::message::Message;

/// The de-duplication settings of a queue or exchange, if enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupSettings {
    pub cache_size: Option<usize>,
    pub ttl_ms: Option<u64>,
}

impl DedupSettings {
    pub fn from_arguments(a: &FieldTable) -> Option<Self> {
        let on = match a.inner().get("x-message-deduplication") {
            Some(amq_protocol::types::AMQPValue::Boolean(b)) => *b,
            Some(v) => args::as_str(v) == Some("true") || args::as_i64(v).is_some_and(|n| n != 0),
            None => false,
        };
        on.then(|| DedupSettings {
            cache_size: args::get_i64(a, "x-cache-size")
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0),
            ttl_ms: args::get_i64(a, "x-cache-ttl")
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0),
        })
    }
}

/// The de-duplication key of a message, if it has one.
pub fn dedup_key(message: &Message) -> Option<String> {
    let props = message.properties();
    if let Some(h) = props.headers() {
        if let Some(v) = h.inner().get("x-deduplication-header") {
            if let Some(s) = args::as_str(v) {
                return Some(s.to_string());
            }
            if let Some(n) = args::as_i64(v) {
                return Some(n.to_string());
            }
        }
    }
    props.message_id().as_ref().map(|m| m.as_str().to_string())
}

pub struct DedupCache {
    settings: DedupSettings,
    /// Key -> unix ms when it stops counting (u64::MAX: never).
    keys: HashMap<String, u64>,
    order: VecDeque<String>,
    file: Option<(PathBuf, File)>,
    /// The broker's clock: expiry times are unix ms from it (and are compared again after a restart).
    clock: Clock,
}

impl DedupCache {
    pub fn new(settings: DedupSettings, clock: Clock) -> Self {
        DedupCache {
            settings,
            keys: HashMap::new(),
            order: VecDeque::new(),
            file: None,
            clock,
        }
    }

    /// A cache kept in `dir/dedup.log`: loads what is still valid and compacts the file.
    pub fn persistent(settings: DedupSettings, dir: &Path, clock: Clock) -> io::Result<Self> {
        let path = dir.join("dedup.log");
        let mut c = Self::new(settings, clock);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let now = c.clock.now_ms();
        let mut at = 0;
        // Records: u16 key length, key, u64 expiry. A torn tail is ignored.
        while at + 2 <= bytes.len() {
            let len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
            let Some(rec) = bytes.get(at + 2..at + 2 + len + 8) else {
                break;
            };
            let key = String::from_utf8_lossy(&rec[..len]).into_owned();
            let mut exp = [0u8; 8];
            exp.copy_from_slice(&rec[len..]);
            let expires = u64::from_be_bytes(exp);
            if expires > now {
                c.remember(key, expires);
            }
            at += 2 + len + 8;
        }
        let tmp = dir.join("dedup.log.tmp");
        let mut buf = Vec::new();
        {
            let mut f = File::create(&tmp)?;
            for k in &c.order {
                if let Some(exp) = c.keys.get(k) {
                    encode(&mut buf, k, *exp);
                }
            }
            f.write_all(&buf)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, &path)?;
        crate::store::repl::replaced(&path, &buf);
        let file = OpenOptions::new().append(true).open(&path)?;
        c.file = Some((path, file));
        Ok(c)
    }

    fn remember(&mut self, key: String, expires: u64) {
        if self.keys.insert(key.clone(), expires).is_none() {
            self.order.push_back(key);
        }
        if let Some(max) = self.settings.cache_size {
            while self.order.len() > max {
                if let Some(old) = self.order.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
    }

    /// True when `key` was seen and still counts; otherwise records it and returns false.
    pub fn check_and_insert(&mut self, key: String) -> bool {
        let now = self.clock.now_ms();
        if let Some(exp) = self.keys.get(&key) {
            if *exp > now {
                return true;
            }
        }
        let expires = self.settings.ttl_ms.map(|t| now.saturating_add(t)).unwrap_or(u64::MAX);
        if let Some((path, f)) = &mut self.file {
            let mut buf = Vec::new();
            encode(&mut buf, &key, expires);
            match f.write_all(&buf) {
                Ok(()) => crate::store::repl::appended(f, &buf),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not record a de-duplication key"),
            }
        }
        self.remember(key, expires);
        false
    }
}

fn encode(buf: &mut Vec<u8>, key: &str, expires: u64) {
    let k = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    buf.extend_from_slice(&(k.len() as u16).to_be_bytes());
    buf.extend_from_slice(k);
    buf.extend_from_slice(&expires.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_and_persistence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = DedupSettings {
            cache_size: Some(2),
            ttl_ms: None,
        };
        {
            let mut c = DedupCache::persistent(settings, dir.path(), Clock::system()).expect("open");
            assert!(!c.check_and_insert("a".into()));
            assert!(c.check_and_insert("a".into()));
            assert!(!c.check_and_insert("b".into()));
            assert!(!c.check_and_insert("c".into()), "evicts a");
            assert!(!c.check_and_insert("a".into()), "a was evicted");
        }
        let mut c = DedupCache::persistent(settings, dir.path(), Clock::system()).expect("reopen");
        assert!(c.check_and_insert("c".into()), "survives reopen");
        assert!(c.check_and_insert("a".into()));
        assert!(!c.check_and_insert("b".into()), "only the last two were kept");
    }

    #[test]
    fn ttl_expires_keys() {
        let clock = Clock::new();
        let mut c = DedupCache::new(
            DedupSettings {
                cache_size: None,
                ttl_ms: Some(1),
            },
            clock.clone(),
        );
        assert!(!c.check_and_insert("k".into()));
        clock.advance(std::time::Duration::from_millis(5));
        assert!(!c.check_and_insert("k".into()));
    }
}
