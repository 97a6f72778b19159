//! `GET /api/stream`: Server-Sent Events with the whole picture (overview and every queue): one `snapshot` event
//! on connect, then an `update` event every `interval_ms` (default 1000, at least 100), with keep-alive comments. A
//! client that reconnects starts again with a snapshot. Streams end when the broker shuts down (an endless response
//! would otherwise hold graceful shutdown open forever).

use std::sync::Arc;
use std::time::Duration;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::stream;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use warren_shared::StreamSnapshot;

use super::caller::Caller;
use super::{AdminState, Error, Query};
use crate::broker::Broker;

/// The admin server's shutdown signal, handed to long-lived responses.
#[derive(Clone)]
pub struct Shutdown(pub CancellationToken);

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/stream",
        get_with(stream_handler, |o| {
            super::openapi::text(
                o.summary("Server-Sent Events: a StreamSnapshot on connect, then one per interval"),
                "text/event-stream",
                "`snapshot` and `update` events, each a StreamSnapshot in JSON",
            )
        }),
    )
}

#[derive(Deserialize, JsonSchema)]
struct StreamQuery {
    /// Milliseconds between updates (default 1000, at least 100).
    interval_ms: Option<u64>,
}

fn snapshot(b: &Broker, caller: &Caller) -> StreamSnapshot {
    let mut queues = super::queues::all_infos(b);
    if !caller.sees_all() {
        queues.retain(|q| caller.may_see(b, &q.vhost));
    }
    StreamSnapshot {
        overview: super::overview::build(b, caller),
        queues,
    }
}

async fn stream_handler(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Query(p): Query<StreamQuery>,
    shutdown: Option<Extension<Shutdown>>,
) -> Result<Response, Error> {
    let interval_ms = p.interval_ms.unwrap_or(1000);
    let every = Duration::from_millis(interval_ms.clamp(100, 3_600_000));
    let stop = shutdown.map(|Extension(Shutdown(t))| t).unwrap_or_default();
    let events = stream::unfold((b, true), move |(b, first)| {
        let caller = caller.clone();
        async move {
            if !first {
                tokio::time::sleep(every).await;
            }
            let data = serde_json::to_string(&snapshot(&b, &caller)).unwrap_or_else(|_| "{}".to_string());
            let event = Event::default()
                .event(if first { "snapshot" } else { "update" })
                .data(data);
            Some((Ok::<_, std::convert::Infallible>(event), (b, false)))
        }
    })
    .take_until(stop.cancelled_owned());
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
