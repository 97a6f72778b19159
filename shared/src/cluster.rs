//! A Warren cluster as the admin API reports it (`GET /api/cluster`): this node, its role, the leader, and every
//! node registered in etcd. A single node answers with `enabled: false`.

use serde::{Deserialize, Serialize};

/// One node: its name and the addresses clients use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClusterNode {
    pub name: String,
    /// The AMQP address clients connect to (`host:port`).
    pub amqp: String,
    /// The admin API's address (`host:port`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The replication address followers connect to when this node leads (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
}

/// A follower as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClusterReplica {
    pub node: String,
    /// `syncing` (taking the full sync) or `streaming`.
    pub state: String,
    /// The follower applied and synced every change before this position of the leader's log.
    pub acked_lsn: u64,
    /// Changes the leader logged that the follower has not acked yet.
    pub lag_ops: u64,
    /// Milliseconds since its last ack.
    pub last_ack_ms_ago: u64,
}

/// What a follower knows of its own replication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClusterFollowing {
    /// The leader's replication address.
    pub leader: String,
    /// Whether the full sync completed and changes are being applied.
    pub in_sync: bool,
    /// The position of the leader's log applied and synced here.
    pub applied_lsn: u64,
}

/// `GET /api/cluster`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ClusterSummary {
    /// Whether this node runs with `--cluster`.
    pub enabled: bool,
    /// This node's name.
    pub node: String,
    /// `leader`, `follower`, or `standalone`.
    pub role: String,
    /// The leader's term: the etcd revision that created its leadership key (0 while there is none).
    pub term: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<ClusterNode>,
    /// Every node with a live registration in etcd, by name.
    pub nodes: Vec<ClusterNode>,
    /// The leadership lease's time to live, in seconds.
    pub lease_ttl_s: u64,
    /// The etcd endpoints.
    pub etcd: Vec<String>,
    /// The last error talking to etcd, if the last call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
    /// On the leader: the position its replication log has reached (changes logged since it started).
    #[serde(default)]
    pub head_lsn: u64,
    /// The in-sync set as the leader last wrote it to etcd: the leader, then the followers every confirm waits for.
    #[serde(default)]
    pub in_sync: Vec<String>,
    /// On the leader: its connected followers.
    #[serde(default)]
    pub replicas: Vec<ClusterReplica>,
    /// On a follower: its replication from the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub following: Option<ClusterFollowing>,
}
