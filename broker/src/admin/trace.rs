//! Message journeys through the API (`crate::trace`): `GET /api/trace/{vhost}/{id}` serves one journey, its events
//! in time order (404 JSON when the journal holds none by that id); `PUT` and `DELETE` on
//! `/api/queues/{vhost}/{name}/trace` and `/api/vhosts/{vhost}/trace` switch tracing on and off.
//!
//! Access: a journey is read like the vhost's other objects (`caller::gate` refuses a vhost the caller may not
//! see). A queue's switch needs `configure` permission on the queue (it changes what is recorded about every
//! message there, like pause); a vhost's switch is for administrators. Switches are audited, and live in memory (a
//! policy with `trace: true` is the durable way).

use std::sync::Arc;

use aide::axum::routing::{get_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use warren_shared::trace::{Journey, TraceSwitch};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{AdminState, ApiResult, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/trace/{vhost}/{id}",
            get_with(journey, |o| {
                o.summary(
                    "A traced message's journey: its events in time order (id: message_id, or trace_id from peek)",
                )
            }),
        )
        .api_route(
            "/api/queues/{vhost}/{name}/trace",
            put_with(queue_on, |o| {
                o.summary("Trace the messages routed into a queue (until a restart)")
            })
            .delete_with(queue_off, |o| {
                o.summary("Stop tracing a queue (a trace policy still applies)")
            }),
        )
        .api_route(
            "/api/vhosts/{vhost}/trace",
            put_with(vhost_on, |o| {
                o.summary("Trace every message published to a vhost (until a restart)")
            })
            .delete_with(vhost_off, |o| o.summary("Stop tracing a vhost as a whole")),
        )
}

async fn journey(State(b): State<Arc<Broker>>, Path((v, id)): Path<(String, String)>) -> ApiResult<Journey> {
    let vh = vhost(&b, &v)?;
    vh.trace.journal.journey(&v, &id).map(Json).ok_or_else(|| {
        Error::not_found(format!(
            "no journey '{id}' in vhost '{v}' (not traced, or no longer kept)"
        ))
    })
}

async fn queue_on(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<TraceSwitch> {
    set_queue(&b, &caller, &v, &name, true)
}

async fn queue_off(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<TraceSwitch> {
    set_queue(&b, &caller, &v, &name, false)
}

fn set_queue(b: &Broker, caller: &Caller, v: &str, name: &str, on: bool) -> ApiResult<TraceSwitch> {
    caller.check(b, v, Perm::Configure, Kind::Queue, name)?;
    let (api, by_policy, changed) = vhost(b, v)?
        .set_trace_queue(name, on)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    if changed {
        audit(b, caller, if on { "trace on" } else { "trace off" }, v, name, 0);
    }
    Ok(Json(TraceSwitch {
        on: api,
        by_policy,
        changed,
    }))
}

async fn vhost_on(State(b): State<Arc<Broker>>, caller: Caller, Path(v): Path<String>) -> ApiResult<TraceSwitch> {
    set_vhost(&b, &caller, &v, true)
}

async fn vhost_off(State(b): State<Arc<Broker>>, caller: Caller, Path(v): Path<String>) -> ApiResult<TraceSwitch> {
    set_vhost(&b, &caller, &v, false)
}

fn set_vhost(b: &Broker, caller: &Caller, v: &str, on: bool) -> ApiResult<TraceSwitch> {
    let changed = vhost(b, v)?.set_trace_vhost(on);
    if changed {
        audit(b, caller, if on { "trace on" } else { "trace off" }, v, "", 0);
    }
    Ok(Json(TraceSwitch {
        on,
        by_policy: false,
        changed,
    }))
}
