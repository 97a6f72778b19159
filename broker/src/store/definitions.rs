//! Durable definitions: each vhost's durable exchanges, queues and bindings, kept in `definitions.json`.
//!
//! The file is a snapshot, rewritten whole on every change to durable topology (write to a temp file, fsync,
//! rename, fsync the directory), so it is always either the old or the new version, never a mix. Definitions
//! change rarely; messages never go through here.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use amq_protocol::types::FieldTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub vhosts: BTreeMap<String, VHostDefinitions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VHostDefinitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    /// Policies set through the admin API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub name: String,
    pub pattern: String,
    pub priority: i64,
    pub definition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub destination: String,
    /// true: `destination` is a queue; false: an exchange.
    pub to_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// Owns `definitions.json` and the last snapshot written.
pub struct DefinitionsFile {
    path: PathBuf,
    current: Mutex<Definitions>,
}

impl DefinitionsFile {
    /// Loads the file (an absent file is an empty set of definitions).
    pub fn open(root: &Path) -> io::Result<(Self, Definitions)> {
        let path = root.join("definitions.json");
        let defs = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not valid: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Definitions::default(),
            Err(e) => return Err(e),
        };
        Ok((
            DefinitionsFile {
                path,
                current: Mutex::new(defs.clone()),
            },
            defs,
        ))
    }

    /// Replaces one vhost's definitions, writing the file if anything changed.
    pub fn update(&self, vhost: &str, defs: VHostDefinitions) -> io::Result<()> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.vhosts.get(vhost) == Some(&defs) {
            return Ok(());
        }
        let mut next = current.clone();
        next.vhosts.insert(vhost.to_string(), defs);
        write_atomically(&self.path, &serde_json::to_vec_pretty(&next).map_err(io::Error::other)?)?;
        // Only what is on disk counts as current: after a failed write the next update tries again.
        *current = next;
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::AMQPValue;

    #[test]
    fn roundtrip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (file, defs) = DefinitionsFile::open(dir.path()).expect("open");
        assert_eq!(defs, Definitions::default());
        let mut args = FieldTable::default();
        args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
        let v = VHostDefinitions {
            exchanges: vec![ExchangeDef {
                name: "x".into(),
                kind: "topic".into(),
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            }],
            queues: vec![QueueDef {
                name: "q".into(),
                arguments: args,
            }],
            bindings: vec![BindingDef {
                source: "x".into(),
                destination: "q".into(),
                to_queue: true,
                routing_key: "a.#".into(),
                arguments: FieldTable::default(),
            }],
            policies: vec![PolicyDef {
                name: "cap".into(),
                pattern: "^orders".into(),
                priority: 1,
                definition: serde_json::json!({"max-length": 10})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            }],
        };
        file.update("/", v.clone()).expect("update");
        let (_, again) = DefinitionsFile::open(dir.path()).expect("reopen");
        assert_eq!(again.vhosts.get("/"), Some(&v));
    }
}
