//! The broker's shared state: configuration, users, vhosts, and the direct reply-to registry.
//!
//! Each piece has its own owner and lock: the vhost map is a short `RwLock` section (vhosts are added and
//! deleted through the admin API, together with their access record in `auth::Access`); the reply-to
//! registry is a short `Mutex` section per request-reply message. Per-queue and per-connection state lives in
//! `Queue` and in each connection's task.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::auth::{Access, AccessError};
use crate::clock::Clock;
use crate::config::Config;
use crate::counters::{ChannelCounters, ChannelTotals, Churn};
use crate::outbox::Outbox;
use crate::policy::Policy;
use crate::store::definitions::Definitions;
use crate::store::definitions_log::DefinitionsLog;
use crate::store::queue_dir::QueueName;
use crate::store::{DiskBudget, Store, StoreError};
use crate::timer::Timer;
use crate::vhost::{Durability, VHost};

/// A live client connection, as the admin API sees it; the connection task keeps it current.
pub struct ConnectionEntry {
    pub id: u64,
    pub peer: std::net::SocketAddr,
    /// The broker's side of the socket (None if the OS would not say).
    pub local: Option<std::net::SocketAddr>,
    /// Whether it came in on an AMQPS listener.
    pub tls: bool,
    /// The protocol it speaks, as RabbitMQ names it: `AMQP 0-9-1`, `MQTT 3.1.1`, `MQTT 5.0`.
    pub protocol: &'static str,
    pub user: Mutex<String>,
    pub vhost: Mutex<String>,
    pub connected_at_ms: u64,
    pub channels: Mutex<std::collections::BTreeSet<u16>>,
    /// Cancelled when an operator closes the connection; `close_reason` says why.
    pub close: tokio_util::sync::CancellationToken,
    pub close_reason: Mutex<String>,
    /// What the client says of itself in connection.start-ok: `connection_name`, and `product` with `version`.
    pub client: Mutex<ClientInfo>,
    /// What this connection's channels did; written by the connection's task only (see `counters`).
    pub counters: Arc<ChannelCounters>,
}

impl ConnectionEntry {
    /// The entry of a connection that has just logged in (MQTT and STOMP; AMQP fills its own in as it goes).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        peer: std::net::SocketAddr,
        local: Option<std::net::SocketAddr>,
        protocol: &'static str,
        user: &str,
        vhost: &str,
        client_name: Option<String>,
        connected_at_ms: u64,
    ) -> Self {
        ConnectionEntry {
            id,
            peer,
            local,
            tls: false,
            protocol,
            user: Mutex::new(user.to_string()),
            vhost: Mutex::new(vhost.to_string()),
            connected_at_ms,
            channels: Mutex::new(Default::default()),
            close: tokio_util::sync::CancellationToken::new(),
            close_reason: Mutex::new(String::new()),
            counters: Arc::default(),
            client: Mutex::new(ClientInfo {
                name: client_name,
                product: None,
            }),
        }
    }

    /// RabbitMQ's name for the connection, `"peer -> local"`, with addresses written as RabbitMQ writes them (IPv6
    /// without brackets): what the admin API's `/api/connections/{name}` takes.
    pub fn rabbit_name(&self) -> String {
        let addr = |a: std::net::SocketAddr| format!("{}:{}", a.ip().to_canonical(), a.port());
        match self.local {
            Some(local) => format!("{} -> {}", addr(self.peer), addr(local)),
            None => addr(self.peer),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub name: Option<String>,
    pub product: Option<String>,
}

/// Where replies to an `amq.rabbitmq.reply-to.<key>` address go: one channel's no-ack consumer.
#[derive(Clone)]
pub struct ReplyTarget {
    pub outbox: Arc<Outbox>,
    pub channel: u16,
    pub consumer_tag: Arc<str>,
}

pub struct Broker {
    pub config: Config,
    /// This node's cluster status when it runs with `--cluster` (set once it is elected leader).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Status>>,
    /// The data directory: durable definitions and messages.
    pub store: Arc<Store>,
    /// Users, vhosts' access records, permissions and limits.
    pub access: Access,
    /// The audit trail (operator actions, access changes, refused logins).
    pub audit: Arc<crate::audit::Journal>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    /// The config file's policies as last read (at start or on SIGHUP), for vhosts created later.
    pub(crate) file_policies: RwLock<Vec<Policy>>,
    /// What a vhost made at run time needs (the same as those made at start).
    durability: Durability,
    next_connection_id: AtomicU64,
    /// Open client connections.
    pub connections: AtomicU64,
    /// Unroutable mandatory messages returned to publishers (an error counter for the overview).
    pub returned: AtomicU64,
    reply_to: Mutex<HashMap<String, ReplyTarget>>,
    /// The memory and disk alarms that block publishers (sampled by `alarm::monitor`, started with the server).
    pub alarms: Arc<crate::alarm::Alarms>,
    /// Live connections, for the admin API, and what closed connections' channels did (folded in as each one is
    /// unregistered, under the same lock, so that totals never go backwards).
    registry: Mutex<Registry>,
    /// Connection and queue churn (shared with every vhost for its queue counts).
    pub churn: Arc<Churn>,
    pub started: Instant,
    /// The one clock every queue, exchange and connection of this broker reads (see `clock`).
    pub clock: Clock,
    /// Wakes queues and delayed exchanges at their deadlines (see `timer`); its task starts with the server.
    pub timer: Timer,
    /// What operators purged or deleted, kept for undo (see `quarantine`).
    pub quarantine: Arc<crate::quarantine::Quarantine>,
    /// Message journeys (see `trace`), shared by every vhost.
    pub journal: Arc<crate::trace::Journal>,
}

/// The live connections and the channel counters of those gone.
#[derive(Default)]
struct Registry {
    live: HashMap<u64, Arc<ConnectionEntry>>,
    closed: ChannelTotals,
    /// The same, by protocol (`ConnectionEntry::protocol`).
    closed_by_protocol: std::collections::BTreeMap<&'static str, ChannelTotals>,
}

/// A vhost object for `name`, with the config file's policies for it (`file_policies`: all of the file's).
fn build_vhost(
    name: &str,
    durability: &Durability,
    clock: &Clock,
    timer: &Timer,
    file_policies: &[Policy],
    churn: &Arc<Churn>,
    journal: &Arc<crate::trace::Journal>,
) -> Arc<VHost> {
    let policies: Vec<_> = file_policies.iter().filter(|p| p.vhost == name).cloned().collect();
    Arc::new_cyclic(|me| {
        VHost::with_durability(name, Some(durability.clone()), clock.clone(), timer.clone(), me.clone())
            .with_policies(policies)
            .with_churn(churn.clone())
            .with_journal(journal.clone())
    })
}

/// The journal of message journeys under `<data dir>/trace`; one that cannot be opened is logged and replaced by
/// one in memory (tracing is a diagnostic: it never stops the broker from starting).
fn open_journal(config: &Config, root: &std::path::Path, clock: &Clock) -> Arc<crate::trace::Journal> {
    let dir = root.join("trace");
    crate::trace::Journal::open(&config.trace, &dir, clock.clone()).unwrap_or_else(|e| {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot open the trace journal; journeys are kept in memory only");
        crate::trace::Journal::in_memory(clock.clone())
    })
}

/// Queue directories that no definition names hold messages nobody can reach until a queue of that name is
/// declared again: they are left alone, and said so at every start.
fn warn_of_orphans(saved: &Definitions, queue_dirs: &[(PathBuf, Option<QueueName>)]) {
    let defined: HashSet<(&str, &str)> = saved
        .vhosts
        .iter()
        .flat_map(|(v, d)| d.queues.iter().map(move |q| (v.as_str(), q.name.as_str())))
        .collect();
    let orphans: Vec<&PathBuf> = queue_dirs
        .iter()
        .filter(|(_, name)| {
            name.as_ref()
                .is_none_or(|n| !defined.contains(&(n.vhost.as_str(), n.queue.as_str())))
        })
        .map(|(dir, _)| dir)
        .collect();
    if let Some(first) = orphans.first() {
        tracing::warn!(
            count = orphans.len(),
            first = %first.display(),
            "queue directories that no definition names are left alone: their messages come back when a queue of \
             that name is declared again"
        );
    }
}

impl Broker {
    /// Opens (and locks) the data directory, recovers durable definitions and messages, and builds the vhosts.
    /// A data directory with queue directories but no definitions is refused (`DefinitionsError::Missing`) unless
    /// `config.force_empty_definitions` is set.
    pub fn new(config: Config) -> Result<Arc<Self>, StoreError> {
        Self::with_budget(config, DiskBudget::default())
    }

    /// Like `new`, with a cap on the bytes the store may write (tests of a full disk).
    pub fn with_budget(config: Config, budget: DiskBudget) -> Result<Arc<Self>, StoreError> {
        let started = Instant::now();
        let store = Arc::new(
            Store::open(&config.data_dir, config.fsync, budget)?
                .with_queue_ram(config.queue_ram, config.total_queue_ram),
        );
        let queue_dirs = store.queue_dirs().map_err(|source| StoreError::Definitions {
            path: store.root.join("queues"),
            source,
        })?;
        let dir_paths: Vec<PathBuf> = queue_dirs.iter().map(|(dir, _)| dir.clone()).collect();
        let (definitions, saved) = DefinitionsLog::open(
            &store.root,
            store.budget.clone(),
            &dir_paths,
            config.force_empty_definitions,
        )?;
        warn_of_orphans(&saved, &queue_dirs);
        let durability = Durability {
            store: store.clone(),
            definitions: Arc::new(definitions),
        };
        let legacy: Vec<String> = saved.vhosts.keys().cloned().collect();
        let audit = Arc::new(crate::audit::Journal::default());
        let access = Access::new(
            saved.access.clone(),
            &config,
            &legacy,
            Some(durability.definitions.clone()),
            audit.clone(),
        )
        .map_err(|source| StoreError::Definitions {
            path: store.root.clone(),
            source,
        })?;
        let clock = Clock::new();
        // Queues and delayed exchanges recovered below arm it at once; their arms wait in its channel until its task
        // starts with the server.
        let timer = Timer::new(clock.clone());
        let journal = open_journal(&config, &store.root, &clock);
        let mut vhosts = HashMap::new();
        let churn = Arc::new(Churn::default());
        for def in access.vhosts() {
            let vhost = build_vhost(
                &def.name,
                &durability,
                &clock,
                &timer,
                &config.policies,
                &churn,
                &journal,
            );
            if let Some(defs) = saved.vhosts.get(&def.name) {
                vhost.restore(defs).map_err(|source| StoreError::Definitions {
                    path: store.root.clone(),
                    source,
                })?;
            }
            vhosts.insert(def.name, vhost);
        }
        if let Err(e) = store.txlog.compact() {
            tracing::warn!(error = %e, "could not compact the transaction log");
        }
        let (queues, messages) = vhosts
            .values()
            .flat_map(|v| v.queues())
            .fold((0, 0u64), |(q, m), queue| (q + 1, m + queue.message_count() as u64));
        tracing::info!(
            data_dir = %store.root.display(),
            queues,
            messages,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered durable state"
        );
        let available = crate::alarm::available_memory();
        let watermark = match (config.memory_high_watermark, available) {
            (crate::alarm::Watermark::Bytes(b), _) => b,
            (w, Some(avail)) => w.resolve(avail),
            (_, None) => {
                tracing::warn!("cannot tell how much memory is available: the memory alarm is off");
                0
            }
        };
        tracing::info!(
            memory_high_watermark = watermark,
            disk_free_limit = config.disk_free_limit,
            "resource limits"
        );
        let alarms = Arc::new(crate::alarm::Alarms::new(
            watermark,
            config.disk_free_limit,
            store.page_pressure.pressure.clone(),
        ));
        let quarantine = Arc::new(crate::quarantine::Quarantine::new(
            config.undo_window_ms,
            config.undo_max_bytes,
        ));
        Ok(Arc::new(Broker {
            quarantine,
            journal,
            file_policies: RwLock::new(config.policies.clone()),
            alarms,
            access,
            audit,
            config,
            store,
            vhosts: RwLock::new(vhosts),
            durability,
            next_connection_id: AtomicU64::new(1),
            connections: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            reply_to: Mutex::new(HashMap::new()),
            registry: Mutex::new(Registry::default()),
            churn,
            started,
            clock,
            timer,
            cluster: std::sync::OnceLock::new(),
        }))
    }

    /// Lets `by` pass on this broker's clock and makes everything that became due happen at once: a full sweep of
    /// every queue and delayed exchange drops or dead-letters messages whose TTL ran out, removes unused `x-expires`
    /// queues and releases due delayed messages (each re-arms the timer for what is left), then the timer is nudged to
    /// sleep by the moved clock. What tests call instead of sleeping.
    #[doc(hidden)]
    pub fn advance_time(&self, by: std::time::Duration) {
        self.clock.advance(by);
        crate::server::sweep_once(self);
        self.timer.nudge();
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Creates a vhost, or changes its description, tags and limits (stored first); true when it was created.
    pub fn put_vhost(&self, def: crate::store::access_defs::VHostDef) -> Result<bool, AccessError> {
        let name = def.name.clone();
        if name.is_empty() || name.len() > 255 {
            return Err(AccessError::Invalid("a vhost name is 1 to 255 bytes".into()));
        }
        let mut map = self.vhosts.write().unwrap_or_else(|e| e.into_inner());
        self.access
            .change(vec![crate::store::access_defs::AccessOp::PutVHost { vhost: def }])?;
        if map.contains_key(&name) {
            return Ok(false);
        }
        let vhost = build_vhost(
            &name,
            &self.durability,
            &self.clock,
            &self.timer,
            &self.file_policies.read().unwrap_or_else(|e| e.into_inner()),
            &self.churn,
            &self.journal,
        );
        map.insert(name, vhost);
        Ok(true)
    }

    /// Deletes a vhost: its connections are closed, its queues and their messages removed, its exchanges,
    /// bindings, policies and permissions dropped, and the deletion stored.
    pub fn delete_vhost(&self, name: &str) -> Result<(), AccessError> {
        let Some(vhost) = self.vhost(name) else {
            return Err(AccessError::NotFound(format!("vhost '{name}' not found")));
        };
        self.access
            .change(vec![crate::store::access_defs::AccessOp::DeleteVHost {
                name: name.to_string(),
                by_api: true,
            }])?;
        self.vhosts.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        self.close_connections(
            |c| *c.vhost.lock().unwrap_or_else(|e| e.into_inner()) == name,
            &format!("vhost '{name}' is deleted"),
        );
        for q in vhost.queues() {
            vhost.remove_queue(&q);
        }
        Ok(())
    }

    /// Asks every connection that `which` picks to close (320 CONNECTION_FORCED with `reason`).
    pub fn close_connections(&self, which: impl Fn(&ConnectionEntry) -> bool, reason: &str) -> usize {
        let mut n = 0;
        for c in self.connection_entries() {
            if which(&c) {
                *c.close_reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.to_string();
                c.close.cancel();
                n += 1;
            }
        }
        n
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register_connection(&self, entry: Arc<ConnectionEntry>) {
        Churn::inc(&self.churn.connections_opened);
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .insert(entry.id, entry);
    }

    /// Forgets a closed connection, keeping what its channels did in the totals ([`Broker::channel_totals`]).
    pub fn unregister_connection(&self, id: u64) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = r.live.remove(&id) {
            let mut gone = entry.counters.snapshot();
            // A closed connection has nothing unconfirmed.
            gone.unconfirmed = 0;
            r.closed += gone;
            *r.closed_by_protocol.entry(entry.protocol).or_default() += gone;
            Churn::inc(&self.churn.connections_closed);
        }
    }

    pub fn connection_entries(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut v: Vec<_> = self
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// What every channel since the start did (closed connections included), and the channels open now.
    pub fn channel_totals(&self) -> (ChannelTotals, u64) {
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = r.closed;
        let mut open = 0;
        for c in r.live.values() {
            total += c.counters.snapshot();
            open += c.channels.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        }
        (total, open)
    }

    /// What the connections of each protocol did since the start (closed connections included).
    pub fn protocol_totals(&self) -> std::collections::BTreeMap<&'static str, ChannelTotals> {
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut by = r.closed_by_protocol.clone();
        for c in r.live.values() {
            *by.entry(c.protocol).or_default() += c.counters.snapshot();
        }
        by
    }

    pub fn register_reply_to(&self, key: String, target: ReplyTarget) {
        self.reply_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, target);
    }

    pub fn unregister_reply_to(&self, key: &str) {
        self.reply_to.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    pub fn reply_target(&self, key: &str) -> Option<ReplyTarget> {
        self.reply_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}

#[cfg(test)]
mod tests;
