//! Connections, channels and consumers; closing a connection with a reason.

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use warren_shared::{ChannelInfo, CloseRequest, ConnectionInfo, ConsumerInfo, Done};

use super::caller::Caller;
use super::{path_id, AdminState, ApiResult, Error, OptionalBody};
use crate::broker::{Broker, ConnectionEntry};

pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/api/connections", get(connections))
        .route("/api/connections/{id}", get(connection).delete(close))
        .route("/api/channels", get(channels))
        .route("/api/consumers", get(consumers))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn info(c: &crate::broker::ConnectionEntry) -> ConnectionInfo {
    // One lock at a time: two guards of the same mutex in one expression would deadlock.
    let client = lock(&c.client).clone();
    ConnectionInfo {
        id: c.id,
        peer: c.peer.to_string(),
        user: lock(&c.user).clone(),
        vhost: lock(&c.vhost).clone(),
        channels: lock(&c.channels).len() as u64,
        connected_at_ms: c.connected_at_ms,
        name: client.name,
        client: client.product,
        state: "running".into(),
    }
}

/// The connections `caller` may see: all for administrators and monitoring users, their own for the others (as in
/// RabbitMQ).
fn visible(b: &Broker, caller: &Caller) -> Vec<Arc<ConnectionEntry>> {
    let mut all = b.connection_entries();
    if !caller.sees_all() {
        all.retain(|c| *lock(&c.user) == caller.user);
    }
    all
}

async fn connections(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, Error> {
    let all: Vec<ConnectionInfo> = visible(&b, &caller).iter().map(|c| info(c)).collect();
    super::paging::respond(all, &q)
}

async fn connection(State(b): State<Arc<Broker>>, caller: Caller, Path(id): Path<String>) -> ApiResult<ConnectionInfo> {
    let id = path_id(&id, "connection")?;
    let c = visible(&b, &caller).into_iter().find(|c| c.id == id);
    c.map(|c| Json(info(&c)))
        .ok_or_else(|| Error::not_found(format!("no connection {id}")))
}

/// Closes a connection with `connection.close` 320 and the given reason.
async fn close(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<CloseRequest>,
) -> ApiResult<Done> {
    let id = path_id(&id, "connection")?;
    // Administrators close any connection; other users only their own (monitoring users none: `gate`).
    let c = visible(&b, &caller)
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| Error::not_found(format!("no connection {id}")))?;
    let reason = request.reason.unwrap_or_else(|| "closed by an operator".to_string());
    b.audit.record(crate::audit::Event {
        user: &caller.user,
        peer: caller.peer,
        action: "close_connection",
        vhost: Some(&lock(&c.vhost)),
        object: &format!("connection {id} ({reason})"),
        messages: None,
        result: "ok",
    });
    *lock(&c.close_reason) = reason;
    c.close.cancel();
    Ok(Json(Done { ok: true }))
}

async fn channels(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<ChannelInfo>> {
    let mut out = Vec::new();
    for c in visible(&b, &caller) {
        let (user, vhost) = (lock(&c.user).clone(), lock(&c.vhost).clone());
        for ch in lock(&c.channels).iter() {
            out.push(ChannelInfo {
                connection: c.id,
                channel: *ch,
                user: user.clone(),
                vhost: vhost.clone(),
            });
        }
    }
    Ok(Json(out))
}

async fn consumers(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<ConsumerInfo>> {
    let mut out = Vec::new();
    for v in b.vhosts().into_iter().filter(|v| caller.may_see(&b, &v.name)) {
        for q in v.queues() {
            for (tag, connection, channel, exclusive, priority, ack_required) in q.consumer_infos() {
                out.push(ConsumerInfo {
                    vhost: v.name.clone(),
                    queue: q.name().to_string(),
                    consumer_tag: tag,
                    connection,
                    channel,
                    exclusive,
                    priority,
                    ack_required,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.vhost, &a.queue, &a.consumer_tag).cmp(&(&b.vhost, &b.queue, &b.consumer_tag)));
    Ok(Json(out))
}
