//! `GET /metrics` on the admin API: Prometheus text format under Warren's earlier `warren_*` names (basic auth), kept
//! for the scripts and tools that read it. RabbitMQ's names, with HELP lines and histograms, are on the Prometheus
//! listener (`crate::prometheus`, port 15692).

use std::fmt::Write;
use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use crate::broker::Broker;
use crate::queue::QueueStats;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/metrics",
        get_with(metrics, |o| {
            super::openapi::text(
                o.summary("Prometheus text format (Warren's warren_* names)"),
                "text/plain",
                "The metrics",
            )
        }),
    )
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics(State(b): State<Arc<Broker>>) -> Response {
    let mut out = String::new();
    let gauges = [
        "warren_queue_messages_ready",
        "warren_queue_messages_unacked",
        "warren_queue_consumers",
    ];
    let counters = [
        "warren_queue_published_total",
        "warren_queue_delivered_total",
        "warren_queue_acked_total",
        "warren_queue_redelivered_total",
        "warren_queue_rejected_total",
        "warren_queue_nacked_total",
        "warren_queue_dead_lettered_total",
        "warren_queue_expired_total",
        "warren_queue_dropped_total",
    ];
    let mut rows: Vec<(String, [u64; 12])> = Vec::new();
    for v in b.vhosts() {
        for q in v.queues() {
            let s = &q.stats;
            let (ready, _) = q.depth();
            let labels = format!("vhost=\"{}\",queue=\"{}\"", label(&v.name), label(q.name()));
            rows.push((
                labels,
                [
                    ready,
                    QueueStats::get(&s.unacked),
                    q.consumer_count() as u64,
                    QueueStats::get(&s.published),
                    QueueStats::get(&s.delivered),
                    QueueStats::get(&s.acked),
                    QueueStats::get(&s.redelivered),
                    QueueStats::get(&s.rejected),
                    QueueStats::get(&s.nacked),
                    QueueStats::get(&s.dead_lettered),
                    QueueStats::get(&s.expired),
                    QueueStats::get(&s.dropped),
                ],
            ));
        }
    }
    for (i, name) in gauges.iter().chain(counters.iter()).enumerate() {
        let kind = if i < gauges.len() { "gauge" } else { "counter" };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, values) in &rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", values[i]);
        }
    }
    for (name, pick) in [
        ("warren_queue_deliver_latency_ms", 0),
        ("warren_queue_ack_latency_ms", 1),
    ] {
        let _ = writeln!(out, "# TYPE {name} summary");
        for v in b.vhosts() {
            for q in v.queues() {
                let s = {
                    let l = q.latency.lock().unwrap_or_else(|e| e.into_inner());
                    if pick == 0 {
                        l.deliver.summary()
                    } else {
                        l.ack.summary()
                    }
                };
                let labels = format!("vhost=\"{}\",queue=\"{}\"", label(&v.name), label(q.name()));
                for (quantile, value) in [("0.5", s.p50), ("0.9", s.p90), ("0.99", s.p99), ("0.999", s.p999)] {
                    let _ = writeln!(out, "{name}{{{labels},quantile=\"{quantile}\"}} {value}");
                }
                let _ = writeln!(out, "{name}_count{{{labels}}} {}", s.count);
            }
        }
    }
    let _ = writeln!(out, "# TYPE warren_connections gauge");
    let _ = writeln!(
        out,
        "warren_connections {}",
        b.connections.load(std::sync::atomic::Ordering::Relaxed)
    );
    // Open connections per protocol (AMQP 0-9-1, MQTT 3.1.1, MQTT 5.0, STOMP 1.2), every protocol named even at 0.
    let mut by_protocol: std::collections::BTreeMap<&str, u64> = NAMED_PROTOCOLS.iter().map(|p| (*p, 0)).collect();
    for c in b.connection_entries() {
        *by_protocol.entry(c.protocol).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP warren_protocol_connections Open client connections by protocol."
    );
    let _ = writeln!(out, "# TYPE warren_protocol_connections gauge");
    for (protocol, n) in by_protocol {
        let _ = writeln!(
            out,
            "warren_protocol_connections{{protocol=\"{}\"}} {n}",
            label(protocol)
        );
    }
    // Messages per protocol: published by its clients, delivered to them (and polled), acknowledged by them.
    let totals = b.protocol_totals();
    for (name, help, value) in [
        (
            "warren_protocol_messages_published_total",
            "Messages published by clients of each protocol.",
            (|t: &crate::counters::ChannelTotals| t.published) as fn(&crate::counters::ChannelTotals) -> u64,
        ),
        (
            "warren_protocol_messages_delivered_total",
            "Messages delivered to clients of each protocol (consumers and polls).",
            |t| t.delivered + t.delivered_ack + t.get + t.get_ack,
        ),
        (
            "warren_protocol_messages_acknowledged_total",
            "Deliveries acknowledged by clients of each protocol.",
            |t| t.acked,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let named = NAMED_PROTOCOLS.iter().map(|p| (*p, totals.get(p).map_or(0, value)));
        let others = totals
            .iter()
            .filter(|(p, _)| !NAMED_PROTOCOLS.contains(p))
            .map(|(p, t)| (*p, value(t)));
        for (protocol, n) in named.chain(others) {
            let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {n}", label(protocol));
        }
    }
    // A cluster node (only the leader serves this): its role, the term (it rises at each failover), the nodes.
    if let Some(c) = b.cluster.get() {
        let s = c.summary();
        let node = label(&s.node);
        for (name, help, value) in [
            (
                "warren_cluster_leader",
                "Whether this node leads its cluster.",
                u64::from(s.role == "leader"),
            ),
            (
                "warren_cluster_term",
                "The leader's term (the etcd revision of its key); it rises at each failover.",
                s.term.max(0) as u64,
            ),
            (
                "warren_cluster_nodes",
                "Nodes registered in etcd.",
                s.nodes.len() as u64,
            ),
            (
                "warren_cluster_in_sync_followers",
                "Followers in the in-sync set (every confirm waits for them).",
                s.in_sync.len().saturating_sub(1) as u64,
            ),
            (
                "warren_cluster_replication_head",
                "Changes to the data directory logged for followers since this leader started.",
                s.head_lsn,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
        }
        for (name, help, value) in [
            (
                "warren_cluster_replication_lag_ops",
                "Changes a connected follower has not acked yet.",
                (|r: &warren_shared::cluster::ClusterReplica| r.lag_ops) as fn(&_) -> u64,
            ),
            (
                "warren_cluster_replication_ack_age_seconds",
                "Seconds since a connected follower's last ack.",
                |r: &warren_shared::cluster::ClusterReplica| r.last_ack_ms_ago / 1000,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for r in &s.replicas {
                let _ = writeln!(
                    out,
                    "{name}{{node=\"{node}\",follower=\"{}\"}} {}",
                    label(&r.node),
                    value(r)
                );
            }
        }
    }
    let _ = writeln!(out, "# TYPE warren_returned_total counter");
    let _ = writeln!(
        out,
        "warren_returned_total {}",
        b.returned.load(std::sync::atomic::Ordering::Relaxed)
    );
    let r = super::overview::resources(&b);
    for (name, kind, help, value) in [
        (
            "warren_memory_used_bytes",
            "gauge",
            "Resident memory of the broker process.",
            r.memory_used,
        ),
        (
            "warren_memory_high_watermark_bytes",
            "gauge",
            "Publishers are blocked above this much memory (0: never).",
            r.memory_limit,
        ),
        (
            "warren_disk_free_bytes",
            "gauge",
            "Free space on the data directory's filesystem.",
            r.disk_free,
        ),
        (
            "warren_disk_free_limit_bytes",
            "gauge",
            "Publishers are blocked below this much free disk (0: never).",
            r.disk_free_limit,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP warren_alarm 1 while the resource's alarm blocks publishers."
    );
    let _ = writeln!(out, "# TYPE warren_alarm gauge");
    let _ = writeln!(out, "warren_alarm{{resource=\"memory\"}} {}", u8::from(r.memory_alarm));
    let _ = writeln!(out, "warren_alarm{{resource=\"disk\"}} {}", u8::from(r.disk_alarm));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The protocols `/metrics` names even at 0.
const NAMED_PROTOCOLS: [&str; 4] = ["AMQP 0-9-1", "MQTT 3.1.1", "MQTT 5.0", "STOMP 1.2"];
