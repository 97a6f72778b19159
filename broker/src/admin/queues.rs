//! Queues: list and detail, peek (look without consuming), purge.

use std::sync::Arc;

use aide::axum::routing::{delete_with, get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use warren_shared::{
    rabbit, LatencySummary, PeekRequest, PeekedMessage, PurgeResult, QueueCounters, QueueInfo, QueueRates, Rate,
    StreamConsumerSummary, StreamSummary,
};

use super::caller::{audit, Caller};
use super::paging::{ListQuery, Paged};
use super::{json, AdminState, ApiResult, Error, OptionalBody, Query};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::queue::{Queue, QueueStats};
use crate::stream::log::OffsetSpec;
use crate::vhost::VHost;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/queues",
            get_with(all, |o| {
                o.summary("Every queue with its counters, rates, lag and latency")
            }),
        )
        .api_route(
            "/api/queues/{vhost}",
            get_with(in_vhost, |o| o.summary("The queues of a vhost")),
        )
        .api_route("/api/queues/{vhost}/{name}", get_with(one, |o| o.summary("One queue")))
        .api_route(
            "/api/queues/{vhost}/{name}/peek",
            post_with(peek, |o| o.summary("Look at ready messages without consuming them")),
        )
        .api_route(
            "/api/queues/{vhost}/{name}/contents",
            delete_with(purge, |o| o.summary("Purge a queue's ready messages")),
        )
}

/// A queue as the API shows it; `dead_letter_sources` comes from `VHost::dead_letter_sources`.
pub fn info(q: &Queue, dead_letter_sources: Vec<String>) -> QueueInfo {
    let stream = q.stream_info().map(stream_summary);
    let (ready, bytes) = match &stream {
        Some(s) => (s.next_offset - s.first_offset, s.bytes),
        None => q.depth(),
    };
    let s = &q.stats;
    let unacked = QueueStats::get(&s.unacked);
    // One lock for both summaries (a second lock taken in the same expression would deadlock).
    let (latency_deliver, latency_ack) = {
        let l = q.latency.lock().unwrap_or_else(|e| e.into_inner());
        (latency(&l.deliver), latency(&l.ack))
    };
    let queue_rates = rates(q);
    let message_stats = message_stats(s, &queue_rates);
    QueueInfo {
        vhost: q.spec.vhost.clone(),
        name: q.spec.name.clone(),
        kind: if stream.is_some() { "stream" } else { "classic" }.into(),
        durable: q.spec.durable,
        exclusive: q.spec.exclusive_owner.is_some(),
        auto_delete: q.spec.auto_delete,
        arguments: json::table(&q.spec.arguments),
        policy: q.policy_name(),
        messages_ready: ready,
        messages_unacked: unacked,
        messages: ready + unacked,
        message_bytes: bytes,
        messages_paged_out: q.paged_out(),
        consumers: q.consumer_count() as u64,
        consumer_utilisation: q.consumer_utilisation(),
        counters: QueueCounters {
            published: QueueStats::get(&s.published),
            delivered: QueueStats::get(&s.delivered),
            acked: QueueStats::get(&s.acked),
            redelivered: QueueStats::get(&s.redelivered),
            rejected: QueueStats::get(&s.rejected),
            nacked: QueueStats::get(&s.nacked),
            dead_lettered: QueueStats::get(&s.dead_lettered),
            expired: QueueStats::get(&s.expired),
            dropped: QueueStats::get(&s.dropped),
        },
        // A stream never drains: reading removes nothing.
        drain_ms: match stream {
            Some(_) => None,
            None => warren_shared::drain::time_to_drain_ms(ready, &queue_rates),
        },
        time_behind_ms: q.time_behind_ms(),
        latency_deliver,
        latency_ack,
        dead_letter_exchange: q.limits().dead_letter_exchange.clone(),
        dead_letter_routing_key: q.limits().dead_letter_routing_key.clone(),
        dead_letter_sources,
        stream,
        paused: q.is_paused(),
        rates: queue_rates,
        rabbitmq: rabbit::QueueFields {
            messages_unacknowledged: unacked,
            message_stats,
            state: if q.is_paused() { "paused" } else { "running" }.into(),
            node: super::nodes::node_name(),
        },
    }
}

fn stream_summary(s: crate::queue::StreamInfo) -> StreamSummary {
    StreamSummary {
        first_offset: s.first_offset,
        next_offset: s.next_offset,
        first_timestamp_ms: s.first_timestamp_ms,
        last_timestamp_ms: s.last_timestamp_ms,
        bytes: s.bytes,
        segments: s.segments,
        max_bytes: s.max_bytes,
        max_age_ms: s.max_age_ms,
        segment_bytes: s.segment_bytes,
        segments_skipped: s.segments_skipped,
        filtered_out: s.filtered_out,
        consumers: s
            .consumers
            .into_iter()
            .map(|c| StreamConsumerSummary {
                consumer_tag: c.tag,
                connection_id: c.connection_id,
                channel: c.channel,
                name: c.name,
                offset: c.offset,
                lag: c.lag,
                lag_ms: c.lag_ms,
            })
            .collect(),
        stored_offsets: s.stored.into_iter().collect(),
    }
}

/// RabbitMQ's `message_stats` from a queue's counters and rates (the 10 s rate, as RabbitMQ's default sample).
pub fn message_stats(s: &QueueStats, r: &QueueRates) -> rabbit::MessageStats {
    let d = |rate: &Rate| rabbit::Details { rate: rate.last_10s };
    let delivered = QueueStats::get(&s.delivered);
    rabbit::MessageStats {
        publish: QueueStats::get(&s.published),
        publish_details: d(&r.publish),
        deliver_get: delivered,
        deliver_get_details: d(&r.deliver),
        deliver: delivered,
        deliver_details: d(&r.deliver),
        ack: QueueStats::get(&s.acked),
        ack_details: d(&r.ack),
        redeliver: QueueStats::get(&s.redelivered),
        redeliver_details: d(&r.redeliver),
    }
}

/// A queue's rates over 1, 10 and 60 s.
pub fn rates(q: &Queue) -> QueueRates {
    let w = q.rates.lock().unwrap_or_else(|e| e.into_inner());
    let r = |i| Rate {
        last_1s: w.rate(i, 1),
        last_10s: w.rate(i, 10),
        last_60s: w.rate(i, 60),
    };
    QueueRates {
        publish: r(0),
        deliver: r(1),
        ack: r(2),
        redeliver: r(3),
        reject: r(4),
        dead_lettered: r(5),
        expired: r(6),
        dropped: r(7),
        nack: r(8),
    }
}

fn latency(w: &crate::queue::latency::Window) -> LatencySummary {
    let s = w.summary();
    LatencySummary {
        count: s.count,
        p50: s.p50,
        p90: s.p90,
        p99: s.p99,
        p999: s.p999,
        max: s.max,
        buckets: s.buckets,
    }
}

fn sorted(mut v: Vec<QueueInfo>) -> Vec<QueueInfo> {
    v.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    v
}

pub fn vhost(b: &Broker, name: &str) -> Result<Arc<VHost>, Error> {
    b.vhost(name)
        .ok_or_else(|| Error::not_found(format!("no vhost '{name}'")))
}

fn queue(b: &Broker, vhost_name: &str, name: &str) -> Result<Arc<Queue>, Error> {
    vhost(b, vhost_name)?
        .queue(name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{vhost_name}'")))
}

/// Every queue of `v`, with its dead-letter links.
fn vhost_infos(v: &VHost) -> Vec<QueueInfo> {
    let mut feeders = v.dead_letter_sources();
    v.queues()
        .iter()
        .map(|q| info(q, feeders.remove(q.name()).unwrap_or_default()))
        .collect()
}

/// One queue, with its dead-letter links.
pub fn one_info(v: &VHost, q: &Queue) -> QueueInfo {
    info(q, v.dead_letter_sources().remove(q.name()).unwrap_or_default())
}

/// Every queue of every vhost, sorted.
pub fn all_infos(b: &Broker) -> Vec<QueueInfo> {
    sorted(b.vhosts().iter().flat_map(|v| vhost_infos(v)).collect())
}

async fn all(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Paged<QueueInfo>, Error> {
    let mut all = all_infos(&b);
    if !caller.sees_all() {
        all.retain(|q| caller.may_see(&b, &q.vhost));
    }
    super::paging::respond(all, &q)
}

async fn in_vhost(
    State(b): State<Arc<Broker>>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Paged<QueueInfo>, Error> {
    let vh = vhost(&b, &v)?;
    super::paging::respond(sorted(vhost_infos(&vh)), &q)
}

async fn one(State(b): State<Arc<Broker>>, Path((v, name)): Path<(String, String)>) -> ApiResult<QueueInfo> {
    let q = queue(&b, &v, &name)?;
    let vh = vhost(&b, &v)?;
    Ok(Json(one_info(&vh, &q)))
}

async fn peek(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    // The body is optional: none means the first page, unfiltered.
    OptionalBody(req): OptionalBody<PeekRequest>,
) -> ApiResult<Vec<PeekedMessage>> {
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
    let count = req.count.unwrap_or(50);
    if count == 0 || count > 1000 {
        return Err(Error::bad_request("count must be between 1 and 1000"));
    }
    let q = queue(&b, &v, &name)?;
    let start = match (req.offset, req.timestamp_ms) {
        _ if !q.is_stream() && (req.offset.is_some() || req.timestamp_ms.is_some()) => {
            return Err(Error::bad_request(format!(
                "queue '{name}' in vhost '{v}' is not a stream: 'offset' and 'timestamp_ms' are for streams"
            )))
        }
        (Some(_), Some(_)) => return Err(Error::bad_request("give 'offset' or 'timestamp_ms', not both")),
        (Some(o), None) => OffsetSpec::Offset(o),
        (None, Some(t)) => OffsetSpec::Timestamp(t),
        (None, None) => OffsetSpec::First,
    };
    // A page far from the head, or a filter, may read much of a disk-backed queue or a stream: not on an async
    // worker.
    let entries = tokio::task::spawn_blocking(move || {
        if q.is_stream() {
            let matches = super::filter::matcher(&req.filter);
            return q
                .stream_peek(start, req.from as usize, count as usize, &matches)
                .unwrap_or(Ok(Vec::new()));
        }
        Ok(if req.filter.is_empty() {
            q.peek(req.from as usize, count as usize)
        } else {
            q.peek_matching(req.from as usize, count as usize, &super::filter::matcher(&req.filter))
        })
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| Error::internal(format!("could not read the stream: {e}")))?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| {
                let m = &e.message;
                let (body_encoding, body) = json::body(&m.body);
                let props = m.properties();
                PeekedMessage {
                    trace_id: crate::trace::peek_id(m, &props),
                    id: e.seq,
                    exchange: m.exchange.to_string(),
                    routing_key: m.routing_key.to_string(),
                    redelivered: e.redelivered,
                    delivery_count: e.delivery_count,
                    enqueued_ms: e.enqueued_ms,
                    priority: m.priority,
                    size: m.size() as u64,
                    persistent: m.persistent,
                    properties: json::properties(&props),
                    body_encoding: body_encoding.into(),
                    body,
                }
            })
            .collect(),
    ))
}

/// Streams are append-only: the actions that take messages out of a queue (purge, get, delete, move) are refused on
/// them with a 400 that says what to use instead.
pub fn refuse_stream(q: &Queue, vhost: &str, name: &str, what: &str) -> Result<(), Error> {
    if !q.is_stream() {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "queue '{name}' in vhost '{vhost}' is a stream: streams are append-only, so {what} is refused \
         (read with peek or a consumer; see replay, truncate-before and retention)"
    )))
}

async fn purge(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<PurgeResult> {
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
    let q = queue(&b, &v, &name)?;
    refuse_stream(&q, &v, &name, "purge")?;
    let (ready, bytes) = q.depth();
    let kept_bytes = bytes + ready * crate::quarantine::PER_MESSAGE;
    let (purged, undo) = if ready > 0 && b.quarantine.fits(kept_bytes) {
        // Kept for undo: taken out and settled (durably gone from the queue), then held by the quarantine. Taking
        // may read a disk-backed queue: not on an async worker.
        let q2 = q.clone();
        let taken = tokio::task::spawn_blocking(move || {
            let taken = q2.take(None);
            q2.settle_moved(taken.iter());
            q2.record_purged(&taken);
            taken
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
        let n = taken.len() as u64;
        (n, super::undo::keep(&b, &caller, &v, &name, "purge", taken))
    } else {
        (q.purge() as u64, None)
    };
    audit(&b, &caller, "purge", &v, &name, purged);
    Ok(Json(PurgeResult { purged, undo }))
}
