//! Edit and redrive (`POST /api/queues/{vhost}/{name}/messages/{id}/edit`): an operator fixes a ready message,
//! typically a dead letter, and sends the fixed copy on, to the queue it died in (from `x-death`), a named queue, or
//! an exchange and routing key.
//!
//! Invariants: the original is taken out of its queue first (no consumer can get it meanwhile), the copy is
//! published and, where it is persistent on a durable queue, synced; only then is the original removed. If the copy
//! cannot be stored, or routes nowhere, the original goes back where it was and nothing else changed. The copy
//! carries `x-edited-from` (the original's id), `x-edited-from-queue` and `x-edited-by` (the operator). The edit is
//! audited. Needs `read` on the source queue and `write` on the destination, as a move does.

use std::collections::HashSet;
use std::sync::Arc;

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use axum::extract::{Path, State};
use axum::Json;
use base64::Engine;
use serde_json::Value;
use warren_shared::edit::{EditRequest, EditResult};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{json, AdminState, ApiResult, Body, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::message::Message;
use crate::queue::Entry;
use crate::vhost::VHost;

/// Header values nest at most this deep (JSON that nests deeper is refused).
const MAX_DEPTH: usize = 16;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/queues/{vhost}/{name}/messages/{id}/edit",
        post_with(edit, |o| {
            o.summary("Publish an edited copy of a ready message, then remove the original (extension)")
        }),
    )
}

async fn edit(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name, id)): Path<(String, String, String)>,
    Body(req): Body<EditRequest>,
) -> ApiResult<EditResult> {
    let id = super::path_id(&id, "message")?;
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
    match (req.to.as_str(), &req.queue, &req.exchange) {
        ("queue", Some(q), _) => caller.check(&b, &v, Perm::Write, Kind::Queue, q)?,
        ("exchange", _, Some(x)) => caller.check(&b, &v, Perm::Write, Kind::Exchange, x)?,
        ("source", _, _) => {}
        _ => {
            return Err(Error::bad_request(
                "'to' must be \"source\", \"queue\" (with \"queue\") or \"exchange\" (with \"exchange\")",
            ))
        }
    }
    let vh = vhost(&b, &v)?;
    let source = vh
        .queue(&name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    super::queues::refuse_stream(&source, &v, &name, "editing messages")?;
    let body = match req.body_encoding.as_deref().unwrap_or("utf8") {
        "utf8" | "string" => req.body.clone().into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(req.body.as_bytes())
            .map_err(|e| Error::bad_request(format!("body is not base64: {e}")))?,
        other => return Err(Error::bad_request(format!("unknown body_encoding '{other}'"))),
    };
    // Taking one message by id may read a disk-backed queue: not on an async worker.
    let q = source.clone();
    let taken = tokio::task::spawn_blocking(move || q.take(Some(&HashSet::from([id]))))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    let Some(original) = taken.into_iter().next() else {
        return Err(Error::not_found(format!(
            "no ready message {id} in queue '{name}' in vhost '{v}' (it may be delivered and not yet acked, or gone)"
        )));
    };
    match publish_copy(&b, &vh, &caller, &name, &original, &req, body).await {
        Ok(result) => {
            source.settle_moved([&original]);
            audit(&b, &caller, "edit", &v, &name, 1);
            Ok(Json(result))
        }
        Err(e) => {
            source.put_back(vec![original]);
            Err(e)
        }
    }
}

/// A traced message's journey records the edit (and where the copy goes), before the copy is published.
fn trace_edit(
    vh: &VHost,
    caller: &Caller,
    queue: &str,
    original: &Entry,
    copy: &Message,
    to: &[Arc<crate::queue::Queue>],
) {
    let traced = original.message.is_traced()
        || vh.queue(queue).is_some_and(|q| q.is_traced())
        || to.iter().any(|q| q.is_traced());
    if !(vh.trace.any() && traced) {
        return;
    }
    let journal = &vh.trace.journal;
    let (old, new) = (journal.mark(&original.message), journal.mark(copy));
    let event = crate::trace::TraceEvent::Edited {
        queue: queue.to_string(),
        by: caller.user.clone(),
        new_id: (new != old).then(|| new.clone()),
    };
    journal.record_message(&vh.name, &original.message, event);
    let queues = to.iter().map(|q| q.name().to_string()).collect();
    journal.record_message(&vh.name, copy, crate::trace::TraceEvent::Routed { queues });
}

/// Builds the edited copy, publishes it and waits until it is stored; the original is untouched.
async fn publish_copy(
    b: &Broker,
    vh: &VHost,
    caller: &Caller,
    queue: &str,
    original: &Entry,
    req: &EditRequest,
    body: Vec<u8>,
) -> Result<EditResult, Error> {
    let before = original.message.properties();
    let mut props = match &req.properties {
        None => before.clone(),
        Some(given) => edited_properties(&before, given)?,
    };
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert("x-edited-from".into(), AMQPValue::LongLongInt(original.seq as i64));
    headers.insert(
        "x-edited-from-queue".into(),
        AMQPValue::LongString(LongString::from(queue)),
    );
    headers.insert(
        "x-edited-by".into(),
        AMQPValue::LongString(LongString::from(caller.user.as_str())),
    );
    props = props.with_headers(headers);
    let (exchange, routing_key, destination) = match req.to.as_str() {
        "source" => {
            let q = super::moves::source_queue(&before).ok_or_else(|| {
                Error::bad_request("the message has no x-death to say where it came from: name a queue or an exchange")
            })?;
            (String::new(), q.clone(), format!("queue {q}"))
        }
        "queue" => {
            let q = req.queue.clone().unwrap_or_default();
            (String::new(), q.clone(), format!("queue {q}"))
        }
        _ => {
            let x = req.exchange.clone().unwrap_or_default();
            let key = req
                .routing_key
                .clone()
                .unwrap_or_else(|| original.message.routing_key.to_string());
            let words = format!("exchange {x}, key {key}");
            (x, key, words)
        }
    };
    // The copy goes on in the original's journey (under its own message_id, if the edit changed it).
    let message = Message::with_properties(
        exchange.clone().into(),
        routing_key.clone().into(),
        props.clone(),
        body.into(),
    )
    .inherit_trace(&original.message);
    let message = Arc::new(message);
    let mut queues = Vec::new();
    if exchange.is_empty() {
        queues.extend(vh.queue(&routing_key));
    } else {
        vh.route_internal(&exchange, &routing_key, props.headers().as_ref(), None, &mut queues)
            .map_err(|e| Error::not_found(e.text))?;
    }
    if queues.is_empty() {
        return Err(Error::not_found(format!(
            "the copy would go nowhere: {destination} routes to no queue in vhost '{}'",
            vh.name
        )));
    }
    trace_edit(vh, caller, queue, original, &message, &queues);
    let (mut first, mut last, mut failed) = (u64::MAX, 0, false);
    let mut routed_to = Vec::new();
    for q in &queues {
        let p = q.publish(message.clone());
        if p.ticket > 0 {
            first = first.min(p.ticket);
            last = last.max(p.ticket);
        }
        failed |= p.failed;
        if p.routed {
            routed_to.push(q.spec.name.clone());
        }
    }
    if last > 0 {
        failed |= !super::moves::synced(b, first, last).await;
    }
    if failed || routed_to.is_empty() {
        return Err(Error::internal(format!(
            "the copy could not be stored at {destination}; the original stays in '{queue}'"
        )));
    }
    Ok(EditResult {
        original: original.seq,
        destination,
        routed_to,
    })
}

/// The properties an operator gave (peek's form). A header whose JSON is what the original's shows keeps the
/// original's value, so its AMQP type survives the round trip through JSON.
fn edited_properties(before: &AMQPProperties, given: &serde_json::Map<String, Value>) -> Result<AMQPProperties, Error> {
    let mut top = given.clone();
    let headers = top.remove("headers");
    let timestamp = top.remove("timestamp");
    let mut unused = FieldTable::default();
    let mut props = super::actions::rabbit_properties(AMQPProperties::default(), &top, &mut unused)?;
    if let Some(t) = timestamp {
        let t = t
            .as_u64()
            .ok_or_else(|| Error::bad_request("property 'timestamp' must be a whole number"))?;
        props = props.with_timestamp(t);
    }
    match headers {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let old = before.headers().clone().unwrap_or_default();
            let mut table = FieldTable::default();
            for (k, v) in &map {
                let value = match old.inner().get(k.as_str()) {
                    Some(was) if &json::value(was) == v => was.clone(),
                    _ => amqp_value(v, 0).map_err(|e| Error::bad_request(format!("header '{k}': {e}")))?,
                };
                table.insert(k.as_str().into(), value);
            }
            props = props.with_headers(table);
        }
        Some(_) => return Err(Error::bad_request("property 'headers' must be an object")),
    }
    Ok(props)
}

/// JSON as an AMQP field value: whole numbers as long-long ints, other numbers as doubles, objects as tables,
/// arrays as arrays; at most [`MAX_DEPTH`] deep.
fn amqp_value(v: &Value, depth: usize) -> Result<AMQPValue, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested more than {MAX_DEPTH} deep"));
    }
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(a) => {
            let mut out = FieldArray::default();
            for x in a {
                out.push(amqp_value(x, depth + 1)?);
            }
            AMQPValue::FieldArray(out)
        }
        Value::Object(o) => {
            let mut t = FieldTable::default();
            for (k, x) in o {
                t.insert(k.as_str().into(), amqp_value(x, depth + 1)?);
            }
            AMQPValue::FieldTable(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_headers_keep_their_amqp_types_and_changed_ones_are_converted() {
        let mut h = FieldTable::default();
        h.insert("x-death-time".into(), AMQPValue::Timestamp(1_700_000_000));
        h.insert("tries".into(), AMQPValue::ShortShortInt(3));
        let before = AMQPProperties::default().with_headers(h);
        let given = serde_json::json!({
            "content_type": "application/json",
            "headers": {"x-death-time": 1_700_000_000, "tries": 4, "nested": {"a": [1, "b", 2.5]}}
        });
        let Value::Object(given) = given else {
            panic!("an object")
        };
        let props = edited_properties(&before, &given).expect("valid");
        let headers = props.headers().clone().unwrap_or_default();
        assert_eq!(
            headers.inner().get("x-death-time"),
            Some(&AMQPValue::Timestamp(1_700_000_000))
        );
        assert_eq!(headers.inner().get("tries"), Some(&AMQPValue::LongLongInt(4)));
        assert!(matches!(headers.inner().get("nested"), Some(AMQPValue::FieldTable(_))));
        assert_eq!(
            props.content_type().as_ref().map(|c| c.to_string()),
            Some("application/json".into())
        );
    }

    #[test]
    fn header_json_nested_too_deep_is_refused() {
        let mut v = Value::from(1);
        for _ in 0..40 {
            v = Value::Array(vec![v]);
        }
        assert!(amqp_value(&v, 0).is_err());
        let given = serde_json::json!({"headers": {"deep": v}});
        let Value::Object(given) = given else {
            panic!("an object")
        };
        assert!(edited_properties(&AMQPProperties::default(), &given).is_err());
        let bad = serde_json::json!({"priority": "high"});
        let Value::Object(bad) = bad else { panic!("an object") };
        assert!(edited_properties(&AMQPProperties::default(), &bad).is_err());
    }
}
