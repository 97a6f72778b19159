//! `GET /api/stream`: Server-Sent Events with the whole picture (overview and every queue): one `snapshot` event
//! on connect, then an `update` event every `interval_ms` (default 1000, at least 100), with keep-alive comments. A
//! client that reconnects starts again with a snapshot. Streams end when the broker shuts down (an endless response
//! would otherwise hold graceful shutdown open forever).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use futures::stream::{self, Stream};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use warren_shared::StreamSnapshot;

use super::caller::Caller;
use super::{AdminState, Error};
use crate::broker::Broker;

/// The admin server's shutdown signal, handed to long-lived responses.
#[derive(Clone)]
pub struct Shutdown(pub CancellationToken);

pub fn router() -> Router<AdminState> {
    Router::new().route("/api/stream", get(stream_handler))
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
    Query(p): Query<std::collections::HashMap<String, String>>,
    shutdown: Option<Extension<Shutdown>>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, Error> {
    let interval_ms = match p.get("interval_ms") {
        None => 1000,
        Some(v) => v.parse::<u64>().map_err(|_| {
            Error::bad_request(format!("interval_ms must be a whole number of milliseconds, not '{v}'"))
        })?,
    };
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
            Some((Ok(event), (b, false)))
        }
    })
    .take_until(stop.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
