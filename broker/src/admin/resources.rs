//! Creating and deleting queues, exchanges and bindings through the API (the same rules as over AMQP: reserved
//! names, equivalence, exclusivity), and changing message priorities. A change the broker could not store (AMQP's
//! 541) is a 500 `store_failed` and was not made.

use std::collections::HashSet;
use std::sync::Arc;

use aide::axum::routing::{post_with, put_with};
use aide::axum::ApiRouter;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use warren_shared::{
    BindingRequest, Done, ExchangeRequest, PriorityRequest, PriorityResult, QueueDeleted, QueueInfo, QueueRequest,
};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{AdminState, ApiResult, Body, Error};
use crate::amqp::error::AmqpError;
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::routing::{Binding, Destination};
use crate::vhost::{ExchangeDeclare, QueueDeclare};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/queues/{vhost}/{name}",
            put_with(put_queue, |o| {
                o.summary("Declare a queue (201 with the queue when new, 204 when it existed, as RabbitMQ)")
                    .response_with::<201, Json<QueueInfo>, _>(|r| r.description("Declared"))
                    .response_with::<204, (), _>(|r| r.description("It existed already"))
            })
            .delete_with(delete_queue, |o| o.summary("Delete a queue and its messages")),
        )
        .api_route(
            "/api/exchanges/{vhost}/{name}",
            put_with(put_exchange, |o| {
                o.summary("Declare an exchange (201 when new, 204 when it existed, as RabbitMQ)")
                    .response_with::<201, Json<Done>, _>(|r| r.description("Declared"))
                    .response_with::<204, (), _>(|r| r.description("It existed already"))
            })
            .delete_with(delete_exchange, |o| o.summary("Delete an exchange")),
        )
        .api_route(
            "/api/bindings/{vhost}",
            post_with(bind, |o| o.summary("Bind")).delete_with(unbind, |o| o.summary("Unbind")),
        )
        .api_route(
            "/api/queues/{vhost}/{name}/priority",
            post_with(set_priority, |o| o.summary("Change the priority of ready messages")),
        )
}

/// The connection id the API acts as (no AMQP connection has it).
pub(super) const API_CONNECTION: u64 = 0;

pub(super) fn amqp(e: AmqpError) -> Error {
    let status = match e.code {
        404 => StatusCode::NOT_FOUND,
        403 | 405 => StatusCode::FORBIDDEN,
        406 => StatusCode::CONFLICT,
        crate::amqp::error::INTERNAL_ERROR => {
            return Error::new(StatusCode::INTERNAL_SERVER_ERROR, "store_failed", e.text);
        }
        _ => StatusCode::BAD_REQUEST,
    };
    Error::new(status, "rejected", e.text)
}

pub(super) fn arguments(json: &serde_json::Map<String, serde_json::Value>) -> Result<FieldTable, Error> {
    let mut t = FieldTable::default();
    for (k, v) in json {
        let value = match v {
            serde_json::Value::Bool(b) => AMQPValue::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => AMQPValue::LongLongInt(i),
                None => return Err(Error::bad_request(format!("argument '{k}' must be an integer"))),
            },
            serde_json::Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            _ => {
                return Err(Error::bad_request(format!(
                    "argument '{k}' must be a string, integer or boolean"
                )))
            }
        };
        t.insert(k.as_str().into(), value);
    }
    Ok(t)
}

async fn put_queue(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(body): Body<QueueRequest>,
) -> Result<axum::response::Response, Error> {
    let args = arguments(&body.arguments)?;
    caller.check(&b, &v, Perm::Configure, Kind::Queue, &name)?;
    if let Some(dlx) = crate::args::get_str(&args, "x-dead-letter-exchange") {
        caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
        caller.check(&b, &v, Perm::Write, Kind::Exchange, dlx)?;
    }
    let vh = vhost(&b, &v)?;
    let existed = vh.queue(&name).is_some();
    let q = vh
        .declare_queue(&QueueDeclare {
            name: &name,
            passive: false,
            durable: body.durable,
            exclusive: false,
            auto_delete: body.auto_delete,
            arguments: &args,
            connection_id: API_CONNECTION,
        })
        .map_err(amqp)?;
    Ok(created(existed, Json(super::queues::info(&q, Vec::new()))))
}

async fn delete_queue(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<QueueDeleted> {
    caller.check(&b, &v, Perm::Configure, Kind::Queue, &name)?;
    let vh = vhost(&b, &v)?;
    if vh.queue(&name).is_none() {
        return Err(Error::not_found(format!("no queue '{name}' in vhost '{v}'")));
    }
    let dropped = vh.delete_queue(&name, false, false, API_CONNECTION).map_err(amqp)?;
    audit(&b, &caller, "delete_queue", &v, &name, dropped as u64);
    Ok(Json(QueueDeleted {
        deleted: true,
        messages: dropped as u64,
    }))
}

async fn put_exchange(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(body): Body<ExchangeRequest>,
) -> Result<axum::response::Response, Error> {
    let args = arguments(&body.arguments)?;
    caller.check(&b, &v, Perm::Configure, Kind::Exchange, &name)?;
    if let Some(ae) = crate::args::get_str(&args, "alternate-exchange") {
        caller.check(&b, &v, Perm::Read, Kind::Exchange, &name)?;
        caller.check(&b, &v, Perm::Write, Kind::Exchange, ae)?;
    }
    let vh = vhost(&b, &v)?;
    let existed = vh.has_exchange(&name);
    vh.declare_exchange(&ExchangeDeclare {
        name: &name,
        kind: &body.kind,
        passive: false,
        durable: body.durable,
        auto_delete: body.auto_delete,
        internal: body.internal,
        arguments: &args,
    })
    .map_err(amqp)?;
    Ok(created(existed, Json(Done { ok: true })))
}

/// RabbitMQ's answers to a declaring PUT: 201 (with the body) for something new, 204 when it existed.
fn created(existed: bool, body: impl axum::response::IntoResponse) -> axum::response::Response {
    use axum::response::IntoResponse;
    if existed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::CREATED, body).into_response()
    }
}

async fn delete_exchange(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<Done> {
    caller.check(&b, &v, Perm::Configure, Kind::Exchange, &name)?;
    let vh = vhost(&b, &v)?;
    if !vh.has_exchange(&name) {
        return Err(Error::not_found(format!("no exchange '{name}' in vhost '{v}'")));
    }
    vh.delete_exchange(&name, false).map_err(amqp)?;
    audit(&b, &caller, "delete_exchange", &v, &name, 0);
    Ok(Json(Done { ok: true }))
}

fn binding(body: &BindingRequest) -> Result<Binding, Error> {
    let destination = match body.destination_type.as_str() {
        "queue" => Destination::Queue(body.destination.clone()),
        "exchange" => Destination::Exchange(body.destination.clone()),
        other => {
            return Err(Error::bad_request(format!(
                "destination_type must be queue or exchange, not '{other}'"
            )))
        }
    };
    Ok(Binding {
        destination,
        routing_key: body.routing_key.clone(),
        arguments: arguments(&body.arguments)?,
    })
}

/// A binding needs `write` on its destination and `read` on its source.
fn check_binding(b: &Broker, caller: &Caller, v: &str, body: &BindingRequest) -> Result<(), Error> {
    let kind = if body.destination_type == "exchange" {
        Kind::Exchange
    } else {
        Kind::Queue
    };
    caller.check(b, v, Perm::Write, kind, &body.destination)?;
    caller.check(b, v, Perm::Read, Kind::Exchange, &body.source)
}

async fn bind(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(v): Path<String>,
    Body(body): Body<BindingRequest>,
) -> ApiResult<Done> {
    check_binding(&b, &caller, &v, &body)?;
    vhost(&b, &v)?.bind(&body.source, binding(&body)?).map_err(amqp)?;
    Ok(Json(Done { ok: true }))
}

async fn unbind(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(v): Path<String>,
    Body(body): Body<BindingRequest>,
) -> ApiResult<Done> {
    check_binding(&b, &caller, &v, &body)?;
    vhost(&b, &v)?.unbind(&body.source, &binding(&body)?).map_err(amqp)?;
    Ok(Json(Done { ok: true }))
}

async fn set_priority(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(body): Body<PriorityRequest>,
) -> ApiResult<PriorityResult> {
    // Reprioritising takes messages out and puts them back: read and write on the queue.
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
    caller.check(&b, &v, Perm::Write, Kind::Queue, &name)?;
    let q = vhost(&b, &v)?
        .queue(&name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    let (max, _) = crate::queue::Queue::store_settings(&q.spec);
    if max == 0 {
        return Err(Error::bad_request(format!("queue '{name}' has no x-max-priority")));
    }
    let change = match (body.set, body.step) {
        (Some(p), None) => crate::queue::PriorityChange::Set(p.min(max)),
        // Priorities are 0..=255, so a step beyond ±255 moves as far as ±255 does; saturating here keeps
        // `current + step` inside an i16 (a step near i16::MAX overflowed it: a panic after the messages were
        // taken out, or a wrap in release builds).
        (None, Some(s)) => crate::queue::PriorityChange::Step(s.clamp(-i16::from(u8::MAX), i16::from(u8::MAX))),
        _ => return Err(Error::bad_request("give exactly one of 'set' or 'step'")),
    };
    if body.ids.is_none() && body.filter.is_empty() {
        return Err(Error::bad_request("give the message 'ids' or a filter"));
    }
    // A filter reads the whole queue, and a change rewrites records: not on an async worker.
    let (q2, ids, message_filter) = (q.clone(), body.ids.clone(), body.filter.clone());
    let changed = tokio::task::spawn_blocking(move || {
        let ids: HashSet<u64> = match ids {
            Some(ids) => ids.into_iter().collect(),
            None => q2
                .matching_ids(&super::filter::matcher(&message_filter))
                .into_iter()
                .collect(),
        };
        q2.change_priority(&ids, change, max)
    })
    .await
    .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "store_failed", e.to_string()))?;
    if changed == 0 && body.ids.as_ref().is_some_and(|ids| !ids.is_empty()) {
        return Err(Error::new(
            StatusCode::CONFLICT,
            "conflict",
            "none of these messages is ready in the queue (already consumed?)",
        ));
    }
    audit(&b, &caller, "set_priority", &v, &name, changed as u64);
    Ok(Json(PriorityResult {
        changed: changed as u64,
    }))
}
