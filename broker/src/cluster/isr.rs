//! The in-sync set (issue 17): which followers every confirm waits for, and which may be elected. The leader keeps
//! it in etcd under `/<prefix>/isr` (JSON: the term and the members, the leader first), written only by a
//! transaction fenced on the leader's own term, and mirrors it in the replication log's gate.
//!
//! Invariants, which together make "a node etcd lets lead holds every confirmed write":
//! - **Grow:** a follower is counted by the gate first (confirms wait for its acks from then on), and only then
//!   named in etcd; and only once it has acked everything confirmed so far, so that a follower that fell behind
//!   (paused, slow) does not stall confirms until it has caught up.
//! - **Shrink:** a follower that disconnected, or has not acked for the replication deadline while behind, is
//!   removed from etcd first; only once that transaction succeeded does the gate stop counting it. A failed
//!   transaction (etcd away, or no longer the leader) changes nothing, so confirms keep waiting.
//! - Only a member of the set (or any node, before a leader ever wrote one) campaigns.
//! - A new leader announces no round before it has replaced the last term's set with its own (the gate is shut
//!   until then): the old set may name a node the new leader does not count.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::etcd::Etcd;
use super::Status;
use crate::store::repl::ReplLog;

/// The value of `/<prefix>/isr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InSync {
    pub term: i64,
    /// The leader, then its in-sync followers.
    pub members: Vec<String>,
}

/// What the keys say about whether `node` may campaign: yes when no in-sync set was ever written, or it names it.
pub fn may_campaign(isr: Option<&[u8]>, node: &str) -> bool {
    match isr {
        None => true,
        Some(v) => serde_json::from_slice::<InSync>(v).is_ok_and(|s| s.members.iter().any(|m| m == node)),
    }
}

pub struct Maintainer {
    pub etcd: Etcd,
    pub key: String,
    pub leader_key: String,
    pub term: i64,
    pub me: String,
    pub log: Arc<ReplLog>,
    pub status: Arc<Status>,
    pub deadline: Duration,
}

impl Maintainer {
    /// Keeps the set current until `shutdown`: first `{me}`, then growing and shrinking as followers come and go.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut written: Option<BTreeSet<String>> = None;
        loop {
            let head = self.log.head();
            let counted: BTreeSet<String> = self.log.counted().into_iter().collect();
            let replicas = self.status.replica_health();
            // Grow (the gate first): a streaming follower that acks, and holds everything confirmed so far.
            let released = self.log.released_lsn();
            let fit = |r: &&super::ReplicaHealth| {
                r.streaming && r.acked >= released && r.since_ack < self.deadline && !counted.contains(&r.node)
            };
            for r in replicas.iter().filter(fit) {
                info!(node = %r.node, acked = r.acked, "counting a follower in the in-sync set");
                self.log.count(&r.node, r.acked);
            }
            let counted: BTreeSet<String> = self.log.counted().into_iter().collect();
            // Shrink: gone, or silent past the deadline while behind.
            let dropping: BTreeSet<String> = counted
                .iter()
                .filter(|n| {
                    replicas
                        .iter()
                        .find(|r| &r.node == *n)
                        .is_none_or(|r| r.acked < head && r.since_ack > self.deadline)
                })
                .cloned()
                .collect();
            let wanted: BTreeSet<String> = counted.difference(&dropping).cloned().collect();
            if written.as_ref() != Some(&wanted) {
                let value = InSync {
                    term: self.term,
                    members: std::iter::once(self.me.clone()).chain(wanted.iter().cloned()).collect(),
                };
                let body = serde_json::to_vec(&value).unwrap_or_default();
                match self
                    .etcd
                    .put_if_created_at(&self.key, &body, &self.leader_key, self.term)
                    .await
                {
                    Ok(true) => {
                        for n in &dropping {
                            warn!(node = %n, "a follower left the in-sync set");
                            self.log.uncount(n);
                        }
                        self.status.set_in_sync(value.members.clone());
                        if written.is_none() {
                            // etcd no longer names followers of the last term that this leader does not count.
                            self.log.open_gate();
                        }
                        written = Some(wanted);
                    }
                    Ok(false) => warn!(
                        term = self.term,
                        "the in-sync set was not written: no longer this term's leader"
                    ),
                    Err(e) => warn!(error = %e, "could not write the in-sync set to etcd"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_members_campaign_once_a_set_was_written() {
        let set = serde_json::to_vec(&InSync {
            term: 7,
            members: vec!["n1".into(), "n2".into()],
        })
        .expect("json");
        assert!(may_campaign(None, "n3"), "a fresh cluster");
        assert!(may_campaign(Some(&set), "n2"));
        assert!(!may_campaign(Some(&set), "n3"));
        assert!(!may_campaign(Some(b"garbage"), "n1"));
    }
}
