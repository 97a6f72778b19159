//! Bodies of the RabbitMQ management endpoints that Warren serves in RabbitMQ's shapes: users, vhosts, permissions,
//! limits, nodes, health checks and `get`. Field names are RabbitMQ's (`max-connections` with its dash included),
//! so that its tools read them unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET /api/whoami`: the calling user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Whoami {
    pub name: String,
    pub tags: Vec<String>,
}

/// A vhost's or a user's limits; a limit that is not set is left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct LimitValues {
    #[serde(rename = "max-connections", default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Vhosts only.
    #[serde(rename = "max-queues", default, skip_serializing_if = "Option::is_none")]
    pub max_queues: Option<u64>,
    /// Users only.
    #[serde(rename = "max-channels", default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<u64>,
}

/// `GET /api/users` and `/api/users/{name}` (never with the password hash: a definitions export is where hashes
/// leave the broker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UserInfo {
    pub name: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
    pub limits: LimitValues,
}

/// A vhost's description and tags, as RabbitMQ also nests them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct VhostMetadata {
    pub description: String,
    pub tags: Vec<String>,
}

/// `GET /api/vhosts` and `/api/vhosts/{vhost}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct VhostInfo {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub metadata: VhostMetadata,
}

/// `GET /api/permissions[...]`: a user's permissions in a vhost, three regular expressions over resource names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct PermissionInfo {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// `GET /api/topic-permissions[...]`: routing-key expressions for one topic exchange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TopicPermissionInfo {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// `GET /api/vhost-limits[/{vhost}]`: one vhost's limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct VhostLimits {
    pub vhost: String,
    pub value: LimitValues,
}

/// `GET /api/user-limits[/{user}]`: one user's limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UserLimits {
    pub user: String,
    pub value: LimitValues,
}

/// `GET /api/nodes` and `/api/nodes/{name}`: a node (a single Warren is one node, `warren@HOSTNAME`; a cluster lists
/// every node registered in etcd, the answering one in full).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct NodeInfo {
    pub name: String,
    /// Always `disc`.
    #[serde(rename = "type")]
    pub kind: String,
    pub running: bool,
    pub mem_used: u64,
    /// 0: no limit.
    pub mem_limit: u64,
    pub mem_alarm: bool,
    pub disk_free: u64,
    pub disk_free_limit: u64,
    pub disk_free_alarm: bool,
    pub fd_used: u64,
    pub fd_total: u64,
    pub sockets_used: u64,
    pub sockets_total: u64,
    /// Erlang processes: 0 (RabbitMQ's tools read the field).
    pub proc_used: u64,
    pub proc_total: u64,
    /// Milliseconds since the broker started.
    pub uptime: u64,
    pub processors: u64,
    pub os_pid: String,
    /// Always empty (one node).
    pub partitions: Vec<String>,
    /// Always empty (no Erlang applications).
    pub applications: Vec<Value>,
}

/// A health check's answer: `{"status":"ok"}` (200), or `{"status":"failed","reason":...}` (503).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct HealthStatus {
    /// `ok` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/queues/{vhost}/{name}/get`: one message, as RabbitMQ shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct GotMessage {
    /// The body's size (before `truncate`).
    pub payload_bytes: u64,
    pub redelivered: bool,
    pub exchange: String,
    pub routing_key: String,
    /// Ready messages left after this one.
    pub message_count: u64,
    pub properties: Map<String, Value>,
    pub payload: String,
    /// `string` or `base64`.
    pub payload_encoding: String,
}
