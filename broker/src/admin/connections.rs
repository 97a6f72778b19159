//! Connections, channels and consumers; closing a connection with a reason.
//!
//! A connection is addressed by Warren's numeric `id` or by RabbitMQ's `name` (`"peer -> local"`, percent-encoded in
//! the path), so tools that list connections and then close one by name work unchanged.

use std::sync::Arc;

use std::collections::HashMap;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use warren_shared::{ChannelDetails, ChannelInfo, CloseRequest, ConnectionDetails, ConnectionInfo, ConsumerInfo, Done};

use super::caller::Caller;
use super::paging::{ListQuery, Paged};
use super::{AdminState, ApiResult, Error, OptionalBody, Query};
use crate::broker::{Broker, ConnectionEntry};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/connections",
            get_with(connections, |o| o.summary("Client connections")),
        )
        .api_route(
            "/api/connections/{id}",
            get_with(connection, |o| {
                o.summary("One connection, by its numeric id or RabbitMQ's name (\"peer -> local\")")
            })
            .delete_with(close, |o| {
                o.summary("Close a connection, with an optional reason (in the body, or RabbitMQ's X-Reason header)")
            }),
        )
        .api_route(
            "/api/connections/{id}/channels",
            get_with(connection_channels, |o| o.summary("One connection's channels")),
        )
        .api_route("/api/channels", get_with(channels, |o| o.summary("Channels")))
        .api_route("/api/consumers", get_with(consumers, |o| o.summary("Consumers")))
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
        name: c.rabbit_name(),
        user_provided_name: client.name,
        client: client.product,
        state: "running".into(),
        peer_host: c.peer.ip().to_canonical().to_string(),
        peer_port: c.peer.port(),
        host: c.local.map(|a| a.ip().to_canonical().to_string()).unwrap_or_default(),
        port: c.local.map_or(0, |a| a.port()),
        connected_at: c.connected_at_ms,
        protocol: c.protocol.into(),
        ssl: c.tls,
    }
}

/// The visible connection `key` names: its numeric id, or its RabbitMQ name.
fn find(b: &Broker, caller: &Caller, key: &str) -> Result<Arc<ConnectionEntry>, Error> {
    let id = key.parse::<u64>().ok();
    visible(b, caller)
        .into_iter()
        .find(|c| Some(c.id) == id || c.rabbit_name() == key)
        .ok_or_else(|| Error::not_found(format!("no connection '{key}'")))
}

/// The channels of one connection, in RabbitMQ's shape.
fn channel_infos(c: &ConnectionEntry) -> Vec<ChannelInfo> {
    let (user, vhost, name) = (lock(&c.user).clone(), lock(&c.vhost).clone(), c.rabbit_name());
    let details = ConnectionDetails {
        name: name.clone(),
        peer_host: c.peer.ip().to_canonical().to_string(),
        peer_port: c.peer.port(),
    };
    lock(&c.channels)
        .iter()
        .map(|ch| ChannelInfo {
            connection: c.id,
            channel: *ch,
            user: user.clone(),
            vhost: vhost.clone(),
            name: format!("{name} ({ch})"),
            number: *ch,
            connection_details: details.clone(),
        })
        .collect()
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
    Query(q): Query<ListQuery>,
) -> Result<Paged<ConnectionInfo>, Error> {
    let all: Vec<ConnectionInfo> = visible(&b, &caller).iter().map(|c| info(c)).collect();
    super::paging::respond(all, &q)
}

async fn connection(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<ConnectionInfo> {
    let c = find(&b, &caller, &key)?;
    Ok(Json(info(&c)))
}

async fn connection_channels(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Vec<ChannelInfo>> {
    let c = find(&b, &caller, &key)?;
    Ok(Json(channel_infos(&c)))
}

/// Closes a connection with `connection.close` 320 and the given reason.
async fn close(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(key): Path<String>,
    headers: axum::http::HeaderMap,
    OptionalBody(request): OptionalBody<CloseRequest>,
) -> ApiResult<Done> {
    // Administrators close any connection; other users only their own (monitoring users none: `gate`).
    let c = find(&b, &caller, &key)?;
    let id = c.id;
    // RabbitMQ takes the reason from an `X-Reason` header; Warren's console sends it in the body.
    let header = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let reason = request
        .reason
        .or(header)
        .unwrap_or_else(|| "closed by an operator".to_string());
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
    Ok(Json(
        visible(&b, &caller).iter().flat_map(|c| channel_infos(c)).collect(),
    ))
}

async fn consumers(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<ConsumerInfo>> {
    let mut out = Vec::new();
    let connections: HashMap<u64, Arc<ConnectionEntry>> =
        b.connection_entries().into_iter().map(|c| (c.id, c)).collect();
    let details = |connection: u64, channel: u16| {
        connections.get(&connection).map_or_else(ChannelDetails::default, |c| {
            let name = c.rabbit_name();
            ChannelDetails {
                name: format!("{name} ({channel})"),
                number: channel,
                connection_name: name,
                peer_host: c.peer.ip().to_canonical().to_string(),
                peer_port: c.peer.port(),
                user: lock(&c.user).clone(),
            }
        })
    };
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
                    channel_details: details(connection, channel),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.vhost, &a.queue, &a.consumer_tag).cmp(&(&b.vhost, &b.queue, &b.consumer_tag)));
    Ok(Json(out))
}
