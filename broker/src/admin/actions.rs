//! Operator actions on messages: delete by id, publish. (Moves and redrives are background tasks: `moves`.)

use std::collections::HashSet;
use std::sync::Arc;

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use axum::extract::{Path, State};
use axum::Json;
use base64::Engine;
use warren_shared::{DeleteMessages, DeleteResult, PublishRequest, PublishResult};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{AdminState, ApiResult, Body, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::message::Message;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/queues/{vhost}/{name}/delete",
            post_with(delete_messages, |o| o.summary("Delete ready messages by id")),
        )
        .api_route(
            "/api/exchanges/{vhost}/{name}/publish",
            post_with(publish, |o| {
                o.summary("Publish a message (the default exchange is amq.default)")
            }),
        )
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
    super::queues::refuse_stream(&q, &v, &name, "deleting messages")?;
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
    q.record_purged(&taken);
    let deleted = taken.len() as u64;
    audit(&b, &caller, "delete_messages", &v, &name, deleted);
    let undo = super::undo::keep(&b, &caller, &v, &name, "delete", taken);
    Ok(Json(DeleteResult { deleted, undo }))
}

/// RabbitMQ's `properties` object of a publish: `delivery_mode`, `priority`, the string properties, and
/// `headers` (strings, whole numbers, booleans).
pub(super) fn rabbit_properties(
    mut props: AMQPProperties,
    given: &serde_json::Map<String, serde_json::Value>,
    headers: &mut FieldTable,
) -> Result<AMQPProperties, Error> {
    use serde_json::Value;
    let text = |k: &str, v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::bad_request(format!("property '{k}' must be a string")))
    };
    let number = |k: &str, v: &Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| Error::bad_request(format!("property '{k}' must be a number from 0 to 255")))
    };
    for (k, v) in given {
        props = match k.as_str() {
            "delivery_mode" => props.with_delivery_mode(number(k, v)?),
            "priority" => props.with_priority(number(k, v)?),
            "message_id" => props.with_message_id(text(k, v)?.into()),
            "correlation_id" => props.with_correlation_id(text(k, v)?.into()),
            "content_type" => props.with_content_type(text(k, v)?.into()),
            "content_encoding" => props.with_content_encoding(text(k, v)?.into()),
            "reply_to" => props.with_reply_to(text(k, v)?.into()),
            "expiration" => props.with_expiration(text(k, v)?.into()),
            "type" => props.with_type(text(k, v)?.into()),
            "app_id" => props.with_app_id(text(k, v)?.into()),
            "user_id" => props.with_user_id(text(k, v)?.into()),
            "headers" => {
                let Some(map) = v.as_object() else {
                    return Err(Error::bad_request("property 'headers' must be an object"));
                };
                for (hk, hv) in super::resources::arguments(map)?.inner() {
                    headers.insert(hk.clone(), hv.clone());
                }
                props
            }
            other => return Err(Error::bad_request(format!("unknown message property '{other}'"))),
        };
    }
    Ok(props)
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
        "utf8" | "string" => req.payload.into_bytes(),
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
    let mut headers = FieldTable::default();
    for (k, val) in req.headers {
        headers.insert(k.into(), AMQPValue::LongString(LongString::from(val.as_str())));
    }
    props = rabbit_properties(props, &req.properties, &mut headers)?;
    if !headers.inner().is_empty() {
        props = props.with_headers(headers);
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
    let traced = vh.trace.any() && vh.trace_publish(0, &caller.user, &message, &queues);
    if traced && queues.is_empty() {
        let event = crate::trace::TraceEvent::Unroutable { returned: false };
        vh.trace.journal.record_message(&v, &message, event);
    }
    let mut routed = false;
    for q in queues {
        routed |= q.publish(message.clone()).routed;
    }
    audit(&b, &caller, "publish", &v, &name, 1);
    Ok(Json(PublishResult { routed }))
}
