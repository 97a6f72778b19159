//! Retained messages: the last message published with the retain flag on each topic, per vhost, delivered to each
//! new subscription whose filter matches; an empty retained publish clears the topic.
//!
//! Durable: each vhost's retained messages are one file (`<data-dir>/mqtt/retained/<vhost hex>`) of records in the
//! store's format (CRC32C each), rewritten whole on each change (write a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves the old set or the new one. Retained changes are rare; the file is small. Loading
//! stops at the first damaged record and keeps what came before it.
//!
//! Invariants: at most [`MAX_TOPICS`] retained topics per vhost (a new topic beyond that is refused, an update of a
//! kept one is not); `set` does blocking I/O and must run off the async workers.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::message::Message;
use crate::store::record::{self, Decoded, Meta};

/// Retained topics kept per vhost at most.
pub const MAX_TOPICS: usize = 100_000;

type Topics = BTreeMap<String, Arc<Message>>;

pub struct Retained {
    dir: Option<PathBuf>,
    vhosts: Mutex<HashMap<String, Topics>>,
}

impl Retained {
    /// An in-memory store (no data directory).
    pub fn in_memory() -> Self {
        Retained {
            dir: None,
            vhosts: Mutex::new(HashMap::new()),
        }
    }

    /// The store under `dir`, with every vhost's file loaded.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let mut vhosts = HashMap::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(vhost) = crate::store::unhex(name) else {
                continue;
            };
            let data = Bytes::from(fs::read(&path)?);
            vhosts.insert(vhost, load(&data));
        }
        Ok(Retained {
            dir: Some(dir),
            vhosts: Mutex::new(vhosts),
        })
    }

    /// Retains `message` on `topic` of `vhost` (none: clears it), durably when the store has a directory.
    pub fn set(&self, vhost: &str, topic: &str, message: Option<Arc<Message>>) -> io::Result<()> {
        let mut vhosts = self.vhosts.lock().unwrap_or_else(|e| e.into_inner());
        let topics = vhosts.entry(vhost.to_string()).or_default();
        match message {
            Some(m) => {
                if topics.len() >= MAX_TOPICS && !topics.contains_key(topic) {
                    return Err(io::Error::other(format!(
                        "vhost '{vhost}' retains {MAX_TOPICS} topics already"
                    )));
                }
                topics.insert(topic.to_string(), m);
            }
            None => {
                if topics.remove(topic).is_none() {
                    return Ok(());
                }
            }
        }
        let Some(dir) = &self.dir else { return Ok(()) };
        // Written under the lock: two changes never race to rename their files.
        save(&dir.join(crate::store::hex(vhost.as_bytes())), topics)
    }

    /// The retained messages of `vhost` whose topics `filter` matches.
    pub fn matching(&self, vhost: &str, filter: &str) -> Vec<(String, Arc<Message>)> {
        let vhosts = self.vhosts.lock().unwrap_or_else(|e| e.into_inner());
        vhosts
            .get(vhost)
            .map(|topics| {
                topics
                    .iter()
                    .filter(|(t, _)| super::mapping::matches(filter, t))
                    .map(|(t, m)| (t.clone(), m.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn load(data: &Bytes) -> Topics {
    let mut topics = Topics::new();
    let mut at = 0;
    while at < data.len() {
        match record::decode(&data.slice(at..)) {
            Decoded::Ok(r, size) => {
                let props = crate::amqp::nesting::parse_properties_bounded(&r.properties[..]).unwrap_or_default();
                let topic = String::from_utf8_lossy(&r.routing_key).into_owned();
                let m = Message::new(
                    String::from_utf8_lossy(&r.exchange).into_owned().into(),
                    super::mapping::topic_to_key(&topic).as_str().into(),
                    &props,
                    r.properties.clone(),
                    r.body.clone(),
                );
                topics.insert(topic, Arc::new(m));
                at += size;
            }
            Decoded::Torn | Decoded::Corrupt(_) => {
                tracing::warn!(
                    kept = topics.len(),
                    "a retained-message file is damaged; keeping what comes before"
                );
                break;
            }
        }
    }
    topics
}

fn save(path: &std::path::Path, topics: &Topics) -> io::Result<()> {
    let mut buf = BytesMut::new();
    for (i, (topic, m)) in topics.iter().enumerate() {
        record::encode(
            &mut buf,
            Meta {
                seq: i as u64,
                enqueued_ms: 0,
                tx: 0,
            },
            m.exchange.as_str().as_bytes(),
            topic.as_bytes(),
            &m.raw_properties,
            &m.body,
        );
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_data()?;
    drop(f);
    fs::rename(&tmp, path)?;
    crate::store::repl::replaced(path, &buf);
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::with_properties(
            "amq.topic".into(),
            "a.b".into(),
            Default::default(),
            Bytes::from_static(body),
        ))
    }

    #[test]
    fn retained_messages_survive_a_reopen_and_an_empty_publish_clears_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Retained::open(dir.path().to_path_buf()).expect("open");
        r.set("/", "home/kitchen/temp", Some(msg(b"21.5"))).expect("set");
        r.set("/", "home/hall/temp", Some(msg(b"19.0"))).expect("set");
        r.set("/", "home/hall/temp", None).expect("clear");
        let r = Retained::open(dir.path().to_path_buf()).expect("reopen");
        let got = r.matching("/", "home/+/temp");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].0.as_str(), &got[0].1.body[..]),
            ("home/kitchen/temp", &b"21.5"[..])
        );
        assert!(r.matching("other", "#").is_empty());
    }

    #[test]
    fn a_damaged_file_keeps_what_comes_before_the_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Retained::open(dir.path().to_path_buf()).expect("open");
        r.set("/", "a", Some(msg(b"one"))).expect("set");
        r.set("/", "b", Some(msg(b"two"))).expect("set");
        let path = dir.path().join(crate::store::hex(b"/"));
        let mut data = fs::read(&path).expect("read");
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&path, data).expect("write");
        let r = Retained::open(dir.path().to_path_buf()).expect("reopen");
        assert_eq!(r.matching("/", "#").len(), 1);
    }
}
