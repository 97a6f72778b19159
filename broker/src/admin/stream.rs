//! `GET /api/stream`: Server-Sent Events with the whole picture (overview and every queue): one `snapshot` event
//! on connect, then an `update` event every `interval_ms` (default 1000, at least 100), with keep-alive comments. A
//! client that reconnects starts again with a snapshot.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream};
use serde::Deserialize;
use warren_shared::StreamSnapshot;

use crate::broker::Broker;

pub fn router() -> Router<Arc<Broker>> {
    Router::new().route("/api/stream", get(stream_handler))
}

#[derive(Deserialize)]
struct Params {
    interval_ms: Option<u64>,
}

fn snapshot(b: &Broker) -> StreamSnapshot {
    StreamSnapshot {
        overview: super::overview::build(b),
        queues: super::queues::all_infos(b),
    }
}

async fn stream_handler(
    State(b): State<Arc<Broker>>,
    Query(p): Query<Params>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let every = Duration::from_millis(p.interval_ms.unwrap_or(1000).max(100));
    let events = stream::unfold((b, true), move |(b, first)| async move {
        if !first {
            tokio::time::sleep(every).await;
        }
        let data = serde_json::to_string(&snapshot(&b)).unwrap_or_else(|_| "{}".to_string());
        let event = Event::default()
            .event(if first { "snapshot" } else { "update" })
            .data(data);
        Some((Ok(event), (b, false)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
