//! Queues: list and detail, peek (look without consuming), purge.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use warren_shared::{
    LatencySummary, PeekRequest, PeekedMessage, PurgeResult, QueueCounters, QueueInfo, QueueRates, Rate,
};

use super::{json, ApiResult, Error};
use crate::broker::Broker;
use crate::queue::{Queue, QueueStats};
use crate::vhost::VHost;

pub fn router() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/queues", get(all))
        .route("/api/queues/{vhost}", get(in_vhost))
        .route("/api/queues/{vhost}/{name}", get(one))
        .route("/api/queues/{vhost}/{name}/peek", post(peek))
        .route("/api/queues/{vhost}/{name}/contents", delete(purge))
}

pub fn info(q: &Queue) -> QueueInfo {
    let (ready, bytes) = q.depth();
    let s = &q.stats;
    let unacked = QueueStats::get(&s.unacked);
    // One lock for both summaries (a second lock taken in the same expression would deadlock).
    let (latency_deliver, latency_ack) = {
        let l = q.latency.lock().unwrap_or_else(|e| e.into_inner());
        (latency(&l.deliver), latency(&l.ack))
    };
    QueueInfo {
        vhost: q.spec.vhost.clone(),
        name: q.spec.name.clone(),
        durable: q.spec.durable,
        exclusive: q.spec.exclusive_owner.is_some(),
        auto_delete: q.spec.auto_delete,
        arguments: json::table(&q.spec.arguments),
        policy: q.spec.policy.as_ref().map(|p| p.name.clone()),
        messages_ready: ready,
        messages_unacked: unacked,
        messages: ready + unacked,
        message_bytes: bytes,
        consumers: q.consumer_count() as u64,
        counters: QueueCounters {
            published: QueueStats::get(&s.published),
            delivered: QueueStats::get(&s.delivered),
            acked: QueueStats::get(&s.acked),
            redelivered: QueueStats::get(&s.redelivered),
            rejected: QueueStats::get(&s.rejected),
            dead_lettered: QueueStats::get(&s.dead_lettered),
            expired: QueueStats::get(&s.expired),
            dropped: QueueStats::get(&s.dropped),
        },
        rates: rates(q),
        time_behind_ms: q.time_behind_ms(),
        latency_deliver,
        latency_ack,
        dead_letter_exchange: q.limits.dead_letter_exchange.clone(),
        dead_letter_routing_key: q.limits.dead_letter_routing_key.clone(),
    }
}

/// A queue's rates over 1, 10 and 60 s.
pub fn rates(q: &Queue) -> QueueRates {
    let w = q.rates.lock().unwrap_or_else(|e| e.into_inner());
    let r = |i| Rate {
        last_1s: w.rate(i, 1),
        last_10s: w.rate(i, 10),
        last_60s: w.rate(i, 60),
    };
    QueueRates {
        publish: r(0),
        deliver: r(1),
        ack: r(2),
        redeliver: r(3),
        reject: r(4),
        dead_lettered: r(5),
        expired: r(6),
        dropped: r(7),
    }
}

fn latency(w: &crate::queue::latency::Window) -> LatencySummary {
    let s = w.summary();
    LatencySummary {
        count: s.count,
        p50: s.p50,
        p90: s.p90,
        p99: s.p99,
        p999: s.p999,
        max: s.max,
        buckets: s.buckets,
    }
}

fn sorted(mut v: Vec<QueueInfo>) -> Vec<QueueInfo> {
    v.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    v
}

pub fn vhost(b: &Broker, name: &str) -> Result<Arc<VHost>, Error> {
    b.vhost(name)
        .ok_or_else(|| Error::not_found(format!("no vhost '{name}'")))
}

fn queue(b: &Broker, vhost_name: &str, name: &str) -> Result<Arc<Queue>, Error> {
    vhost(b, vhost_name)?
        .queue(name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{vhost_name}'")))
}

/// Every queue of every vhost, sorted.
pub fn all_infos(b: &Broker) -> Vec<QueueInfo> {
    sorted(b.vhosts().iter().flat_map(|v| v.queues()).map(|q| info(&q)).collect())
}

async fn all(State(b): State<Arc<Broker>>) -> ApiResult<Vec<QueueInfo>> {
    Ok(Json(all_infos(&b)))
}

async fn in_vhost(State(b): State<Arc<Broker>>, Path(v): Path<String>) -> ApiResult<Vec<QueueInfo>> {
    Ok(Json(sorted(vhost(&b, &v)?.queues().iter().map(|q| info(q)).collect())))
}

async fn one(State(b): State<Arc<Broker>>, Path((v, name)): Path<(String, String)>) -> ApiResult<QueueInfo> {
    let q = queue(&b, &v, &name)?;
    Ok(Json(info(&q)))
}

async fn peek(
    State(b): State<Arc<Broker>>,
    Path((v, name)): Path<(String, String)>,
    body: Option<Json<PeekRequest>>,
) -> ApiResult<Vec<PeekedMessage>> {
    let req = body.map(|Json(r)| r).unwrap_or_default();
    let count = req.count.unwrap_or(50);
    if count == 0 || count > 1000 {
        return Err(Error::bad_request("count must be between 1 and 1000"));
    }
    let q = queue(&b, &v, &name)?;
    let filtered = req.header.is_some() || req.property.is_some() || req.body_contains.is_some();
    let entries = if filtered {
        let props_json = |e: &crate::queue::Entry| json::properties(&e.message.properties());
        let matches = |e: &crate::queue::Entry| {
            if let Some(needle) = &req.body_contains {
                if !e
                    .message
                    .body
                    .windows(needle.len().max(1))
                    .any(|w| w == needle.as_bytes())
                {
                    return false;
                }
            }
            if req.header.is_none() && req.property.is_none() {
                return true;
            }
            let p = props_json(e);
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let Some(h) = &req.header {
                match p.get("headers").and_then(|hs| hs.get(h)) {
                    Some(v) if req.header_value.as_ref().is_none_or(|want| &text(v) == want) => {}
                    _ => return false,
                }
            }
            if let Some(name) = &req.property {
                match p.get(name) {
                    Some(v) if req.property_value.as_ref().is_none_or(|want| &text(v) == want) => {}
                    _ => return false,
                }
            }
            true
        };
        q.peek_matching(req.from as usize, count as usize, &matches)
    } else {
        q.peek(req.from as usize, count as usize)
    };
    Ok(Json(
        entries
            .into_iter()
            .map(|e| {
                let m = &e.message;
                let (body_encoding, body) = match std::str::from_utf8(&m.body) {
                    Ok(t) => ("utf8", t.to_string()),
                    Err(_) => ("base64", base64::engine::general_purpose::STANDARD.encode(&m.body)),
                };
                PeekedMessage {
                    id: e.seq,
                    exchange: m.exchange.to_string(),
                    routing_key: m.routing_key.to_string(),
                    redelivered: e.redelivered,
                    priority: m.priority,
                    size: m.size() as u64,
                    persistent: m.persistent,
                    properties: json::properties(&m.properties()),
                    body_encoding: body_encoding.into(),
                    body,
                }
            })
            .collect(),
    ))
}

async fn purge(State(b): State<Arc<Broker>>, Path((v, name)): Path<(String, String)>) -> ApiResult<PurgeResult> {
    Ok(Json(PurgeResult {
        purged: queue(&b, &v, &name)?.purge() as u64,
    }))
}
