//! The admin API contract shared by the broker (which serves it) and the console (which reads it): the JSON bodies
//! of every endpoint. Field names are the wire names; changing one is a breaking change for both sides. `cli` holds
//! the one thing the binaries share besides: how a fatal error is printed.

use serde::{Deserialize, Serialize};

pub mod cli;
pub mod cluster;
pub mod drain;
pub mod edit;
pub mod loose;
pub mod management;
pub mod rabbit;
pub mod scheduled;
pub mod trace;

/// `GET /api/overview`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Overview {
    pub product: String,
    pub version: String,
    pub uptime_ms: u64,
    pub totals: Totals,
    /// Every queue's rates added up.
    pub rates: QueueRates,
    /// Memory and disk against their alarm limits (older brokers send none).
    #[serde(default)]
    pub resources: Resources,
    /// How long an operator's purge or delete can be undone (0: no undo), so dialogs can say so beforehand.
    #[serde(default)]
    pub undo_window_ms: u64,
    /// At most this much of a purge or delete (bodies and properties) is kept for undo.
    #[serde(default)]
    pub undo_max_bytes: u64,
    /// RabbitMQ's fields, for the tools that read them (`rabbit.rs`).
    #[serde(flatten, default)]
    pub rabbitmq: rabbit::OverviewFields,
}

/// The broker's memory and disk, and the alarms that block publishers when a limit is passed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Resources {
    /// Resident memory of the broker process, bytes.
    pub memory_used: u64,
    /// The memory high watermark, bytes (0: no memory alarm).
    pub memory_limit: u64,
    /// Publishers are blocked: memory is above the watermark.
    pub memory_alarm: bool,
    /// Free space on the data directory's filesystem, bytes.
    pub disk_free: u64,
    /// The disk free limit, bytes (0: no disk alarm).
    pub disk_free_limit: u64,
    /// Publishers are blocked: free disk space is below the limit.
    pub disk_alarm: bool,
    /// What the messages all queues hold in memory take, bytes (bodies, properties, bookkeeping).
    #[serde(default)]
    pub queue_memory_used: u64,
    /// Past this sum (`--total-queue-ram`), every queue pages its next transient messages to disk.
    #[serde(default)]
    pub queue_memory_limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Totals {
    pub connections: u64,
    pub queues: u64,
    pub consumers: u64,
    pub messages_ready: u64,
    pub messages_unacked: u64,
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    pub redelivered: u64,
    pub rejected: u64,
    pub nacked: u64,
    pub dropped: u64,
    /// Unroutable messages returned to a publisher (mandatory flag).
    pub returned: u64,
}

/// One queue, in `GET /api/queues[/{vhost}[/{name}]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueInfo {
    pub vhost: String,
    pub name: String,
    /// The queue type, as in RabbitMQ: always "classic" here (priority queues are classic queues with
    /// `x-max-priority`).
    #[serde(rename = "type", default)]
    pub kind: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// The name of the operator policy that applies, if any.
    pub policy: Option<String>,
    pub messages_ready: u64,
    pub messages_unacked: u64,
    pub messages: u64,
    pub message_bytes: u64,
    /// Ready transient messages paged out to disk under memory pressure (counted in `messages_ready` too).
    #[serde(default)]
    pub messages_paged_out: u64,
    pub consumers: u64,
    /// The share of the last ten seconds in which the queue's consumers could take a message at once (RabbitMQ's
    /// consumer utilisation), 0.0..=1.0; `None` without consumers.
    pub consumer_utilisation: Option<f64>,
    pub counters: QueueCounters,
    /// Per-second rates of the counters over the last 1, 10 and 60 seconds.
    pub rates: QueueRates,
    /// How long the oldest ready message has waited (consumer lag in time; the count behind is messages_ready).
    pub time_behind_ms: u64,
    /// How long the ready backlog takes to drain at the net rate of the last 10 s (`drain::time_to_drain_ms`): 0
    /// when nothing is ready, null when it does not shrink at this rate.
    #[serde(default)]
    pub drain_ms: Option<u64>,
    /// Publish -> deliver latency over the last one to two minutes.
    pub latency_deliver: LatencySummary,
    /// Publish -> ack latency over the last one to two minutes.
    pub latency_ack: LatencySummary,
    /// Where this queue's dead letters go (exchange, routing key).
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// Queues (in this vhost) whose dead letters are routed into this queue.
    #[serde(default)]
    pub dead_letter_sources: Vec<String>,
    /// Paused by an operator: consumers stay subscribed, nothing is delivered (`rabbitmq.state` is "paused").
    #[serde(default)]
    pub paused: bool,
    /// A stream's log and its consumers' positions (`type` "stream" only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSummary>,
    /// RabbitMQ's names for the same figures (`messages_unacknowledged`, `message_stats`, `state`, `node`).
    #[serde(flatten, default)]
    pub rabbitmq: rabbit::QueueFields,
}

/// A stream's figures: its offsets, size, retention, and where each consumer is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StreamSummary {
    /// The oldest offset kept.
    pub first_offset: u64,
    /// The offset the next message gets.
    pub next_offset: u64,
    /// When the oldest and newest messages kept were appended (unix ms; 0 when empty).
    pub first_timestamp_ms: u64,
    pub last_timestamp_ms: u64,
    pub bytes: u64,
    pub segments: u64,
    /// Retention (`x-max-length-bytes`, `x-max-age` in ms) and `x-stream-max-segment-size-bytes`.
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub segment_bytes: u64,
    /// Segments filtered readers skipped without reading them.
    pub segments_skipped: u64,
    /// Messages filtered readers were not given.
    pub filtered_out: u64,
    pub consumers: Vec<StreamConsumerSummary>,
    /// Stored offsets of named consumers (`x-stream-consumer-name`), connected or not: the next offset each reads.
    pub stored_offsets: std::collections::BTreeMap<String, u64>,
}

/// One consumer of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StreamConsumerSummary {
    pub consumer_tag: String,
    pub connection_id: u64,
    pub channel: u16,
    /// `x-stream-consumer-name`, if it has one.
    pub name: Option<String>,
    /// The next offset it is given.
    pub offset: u64,
    /// Messages between it and the head, and how far behind the head's time it is.
    pub lag: u64,
    pub lag_ms: u64,
}

/// Monotonic per-queue counters since the broker started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueCounters {
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub redelivered: u64,
    pub rejected: u64,
    pub nacked: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    pub dropped: u64,
}

/// Latency percentiles in ms, and a histogram as (upper bound ms, count) buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    #[cfg_attr(feature = "openapi", schemars(with = "Vec<[u64; 2]>"))]
    pub buckets: Vec<(u64, u64)>,
}

/// Rates in messages per second over three windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Rate {
    pub last_1s: f64,
    pub last_10s: f64,
    pub last_60s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueRates {
    pub publish: Rate,
    pub deliver: Rate,
    pub ack: Rate,
    pub redeliver: Rate,
    pub reject: Rate,
    pub nack: Rate,
    pub dead_lettered: Rate,
    pub expired: Rate,
    pub dropped: Rate,
}

/// One `GET /api/stream` event (Server-Sent Events): the whole picture, sent on connect and then every interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StreamSnapshot {
    pub overview: Overview,
    pub queues: Vec<QueueInfo>,
}

/// `GET /api/exchanges[/{vhost}]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ExchangeInfo {
    pub vhost: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// `GET /api/bindings[/{vhost}]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BindingInfo {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    /// "queue" or "exchange".
    pub destination_type: String,
    pub routing_key: String,
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// What names this binding in RabbitMQ's paths (`/api/bindings/{vhost}/e/{source}/q/{destination}/{key}`).
    #[serde(default)]
    pub properties_key: String,
}

/// One record of the audit journal (`GET /api/audit`): an operator action, an access change, or a refused login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct AuditEntry {
    /// Increasing; `GET /api/audit?before=ID` pages back from it.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who (the user name given, for a failed login).
    pub user: String,
    /// From where (the client's address), when known.
    pub peer: Option<String>,
    /// What: `purge`, `delete_queue`, `move`, `put_user`, `login_failed`, …
    pub action: String,
    pub vhost: Option<String>,
    /// On what: a queue, exchange, user, connection, …
    pub object: String,
    /// How many messages it touched, where that applies.
    pub messages: Option<u64>,
    /// `ok`, or why not.
    pub result: String,
}

/// Which messages an operation applies to; every field given must match (none given: every message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MessageFilter {
    /// Only messages with this header (and, if given, `header_value`, compared as text).
    pub header: Option<String>,
    pub header_value: Option<String>,
    /// Only messages with this property (content_type, message_id, correlation_id, reply_to, type, app_id,
    /// user_id, priority, delivery_mode) equal to `property_value`.
    pub property: Option<String>,
    pub property_value: Option<String>,
    /// Only messages whose body contains this text.
    pub body_contains: Option<String>,
}

impl MessageFilter {
    pub fn is_empty(&self) -> bool {
        self.header.is_none() && self.property.is_none() && self.body_contains.is_none()
    }
}

/// `POST /api/queues/{vhost}/{name}/peek` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PeekRequest {
    /// Skip this many (matching) messages from the head.
    #[serde(default)]
    pub from: u64,
    /// At most this many (default 50, at most 1000).
    pub count: Option<u64>,
    /// Streams only: start at this offset (clamped to what the stream keeps) instead of the oldest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Streams only: start at the first message appended at or after this time (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    #[serde(flatten)]
    pub filter: MessageFilter,
}

/// One message seen by peek: nothing about it changes by being looked at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PeekedMessage {
    /// The message's stable id within its queue.
    pub id: u64,
    pub exchange: String,
    pub routing_key: String,
    pub redelivered: bool,
    /// How many times it was delivered and came back (requeued).
    pub delivery_count: u32,
    /// Unix ms when the queue accepted it.
    pub enqueued_ms: u64,
    pub priority: u8,
    pub size: u64,
    pub persistent: bool,
    /// Properties and headers as JSON (x-death decoded into arrays of objects).
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// "utf8" or "base64".
    pub body_encoding: String,
    pub body: String,
    /// Its journey's id (`GET /api/trace/{vhost}/{trace_id}`): its `message_id`, or the id the broker gave it when
    /// it was traced; none for an untraced message without a `message_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `DELETE /api/queues/{vhost}/{name}/contents`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PurgeResult {
    pub purged: u64,
    /// How to undo it (`POST /api/undo/{id}`), and until when; none when undo is off or it was too large to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoTicket>,
}

/// A removal that can be undone: `POST /api/undo/{id}` until `until_ms` (unix ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UndoTicket {
    pub id: u64,
    pub until_ms: u64,
}

/// `GET /api/undo`: a purge or delete that can still be undone (newest first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UndoBatch {
    pub id: u64,
    pub vhost: String,
    pub queue: String,
    /// "purge" or "delete".
    pub action: String,
    pub user: String,
    pub messages: u64,
    pub bytes: u64,
    pub at_ms: u64,
    pub until_ms: u64,
}

/// `POST /api/undo/{id}`: the messages put back into their queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UndoResult {
    pub vhost: String,
    pub queue: String,
    pub restored: u64,
}

/// `PUT /api/queues/{vhost}/{name}/pause` and `/resume`: the state now, and whether this call changed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PauseResult {
    pub paused: bool,
    pub changed: bool,
}

/// Every error: `{ "error": "...", "reason": "..." }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ApiError {
    pub error: String,
    pub reason: String,
}

/// `POST /api/queues/{vhost}/{name}/move`: move (redrive) ready messages elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MoveRequest {
    /// "source" (back where each message was dead-lettered from, by its x-death), "queue" or "exchange".
    pub to: String,
    /// With `to = "queue"`.
    pub queue: Option<String>,
    /// With `to = "exchange"`.
    pub exchange: Option<String>,
    /// With `to = "exchange"`; default: each message's own routing key.
    pub routing_key: Option<String>,
    /// Only these message ids; default: every ready message (that matches the filter).
    pub ids: Option<Vec<u64>>,
    #[serde(flatten)]
    pub filter: MessageFilter,
    /// With neither `ids` nor a filter: at most this many messages from the head (the number the operator was
    /// shown, so messages that arrive meanwhile stay); default: as many as are ready when the move starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// At most this many messages per second; default: as fast as the destination syncs.
    pub rate: Option<u32>,
    /// Answer when the move has finished (200) instead of at once (202).
    #[serde(default)]
    pub wait: bool,
}

/// A move running in the background: `POST .../move` starts one, `GET /api/moves` lists them,
/// `DELETE /api/moves/{id}` cancels one (messages not yet moved stay in the source).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MoveTask {
    pub id: u64,
    pub vhost: String,
    /// The source queue.
    pub queue: String,
    /// "source", "queue" or "exchange", as requested.
    pub to: String,
    /// The named destination queue or exchange, if any.
    pub destination: Option<String>,
    /// "running", "done", "cancelled" or "failed".
    pub state: String,
    /// Messages selected when the move started.
    pub total: u64,
    pub moved: u64,
    /// Left in the source: no destination could be worked out, or it does not exist.
    pub not_moved: u64,
    pub rate: Option<u32>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// `POST /api/queues/{vhost}/{name}/priority`: change the priority of ready messages in a priority queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PriorityRequest {
    /// These ids; default: every ready message that matches the filter (a filter or ids must be given).
    pub ids: Option<Vec<u64>>,
    #[serde(flatten)]
    pub filter: MessageFilter,
    /// Set to this priority (capped at the queue's x-max-priority)...
    pub set: Option<u8>,
    /// ...or move by this many levels (clamped to 0..=x-max-priority).
    pub step: Option<i16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PriorityResult {
    pub changed: u64,
}

/// The body of actions that answer with nothing more than success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Done {
    pub ok: bool,
}

/// `POST /api/queues/{vhost}/{name}/delete`: delete ready messages by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeleteMessages {
    pub ids: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeleteResult {
    pub deleted: u64,
    /// As for a purge: how to undo it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoTicket>,
}

/// `POST /api/exchanges/{vhost}/{name}/publish` (the default exchange is `amq.default`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PublishRequest {
    pub routing_key: String,
    pub payload: String,
    /// "utf8" (default; RabbitMQ's "string" too) or "base64".
    pub payload_encoding: Option<String>,
    #[serde(default, deserialize_with = "loose::bool")]
    pub persistent: bool,
    /// RabbitMQ's form: `{"delivery_mode": 2, "priority": 5, "message_id": "...", "headers": {...}}`.
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub priority: Option<u8>,
    pub message_id: Option<String>,
    /// String-valued headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PublishResult {
    pub routed: bool,
}

/// `GET /api/connections`: Warren's fields, and RabbitMQ's (`name`, `user_provided_name`, `peer_host`, ...), so
/// that tools which address a connection by its `name` work unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: String,
    pub user: String,
    pub vhost: String,
    pub channels: u64,
    pub connected_at_ms: u64,
    /// RabbitMQ's connection name, `"peer -> local"` (`127.0.0.1:50123 -> 127.0.0.1:5672`): what
    /// `/api/connections/{name}` takes, besides the numeric `id`.
    #[serde(default)]
    pub name: String,
    /// The name the client gave the connection (`connection_name` in its properties), if any.
    #[serde(default)]
    pub user_provided_name: Option<String>,
    /// The client library and its version, as it reports them (e.g. "pika 1.3.2").
    #[serde(default)]
    pub client: Option<String>,
    /// RabbitMQ's connection state: "running" (or "blocked" while an alarm blocks its publishes).
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub peer_host: String,
    #[serde(default)]
    pub peer_port: u16,
    /// The broker's side of the connection.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
    /// Milliseconds since the epoch, as RabbitMQ's `connected_at`.
    #[serde(default)]
    pub connected_at: u64,
    /// `AMQP 0-9-1`, as RabbitMQ says it.
    #[serde(default)]
    pub protocol: String,
    /// Whether the connection is AMQPS.
    #[serde(default)]
    pub ssl: bool,
}

/// `GET /api/channels` and `/api/connections/{name}/channels`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChannelInfo {
    pub connection: u64,
    pub channel: u16,
    pub user: String,
    pub vhost: String,
    /// RabbitMQ's channel name, `"<connection name> (<number>)"`.
    #[serde(default)]
    pub name: String,
    /// The channel number (RabbitMQ's field; the same as `channel`).
    #[serde(default)]
    pub number: u16,
    #[serde(default)]
    pub connection_details: ConnectionDetails,
}

/// Which connection a channel is on, as RabbitMQ's `connection_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ConnectionDetails {
    pub name: String,
    pub peer_host: String,
    pub peer_port: u16,
}

/// `GET /api/consumers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ConsumerInfo {
    pub vhost: String,
    pub queue: String,
    pub consumer_tag: String,
    pub connection: u64,
    pub channel: u16,
    pub exclusive: bool,
    pub priority: i64,
    /// Whether the consumer acknowledges (false: no-ack).
    #[serde(default)]
    pub ack_required: bool,
    /// RabbitMQ's description of the consumer's channel.
    #[serde(default)]
    pub channel_details: ChannelDetails,
}

/// The channel a consumer is on, as RabbitMQ's `channel_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChannelDetails {
    /// `"<connection name> (<number>)"`.
    pub name: String,
    pub number: u16,
    pub connection_name: String,
    pub peer_host: String,
    pub peer_port: u16,
    pub user: String,
}

/// `DELETE /api/connections/{id}` body (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CloseRequest {
    pub reason: Option<String>,
}

/// `GET /api/policies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PolicyInfo {
    pub name: String,
    pub vhost: String,
    pub pattern: String,
    pub priority: i64,
    pub definition: serde_json::Map<String, serde_json::Value>,
    /// "config" (the config file; change it there) or "api" (set through this API, kept in the data directory).
    #[serde(default)]
    pub source: String,
}

/// `PUT /api/policies/{vhost}/{name}` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PolicyRequest {
    /// A regular expression matched against queue names.
    pub pattern: String,
    /// Queue arguments without the `x-` prefix, as in RabbitMQ: `max-length`, `message-ttl`,
    /// `dead-letter-exchange`, `dead-letter-routing-key`, `overflow`, `expires`, `max-length-bytes`,
    /// `delivery-limit`.
    pub definition: serde_json::Map<String, serde_json::Value>,
    /// The highest priority wins when several policies match.
    #[serde(default)]
    pub priority: i64,
}

fn yes() -> bool {
    true
}

fn queue_destination() -> String {
    "queue".to_string()
}

/// `PUT /api/queues/{vhost}/{name}` body: declare a queue (the same rules as queue.declare over AMQP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueRequest {
    #[serde(default = "yes", deserialize_with = "loose::bool")]
    pub durable: bool,
    #[serde(default, deserialize_with = "loose::bool")]
    pub auto_delete: bool,
    /// Queue arguments (`x-max-priority`, `x-dead-letter-exchange`, ...): strings, integers or booleans.
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

impl Default for QueueRequest {
    fn default() -> Self {
        QueueRequest {
            durable: true,
            auto_delete: false,
            arguments: serde_json::Map::new(),
        }
    }
}

/// `DELETE /api/queues/{vhost}/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueDeleted {
    pub deleted: bool,
    /// Messages dropped with it.
    pub messages: u64,
}

/// `PUT /api/exchanges/{vhost}/{name}` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ExchangeRequest {
    /// direct, fanout, topic, headers or x-delayed-message.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "yes", deserialize_with = "loose::bool")]
    pub durable: bool,
    #[serde(default, deserialize_with = "loose::bool")]
    pub auto_delete: bool,
    #[serde(default, deserialize_with = "loose::bool")]
    pub internal: bool,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// `POST` (bind) and `DELETE` (unbind) `/api/bindings/{vhost}` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct BindingRequest {
    pub source: String,
    pub destination: String,
    /// "queue" (the default) or "exchange".
    #[serde(default = "queue_destination")]
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// `POST /api/queues/{vhost}/{name}/stream/offsets/{consumer}`: where a named stream consumer reads next (an
/// operator's "replay from"). Exactly one of `offset` (`"first"`, `"last"`, `"next"` or a number) and `timestamp_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StreamOffsetReset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
}

/// `POST /api/queues/{vhost}/{name}/stream/truncate`: remove the segments wholly before `before`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StreamTruncate {
    pub before: u64,
}

/// What a stream action did: the stored offset set, or the segments removed, and the stream's first offset after it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct StreamActionResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_removed: Option<u64>,
    pub first_offset: u64,
}
