//! Operator actions on streams: set a named consumer's stored offset ("replay from": first, last, next, an offset or
//! a time), and remove the segments before an offset ("truncate before"). A stream's figures are part of the queue
//! resource (`queues.rs`, `stream`).
//!
//! Both need `write` permission on the queue, like purge needs `read` in RabbitMQ's model of an operator acting for
//! consumers; both are audited.

use std::sync::Arc;

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;
use warren_shared::{StreamActionResult, StreamOffsetReset, StreamTruncate};

use super::caller::{audit, Caller};
use super::{AdminState, ApiResult, Body, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::queue::Queue;
use crate::stream::log::OffsetSpec;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/queues/{vhost}/{name}/stream/offsets/{consumer}",
            post_with(reset_offset, |o| {
                o.summary("Set where a named stream consumer reads next (first, last, next, an offset or a time)")
            }),
        )
        .api_route(
            "/api/queues/{vhost}/{name}/stream/truncate",
            post_with(truncate, |o| {
                o.summary("Remove a stream's segments wholly before an offset")
            }),
        )
}

fn stream(b: &Broker, vhost: &str, name: &str) -> Result<Arc<Queue>, Error> {
    let q = b
        .vhost(vhost)
        .ok_or_else(|| Error::not_found(format!("no vhost '{vhost}'")))?
        .queue(name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{vhost}'")))?;
    if !q.is_stream() {
        return Err(Error::bad_request(format!(
            "queue '{name}' in vhost '{vhost}' is not a stream"
        )));
    }
    Ok(q)
}

fn spec(body: &StreamOffsetReset) -> Result<OffsetSpec, Error> {
    match (&body.offset, body.timestamp_ms) {
        (None, Some(t)) => Ok(OffsetSpec::Timestamp(t)),
        (Some(Value::String(s)), None) => match s.as_str() {
            "first" => Ok(OffsetSpec::First),
            "last" => Ok(OffsetSpec::Last),
            "next" => Ok(OffsetSpec::Next),
            other => Err(Error::bad_request(format!(
                "offset '{other}': expected first, last, next or a number"
            ))),
        },
        (Some(Value::Number(n)), None) => n
            .as_u64()
            .map(OffsetSpec::Offset)
            .ok_or_else(|| Error::bad_request(format!("offset {n}: expected a non-negative integer"))),
        _ => Err(Error::bad_request(
            "give exactly one of offset (first, last, next or a number) and timestamp_ms",
        )),
    }
}

async fn reset_offset(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name, consumer)): Path<(String, String, String)>,
    Body(body): Body<StreamOffsetReset>,
) -> ApiResult<StreamActionResult> {
    caller.check(&b, &v, Perm::Write, Kind::Queue, &name)?;
    let spec = spec(&body)?;
    if consumer.is_empty() || consumer.len() > crate::stream::offsets::MAX_NAME {
        return Err(Error::bad_request("a consumer name is 1 to 255 bytes"));
    }
    let q = stream(&b, &v, &name)?;
    let io = |e: std::io::Error| Error::internal(format!("stream '{name}': {e}"));
    let offset = tokio::task::spawn_blocking({
        let q = q.clone();
        move || q.stream_reset_offset(&consumer, spec)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .ok_or_else(|| Error::bad_request("not a stream"))?
    .map_err(io)?;
    audit(&b, &caller, "stream offset reset", &v, &name, offset);
    let first_offset = q.stream_info().map_or(0, |s| s.first_offset);
    Ok(Json(StreamActionResult {
        offset: Some(offset),
        segments_removed: None,
        first_offset,
    }))
}

async fn truncate(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(body): Body<StreamTruncate>,
) -> ApiResult<StreamActionResult> {
    caller.check(&b, &v, Perm::Write, Kind::Queue, &name)?;
    let q = stream(&b, &v, &name)?;
    let removed = tokio::task::spawn_blocking({
        let q = q.clone();
        move || q.stream_truncate_before(body.before)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .ok_or_else(|| Error::bad_request("not a stream"))?
    .map_err(|e| Error::internal(format!("stream '{name}': {e}")))? as u64;
    audit(&b, &caller, "stream truncate", &v, &name, removed);
    let first_offset = q.stream_info().map_or(0, |s| s.first_offset);
    Ok(Json(StreamActionResult {
        offset: None,
        segments_removed: Some(removed),
        first_offset,
    }))
}
