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
}
