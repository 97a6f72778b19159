//! `GET /api/cluster`: this node's view of its cluster (`crate::cluster`): its role, the leader and its term, and
//! every node registered in etcd. A single node answers `enabled: false`. Followers serve the same document
//! themselves (`cluster::refuse`), so any node can be asked where the leader is.

use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use warren_shared::cluster::ClusterSummary;

use super::{AdminState, ApiResult};
use crate::broker::Broker;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/cluster",
        get_with(cluster, |o| {
            o.summary("The cluster: this node's role, the leader and its term, every registered node")
        }),
    )
}

/// What a node that is not clustered reports.
pub fn standalone() -> ClusterSummary {
    ClusterSummary {
        enabled: false,
        node: super::nodes::node_name(),
        role: "standalone".into(),
        ..ClusterSummary::default()
    }
}

async fn cluster(State(b): State<Arc<Broker>>) -> ApiResult<ClusterSummary> {
    Ok(Json(match b.cluster.get() {
        Some(s) => s.summary(),
        None => standalone(),
    }))
}
