//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`, `/v3/lease/grant`,
//! `/v3/lease/keepalive`, `/v3/lease/revoke`), which every etcd since 3.4 serves on its client port. It does what
//! the election needs and nothing more: leases, a create-if-absent transaction, reads and deletes.
//!
//! Why not the `etcd-client` crate: it generates its gRPC code at build time with `protoc`, which a fresh machine
//! does not have, and the README promises a build with nothing but cargo. The gateway speaks the same API (keys and
//! values base64, 64-bit numbers as strings) through reqwest, which the broker already links for OTLP.
//!
//! Endpoints are tried in order; the first that answers is used for the call. Every call has a timeout, so a
//! partitioned etcd is an error after at most [`CALL_TIMEOUT`], never a hang.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// How long one call to etcd may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd is unreachable at {endpoints}: {last}")]
    Unreachable { endpoints: String, last: String },
    #[error("etcd answered {0}")]
    Refused(String),
}

/// A key as etcd returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision that created the key (a leader key's term).
    pub create_revision: i64,
    /// The lease it is attached to (0: none).
    pub lease: i64,
}

#[derive(Clone)]
pub struct Etcd {
    http: reqwest::Client,
    /// `http://host:port`, as given.
    endpoints: Vec<String>,
}

/// A 64-bit number of the gateway's JSON: a string, or a number, or absent (proto3 leaves zeros out).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn key_value(v: &Value) -> KeyValue {
    let bytes = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default()
    };
    KeyValue {
        key: bytes("key"),
        value: bytes("value"),
        create_revision: v.get("create_revision").map(int).unwrap_or(0),
        lease: v.get("lease").map(int).unwrap_or(0),
    }
}

impl Etcd {
    pub fn new(endpoints: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Etcd { http, endpoints }
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut last = String::from("no endpoints");
        for e in &self.endpoints {
            let answer = self.http.post(format!("{e}{path}")).json(&body).send().await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    return r
                        .json::<Value>()
                        .await
                        .map_err(|err| EtcdError::Refused(err.to_string()));
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(EtcdError::Refused(format!(
                        "{status}: {}",
                        text.chars().take(200).collect::<String>()
                    )));
                }
                Err(err) => last = err.to_string(),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.join(","),
            last,
        })
    }

    /// A lease of `ttl` seconds: its id.
    pub async fn grant(&self, ttl_s: u64) -> Result<i64, EtcdError> {
        let r = self
            .call("/v3/lease/grant", json!({ "TTL": ttl_s.to_string() }))
            .await?;
        match r.get("ID").map(int) {
            Some(id) if id != 0 => Ok(id),
            _ => Err(EtcdError::Refused(format!("no lease in {r}"))),
        }
    }

    /// Renews a lease: the seconds it has left, 0 when it had already expired.
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let r = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(r.get("result").and_then(|x| x.get("TTL")).map(int).unwrap_or(0))
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let r = self.call("/v3/kv/range", json!({ "key": b64(key.as_bytes()) })).await?;
        Ok(r.get("kvs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map(key_value))
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, EtcdError> {
        // The range end of a prefix: its last byte plus one.
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last = last.saturating_add(1);
        }
        let r = self
            .call(
                "/v3/kv/range",
                json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&end) }),
            )
            .await?;
        Ok(r.get("kvs")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(key_value).collect())
            .unwrap_or_default())
    }

    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        self.call(
            "/v3/kv/put",
            json!({ "key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string() }),
        )
        .await?;
        Ok(())
    }

    /// Creates `key` with `value` on `lease` if no one holds it: `Ok(revision)` when this call created it (the
    /// revision is then its create revision), `Err(holder)` with what is there otherwise.
    pub async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<Result<i64, Option<KeyValue>>, EtcdError> {
        let k = b64(key.as_bytes());
        let r = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{ "target": "CREATE", "key": k, "create_revision": "0" }],
                    "success": [{ "request_put": { "key": k, "value": b64(value), "lease": lease.to_string() } }],
                    "failure": [{ "request_range": { "key": k } }],
                }),
            )
            .await?;
        if r.get("succeeded").and_then(Value::as_bool) == Some(true) {
            return Ok(Ok(r
                .get("header")
                .and_then(|h| h.get("revision"))
                .map(int)
                .unwrap_or(0)));
        }
        let holder = r
            .get("responses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|x| x.get("response_range"))
            .and_then(|x| x.get("kvs"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map(key_value);
        Ok(Err(holder))
    }

    /// Puts `key` (on no lease) only while `guard` is still the key created at `create_revision`: a leader's write,
    /// fenced on its own term, so that a deposed leader can never change what only the leader may.
    pub async fn put_if_created_at(
        &self,
        key: &str,
        value: &[u8],
        guard: &str,
        create_revision: i64,
    ) -> Result<bool, EtcdError> {
        let r = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{ "target": "CREATE", "key": b64(guard.as_bytes()), "create_revision": create_revision.to_string() }],
                    "success": [{ "request_put": { "key": b64(key.as_bytes()), "value": b64(value) } }],
                }),
            )
            .await?;
        Ok(r.get("succeeded").and_then(Value::as_bool) == Some(true))
    }

    /// Deletes `key` if it is still the one created at `create_revision` (a leader resigning its own term only).
    pub async fn delete_if_created_at(&self, key: &str, create_revision: i64) -> Result<bool, EtcdError> {
        let k = b64(key.as_bytes());
        let r = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{ "target": "CREATE", "key": k, "create_revision": create_revision.to_string() }],
                    "success": [{ "request_delete_range": { "key": k } }],
                }),
            )
            .await?;
        Ok(r.get("succeeded").and_then(Value::as_bool) == Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_numbers_and_key_values_are_read_as_etcd_writes_them() {
        assert_eq!(int(&json!("7587899281401987591")), 7587899281401987591);
        assert_eq!(int(&json!(5)), 5);
        assert_eq!(int(&json!(null)), 0);
        let kv = key_value(&json!({
            "key": "L3cvbGVhZGVy", "create_revision": "2", "mod_revision": "2", "version": "1",
            "value": "bm9kZTE=", "lease": "7587899281401987591"
        }));
        assert_eq!(kv.key, b"/w/leader");
        assert_eq!(kv.value, b"node1");
        assert_eq!((kv.create_revision, kv.lease), (2, 7587899281401987591));
    }
}
