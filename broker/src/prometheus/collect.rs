//! What a scrape reports, under RabbitMQ's `rabbitmq_prometheus` names: a `prometheus-client` [`Collector`] that
//! reads the broker's state when the registry is encoded, so nothing is kept between scrapes and no metric object
//! exists per queue.
//!
//! Two views, as in RabbitMQ:
//! - **aggregated** (`/metrics`): node-wide figures, and queue figures summed over every queue, without labels;
//! - **per object** (`/metrics/per-object`): the same node-wide figures, and queue figures per queue (labels `vhost`
//!   and `queue`), with Warren's own per-queue counters and latency histograms (only for queues that have delivered,
//!   or had an ack: an idle queue adds no histogram series).
//!
//! Invariants: every queue is read once per scrape, each through its own short lock sections (depth, consumers,
//! latency), never two queues' locks at once; the figures are read in one pass and then written family by family
//! (a family's series must be contiguous). Counter values only ever grow (closed connections' channel counters are
//! kept by `Broker::channel_totals`; latency buckets are cumulative since the queue was made); a deleted queue's
//! series simply stop, as in RabbitMQ. Names carry their unit (`_bytes`, `_seconds`); counter names are given
//! without `_total`, which the encoder appends.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::broker::Broker;
use crate::queue::latency::{Cumulative, BUCKETS_MS};
use crate::queue::{Queue, QueueStats};

/// Which of the two views a scrape asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Aggregated,
    PerObject,
}

/// One scrape of one broker.
pub struct Scrape {
    pub broker: Arc<Broker>,
    pub view: View,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").field("view", &self.view).finish()
    }
}

/// One queue's figures, read in one pass.
struct QueueRow {
    vhost: usize,
    queue: Arc<Queue>,
    ready: u64,
    ready_bytes: u64,
    unacked: u64,
    consumers: u64,
    utilisation: Option<f64>,
    /// `QueueStats::counters` order: published, delivered, acked, redelivered, rejected, dead-lettered, expired,
    /// dropped, nacked.
    counters: [u64; 9],
    /// Deliver and ack latency (per-object view only).
    latency: Option<Box<(Cumulative, Cumulative)>>,
}

/// Warren's own per-queue counters (`QueueStats::counters` index, name without `_total`, help).
const WARREN_QUEUE_COUNTERS: [(usize, &str, &str); 8] = [
    (
        1,
        "warren_queue_messages_delivered",
        "Messages delivered to consumers or fetched with basic.get",
    ),
    (2, "warren_queue_messages_acked", "Messages acknowledged by consumers"),
    (
        3,
        "warren_queue_messages_redelivered",
        "Messages delivered again after a requeue",
    ),
    (
        4,
        "warren_queue_messages_rejected",
        "Messages rejected with basic.reject",
    ),
    (8, "warren_queue_messages_nacked", "Messages rejected with basic.nack"),
    (
        5,
        "warren_queue_messages_dead_lettered",
        "Messages dead-lettered from this queue",
    ),
    (
        6,
        "warren_queue_messages_expired",
        "Messages whose TTL ran out in this queue",
    ),
    (
        7,
        "warren_queue_messages_dropped",
        "Messages dropped by a length limit (overflow drop-head)",
    ),
];

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let b = &self.broker;
        identity(&mut enc, b)?;
        let vhosts = b.vhosts();
        let rows = read_queues(&vhosts, self.view == View::PerObject);
        node(&mut enc, b, &rows)?;
        match self.view {
            View::Aggregated => aggregated_queues(&mut enc, &rows),
            View::PerObject => per_queue(&mut enc, &vhosts, &rows),
        }
    }
}

fn read_queues(vhosts: &[Arc<crate::vhost::VHost>], latency: bool) -> Vec<QueueRow> {
    let mut rows = Vec::new();
    for (i, v) in vhosts.iter().enumerate() {
        for q in v.queues() {
            let (ready, ready_bytes) = q.depth();
            let latency = latency.then(|| {
                let l = q.latency.lock().unwrap_or_else(|e| e.into_inner());
                Box::new((l.deliver.cumulative(), l.ack.cumulative()))
            });
            rows.push(QueueRow {
                vhost: i,
                ready,
                ready_bytes,
                unacked: QueueStats::get(&q.stats.unacked),
                consumers: u64::from(q.consumer_count()),
                utilisation: q.consumer_utilisation(),
                counters: q.stats.counters(),
                latency,
                queue: q,
            });
        }
    }
    rows
}

/// `rabbitmq_identity_info` and `rabbitmq_build_info`: the series dashboards join every other one on.
fn identity(enc: &mut DescriptorEncoder, b: &Broker) -> fmt::Result {
    let node = super::node_name();
    let id = super::cluster_permanent_id(b, &node);
    let labels = [
        ("rabbitmq_node", node.as_str()),
        ("rabbitmq_cluster", node.as_str()),
        ("rabbitmq_cluster_permanent_id", id.as_str()),
    ];
    enc.encode_descriptor(
        "rabbitmq_identity_info",
        "RabbitMQ node & cluster identity info",
        None,
        MetricType::Gauge,
    )?
    .encode_family(&labels)?
    .encode_gauge(&1u64)?;
    let labels = [
        ("rabbitmq_version", super::RABBITMQ_VERSION),
        ("prometheus_plugin_version", super::RABBITMQ_VERSION),
        ("prometheus_client_version", super::PROMETHEUS_CLIENT_VERSION),
        ("erlang_version", super::ERLANG_VERSION),
        ("product", "Warren"),
        ("product_version", env!("CARGO_PKG_VERSION")),
    ];
    enc.encode_descriptor(
        "rabbitmq_build_info",
        "RabbitMQ & Erlang/OTP version info",
        None,
        MetricType::Gauge,
    )?
    .encode_family(&labels)?
    .encode_gauge(&1u64)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: impl EncodeGaugeValue) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// A counter; `name` without `_total` (the encoder appends it).
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

/// Node-wide figures, the same in both views.
fn node(enc: &mut DescriptorEncoder, b: &Broker, rows: &[QueueRow]) -> fmt::Result {
    use crate::counters::Churn;
    let (ch, open_channels) = b.channel_totals();
    let consumers: u64 = rows.iter().map(|r| r.consumers).sum();
    let connections = b.connections.load(std::sync::atomic::Ordering::Relaxed);
    gauge(enc, "rabbitmq_connections", "Connections currently open", connections)?;
    gauge(enc, "rabbitmq_channels", "Channels currently open", open_channels)?;
    gauge(enc, "rabbitmq_consumers", "Consumers currently connected", consumers)?;
    gauge(
        enc,
        "rabbitmq_channel_consumers",
        "Consumers on all channels",
        consumers,
    )?;
    gauge(enc, "rabbitmq_queues", "Queues available", rows.len() as u64)?;
    let churn = &b.churn;
    for (name, help, v) in [
        (
            "rabbitmq_connections_opened",
            "Total number of connections opened",
            Churn::get(&churn.connections_opened),
        ),
        (
            "rabbitmq_connections_closed",
            "Total number of connections closed or terminated",
            Churn::get(&churn.connections_closed),
        ),
        ("rabbitmq_channels_opened", "Total number of channels opened", ch.channels_opened),
        ("rabbitmq_channels_closed", "Total number of channels closed", ch.channels_closed),
        (
            "rabbitmq_queues_declared",
            "Total number of queues declared",
            Churn::get(&churn.queues_declared),
        ),
        (
            "rabbitmq_queues_created",
            "Total number of queues created",
            Churn::get(&churn.queues_created),
        ),
        (
            "rabbitmq_queues_deleted",
            "Total number of queues deleted",
            Churn::get(&churn.queues_deleted),
        ),
        (
            "rabbitmq_channel_messages_published",
            "Total number of messages published into an exchange on a channel",
            ch.published,
        ),
        (
            "rabbitmq_channel_messages_confirmed",
            "Total number of messages published into an exchange and confirmed on the channel",
            ch.confirmed,
        ),
        (
            "rabbitmq_channel_messages_unroutable_returned",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            ch.unroutable_returned,
        ),
        (
            "rabbitmq_channel_messages_unroutable_dropped",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            ch.unroutable_dropped,
        ),
        (
            "rabbitmq_channel_messages_delivered",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            ch.delivered,
        ),
        (
            "rabbitmq_channel_messages_delivered_ack",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            ch.delivered_ack,
        ),
        (
            "rabbitmq_channel_messages_redelivered",
            "Total number of messages redelivered to consumers",
            ch.redelivered,
        ),
        (
            "rabbitmq_channel_messages_acked",
            "Total number of messages acknowledged by consumers",
            ch.acked,
        ),
        (
            "rabbitmq_channel_get",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            ch.get,
        ),
        (
            "rabbitmq_channel_get_ack",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            ch.get_ack,
        ),
        (
            "rabbitmq_channel_get_empty",
            "Total number of times basic.get operations fetched no message",
            ch.get_empty,
        ),
    ] {
        counter(enc, name, help, v)?;
    }
    gauge(
        enc,
        "rabbitmq_channel_messages_unconfirmed",
        "Published but not yet confirmed messages on channels in confirm mode",
        ch.unconfirmed,
    )?;
    global(enc, &ch, consumers)?;
    resources(enc, b)
}

/// RabbitMQ 3.9's global counters (label `protocol`), which newer dashboards query instead of the channel ones:
/// the same figures, summed the same way.
fn global(enc: &mut DescriptorEncoder, ch: &crate::counters::ChannelTotals, consumers: u64) -> fmt::Result {
    let protocol = [("protocol", "amqp091")];
    let routed = ch
        .published
        .saturating_sub(ch.unroutable_returned + ch.unroutable_dropped);
    for (name, help, v) in [
        (
            "rabbitmq_global_messages_received",
            "Total number of messages received from publishers",
            ch.published,
        ),
        (
            "rabbitmq_global_messages_routed",
            "Total number of messages routed to queues or streams",
            routed,
        ),
        (
            "rabbitmq_global_messages_unroutable_dropped",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            ch.unroutable_dropped,
        ),
        (
            "rabbitmq_global_messages_unroutable_returned",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            ch.unroutable_returned,
        ),
        (
            "rabbitmq_global_messages_confirmed",
            "Total number of messages confirmed to publishers",
            ch.confirmed,
        ),
        (
            "rabbitmq_global_messages_delivered",
            "Total number of messages delivered to consumers",
            ch.delivered + ch.delivered_ack + ch.get + ch.get_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            ch.delivered_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_consume_auto_ack",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            ch.delivered,
        ),
        (
            "rabbitmq_global_messages_delivered_get_manual_ack",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            ch.get_ack,
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            ch.get,
        ),
        (
            "rabbitmq_global_messages_get_empty",
            "Total number of times basic.get operations fetched no message",
            ch.get_empty,
        ),
        (
            "rabbitmq_global_messages_redelivered",
            "Total number of messages redelivered to consumers",
            ch.redelivered,
        ),
        (
            "rabbitmq_global_messages_acknowledged",
            "Total number of messages acknowledged by consumers",
            ch.acked,
        ),
    ] {
        enc.encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_family(&protocol)?
            .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
    }
    enc.encode_descriptor(
        "rabbitmq_global_consumers",
        "Current number of consumers",
        None,
        MetricType::Gauge,
    )?
    .encode_family(&protocol)?
    .encode_gauge(&consumers)
}

/// Memory, disk, file descriptors and sockets against their limits, and the alarms they raise.
fn resources(enc: &mut DescriptorEncoder, b: &Broker) -> fmt::Result {
    let r = crate::admin::resources(b);
    gauge(
        enc,
        "rabbitmq_process_resident_memory_bytes",
        "Memory used in bytes",
        r.memory_used,
    )?;
    // No limit (the memory alarm is off): nothing blocks publishers, however much memory is used.
    let memory_limit = if r.memory_limit == 0 {
        f64::INFINITY
    } else {
        r.memory_limit as f64
    };
    gauge(
        enc,
        "rabbitmq_resident_memory_limit_bytes",
        "Memory high watermark in bytes",
        memory_limit,
    )?;
    gauge(
        enc,
        "warren_queue_memory_bytes",
        "Memory the messages of all queues hold, in bytes (past warren_queue_memory_limit_bytes they page to disk)",
        r.queue_memory_used,
    )?;
    gauge(
        enc,
        "warren_queue_memory_limit_bytes",
        "Memory all queues together may give their messages before they page new transient ones to disk",
        r.queue_memory_limit,
    )?;
    gauge(
        enc,
        "rabbitmq_disk_space_available_bytes",
        "Disk space available in bytes",
        r.disk_free,
    )?;
    gauge(
        enc,
        "rabbitmq_disk_space_available_limit_bytes",
        "Free disk space low watermark in bytes",
        r.disk_free_limit,
    )?;
    let (open_fds, max_fds) = (super::process::open_fds(), super::process::max_fds());
    if let Some(n) = open_fds {
        gauge(enc, "rabbitmq_process_open_fds", "Open file descriptors", n)?;
    }
    if let Some(n) = max_fds {
        gauge(enc, "rabbitmq_process_max_fds", "Open file descriptors limit", n)?;
    }
    // Worked out as at start (without `for_config`'s warning, which would repeat at every scrape).
    let c = &b.config;
    let caps = crate::server::ConnectionCaps::new(
        max_fds.unwrap_or(1024),
        c.fd_reserve,
        c.max_connections,
        c.admin_max_connections,
    );
    gauge(
        enc,
        "rabbitmq_process_open_tcp_sockets",
        "Open TCP sockets",
        b.connections.load(std::sync::atomic::Ordering::Relaxed),
    )?;
    gauge(
        enc,
        "rabbitmq_process_max_tcp_sockets",
        "Open TCP sockets limit",
        caps.amqp as u64,
    )?;
    gauge(
        enc,
        "rabbitmq_alarms_memory_used_watermark",
        "is 1 if VM memory watermark alarm is in effect",
        u64::from(r.memory_alarm),
    )?;
    gauge(
        enc,
        "rabbitmq_alarms_free_disk_space_watermark",
        "is 1 if free disk space watermark alarm is in effect",
        u64::from(r.disk_alarm),
    )?;
    // Warren raises no file descriptor alarm: connections beyond the cap wait in the listen backlog instead.
    gauge(
        enc,
        "rabbitmq_alarms_file_descriptor_limit",
        "is 1 if file descriptor limit alarm is in effect",
        0u64,
    )?;
    gauge(
        enc,
        "warren_uptime_seconds",
        "Seconds since the broker started",
        b.started.elapsed().as_secs_f64(),
    )
}

/// The queue gauges and counters: (name, help, whether a counter, value of a row).
type QueueFigure = (&'static str, &'static str, bool, fn(&QueueRow) -> u64);

const QUEUE_FIGURES: [QueueFigure; 6] = [
    (
        "rabbitmq_queue_messages_ready",
        "Messages ready to be delivered to consumers",
        false,
        |r| r.ready,
    ),
    (
        "rabbitmq_queue_messages_unacked",
        "Messages delivered to consumers but not yet acknowledged",
        false,
        |r| r.unacked,
    ),
    (
        "rabbitmq_queue_messages",
        "Sum of ready and unacknowledged messages - total queue depth",
        false,
        |r| r.ready + r.unacked,
    ),
    (
        "rabbitmq_queue_messages_ready_bytes",
        "Size in bytes of ready messages",
        false,
        |r| r.ready_bytes,
    ),
    ("rabbitmq_queue_consumers", "Consumers on a queue", false, |r| {
        r.consumers
    }),
    (
        "rabbitmq_queue_messages_published",
        "Total number of messages published to queues",
        true,
        |r| r.counters[0],
    ),
];

/// `/metrics`: the queue figures summed over every queue.
fn aggregated_queues(enc: &mut DescriptorEncoder, rows: &[QueueRow]) -> fmt::Result {
    for (name, help, is_counter, pick) in QUEUE_FIGURES {
        let total: u64 = rows.iter().map(pick).sum();
        if is_counter {
            counter(enc, name, help, total)?;
        } else {
            gauge(enc, name, help, total)?;
        }
    }
    for (i, name, help) in WARREN_QUEUE_COUNTERS {
        counter(enc, name, help, rows.iter().map(|r| r.counters[i]).sum())?;
    }
    Ok(())
}

/// `/metrics/per-object`: the queue figures per queue, and the latency histograms.
fn per_queue(enc: &mut DescriptorEncoder, vhosts: &[Arc<crate::vhost::VHost>], rows: &[QueueRow]) -> fmt::Result {
    fn labels<'a>(vhosts: &'a [Arc<crate::vhost::VHost>], r: &'a QueueRow) -> [(&'static str, &'a str); 2] {
        [("vhost", vhosts[r.vhost].name.as_str()), ("queue", r.queue.name())]
    }
    for (name, help, is_counter, pick) in QUEUE_FIGURES {
        let kind = if is_counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let mut m = enc.encode_descriptor(name, help, None, kind)?;
        for r in rows {
            let l = labels(vhosts, r);
            let mut series = m.encode_family(&l)?;
            if is_counter {
                series.encode_counter::<NoLabelSet, u64, u64>(&pick(r), None)?;
            } else {
                series.encode_gauge(&pick(r))?;
            }
        }
    }
    let mut m = enc.encode_descriptor(
        "rabbitmq_queue_consumer_utilisation",
        "Consumer utilisation (the share of time a consumer could take a message at once); only queues with consumers",
        None,
        MetricType::Gauge,
    )?;
    for r in rows {
        if let Some(u) = r.utilisation {
            m.encode_family(&labels(vhosts, r))?.encode_gauge(&u)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "warren_queue_paused",
        "1 while an operator has the queue paused (consumers stay, nothing is delivered)",
        None,
        MetricType::Gauge,
    )?;
    for r in rows {
        m.encode_family(&labels(vhosts, r))?
            .encode_gauge(&u64::from(r.queue.is_paused()))?;
    }
    for (i, name, help) in WARREN_QUEUE_COUNTERS {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for r in rows {
            m.encode_family(&labels(vhosts, r))?
                .encode_counter::<NoLabelSet, u64, u64>(&r.counters[i], None)?;
        }
    }
    // The bucket bounds in seconds, and the overflow bucket as `+Inf` (the OpenMetrics encoder adds none of its own;
    // the text 0.0.4 one adds it only when it is missing).
    let bounds: Vec<f64> = BUCKETS_MS
        .iter()
        .map(|&ms| ms as f64 / 1000.0)
        .chain([f64::INFINITY])
        .collect();
    for (name, help, ack) in [
        (
            "warren_queue_deliver_latency_seconds",
            "Time from publish to delivery (or basic.get), since the queue was made; 1 ms resolution",
            false,
        ),
        (
            "warren_queue_ack_latency_seconds",
            "Time from publish to acknowledgement, since the queue was made; 1 ms resolution",
            true,
        ),
    ] {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|&b| (b, 0)).collect();
        for r in rows {
            let Some(l) = &r.latency else { continue };
            let c = if ack { &l.1 } else { &l.0 };
            if c.count == 0 {
                // A queue that never delivered (or never had an ack) has no series: idle queues cost nothing here.
                continue;
            }
            for (slot, n) in buckets.iter_mut().zip(c.buckets.iter()) {
                slot.1 = *n;
            }
            m.encode_family(&labels(vhosts, r))?.encode_histogram::<NoLabelSet>(
                c.sum_ms as f64 / 1000.0,
                c.count,
                &buckets,
                None,
            )?;
        }
    }
    Ok(())
}
