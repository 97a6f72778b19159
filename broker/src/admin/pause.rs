//! Pausing and resuming a queue (`PUT /api/queues/{vhost}/{name}/pause` and `/resume`, LavinMQ's paths): a paused
//! queue keeps its consumers and delivers nothing; publishing, peek, moves and purge go on. A durable queue stays
//! paused across restarts. Needs `configure` permission on the queue (it changes how the queue behaves for every
//! consumer), and is audited.

use std::sync::Arc;

use aide::axum::routing::put_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use warren_shared::PauseResult;

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{AdminState, ApiResult, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/queues/{vhost}/{name}/pause",
            put_with(pause, |o| {
                o.summary("Pause a queue: its consumers stay, nothing is delivered (kept across restarts)")
            }),
        )
        .api_route(
            "/api/queues/{vhost}/{name}/resume",
            put_with(resume, |o| o.summary("Resume a paused queue")),
        )
}

async fn pause(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<PauseResult> {
    set(b, caller, v, name, true).await
}

async fn resume(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<PauseResult> {
    set(b, caller, v, name, false).await
}

async fn set(b: Arc<Broker>, caller: Caller, v: String, name: String, paused: bool) -> ApiResult<PauseResult> {
    caller.check(&b, &v, Perm::Configure, Kind::Queue, &name)?;
    let vh = vhost(&b, &v)?;
    // Saving a durable queue's pause syncs definitions.log: not on an async worker.
    let queue = name.clone();
    let changed = tokio::task::spawn_blocking(move || vh.set_paused(&queue, paused))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| Error::internal(format!("could not save the change: {e}")))?
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    if changed {
        audit(&b, &caller, if paused { "pause" } else { "resume" }, &v, &name, 0);
    }
    Ok(Json(PauseResult { paused, changed }))
}
