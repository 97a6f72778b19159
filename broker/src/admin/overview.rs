//! `GET /api/overview`, `/api/vhosts`, `/api/users`: the broker at a glance.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use warren_shared::{rabbit, Overview, QueueRates, Resources, Totals};

use super::caller::Caller;
use super::{AdminState, ApiResult};
use crate::broker::Broker;
use crate::queue::QueueStats;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/overview",
        get_with(overview, |o| {
            o.summary("Version, uptime, totals, global rates and error counters")
        }),
    )
}

async fn overview(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Overview> {
    Ok(Json(build(&b, &caller)))
}

/// The overview as of now, over the vhosts `caller` may see (its totals say nothing of the others).
pub fn build(b: &Broker, caller: &Caller) -> Overview {
    let mut rates = QueueRates::default();
    let mut t = Totals {
        connections: b.connections.load(Ordering::Relaxed),
        returned: b.returned.load(Ordering::Relaxed),
        ..Totals::default()
    };
    for v in b.vhosts().into_iter().filter(|v| caller.may_see(b, &v.name)) {
        for q in v.queues() {
            let (ready, _) = q.depth();
            let s = &q.stats;
            t.queues += 1;
            t.consumers += q.consumer_count() as u64;
            t.messages_ready += ready;
            t.messages_unacked += QueueStats::get(&s.unacked);
            t.published += QueueStats::get(&s.published);
            t.delivered += QueueStats::get(&s.delivered);
            t.acked += QueueStats::get(&s.acked);
            t.dead_lettered += QueueStats::get(&s.dead_lettered);
            t.expired += QueueStats::get(&s.expired);
            t.redelivered += QueueStats::get(&s.redelivered);
            t.rejected += QueueStats::get(&s.rejected);
            t.nacked += QueueStats::get(&s.nacked);
            t.dropped += QueueStats::get(&s.dropped);
            let r = super::queues::rates(&q);
            for (sum, add) in [
                (&mut rates.publish, r.publish),
                (&mut rates.deliver, r.deliver),
                (&mut rates.ack, r.ack),
                (&mut rates.redeliver, r.redeliver),
                (&mut rates.nack, r.nack),
                (&mut rates.reject, r.reject),
                (&mut rates.dead_lettered, r.dead_lettered),
                (&mut rates.expired, r.expired),
                (&mut rates.dropped, r.dropped),
            ] {
                sum.last_1s += add.last_1s;
                sum.last_10s += add.last_10s;
                sum.last_60s += add.last_60s;
            }
        }
    }
    let node = super::nodes::node_name();
    let d = |r: &warren_shared::Rate| rabbit::Details { rate: r.last_10s };
    let visible: Vec<_> = b.vhosts().into_iter().filter(|v| caller.may_see(b, &v.name)).collect();
    let channels: u64 = b
        .connection_entries()
        .iter()
        .map(|c| c.channels.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
        .sum();
    let listeners = b
        .config
        .listen
        .iter()
        .map(|a| ("amqp", a))
        .chain(b.config.amqps_listen.iter().map(|a| ("amqp/ssl", a)))
        .chain(b.config.admin_listen.iter().map(|a| ("http", a)))
        .chain(b.config.admin_https_listen.iter().map(|a| ("https", a)))
        .map(|(protocol, a)| rabbit::Listener {
            node: node.clone(),
            protocol: protocol.into(),
            ip_address: a.ip().to_string(),
            port: a.port(),
        })
        .collect();
    let rabbitmq = rabbit::OverviewFields {
        product_name: "Warren".into(),
        product_version: env!("CARGO_PKG_VERSION").into(),
        rabbitmq_version: super::definitions_export::RABBITMQ_FORMAT.into(),
        management_version: super::definitions_export::RABBITMQ_FORMAT.into(),
        cluster_name: node.clone(),
        node,
        queue_totals: rabbit::QueueTotals {
            messages: t.messages_ready + t.messages_unacked,
            messages_ready: t.messages_ready,
            messages_unacknowledged: t.messages_unacked,
        },
        object_totals: rabbit::ObjectTotals {
            connections: t.connections,
            channels,
            exchanges: visible.iter().map(|v| v.map_exchanges(|_| ()).len() as u64).sum(),
            queues: t.queues,
            consumers: t.consumers,
        },
        message_stats: rabbit::MessageStats {
            publish: t.published,
            publish_details: d(&rates.publish),
            deliver_get: t.delivered,
            deliver_get_details: d(&rates.deliver),
            deliver: t.delivered,
            deliver_details: d(&rates.deliver),
            ack: t.acked,
            ack_details: d(&rates.ack),
            redeliver: t.redelivered,
            redeliver_details: d(&rates.redeliver),
        },
        listeners,
    };
    Overview {
        product: "Warren".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_ms: b.started.elapsed().as_millis() as u64,
        totals: t,
        rates,
        resources: resources(b),
        undo_window_ms: b.quarantine.window_ms,
        undo_max_bytes: b.quarantine.max_bytes,
        rabbitmq,
    }
}

/// Memory and disk against the alarm limits.
pub fn resources(b: &Broker) -> Resources {
    let a = &b.alarms;
    let state = a.state();
    Resources {
        memory_used: a.memory_used(),
        memory_limit: a.memory_limit(),
        memory_alarm: state.memory,
        disk_free: a.disk_free(),
        disk_free_limit: a.disk_free_limit(),
        disk_alarm: state.disk,
        queue_memory_used: b
            .store
            .page_pressure
            .in_memory
            .load(std::sync::atomic::Ordering::Relaxed) as u64,
        queue_memory_limit: b.store.page_pressure.ram_total as u64,
    }
}
