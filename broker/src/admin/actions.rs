//! Operator actions on messages: move (redrive dead letters), delete by id, publish.
//!
//! A move writes each message at its destination first — and, for persistent messages on durable queues, waits for
//! the group commit that makes it durable — and only then removes it from the source. A crash in between leaves the
//! message in both places (at-least-once: it may be duplicated, never lost); it carries an `x-redriven` count so a
//! duplicate can be recognised.

use std::collections::HashSet;
use std::sync::Arc;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use warren_shared::{DeleteMessages, DeleteResult, MoveRequest, MoveResult, PublishRequest, PublishResult};

use super::queues::vhost;
use super::{ApiResult, Body, Error};
use crate::args;
use crate::broker::Broker;
use crate::message::Message;
use crate::queue::dead_letter::encode_properties;
use crate::queue::Entry;

pub fn router() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/queues/{vhost}/{name}/move", post(move_messages))
        .route("/api/queues/{vhost}/{name}/delete", post(delete_messages))
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
}

/// Where a dead letter came from: the queue of its newest `x-death` entry.
fn source_queue(props: &AMQPProperties) -> Option<String> {
    let headers = props.headers().as_ref()?;
    if let Some(AMQPValue::FieldArray(a)) = headers.inner().get("x-death") {
        if let Some(AMQPValue::FieldTable(t)) = a.as_slice().first() {
            if let Some(q) = args::get_str(t, "queue") {
                return Some(q.to_string());
            }
        }
    }
    args::get_str(headers, "x-first-death-queue").map(str::to_string)
}

/// The message as it will be republished: same body and properties (x-death kept), `x-redriven` counted up.
fn redriven(m: &Message, exchange: &str, routing_key: &str) -> (Message, AMQPProperties) {
    let props = m.properties();
    let mut headers = props.headers().clone().unwrap_or_default();
    let n = args::get_i64(&headers, "x-redriven").unwrap_or(0) + 1;
    headers.insert("x-redriven".into(), AMQPValue::LongLongInt(n));
    let props = props.with_headers(headers);
    let raw = encode_properties(&props);
    (
        Message::new(exchange.into(), routing_key.into(), &props, raw, m.body.clone()),
        props,
    )
}

async fn move_messages(
    State(b): State<Arc<Broker>>,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<MoveRequest>,
) -> ApiResult<MoveResult> {
    let vh = vhost(&b, &v)?;
    let source = vh
        .queue(&name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    match req.to.as_str() {
        "source" => {}
        "queue" if req.queue.is_some() => {}
        "exchange" if req.exchange.is_some() => {}
        _ => {
            return Err(Error::bad_request(
                "'to' must be \"source\", \"queue\" (with \"queue\") or \"exchange\" (with \"exchange\")",
            ))
        }
    }
    if let Some(x) = &req.exchange {
        if !vh.has_exchange(x) {
            return Err(Error::not_found(format!("no exchange '{x}' in vhost '{v}'")));
        }
    }
    if let Some(q) = &req.queue {
        if vh.queue(q).is_none() {
            return Err(Error::not_found(format!("no queue '{q}' in vhost '{v}'")));
        }
    }
    let ids: Option<HashSet<u64>> = req.ids.as_ref().map(|v| v.iter().copied().collect());
    let taken = source.take(ids.as_ref());
    let (mut moved, mut kept): (Vec<Entry>, Vec<Entry>) = (Vec::new(), Vec::new());
    let mut ticket = 0;
    let mut failed = false;
    for e in taken {
        let props = e.message.properties();
        let target: Option<(String, String)> = match req.to.as_str() {
            "source" => source_queue(&props).map(|q| (String::new(), q)),
            "queue" => req.queue.clone().map(|q| (String::new(), q)),
            _ => req.exchange.clone().map(|x| {
                (
                    x,
                    req.routing_key
                        .clone()
                        .unwrap_or_else(|| e.message.routing_key.to_string()),
                )
            }),
        };
        let Some((exchange, routing_key)) = target else {
            kept.push(e);
            continue;
        };
        let (message, props) = redriven(&e.message, &exchange, &routing_key);
        let message = Arc::new(message);
        let mut queues = Vec::new();
        if exchange.is_empty() {
            queues.extend(vh.queue(&routing_key));
        } else if vh
            .route(&exchange, &routing_key, props.headers().as_ref(), None, &mut queues)
            .is_err()
        {
            kept.push(e);
            continue;
        }
        if queues.is_empty() {
            kept.push(e);
            continue;
        }
        for q in &queues {
            let p = q.publish(message.clone());
            ticket = ticket.max(p.ticket);
            failed |= p.failed;
        }
        moved.push(e);
    }
    // Durable at the destination before gone from the source.
    if ticket > 0 {
        let mut rx = b.store.syncer.subscribe();
        loop {
            if let Some(ok) = rx.borrow_and_update().outcome(ticket) {
                failed |= !ok;
                break;
            }
            if rx.changed().await.is_err() {
                failed = true;
                break;
            }
        }
    }
    if failed {
        // Not known to be stored at the destination: keep them in the source too.
        source.put_back(moved);
        source.put_back(kept);
        return Err(Error::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            "the destination could not store the messages; they stay in the source (copies may exist at the destination)",
        ));
    }
    let result = MoveResult {
        moved: moved.len() as u64,
        not_moved: kept.len() as u64,
    };
    source.settle(moved.iter());
    source.put_back(kept);
    Ok(Json(result))
}

async fn delete_messages(
    State(b): State<Arc<Broker>>,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<DeleteMessages>,
) -> ApiResult<DeleteResult> {
    let q = vhost(&b, &v)?
        .queue(&name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    let ids: HashSet<u64> = req.ids.iter().copied().collect();
    let taken = q.take(Some(&ids));
    if taken.len() < ids.len() && taken.is_empty() {
        return Err(Error::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            "none of these messages is ready in the queue (already consumed?)",
        ));
    }
    q.settle(taken.iter());
    Ok(Json(DeleteResult {
        deleted: taken.len() as u64,
    }))
}

async fn publish(
    State(b): State<Arc<Broker>>,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<PublishRequest>,
) -> ApiResult<PublishResult> {
    let vh = vhost(&b, &v)?;
    let exchange = if name == "amq.default" { String::new() } else { name };
    let body = match req.payload_encoding.as_deref().unwrap_or("utf8") {
        "utf8" => req.payload.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(req.payload.as_bytes())
            .map_err(|e| Error::bad_request(format!("payload is not base64: {e}")))?,
        other => return Err(Error::bad_request(format!("unknown payload_encoding '{other}'"))),
    };
    let mut props = AMQPProperties::default().with_delivery_mode(if req.persistent { 2 } else { 1 });
    if let Some(p) = req.priority {
        props = props.with_priority(p);
    }
    if let Some(id) = req.message_id {
        props = props.with_message_id(id.into());
    }
    if !req.headers.is_empty() {
        let mut h = FieldTable::default();
        for (k, val) in req.headers {
            h.insert(k.into(), AMQPValue::LongString(LongString::from(val.as_str())));
        }
        props = props.with_headers(h);
    }
    let message = Message::with_properties(
        exchange.clone().into(),
        req.routing_key.clone().into(),
        props.clone(),
        body.into(),
    );
    let mut queues = Vec::new();
    vh.route(
        &exchange,
        &req.routing_key,
        props.headers().as_ref(),
        Some(&message),
        &mut queues,
    )
    .map_err(|e| Error::not_found(e.text))?;
    let message = Arc::new(message);
    let mut routed = false;
    for q in queues {
        routed |= q.publish(message.clone()).routed;
    }
    Ok(Json(PublishResult { routed }))
}
