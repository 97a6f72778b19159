//! RabbitMQ's field names and shapes inside Warren's bodies, for the tools written against RabbitMQ's management
//! API (KEDA, Flower, Datadog, telegraf, rabbitmqadmin): flattened into `Overview` and `QueueInfo`, so one body
//! serves both Warren's console and those tools.

use serde::{Deserialize, Serialize};

/// A rate as RabbitMQ reports it: `{"rate": 12.5}` (per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Details {
    pub rate: f64,
}

/// RabbitMQ's `message_stats`: counts since start, and their rates over the last 10 s (`*_details.rate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MessageStats {
    pub publish: u64,
    pub publish_details: Details,
    pub deliver_get: u64,
    pub deliver_get_details: Details,
    pub deliver: u64,
    pub deliver_details: Details,
    pub ack: u64,
    pub ack_details: Details,
    pub redeliver: u64,
    pub redeliver_details: Details,
}

/// RabbitMQ's names for a queue's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueFields {
    pub messages_unacknowledged: u64,
    pub message_stats: MessageStats,
    /// Always "running".
    pub state: String,
    pub node: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct QueueTotals {
    pub messages: u64,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ObjectTotals {
    pub connections: u64,
    pub channels: u64,
    pub exchanges: u64,
    pub queues: u64,
    pub consumers: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Listener {
    pub node: String,
    /// `amqp`, `amqp/ssl`, `http`, `https`, `prometheus`.
    pub protocol: String,
    pub ip_address: String,
    pub port: u16,
}

/// RabbitMQ's overview fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct OverviewFields {
    pub product_name: String,
    pub product_version: String,
    /// The RabbitMQ version whose API this follows.
    pub rabbitmq_version: String,
    pub management_version: String,
    pub cluster_name: String,
    pub node: String,
    pub queue_totals: QueueTotals,
    pub object_totals: ObjectTotals,
    pub message_stats: MessageStats,
    pub listeners: Vec<Listener>,
}
