//! RabbitMQ's node and health endpoints, for the tools that read them: `GET /api/nodes`, `/api/nodes/{name}`
//! (memory, file descriptors, disk free, alarms, uptime), `/api/aliveness-test/{vhost}`, and
//! `/api/health/checks/{alarms,local-alarms,port-listener/{port},virtual-hosts}`. Warren is one node, named
//! `warren@HOSTNAME`; the health checks answer 200 `{"status":"ok"}` or 503 `{"status":"failed","reason":...}`, as
//! RabbitMQ's do.

use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use aide::transform::TransformOperation;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use warren_shared::management::{HealthStatus, NodeInfo};

use super::{AdminState, Error};
use crate::broker::Broker;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route("/api/nodes", get_with(nodes, |o| o.summary("The nodes: this one")))
        .api_route(
            "/api/nodes/{name}",
            get_with(node, |o| {
                o.summary("This node: memory, file descriptors, disk free, alarms")
            }),
        )
        .api_route(
            "/api/aliveness-test/{vhost}",
            get_with(aliveness, |o| {
                health(o.summary("The vhost is served and the store accepts writes"))
            }),
        )
        .api_route(
            "/api/health/checks/alarms",
            get_with(alarms, |o| health(o.summary("No resource alarm is in effect"))),
        )
        .api_route(
            "/api/health/checks/local-alarms",
            get_with(alarms, |o| {
                health(o.summary("No resource alarm is in effect on this node"))
            }),
        )
        .api_route(
            "/api/health/checks/port-listener/{port}",
            get_with(port_listener, |o| health(o.summary("A listener is on this port"))),
        )
        .api_route(
            "/api/health/checks/virtual-hosts",
            get_with(virtual_hosts, |o| health(o.summary("Every vhost is running"))),
        )
}

/// A health check's answers (see the module doc).
fn health(o: TransformOperation) -> TransformOperation {
    o.response_with::<200, Json<HealthStatus>, _>(|r| r.description("ok"))
        .response_with::<503, Json<HealthStatus>, _>(|r| r.description("failed, with the reason"))
}

/// This node's name, as RabbitMQ names nodes (`rabbit@host`): `warren@HOSTNAME`.
pub fn node_name() -> String {
    crate::cluster::host_node_name()
}

fn open_files() -> (u64, u64) {
    let used = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(0);
    (used, limit)
}

fn node_json(b: &Broker) -> NodeInfo {
    let r = super::overview::resources(b);
    let (fd_used, fd_total) = open_files();
    NodeInfo {
        name: node_name(),
        kind: "disc".into(),
        running: true,
        mem_used: r.memory_used,
        mem_limit: r.memory_limit,
        mem_alarm: r.memory_alarm,
        disk_free: r.disk_free,
        disk_free_limit: r.disk_free_limit,
        disk_free_alarm: r.disk_alarm,
        fd_used,
        fd_total,
        sockets_used: b.connections.load(std::sync::atomic::Ordering::Relaxed),
        sockets_total: b.config.max_connections as u64,
        proc_used: 0,
        proc_total: 0,
        uptime: b.started.elapsed().as_millis() as u64,
        processors: std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
        os_pid: std::process::id().to_string(),
        partitions: Vec::new(),
        applications: Vec::new(),
    }
}

/// Every node: this one in full; in a cluster, it under its cluster name, then every other node registered in etcd
/// (running, with the figures only their own admin API has left at 0).
fn all_nodes(b: &Broker) -> Vec<NodeInfo> {
    let mut me = node_json(b);
    let Some(cluster) = b.cluster.get() else {
        return vec![me];
    };
    let s = cluster.summary();
    me.name = s.node.clone();
    let others = s.nodes.into_iter().filter(|n| n.name != s.node).map(|n| NodeInfo {
        name: n.name,
        kind: "disc".into(),
        running: true,
        ..NodeInfo::default()
    });
    std::iter::once(me).chain(others).collect()
}

async fn nodes(State(b): State<Arc<Broker>>) -> Json<Vec<NodeInfo>> {
    Json(all_nodes(&b))
}

async fn node(State(b): State<Arc<Broker>>, Path(name): Path<String>) -> Result<Json<NodeInfo>, Error> {
    let all = all_nodes(&b);
    let names: Vec<String> = all.iter().map(|n| n.name.clone()).collect();
    all.into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("no node '{name}' (nodes: {})", names.join(", "))))
}

fn ok() -> Response {
    Json(HealthStatus {
        status: "ok".into(),
        reason: None,
    })
    .into_response()
}

fn failed(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(HealthStatus {
            status: "failed".into(),
            reason: Some(reason),
        }),
    )
        .into_response()
}

/// RabbitMQ's aliveness test declares a queue, publishes and gets a message; Warren checks that the vhost is
/// served and the store accepts writes (no disk alarm).
async fn aliveness(State(b): State<Arc<Broker>>, Path(vhost): Path<String>) -> Response {
    if b.vhost(&vhost).is_none() {
        return Error::not_found(format!("no vhost '{vhost}'")).into_response();
    }
    if b.alarms.state().disk {
        return failed("the disk alarm is on: publishers are blocked".into());
    }
    ok()
}

async fn alarms(State(b): State<Arc<Broker>>) -> Response {
    let s = b.alarms.state();
    let mut on = Vec::new();
    if s.memory {
        on.push("memory");
    }
    if s.disk {
        on.push("disk");
    }
    if s.replication {
        on.push("replication (not enough in-sync replicas)");
    }
    if on.is_empty() {
        ok()
    } else {
        failed(format!(
            "resource alarms in effect on {}: {}",
            node_name(),
            on.join(", ")
        ))
    }
}

async fn port_listener(State(b): State<Arc<Broker>>, Path(port): Path<String>) -> Response {
    let Ok(port) = port.parse::<u16>() else {
        return Error::bad_request(format!("'{port}' is not a port")).into_response();
    };
    let c = &b.config;
    let all = c
        .listen
        .iter()
        .chain(&c.admin_listen)
        .chain(&c.amqps_listen)
        .chain(&c.admin_https_listen);
    if all.into_iter().any(|a| a.port() == port) {
        ok()
    } else {
        failed(format!("no listener on port {port}"))
    }
}

async fn virtual_hosts(State(b): State<Arc<Broker>>) -> Response {
    let missing: Vec<String> = b
        .access
        .vhosts()
        .into_iter()
        .filter(|v| b.vhost(&v.name).is_none())
        .map(|v| v.name)
        .collect();
    if missing.is_empty() {
        ok()
    } else {
        failed(format!("vhosts not running: {}", missing.join(", ")))
    }
}
