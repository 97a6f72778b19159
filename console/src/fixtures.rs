//! Test fixtures: a broker's worth of made-up but plausible data (queues with rates, latency histograms and
//! dead-letter links; messages with x-death; connections, consumers, exchanges, bindings, audit entries) fed through `update`
//! exactly as the client would, at fixed instants, so unit and snapshot tests are deterministic.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use warren_shared::{
    AuditEntry, BindingInfo, ConnectionInfo, ConsumerInfo, ExchangeInfo, LatencySummary, MoveTask, Overview,
    PeekedMessage, QueueInfo, StreamConsumerSummary, StreamSnapshot, StreamSummary, Totals,
};

use crate::app::{update, App, Settings};
use crate::event::{ApiEvent, Command, Event, QueueKey, RequestId};

/// 2023-11-14 22:13:20 UTC.
pub const T0: u64 = 1_700_000_000_000;

pub fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub fn code(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// Types each character of `text`.
pub fn type_text(app: &mut App, text: &str) -> Vec<Command> {
    text.chars().flat_map(|c| update(app, key(c))).collect()
}

/// The request id the action among `cmds` carries (its answer must carry it back).
pub fn rid(cmds: &[Command]) -> RequestId {
    cmds.iter().find_map(Command::request).expect("an action command")
}

/// The sequence number of the peek among `cmds`.
pub fn seq(cmds: &[Command]) -> u64 {
    cmds.iter()
        .find_map(|c| match c {
            Command::Peek { seq, .. } => Some(*seq),
            _ => None,
        })
        .expect("a peek")
}

/// A move report, as the client sends it in answer to `request_id`.
pub fn moved(request_id: RequestId, task: MoveTask) -> ApiEvent {
    ApiEvent::Move { request_id, task }
}

/// Presses one key.
pub fn press(app: &mut App, c: char) -> Vec<Command> {
    update(app, key(c))
}

pub fn q(name: &str) -> QueueKey {
    QueueKey::new("/", name)
}

fn latency(scale: u64) -> LatencySummary {
    let buckets: Vec<(u64, u64)> = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000]
        .iter()
        .zip([3, 40, 180, 260, 120, 60, 22, 9, 3, 1])
        .map(|(b, n)| (*b * scale, n * scale))
        .collect();
    LatencySummary {
        count: buckets.iter().map(|b| b.1).sum(),
        p50: 8 * scale,
        p90: 40 * scale,
        p99: 180 * scale,
        p999: 600 * scale,
        max: 950 * scale,
        buckets,
    }
}

/// One queue at step `i` of the fixture's timeline.
fn queue(name: &str, i: u64) -> QueueInfo {
    let mut q = QueueInfo {
        vhost: "/".into(),
        name: name.into(),
        durable: true,
        ..QueueInfo::default()
    };
    let wave = (i % 7) as f64;
    match name {
        "orders" => {
            q.arguments = json!({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.dlq"})
                .as_object()
                .cloned()
                .unwrap_or_default();
            q.dead_letter_exchange = Some(String::new());
            q.dead_letter_routing_key = Some("orders.dlq".into());
            q.messages_ready = 120 + i * 8;
            q.messages_unacked = 10;
            q.consumers = 1;
            q.consumer_utilisation = Some(0.82);
            q.rates.publish.last_1s = 24.0 + wave;
            q.rates.deliver.last_1s = 19.0;
            q.rates.ack.last_1s = 17.0;
            q.rates.reject.last_1s = 2.0;
            q.rates.reject.last_10s = 2.1;
            q.rates.dead_lettered.last_10s = 2.1;
            q.counters.rejected = 420;
            q.counters.dead_lettered = 420;
            q.counters.redelivered = 3;
            q.time_behind_ms = 6_400;
            q.latency_deliver = latency(1);
            q.policy = Some("ha-orders".into());
        }
        "orders.dlq" => {
            q.dead_letter_sources = vec!["orders".into(), "payments".into()];
            q.messages_ready = 1234;
            q.rates.publish.last_1s = 2.0 + (i % 2) as f64;
            q.time_behind_ms = 184_000;
        }
        "emails" => {
            q.arguments = json!({"x-max-priority": 10}).as_object().cloned().unwrap_or_default();
            q.messages_ready = 900 - i * 20;
            q.messages_unacked = 10;
            q.consumers = 2;
            q.rates.publish.last_1s = 8.0;
            q.rates.deliver.last_1s = 28.0;
            q.rates.ack.last_1s = 28.0;
            q.time_behind_ms = 42_000;
            q.latency_deliver = latency(10);
        }
        "payments" => {
            q.arguments = json!({"x-message-ttl": 15000, "x-dead-letter-exchange": ""})
                .as_object()
                .cloned()
                .unwrap_or_default();
            q.dead_letter_exchange = Some(String::new());
            q.messages_ready = 30;
            q.rates.publish.last_1s = 2.0;
            q.rates.expired.last_10s = 2.0;
            q.counters.expired = 97;
            q.time_behind_ms = 14_800;
        }
        _ => {
            q.consumers = 1;
            q.rates.publish.last_1s = 16.0;
            q.rates.deliver.last_1s = 16.0;
            q.rates.ack.last_1s = 16.0;
            q.latency_deliver = latency(1);
        }
    }
    q.messages = q.messages_ready + q.messages_unacked;
    q.message_bytes = q.messages * 60;
    q.drain_ms = match name {
        "emails" => Some(45_000 - i * 1000),
        "orders" | "orders.dlq" => None,
        "payments" => Some(15_000),
        _ => Some(0),
    };
    q
}

pub fn snapshot(i: u64) -> StreamSnapshot {
    let queues: Vec<QueueInfo> = ["analytics", "audit", "emails", "orders", "orders.dlq", "payments"]
        .iter()
        .map(|n| queue(n, i))
        .collect();
    let mut overview = Overview {
        product: "Warren".into(),
        version: "0.1.0".into(),
        uptime_ms: 3_723_000 + i * 1000,
        totals: Totals {
            connections: 5,
            queues: queues.len() as u64,
            consumers: 5,
            messages_ready: queues.iter().map(|q| q.messages_ready).sum(),
            messages_unacked: queues.iter().map(|q| q.messages_unacked).sum(),
            dead_lettered: 517,
            returned: 4,
            ..Totals::default()
        },
        ..Overview::default()
    };
    overview.rates.publish.last_1s = queues.iter().map(|q| q.rates.publish.last_1s).sum();
    overview.rates.deliver.last_1s = queues.iter().map(|q| q.rates.deliver.last_1s).sum();
    overview.rates.ack.last_1s = queues.iter().map(|q| q.rates.ack.last_1s).sum();
    StreamSnapshot { overview, queues }
}

pub fn message(id: u64, source: Option<&str>) -> PeekedMessage {
    let mut headers = json!({"x-tenant": format!("t{}", id % 4)});
    if let Some(s) = source {
        headers["x-death"] = json!([{"queue": s, "reason": "rejected", "count": 1, "exchange": "",
            "routing-keys": [s], "time": (T0 - 1000 * (60 - id)) / 1000}]);
        headers["x-first-death-queue"] = json!(s);
        headers["x-first-death-reason"] = json!("rejected");
    }
    PeekedMessage {
        id,
        exchange: String::new(),
        routing_key: source.unwrap_or("orders").to_string(),
        redelivered: false,
        delivery_count: (id % 3) as u32,
        enqueued_ms: T0 - 1000 * (60 - id),
        priority: (id % 5) as u8,
        size: 60,
        persistent: true,
        properties: json!({"content_type": "application/json", "delivery_mode": 2, "message_id": format!("order-{id}"), "headers": headers})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        body_encoding: "utf8".into(),
        body: format!(r#"{{"order_id":{id},"customer":"c-{}","amount":{}.50}}"#, id * 7 % 500, id * 3),
        trace_id: Some(format!("order-{id}")),
    }
}

pub fn messages(n: u64, source: Option<&str>) -> Vec<PeekedMessage> {
    (1..=n).map(|i| message(i, source)).collect()
}

/// A stream `events` of offsets 1,000 to 50,999 with a named consumer near the head, an unnamed one far behind, and
/// the stored offset of a named consumer that is away.
pub fn stream_queue() -> QueueInfo {
    let mut q = queue("events", 0);
    q.kind = "stream".into();
    q.arguments = json!({"x-queue-type": "stream", "x-max-age": "7D"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    q.messages_ready = 50_000;
    q.messages = 50_000;
    q.consumers = 2;
    q.message_bytes = 3_200_000;
    q.stream = Some(StreamSummary {
        first_offset: 1_000,
        next_offset: 51_000,
        first_timestamp_ms: T0 - 86_400_000,
        last_timestamp_ms: T0 - 500,
        bytes: 3_200_000,
        segments: 4,
        max_bytes: None,
        max_age_ms: Some(7 * 86_400_000),
        segment_bytes: 1_000_000,
        segments_skipped: 12,
        filtered_out: 3_400,
        consumers: vec![
            StreamConsumerSummary {
                consumer_tag: "ctag-etl".into(),
                connection_id: 3,
                channel: 1,
                name: Some("etl".into()),
                offset: 50_900,
                lag: 100,
                lag_ms: 1_200,
            },
            StreamConsumerSummary {
                consumer_tag: "ctag-replayer".into(),
                connection_id: 4,
                channel: 1,
                name: None,
                offset: 11_000,
                lag: 40_000,
                lag_ms: 61_000_000,
            },
        ],
        stored_offsets: [("etl".to_string(), 50_900), ("billing".to_string(), 30_000)]
            .into_iter()
            .collect(),
    });
    q
}

/// [`app`], and a snapshot at [`T0`] that also holds [`stream_queue`].
pub fn app_with_stream() -> App {
    let mut app = app();
    let mut s = snapshot(30);
    s.queues.push(stream_queue());
    update(&mut app, Event::Api(ApiEvent::Snapshot(Box::new(s))));
    app
}

/// Two contexts of a config file: `local` (no colour) and `prod` (red, read-only).
pub fn contexts() -> Vec<crate::event::ContextInfo> {
    use crate::event::ContextInfo;
    vec![
        ContextInfo {
            name: "local".into(),
            url: "http://127.0.0.1:15672".into(),
            color: None,
            read_only: false,
        },
        ContextInfo {
            name: "prod".into(),
            url: "https://warren.prod.example:15671".into(),
            color: Some(ratatui::style::Color::Red),
            read_only: true,
        },
    ]
}

/// [`app`] on the context `local` of [`contexts`].
pub fn app_on_local() -> App {
    let mut app = app();
    app.contexts = contexts();
    app.settings.context = app.contexts.first().cloned();
    app
}

/// An app that has seen 30 snapshots, one a second, ending at [`T0`].
pub fn app() -> App {
    let settings = Settings {
        url: "http://127.0.0.1:15672".into(),
        read_only: false,
        utc_offset_s: 0,
        refresh_ms: 2000,
        context: None,
    };
    let mut app = App::new(settings, T0 - 30_000);
    app.size = (120, 40);
    update(&mut app, Event::Api(ApiEvent::StreamUp));
    for i in 0..30 {
        update(
            &mut app,
            Event::Tick {
                now_ms: T0 - 29_000 + i * 1000,
            },
        );
        update(&mut app, Event::Api(ApiEvent::Snapshot(Box::new(snapshot(i)))));
    }
    app
}

pub fn connections() -> Vec<ConnectionInfo> {
    (1..=3)
        .map(|i| ConnectionInfo {
            id: i,
            peer: format!("127.0.0.1:{}", 50_000 + i),
            user: "guest".into(),
            vhost: "/".into(),
            channels: i,
            connected_at_ms: T0 - i * 95_000,
            name: format!("127.0.0.1:{} -> 127.0.0.1:5672", 50_000 + i),
            user_provided_name: match i {
                1 => Some("order-service".to_string()),
                2 => Some("thermostat-7".to_string()),
                _ => None,
            },
            client: (i == 1).then(|| format!("pika 1.3.{i}")),
            state: "running".into(),
            protocol: match i {
                2 => "MQTT 5.0",
                3 => "STOMP 1.2",
                _ => "AMQP 0-9-1",
            }
            .into(),
            ..Default::default()
        })
        .collect()
}

/// A three-node cluster seen from its leader, n1.
pub fn cluster() -> warren_shared::cluster::ClusterSummary {
    use warren_shared::cluster::{ClusterNode, ClusterReplica, ClusterSummary};
    let node = |i: u16| ClusterNode {
        name: format!("n{i}"),
        amqp: format!("10.0.0.{i}:5672"),
        admin: Some(format!("10.0.0.{i}:15672")),
        replication: Some(format!("10.0.0.{i}:5679")),
    };
    ClusterSummary {
        enabled: true,
        node: "n1".into(),
        role: "leader".into(),
        term: 7,
        leader: Some(node(1)),
        nodes: (1..=3).map(node).collect(),
        lease_ttl_s: 10,
        etcd: vec!["http://10.0.0.9:2379".into()],
        etcd_error: None,
        head_lsn: 1_200,
        in_sync: vec!["n1".into(), "n2".into(), "n3".into()],
        replicas: vec![
            ClusterReplica {
                node: "n2".into(),
                state: "streaming".into(),
                acked_lsn: 1_200,
                lag_ops: 0,
                last_ack_ms_ago: 120,
            },
            ClusterReplica {
                node: "n3".into(),
                state: "streaming".into(),
                acked_lsn: 1_150,
                lag_ops: 50,
                last_ack_ms_ago: 900,
            },
        ],
        following: None,
    }
}

pub fn consumers() -> Vec<ConsumerInfo> {
    ["orders", "emails", "emails", "audit"]
        .iter()
        .enumerate()
        .map(|(i, q)| ConsumerInfo {
            vhost: "/".into(),
            queue: q.to_string(),
            consumer_tag: format!("amq.ctag-{i}"),
            connection: i as u64 + 1,
            channel: 1,
            exclusive: i == 3,
            priority: 0,
            ack_required: i != 3,
            ..Default::default()
        })
        .collect()
}

pub fn exchanges() -> Vec<ExchangeInfo> {
    [
        ("", "direct"),
        ("amq.direct", "direct"),
        ("amq.topic", "topic"),
        ("events", "fanout"),
    ]
    .iter()
    .map(|(n, k)| ExchangeInfo {
        vhost: "/".into(),
        name: n.to_string(),
        kind: k.to_string(),
        durable: true,
        ..ExchangeInfo::default()
    })
    .collect()
}

pub fn bindings() -> Vec<BindingInfo> {
    [
        ("", "orders", "orders"),
        ("events", "audit", ""),
        ("events", "analytics", ""),
    ]
    .iter()
    .map(|(s, d, k)| BindingInfo {
        vhost: "/".into(),
        source: s.to_string(),
        destination: d.to_string(),
        destination_type: "queue".into(),
        routing_key: k.to_string(),
        ..BindingInfo::default()
    })
    .collect()
}

/// A page of the audit trail, newest first (ids 106 down to 101, a minute or so apart): operator actions, an access
/// change, a refusal and a failed login.
pub fn audit_entries() -> Vec<AuditEntry> {
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        Option<u64>,
        &'a str,
    );
    let rows: [Row; 6] = [
        ("guest", "127.0.0.1", "purge", Some("/"), "orders.dlq", Some(1234), "ok"),
        (
            "mallory",
            "10.0.0.9",
            "login_failed",
            None,
            "amqp",
            None,
            "invalid credentials",
        ),
        (
            "app",
            "10.0.0.7",
            "refused",
            Some("/"),
            "queue 'payments'",
            None,
            "access to queue 'payments' in vhost '/' refused for user 'app': configure",
        ),
        ("guest", "127.0.0.1", "move", Some("/"), "orders.dlq", Some(0), "ok"),
        ("admin", "", "put_user", None, "app", None, "ok"),
        ("guest", "127.0.0.1", "close_connection", Some("/"), "3", None, "ok"),
    ];
    rows.iter()
        .zip(0..)
        .map(
            |((user, peer, action, vhost, object, messages, result), i)| AuditEntry {
                id: 106 - i,
                at_ms: T0 - i * 61_000,
                user: user.to_string(),
                peer: (!peer.is_empty()).then(|| peer.to_string()),
                action: action.to_string(),
                vhost: vhost.map(str::to_string),
                object: object.to_string(),
                messages: *messages,
                result: result.to_string(),
            },
        )
        .collect()
}

/// The sequence number of the journey read among `cmds`.
pub fn trace_seq(cmds: &[Command]) -> u64 {
    cmds.iter()
        .find_map(|c| match c {
            Command::Trace { seq, .. } => Some(*seq),
            _ => None,
        })
        .expect("a journey read")
}

/// A dead-lettered, redriven and finally acked message's journey.
pub fn journey(id: &str) -> warren_shared::trace::Journey {
    use warren_shared::trace::{Journey, JourneyStep, TraceEvent as E};
    let q = |s: &str| s.to_string();
    let steps = vec![
        (
            0,
            E::Published {
                connection: 3,
                user: q("billing-svc"),
                exchange: q(""),
                routing_key: q("orders"),
            },
        ),
        (
            1,
            E::Routed {
                queues: vec![q("orders")],
            },
        ),
        (
            4,
            E::Delivered {
                queue: q("orders"),
                consumer_tag: Some(q("ctag-1")),
                connection: 7,
                delivery_count: 0,
                redelivered: false,
            },
        ),
        (
            1_250,
            E::Rejected {
                queue: q("orders"),
                requeue: false,
                nack: false,
            },
        ),
        (
            1_251,
            E::DeadLettered {
                queue: q("orders"),
                reason: q("rejected"),
                exchange: q("dlx"),
                to: vec![q("orders.dlq")],
            },
        ),
        (
            252_000,
            E::Redriven {
                from: q("orders.dlq"),
                to: vec![q("orders")],
            },
        ),
        (
            252_003,
            E::Delivered {
                queue: q("orders"),
                consumer_tag: Some(q("ctag-2")),
                connection: 9,
                delivery_count: 0,
                redelivered: false,
            },
        ),
        (252_040, E::Acked { queue: q("orders") }),
    ];
    Journey {
        vhost: "/".into(),
        id: id.into(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        truncated: false,
        events: steps
            .into_iter()
            .map(|(dt, event)| JourneyStep { at_ms: T0 + dt, event })
            .collect(),
    }
}

/// Three messages held by delayed exchanges, due 45 s, 10 min and 2 h after [`T0`].
pub fn scheduled_messages() -> Vec<warren_shared::scheduled::ScheduledMessage> {
    let held = |id: u64, exchange: &str, key: &str, due_ms: u64, body: &str, message_id: &str| {
        let mut properties = serde_json::Map::new();
        properties.insert("message_id".into(), json!(message_id));
        properties.insert("headers".into(), json!({ "x-delay": due_ms - (T0 - 5_000) }));
        warren_shared::scheduled::ScheduledMessage {
            id,
            vhost: "/".into(),
            exchange: exchange.into(),
            routing_key: key.into(),
            due_ms,
            held_ms: T0 - 5_000,
            size: body.len() as u64,
            persistent: true,
            properties,
            body_encoding: "utf8".into(),
            body: body.into(),
        }
    };
    vec![
        held(7, "later", "emails", T0 + 45_000, r#"{"to":"ana@example.com"}"#, "m-7"),
        held(
            3,
            "retry",
            "orders",
            T0 + 600_000,
            r#"{"order":1042,"attempt":2}"#,
            "m-3",
        ),
        held(
            9,
            "later",
            "emails",
            T0 + 7_200_000,
            r#"{"to":"bo@example.com"}"#,
            "m-9",
        ),
    ]
}
