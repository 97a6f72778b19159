//! Clustering on etcd (issue 17). With `--cluster etcd://host:2379,…` a node registers itself in etcd and
//! campaigns for a lease-backed leadership key; the one that holds it opens its data directory and serves clients
//! as a single node does; the others replicate its data directory ([`follower`]) and answer clients with a refusal
//! that names the leader ([`refuse`]), so one of them takes over within a lease's time to live of the leader's end.
//!
//! Keys, under `--cluster-prefix` (default `warren`): `/<prefix>/leader` (the leader's [`ClusterNode`], on its
//! lease; the key's create revision is the leader's term), `/<prefix>/nodes/<name>` (each node's, on its own
//! lease) and `/<prefix>/isr` (the in-sync set, [`isr`]).
//!
//! Data flow on the leader: every write to the data directory is reported to the process's replication log
//! (`store::repl`); [`leader`] ships it to each follower (a full sync with checksums, then the live stream, LZ4
//! batches, [`wire`]); the followers' acks release the group-commit rounds that confirms wait for.
//!
//! Invariants:
//! - A node serves clients only while it holds the leadership key. A leader whose lease cannot be renewed in time,
//!   or whose key is gone or was made by another term, stops at once: it exits with status 3 (as LavinMQ does), so
//!   that a supervisor starts it again as a follower. It never keeps serving beside a newer leader.
//! - Only a member of the in-sync set with a complete copy campaigns (any node, in a new cluster), and it stops
//!   acking the old leader before it campaigns.
//! - A confirm is sent only once every follower in the in-sync set holds the write, and only while at least
//!   `--cluster-min-in-sync` followers are in it ([`isr`], `store::repl`).
//! - On a clean shutdown the leader deletes its key (only its own term's), so another node takes over without
//!   waiting out the lease.

pub mod auth;
pub mod etcd;
pub mod files;
pub mod follower;
pub mod isr;
mod leader;
mod link;
mod refuse;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use warren_shared::cluster::{ClusterFollowing, ClusterNode, ClusterReplica, ClusterSummary};

use crate::config::Config;
use crate::tls::Tls;
use etcd::{Etcd, EtcdError};

/// What `--cluster` and its companions resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Where the leader accepts followers (`--cluster-listen`).
    pub listen: std::net::SocketAddr,
    /// How much of its replication log a leader keeps for followers that lag; one further behind syncs in full.
    pub max_lag_bytes: usize,
    /// Followers that must be in sync before a confirm is sent (`--cluster-min-in-sync`).
    pub min_in_sync: usize,
    /// A follower that has not acked for this long while behind leaves the in-sync set.
    pub replication_deadline: Duration,
    /// `http://host:port` of each etcd endpoint.
    pub endpoints: Vec<String>,
    pub node: String,
    pub prefix: String,
    pub lease_ttl: Duration,
    /// This node's addresses as clients should use them.
    pub advertise: ClusterNode,
    /// The shared secret both ends of a replication link prove they hold (`--cluster-secret-file`, see `auth.rs`).
    pub secret: auth::Secret,
    /// The replication link runs over TLS (`--cluster-tls`), with the broker's `--tls-*` files.
    pub tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid --cluster '{0}': expected etcd://host:port[,host:port...]")]
    BadUrl(String),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// A node's name by default, as RabbitMQ names nodes (`rabbit@host`): `warren@HOSTNAME`.
pub fn host_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("warren@{}", if host.is_empty() { "localhost" } else { host })
}

/// `etcd://a:2379,b:2379` → `["http://a:2379", "http://b:2379"]`.
pub fn parse_url(url: &str) -> Result<Vec<String>, ClusterError> {
    let bad = || ClusterError::BadUrl(url.to_string());
    let rest = url.strip_prefix("etcd://").ok_or_else(bad)?;
    let endpoints: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("http://{}", h.trim_end_matches('/')))
        .collect();
    if endpoints.is_empty()
        || rest
            .split(',')
            .any(|h| h.trim().is_empty() || h.contains(['/', '@', ' ']))
    {
        return Err(bad());
    }
    Ok(endpoints)
}

/// This node's view of the cluster, kept current by the role loop and read by the admin API.
pub struct Status {
    pub config: ClusterConfig,
    inner: Mutex<StatusInner>,
}

#[derive(Default)]
struct StatusInner {
    leader: bool,
    term: i64,
    current: Option<ClusterNode>,
    nodes: Vec<ClusterNode>,
    etcd_error: Option<String>,
    replicas: std::collections::BTreeMap<String, Replica>,
    following: Option<ClusterFollowing>,
    in_sync: Vec<String>,
}

/// A connected follower as the in-sync set's maintainer judges it.
pub struct ReplicaHealth {
    pub node: String,
    pub streaming: bool,
    pub acked: u64,
    pub since_ack: Duration,
}

struct Replica {
    streaming: bool,
    acked: u64,
    last_ack: std::time::Instant,
}

impl Status {
    fn new(config: ClusterConfig) -> Self {
        Status {
            config,
            inner: Mutex::new(StatusInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The leader's client address, when this node knows one.
    pub fn leader(&self) -> Option<ClusterNode> {
        self.lock().current.clone()
    }

    fn replica_syncing(&self, node: &str, lsn: u64) {
        self.lock().replicas.insert(
            node.to_string(),
            Replica {
                streaming: false,
                acked: lsn,
                last_ack: std::time::Instant::now(),
            },
        );
    }

    fn replica_acked(&self, node: &str, lsn: u64) {
        if let Some(r) = self.lock().replicas.get_mut(node) {
            r.streaming = true;
            r.acked = r.acked.max(lsn);
            r.last_ack = std::time::Instant::now();
        }
    }

    fn replica_health(&self) -> Vec<ReplicaHealth> {
        self.lock()
            .replicas
            .iter()
            .map(|(node, r)| ReplicaHealth {
                node: node.clone(),
                streaming: r.streaming,
                acked: r.acked,
                since_ack: r.last_ack.elapsed(),
            })
            .collect()
    }

    fn set_in_sync(&self, members: Vec<String>) {
        self.lock().in_sync = members;
    }

    fn replica_gone(&self, node: &str) {
        self.lock().replicas.remove(node);
    }

    fn following(&self, leader: &str, in_sync: bool, applied_lsn: u64) {
        self.lock().following = Some(ClusterFollowing {
            leader: leader.to_string(),
            in_sync,
            applied_lsn,
        });
    }

    pub fn summary(&self) -> ClusterSummary {
        let head = crate::store::repl::installed().map_or(0, |l| l.head());
        let s = self.lock();
        ClusterSummary {
            enabled: true,
            node: self.config.node.clone(),
            role: if s.leader { "leader" } else { "follower" }.into(),
            term: s.term,
            leader: s.current.clone(),
            nodes: s.nodes.clone(),
            lease_ttl_s: self.config.lease_ttl.as_secs(),
            etcd: self.config.endpoints.clone(),
            etcd_error: s.etcd_error.clone(),
            head_lsn: head,
            in_sync: s.in_sync.clone(),
            replicas: s
                .replicas
                .iter()
                .map(|(node, r)| ClusterReplica {
                    node: node.clone(),
                    state: if r.streaming { "streaming" } else { "syncing" }.into(),
                    acked_lsn: r.acked,
                    lag_ops: head.saturating_sub(r.acked),
                    last_ack_ms_ago: r.last_ack.elapsed().as_millis() as u64,
                })
                .collect(),
            following: if s.leader { None } else { s.following.clone() },
        }
    }
}

/// The keys of a cluster.
struct Keys {
    leader: String,
    nodes: String,
    /// The in-sync set ([`isr`]).
    isr: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let p = prefix.trim_matches('/');
        Keys {
            leader: format!("/{p}/leader"),
            nodes: format!("/{p}/nodes/"),
            isr: format!("/{p}/isr"),
        }
    }
}

fn parse_node(bytes: &[u8]) -> Option<ClusterNode> {
    serde_json::from_slice(bytes).ok()
}

/// Runs a cluster node until `shutdown`: a follower that refuses clients until it wins the leadership key, then the
/// leader, serving as a single node does. Returns when shut down; exits the process (status 3) if it loses its
/// leadership while serving.
pub async fn run(config: Config, tls: Option<Arc<Tls>>, shutdown: CancellationToken) -> Result<(), crate::RunError> {
    let Some(cc) = config.cluster.clone() else {
        return crate::start(config, tls, shutdown).await;
    };
    let etcd = Etcd::new(cc.endpoints.clone());
    let keys = Keys::new(&cc.prefix);
    let status = Arc::new(Status::new(cc.clone()));
    let me = serde_json::to_vec(&cc.advertise).unwrap_or_default();
    let ttl = cc.lease_ttl.max(Duration::from_secs(1));
    // The replication link's TLS (`--cluster-tls`): the broker's certificate, and its CA file for the leader's.
    let repl_tls = if cc.tls { tls.clone() } else { None };
    info!(node = %cc.node, etcd = %cc.endpoints.join(","), ttl_s = ttl.as_secs(), "starting as a cluster follower");

    // The data directory is this node's from the start: a follower's copy is written only by its replication.
    let root = config.data_dir.clone();
    let lock = crate::store::lock(&root).map_err(crate::RunError::Store)?;
    let repl_listener = tokio::net::TcpListener::bind(cc.listen).await.map_err(|e| {
        crate::RunError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen for replication on {} (--cluster-listen): {e}", cc.listen),
        ))
    })?;

    // Followers answer clients from the start, so a client learns where the leader is.
    let follower = CancellationToken::new();
    let listeners = crate::bind_listeners(&config).await?;
    let refusing = tokio::spawn(refuse::serve(listeners, status.clone(), follower.clone()));

    let node_key = format!("{}{}", keys.nodes, cc.node);
    let Some((mut lease, mut lease_lost)) = take_lease(&etcd, ttl, &node_key, &me, &status, &shutdown).await else {
        return Ok(());
    };

    // Campaign: try at once, then every poll, until this node holds the key. Meanwhile follow the leader's data.
    let poll = (ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut replicating: Replicating = None;
    let term = loop {
        match etcd.get(&keys.leader).await {
            Ok(None) => {
                // Only a node in the in-sync set, with a complete copy, may lead (any node, in a new cluster).
                let may_lead = match etcd.get(&keys.isr).await {
                    Ok(None) => true,
                    Ok(Some(kv)) => follower::synced(&root) && isr::may_campaign(Some(&kv.value), &cc.node),
                    Err(_) => false,
                };
                if may_lead {
                    // Stop acking the old leader before campaigning (the batch in hand is applied first).
                    if let Some((_, stop, task)) = replicating.take() {
                        stop.cancel();
                        let _ = task.await;
                    }
                    match etcd.create(&keys.leader, &me, lease).await {
                        Ok(Ok(term)) => break term,
                        Ok(Err(holder)) => follow(&holder, &mut replicating, &cc, &repl_tls, &root, &status).await,
                        Err(e) => status.lock().etcd_error = Some(e.to_string()),
                    }
                }
            }
            Ok(Some(holder)) => follow(&Some(holder), &mut replicating, &cc, &repl_tls, &root, &status).await,
            Err(e) => status.lock().etcd_error = Some(e.to_string()),
        }
        if let Ok(nodes) = etcd.list(&keys.nodes).await {
            status.lock().nodes = nodes.iter().filter_map(|kv| parse_node(&kv.value)).collect();
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = etcd.revoke(lease).await;
                return Ok(());
            }
            _ = lease_lost.cancelled() => {
                // A follower's lease lapsed (etcd was away, or this node was paused): it takes a new one and goes on
                // following (its replication does not depend on the lease).
                warn!("the cluster lease expired while following; taking a new one");
                match take_lease(&etcd, ttl, &node_key, &me, &status, &shutdown).await {
                    Some((l, lost)) => (lease, lease_lost) = (l, lost),
                    None => return Ok(()),
                }
            }
            _ = tokio::time::sleep(poll) => {}
        }
    };
    if let Some((_, stop, task)) = replicating.take() {
        stop.cancel();
        let _ = task.await;
    }

    let nodes = etcd.list(&keys.nodes).await.unwrap_or_default();
    {
        let mut s = status.lock();
        s.nodes = nodes.iter().filter_map(|kv| parse_node(&kv.value)).collect();
        s.leader = true;
        s.term = term;
        s.current = Some(cc.advertise.clone());
        s.etcd_error = None;
    }
    info!(node = %cc.node, term, "elected cluster leader");
    follower.cancel();
    let _ = refusing.await;
    tokio::spawn(watch_leadership(
        etcd.clone(),
        keys.leader.clone(),
        keys.nodes.clone(),
        term,
        lease_lost,
        status.clone(),
        shutdown.clone(),
    ));
    // Every change to the data directory from here on is logged for the followers, from before the store opens.
    let log = crate::store::repl::install(&root, cc.max_lag_bytes);
    log.set_min_in_sync(cc.min_in_sync);
    tokio::spawn(leader::serve(
        repl_listener,
        log.clone(),
        status.clone(),
        cc.secret.clone(),
        repl_tls.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(
        isr::Maintainer {
            etcd: etcd.clone(),
            key: keys.isr.clone(),
            leader_key: keys.leader.clone(),
            term,
            me: cc.node.clone(),
            log,
            status: status.clone(),
            deadline: cc.replication_deadline,
        }
        .run(shutdown.clone()),
    );
    drop(lock);
    let status_for_broker = status.clone();
    let served = crate::start_with(config, tls, shutdown, move |b| {
        let _ = b.cluster.set(status_for_broker);
    })
    .await;
    // A clean stop: hand over at once rather than after the lease.
    let _ = etcd.delete_if_created_at(&keys.leader, term).await;
    let _ = etcd.revoke(lease).await;
    served
}

/// Takes a lease (retrying until etcd answers, or `shutdown`), keeps it alive, and registers this node on it.
async fn take_lease(
    etcd: &Etcd,
    ttl: Duration,
    node_key: &str,
    me: &[u8],
    status: &Status,
    shutdown: &CancellationToken,
) -> Option<(i64, CancellationToken)> {
    let lease = loop {
        match etcd.grant(ttl.as_secs()).await {
            Ok(l) => break l,
            Err(e) => {
                warn!(error = %e, "cannot reach etcd; retrying");
                status.lock().etcd_error = Some(e.to_string());
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let lost = CancellationToken::new();
    tokio::spawn(keep_alive(etcd.clone(), lease, ttl, lost.clone()));
    if let Err(e) = etcd.put(node_key, me, lease).await {
        warn!(error = %e, "could not register this node in etcd");
    }
    Some((lease, lost))
}

type Replicating = Option<(String, CancellationToken, tokio::task::JoinHandle<()>)>;

/// Follows the leader `holder` names: (re)starts replication from its address when that changed.
async fn follow(
    holder: &Option<etcd::KeyValue>,
    replicating: &mut Replicating,
    cc: &ClusterConfig,
    tls: &Option<Arc<Tls>>,
    root: &std::path::Path,
    status: &Arc<Status>,
) {
    let leader = holder.as_ref().and_then(|h| parse_node(&h.value));
    let from = leader.as_ref().and_then(|l| l.replication.clone());
    if replicating.as_ref().map(|r| &r.0) != from.as_ref() {
        if let Some((_, stop, task)) = replicating.take() {
            stop.cancel();
            let _ = task.await;
        }
        if let Some(addr) = from {
            let stop = CancellationToken::new();
            let task = tokio::spawn(follower::run(
                addr.clone(),
                cc.node.clone(),
                cc.secret.clone(),
                tls.clone(),
                root.to_path_buf(),
                status.clone(),
                stop.clone(),
            ));
            *replicating = Some((addr, stop, task));
        }
    }
    let mut s = status.lock();
    s.term = holder.as_ref().map_or(0, |h| h.create_revision);
    s.current = leader;
    s.etcd_error = None;
}

/// Renews `lease` every third of its time to live; cancels `lost` when it could not be renewed before it would
/// have expired (less a margin), or etcd says it is gone.
async fn keep_alive(etcd: Etcd, lease: i64, ttl: Duration, lost: CancellationToken) {
    let every = ttl / 3;
    // When the last renewal that etcd answered was sent: etcd's clock for the lease started no earlier.
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        // Stop before etcd would let another node win: give up on a renewal that has not answered by then (a
        // partition makes the call hang until its own timeout, which may be later).
        let give_up = renewed + ttl - every;
        let sent = tokio::time::Instant::now();
        match tokio::time::timeout_at(give_up, etcd.keep_alive(lease)).await {
            Ok(Ok(left)) if left > 0 => renewed = sent,
            Ok(Ok(_)) => {
                error!(lease, "the cluster lease has expired");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => warn!(error = %e, "could not renew the cluster lease"),
            Err(_) => warn!("a renewal of the cluster lease did not answer in time"),
        }
        if tokio::time::Instant::now() >= renewed + ttl - every {
            error!(lease, "the cluster lease could not be renewed in time");
            lost.cancel();
            return;
        }
    }
}

/// While leading: exits the process the moment leadership is lost (the lease, or the key no longer this term's).
async fn watch_leadership(
    etcd: Etcd,
    key: String,
    nodes: String,
    term: i64,
    lease_lost: CancellationToken,
    status: Arc<Status>,
    shutdown: CancellationToken,
) {
    let every = (status.config.lease_ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(1));
    // On its own task: the polls below may wait on an etcd that a partition made silent.
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lease_lost.cancelled() => {
                    error!(term, "lost the cluster leadership (lease); stopping so that a follower takes over");
                    std::process::exit(3);
                }
            }
        });
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match etcd.get(&key).await {
            Ok(Some(kv)) if kv.create_revision == term => {}
            Ok(other) => {
                error!(term, now = ?other.map(|k| k.create_revision), "the leadership key is no longer this term's; stopping");
                std::process::exit(3);
            }
            Err(e) => {
                status.lock().etcd_error = Some(e.to_string());
                continue;
            }
        }
        if let Ok(list) = etcd.list(&nodes).await {
            let mut s = status.lock();
            s.nodes = list.iter().filter_map(|kv| parse_node(&kv.value)).collect();
            s.etcd_error = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_etcd_endpoint() {
        assert_eq!(
            parse_url("etcd://127.0.0.1:2379,10.0.0.2:2379").expect("valid"),
            vec!["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        for bad in ["http://x:2379", "etcd://", "etcd://a:1,,b:2", "etcd://a:1/path"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let k = Keys::new("/warren/");
        assert_eq!(
            (k.leader.as_str(), k.nodes.as_str()),
            ("/warren/leader", "/warren/nodes/")
        );
    }
}
