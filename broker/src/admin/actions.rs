//! Operator actions on messages: delete by id, publish. (Moves and redrives are background tasks: `moves`.)

use std::collections::HashSet;
use std::sync::Arc;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use warren_shared::{DeleteMessages, DeleteResult, PublishRequest, PublishResult};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{AdminState, ApiResult, Body, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::message::Message;

pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/api/queues/{vhost}/{name}/delete", post(delete_messages))
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
}

async fn delete_messages(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<DeleteMessages>,
) -> ApiResult<DeleteResult> {
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
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
    q.settle_moved(taken.iter());
    audit(&b, &caller, "delete_messages", &v, &name, taken.len() as u64);
    Ok(Json(DeleteResult {
        deleted: taken.len() as u64,
    }))
}

async fn publish(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<PublishRequest>,
) -> ApiResult<PublishResult> {
    caller.check(&b, &v, Perm::Write, Kind::Exchange, &name)?;
    let vh = vhost(&b, &v)?;
    let exchange = if name == "amq.default" {
        String::new()
    } else {
        name.clone()
    };
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
    audit(&b, &caller, "publish", &v, &name, 1);
    Ok(Json(PublishResult { routed }))
}
