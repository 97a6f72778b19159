//! `POST /api/queues/{vhost}/{name}/get`: RabbitMQ's "get messages", with its body (`count`, `ackmode`, `encoding`,
//! `truncate`) and answer (`payload`, `payload_bytes`, `payload_encoding`, `redelivered`, `exchange`,
//! `routing_key`, `message_count`, `properties`).
//!
//! `ack_requeue_true` and `reject_requeue_true` look without consuming (Warren has a real peek): the messages keep
//! their place and their redelivered flag. `ack_requeue_false` and `reject_requeue_false` remove them (a rejected
//! message is not dead-lettered here; use a move to a dead-letter queue for that). Needs `read` on the queue.

use std::collections::HashSet;
use std::sync::Arc;

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use schemars::JsonSchema;
use serde::Deserialize;
use warren_shared::management::GotMessage;

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{json, AdminState, Body, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/queues/{vhost}/{name}/get",
        post_with(get, |o| {
            o.summary("Get messages, as RabbitMQ does (ack_requeue_true only looks, without consuming)")
        }),
    )
}

/// The most messages one request returns.
const MAX_COUNT: u64 = 1000;

#[derive(Deserialize, JsonSchema)]
struct GetRequest {
    /// How many messages, 1 to 1000 (a number, or a string as rabbitmqadmin sends it).
    #[serde(deserialize_with = "warren_shared::loose::u64")]
    count: u64,
    /// `ack_requeue_true`, `reject_requeue_true` (look), `ack_requeue_false` or `reject_requeue_false` (take).
    ackmode: String,
    /// `auto` (text when the body is UTF-8) or `base64`.
    #[serde(default = "auto")]
    encoding: String,
    /// Show at most this many bytes of each body.
    #[serde(default, deserialize_with = "optional_u64")]
    truncate: Option<u64>,
}

fn auto() -> String {
    "auto".into()
}

fn optional_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    warren_shared::loose::u64(d).map(Some)
}

async fn get(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<GetRequest>,
) -> Result<Json<Vec<GotMessage>>, Error> {
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
    let consume = match req.ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => false,
        "ack_requeue_false" | "reject_requeue_false" => true,
        other => {
            return Err(Error::bad_request(format!(
                "ackmode must be ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false, \
                 not '{other}'"
            )))
        }
    };
    if !matches!(req.encoding.as_str(), "auto" | "base64") {
        return Err(Error::bad_request(format!(
            "encoding must be auto or base64, not '{}'",
            req.encoding
        )));
    }
    if req.count == 0 || req.count > MAX_COUNT {
        return Err(Error::bad_request(format!("count must be between 1 and {MAX_COUNT}")));
    }
    let q = vhost(&b, &v)?
        .queue(&name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    super::queues::refuse_stream(&q, &v, &name, "get")?;
    let count = req.count as usize;
    // Reading a disk-backed queue's head may touch files: not on an async worker.
    let q2 = q.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let entries = q2.peek(0, count);
        if consume {
            let ids: HashSet<u64> = entries.iter().map(|e| e.seq).collect();
            let taken = q2.take(Some(&ids));
            q2.settle_moved(taken.iter());
        }
        entries
    })
    .await
    .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut left = q.depth().0;
    let out: Vec<GotMessage> = entries
        .iter()
        .map(|e| {
            let m = &e.message;
            let bytes = &m.body[..];
            let shown = &bytes[..req.truncate.map_or(bytes.len(), |t| bytes.len().min(t as usize))];
            let (encoding, payload) = match std::str::from_utf8(shown) {
                Ok(t) if req.encoding == "auto" => ("string", t.to_string()),
                _ => ("base64", base64::engine::general_purpose::STANDARD.encode(shown)),
            };
            if !consume {
                left = left.saturating_sub(1);
            }
            GotMessage {
                payload_bytes: bytes.len() as u64,
                redelivered: e.redelivered,
                exchange: m.exchange.to_string(),
                routing_key: m.routing_key.to_string(),
                message_count: left,
                properties: json::properties(&m.properties()),
                payload,
                payload_encoding: encoding.into(),
            }
        })
        .collect();
    if consume {
        audit(&b, &caller, "get", &v, &name, out.len() as u64);
    }
    Ok(Json(out))
}
