//! A virtual host: its exchanges, queues and bindings (the topology), and routing through them.
//!
//! The topology sits behind one `std::sync::RwLock`. Declares, deletes and binds take the write lock briefly;
//! routing a publish takes the read lock briefly and comes out with `Arc<Queue>`s, so enqueueing happens after
//! the lock is released. Every change bumps `generation`, which lets channels cache routes and notice staleness
//! without locking. No lock here is ever held across `.await`.
//!
//! A change to durable topology (or to an API policy) is stored in `definitions.log` before it is answered, while
//! the write lock is held (so records keep the order of changes); a change that cannot be stored is undone and
//! answered with 541 INTERNAL_ERROR (`topology_write.rs`), so what clients see is what a restart brings back.
//! Changes the broker makes by itself (exclusive, auto-delete and expired queues going away) stand even then, and
//! are stored with the next change that can be.

mod topology_write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use amq_protocol::types::FieldTable;
use rand::Rng;

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::args;
use crate::policy::Policy;
use crate::queue::spill::Spill;
use crate::queue::{MessageStore, Queue, QueueSpec, SyncPolicy};
use crate::routing::delayed::DelayedMessages;
use crate::routing::DELAYED_TYPE;
use crate::routing::{headers::valid_x_match, Binding, Destination, Exchange, ExchangeKind};
use crate::store::definitions::{DefOp, PolicyDef, VHostDefinitions};
use crate::store::definitions_log::DefinitionsLog;
use crate::store::txlog::TxView;
use crate::store::{hex, Store};
use topology_write::TopologyWrite;

/// Exchanges every vhost has from the start.
const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// How far exchange-to-exchange bindings are followed before a route is cut (cycles are also cut by a visited set).
const MAX_EXCHANGE_HOPS: usize = 32;

pub struct VHost {
    pub name: String,
    topology: RwLock<Topology>,
    generation: AtomicU64,
    /// Where durable queues keep their messages and durable definitions are saved (None: nothing persists).
    durability: Option<Durability>,
    /// Ourselves, handed to queues so they can route dead letters.
    me: std::sync::Weak<VHost>,
    /// Operator policies for this vhost's queues. Lock order: topology, then policies, then a queue.
    policies: RwLock<Policies>,
}

/// The durable side of a vhost.
#[derive(Clone)]
pub struct Durability {
    pub store: Arc<Store>,
    pub definitions: Arc<DefinitionsLog>,
}

#[derive(Default)]
pub struct Topology {
    pub exchanges: HashMap<String, Exchange>,
    pub queues: HashMap<String, Arc<Queue>>,
}

/// What routing a publish found out besides the queues.
#[derive(Debug, Clone, Copy)]
pub struct Routed {
    /// The result depends only on (exchange, routing key): a channel may cache it for this generation.
    pub cacheable: bool,
    /// The exchange de-duplicates and has seen this message, or holds it (delayed): it is confirmed but goes
    /// nowhere now.
    pub duplicate: bool,
    /// The group-commit round a confirm must wait for (a persistent message held on disk by a delayed exchange);
    /// 0 for none.
    pub ticket: u64,
}

/// The arguments of a queue.declare, as the vhost needs them.
pub struct QueueDeclare<'a> {
    pub name: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: &'a FieldTable,
    pub connection_id: u64,
}

/// The arguments of an exchange.declare.
pub struct ExchangeDeclare<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: &'a FieldTable,
}

/// A vhost's policies: from the config file, and set through the admin API. An API policy shadows a config policy
/// of the same name; deleting it brings the config one back.
#[derive(Default)]
pub struct Policies {
    config: Vec<Policy>,
    api: Vec<Policy>,
}

impl Policies {
    /// The policies in force.
    pub fn effective(&self) -> impl Iterator<Item = &Policy> + '_ {
        self.api.iter().chain(
            self.config
                .iter()
                .filter(|c| !self.api.iter().any(|a| a.name == c.name)),
        )
    }
}

/// An API policy as `definitions.log` stores it.
fn policy_def(p: &Policy) -> PolicyDef {
    PolicyDef {
        name: p.name.clone(),
        pattern: p.pattern.as_str().to_string(),
        priority: p.priority,
        definition: p.definition.clone(),
    }
}

impl VHost {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new_cyclic(|me| Self::with_durability(name, None, me.clone()))
    }

    /// Built inside `Arc::new_cyclic`, so queues can hold `me`.
    pub fn with_durability(name: &str, durability: Option<Durability>, me: std::sync::Weak<VHost>) -> Self {
        let mut t = Topology::default();
        for (n, k) in PREDECLARED {
            t.exchanges.insert(
                (*n).to_string(),
                Exchange::new(n, *k, true, false, false, FieldTable::default()),
            );
        }
        VHost {
            name: name.to_string(),
            topology: RwLock::new(t),
            generation: AtomicU64::new(1),
            durability,
            me,
            policies: RwLock::new(Policies::default()),
        }
    }

    /// Sets the config file's policies (at start, before queues are restored or declared).
    pub fn with_policies(self, policies: Vec<Policy>) -> Self {
        self.policies.write().unwrap_or_else(|e| e.into_inner()).config = policies;
        self
    }

    /// The policies in force, by name.
    pub fn policies(&self) -> Vec<Policy> {
        let mut v: Vec<Policy> = self
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .effective()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds or replaces an API policy (by name), saves it, and applies the policies again to every live queue.
    /// Returns whether it replaced a policy of that name; an error (and no change) when it could not be saved.
    pub fn set_policy(&self, policy: Policy) -> std::io::Result<bool> {
        let op = DefOp::SetPolicy {
            vhost: self.name.clone(),
            policy: policy_def(&policy),
        };
        self.change_policies(|ps| {
            let replaced = ps.effective().any(|p| p.name == policy.name);
            ps.api.retain(|p| p.name != policy.name);
            ps.api.push(policy);
            (replaced, Some(op))
        })
    }

    /// Removes an API policy (a config policy of that name applies again); false when there is none by that name.
    pub fn delete_policy(&self, name: &str) -> std::io::Result<bool> {
        self.change_policies(|ps| {
            let before = ps.api.len();
            ps.api.retain(|p| p.name != name);
            let removed = ps.api.len() != before;
            let op = removed.then(|| DefOp::DeletePolicy {
                vhost: self.name.clone(),
                name: name.to_string(),
            });
            (removed, op)
        })
    }

    /// Changes the policies under the topology lock (so a queue declared meanwhile sees the old or the new set,
    /// whole) and saves the change (or puts the old set back and fails), then applies them to every live queue
    /// with no topology lock held (a queue may route dead letters). Applying happens under the policies read
    /// lock, so concurrent changes apply in order.
    fn change_policies<T>(&self, change: impl FnOnce(&mut Policies) -> (T, Option<DefOp>)) -> std::io::Result<T> {
        let t = self.write();
        let mut ps = self.policies.write().unwrap_or_else(|e| e.into_inner());
        let before = ps.api.clone();
        let (out, op) = change(&mut ps);
        if let (Some(d), Some(op)) = (&self.durability, op) {
            if let Err(e) = d.definitions.append(&[op]) {
                ps.api = before;
                return Err(e);
            }
        }
        drop(ps);
        let queues: Vec<Arc<Queue>> = t.queues.values().cloned().collect();
        let ps = self.policies.read().unwrap_or_else(|e| e.into_inner());
        drop(t);
        for q in queues {
            let p = crate::policy::select(ps.effective(), &self.name, q.name())
                .cloned()
                .map(Arc::new);
            q.apply_policy(p);
        }
        Ok(out)
    }

    fn read(&self) -> RwLockReadGuard<'_, Topology> {
        self.topology.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> TopologyWrite<'_> {
        TopologyWrite::new(
            self.topology.write().unwrap_or_else(|e| e.into_inner()),
            &self.generation,
            self.durability.as_ref(),
            &self.name,
        )
    }

    /// A durable change that could not be stored, and so was not made: a connection error, as RabbitMQ answers
    /// a failed metadata-store write.
    fn not_saved(&self, what: &str, e: std::io::Error) -> AmqpError {
        AmqpError::new(
            crate::amqp::error::INTERNAL_ERROR,
            format!(
                "could not save {what} in vhost '{}' ({e}), so it was not done; try again when the disk has room",
                self.name
            ),
        )
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn no_queue(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    fn no_exchange(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    fn locked(&self, name: &str) -> AmqpError {
        AmqpError::locked(format!(
            "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'. It could be originally declared \
             on another connection or the exclusive property value does not match that of the original declaration.",
            self.name
        ))
    }

    /// Looks a queue up for an operation by `connection_id`, enforcing exclusivity first (405), then existence.
    pub fn queue_for(&self, name: &str, connection_id: u64) -> AmqpResult<Arc<Queue>> {
        let q = self
            .read()
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_queue(name))?;
        match q.spec.exclusive_owner {
            Some(owner) if owner != connection_id => Err(self.locked(name)),
            _ => Ok(q),
        }
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.read().queues.get(name).cloned()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.read().queues.values().cloned().collect()
    }

    /// queue.declare. Returns the queue (with its final name).
    pub fn declare_queue(&self, d: &QueueDeclare<'_>) -> AmqpResult<Arc<Queue>> {
        if d.passive {
            if d.name.is_empty() {
                return Err(AmqpError::not_found("no queue name given for a passive declare"));
            }
            return self.queue_for(d.name, d.connection_id);
        }
        if d.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let mut t = self.write();
        if let Some(q) = t.queues.get(d.name) {
            if let Some(owner) = q.spec.exclusive_owner {
                if owner != d.connection_id {
                    return Err(self.locked(d.name));
                }
            }
            self.check_equivalent(q, d)?;
            q.touch();
            return Ok(q.clone());
        }
        let name = if d.name.is_empty() {
            generate_queue_name()
        } else {
            d.name.to_string()
        };
        validate_queue_arguments(d.arguments)?;
        crate::queue::dead_letter::validate(d.arguments).map_err(AmqpError::precondition)?;
        let spec = QueueSpec {
            name: name.clone(),
            vhost: self.name.clone(),
            // A durable exclusive queue is treated as transient (errata).
            durable: d.durable && !d.exclusive,
            exclusive_owner: d.exclusive.then_some(d.connection_id),
            auto_delete: d.auto_delete,
            arguments: d.arguments.clone(),
            policy: None,
        };
        // A directory this declare creates is removed again if the declare cannot be saved; one that was there
        // (a queue whose definition was lost) keeps its messages.
        let new_dir = self
            .durability
            .as_ref()
            .map(|d| d.store.queue_dir(&self.name, &name))
            .filter(|dir| !dir.exists());
        let q = self.make_queue(spec).map_err(|e| {
            AmqpError::new(
                crate::amqp::error::INTERNAL_ERROR,
                format!(
                    "cannot create the files of queue '{name}' in vhost '{}': {e}",
                    self.name
                ),
            )
        })?;
        t.add_queue(q.clone());
        if let Err(e) = t.save() {
            drop(q);
            if let Some(dir) = new_dir {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(self.not_saved(&format!("the declaration of queue '{name}'"), e));
        }
        Ok(q)
    }

    /// Builds a queue: durable (and not auto-delete) queues get a disk-backed store, recovering what their
    /// directory holds; the rest live in memory.
    fn make_queue(&self, mut spec: QueueSpec) -> std::io::Result<Arc<Queue>> {
        spec.policy = crate::policy::select(
            self.policies.read().unwrap_or_else(|e| e.into_inner()).effective(),
            &self.name,
            &spec.name,
        )
        .cloned()
        .map(Arc::new);
        let persists = spec.durable && !spec.auto_delete && spec.exclusive_owner.is_none();
        match &self.durability {
            Some(d) if persists => {
                let started = std::time::Instant::now();
                let dir = d.store.queue_dir(&self.name, &spec.name);
                let (p, ttl) = Queue::store_settings(&spec);
                let (store, rec) =
                    MessageStore::open_on_disk(&dir, d.store.budget.clone(), &TxView(Some(&d.store.txlog)), p, ttl)?;
                if rec.live > 0 || rec.corrupt > 0 || rec.torn_bytes > 0 {
                    tracing::info!(
                        vhost = %self.name,
                        queue = %spec.name,
                        messages = rec.live,
                        redelivered = rec.redelivered,
                        transient_dropped = rec.transient,
                        corrupt_skipped = rec.corrupt,
                        torn_bytes_truncated = rec.torn_bytes,
                        segments_without_ack_file = rec.missing_ack_files,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "recovered queue"
                    );
                }
                let sync = SyncPolicy {
                    mode: d.store.fsync,
                    syncer: d.store.syncer.clone(),
                };
                let store = store.with_spill(Spill::new(
                    d.store.spill_dir(),
                    d.store.budget.clone(),
                    d.store.page_pressure.clone(),
                ));
                Ok(Queue::new(spec, store, Some(sync), self.me.clone()))
            }
            // A queue whose messages all live in memory pages its transient messages out under memory pressure.
            Some(d) => {
                let (p, ttl) = Queue::store_settings(&spec);
                let store = MessageStore::new(p, ttl).with_spill(Spill::new(
                    d.store.spill_dir(),
                    d.store.budget.clone(),
                    d.store.page_pressure.clone(),
                ));
                Ok(Queue::new(spec, store, None, self.me.clone()))
            }
            None => Ok(Queue::new_in_memory(spec, self.me.clone())),
        }
    }

    /// Rebuilds the durable topology saved in `definitions.log` (at start, before any client connects).
    pub fn restore(&self, defs: &VHostDefinitions) -> std::io::Result<()> {
        // What is restored is what the log says: it goes straight into the topology, with nothing to save.
        let mut t = self.write();
        {
            let mut ps = self.policies.write().unwrap_or_else(|e| e.into_inner());
            for d in &defs.policies {
                match Policy::from_json(&d.name, &self.name, &d.pattern, d.priority, &d.definition) {
                    Ok(p) => {
                        ps.api.retain(|old| old.name != p.name);
                        ps.api.push(p);
                    }
                    Err(e) => tracing::error!(vhost = %self.name, error = %e, "cannot restore policy"),
                }
            }
        }
        for x in &defs.exchanges {
            match self.make_exchange(&x.name, &x.kind, true, x.auto_delete, x.internal, &x.arguments) {
                Ok(ex) => {
                    t.exchanges.insert(x.name.clone(), ex);
                }
                Err(e) => {
                    tracing::error!(vhost = %self.name, exchange = %x.name, error = %e, "cannot restore exchange")
                }
            }
        }
        for q in &defs.queues {
            let spec = QueueSpec {
                name: q.name.clone(),
                vhost: self.name.clone(),
                durable: true,
                exclusive_owner: None,
                auto_delete: false,
                arguments: q.arguments.clone(),
                policy: None,
            };
            let queue = self.make_queue(spec)?;
            t.queues.insert(q.name.clone(), queue);
        }
        for b in &defs.bindings {
            let destination = if b.to_queue {
                Destination::Queue(b.destination.clone())
            } else {
                Destination::Exchange(b.destination.clone())
            };
            if let Some(x) = t.exchanges.get_mut(&b.source) {
                x.router.bind(Binding {
                    destination,
                    routing_key: b.routing_key.clone(),
                    arguments: b.arguments.clone(),
                });
            }
        }
        Ok(())
    }

    fn check_equivalent(&self, q: &Queue, d: &QueueDeclare<'_>) -> AmqpResult<()> {
        let s = &q.spec;
        let checks = [
            (
                "durable",
                s.durable || (s.exclusive_owner.is_some() && d.durable),
                d.durable,
            ),
            ("exclusive", s.exclusive_owner.is_some(), d.exclusive),
            ("auto_delete", s.auto_delete, d.auto_delete),
        ];
        let checks = checks.map(|(f, c, r)| (f, c.to_string(), r.to_string()));
        self.equivalent("queue", &s.name, &checks, &s.arguments, d.arguments)?;
        Ok(())
    }

    /// A redeclare must match: each (field, current, received) and the arguments, or it is a 406 that says which.
    fn equivalent(
        &self,
        what: &str,
        name: &str,
        checks: &[(&str, String, String)],
        current: &FieldTable,
        received: &FieldTable,
    ) -> AmqpResult<()> {
        for (field, current, received) in checks {
            if current != received {
                return Err(AmqpError::precondition(format!(
                    "inequivalent arg '{field}' for {what} '{name}' in vhost '{}': received '{received}' but current is '{current}'",
                    self.name
                )));
            }
        }
        if let Some(k) = args::first_difference(current, received) {
            return Err(AmqpError::precondition(format!(
                "inequivalent arg '{k}' for {what} '{name}' in vhost '{}': received {} but current is {}",
                self.name,
                args::describe(received.inner().get(k)),
                args::describe(current.inner().get(k)),
            )));
        }
        Ok(())
    }

    /// queue.delete. Returns the number of messages dropped.
    pub fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool, connection_id: u64) -> AmqpResult<u32> {
        let q = match self.queue_for(name, connection_id) {
            Ok(q) => q,
            // Deleting a queue that does not exist succeeds, as in RabbitMQ.
            Err(e) if e.code == crate::amqp::error::NOT_FOUND => return Ok(0),
            Err(e) => return Err(e),
        };
        // Topology, then the queue (the lock order): the conditions are checked, the deletion saved and the queue
        // marked deleted under one taking of the queue's lock, so no consumer or message slips in between, and a
        // deletion that cannot be saved leaves everything as it was.
        let mut t = self.write();
        if !t.queues.get(name).is_some_and(|current| Arc::ptr_eq(current, &q)) {
            return Ok(0);
        }
        q.delete_if(if_unused, if_empty, || {
            t.remove_queue(name);
            t.save()
                .map_err(|e| self.not_saved(&format!("the deletion of queue '{name}'"), e))
        })
        .map_err(|why| match why {
            crate::queue::DeleteRefused::InUse => {
                AmqpError::precondition(format!("queue '{name}' in vhost '{}' in use", self.name))
            }
            crate::queue::DeleteRefused::NotEmpty => {
                AmqpError::precondition(format!("queue '{name}' in vhost '{}' not empty", self.name))
            }
            crate::queue::DeleteRefused::NotSaved(e) => e,
        })
    }

    /// Removes a queue the broker itself is done with (exclusive, auto-delete, expired) and every binding to it,
    /// then tells its consumers. Returns its message count. The removal stands even if it cannot be saved yet
    /// (see `TopologyWrite::save_or_defer`).
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        {
            let mut t = self.write();
            if !t.queues.get(q.name()).is_some_and(|current| Arc::ptr_eq(current, q)) {
                return 0;
            }
            t.remove_queue(q.name());
            t.save_or_defer();
        }
        q.mark_deleted()
    }

    /// Deletes every exclusive queue a closing connection owned.
    pub fn remove_exclusive_queues(&self, connection_id: u64) {
        let owned: Vec<Arc<Queue>> = self
            .read()
            .queues
            .values()
            .filter(|q| q.spec.exclusive_owner == Some(connection_id))
            .cloned()
            .collect();
        for q in owned {
            self.remove_queue(&q);
        }
    }

    /// exchange.declare.
    pub fn declare_exchange(&self, d: &ExchangeDeclare<'_>) -> AmqpResult<()> {
        if d.passive {
            return if d.name.is_empty() || self.read().exchanges.contains_key(d.name) {
                Ok(())
            } else {
                Err(self.no_exchange(d.name))
            };
        }
        if ExchangeKind::parse(d.kind).is_none() && d.kind != DELAYED_TYPE {
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{}'",
                d.kind
            )));
        }
        if d.name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if d.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let mut t = self.write();
        if let Some(x) = t.exchanges.get(d.name) {
            let checks = [
                ("type", x.type_name().to_string(), d.kind.to_string()),
                ("durable", x.durable.to_string(), d.durable.to_string()),
                ("auto_delete", x.auto_delete.to_string(), d.auto_delete.to_string()),
                ("internal", x.internal.to_string(), d.internal.to_string()),
            ];
            self.equivalent("exchange", d.name, &checks, &x.arguments, d.arguments)?;
            return Ok(());
        }
        let x = self.make_exchange(d.name, d.kind, d.durable, d.auto_delete, d.internal, d.arguments)?;
        t.add_exchange(x);
        t.save()
            .map_err(|e| self.not_saved(&format!("the declaration of exchange '{}'", d.name), e))
    }

    /// Builds an exchange of a declared type; an `x-delayed-message` exchange routes by its `x-delayed-type` and,
    /// when durable, keeps held persistent messages on disk.
    fn make_exchange(
        &self,
        name: &str,
        kind: &str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: &FieldTable,
    ) -> AmqpResult<Exchange> {
        let mut x = self.build_exchange(name, kind, durable, auto_delete, internal, arguments)?;
        // A durable exchange's de-duplication cache lives in its directory, so it survives a restart.
        if let (Some(dir), Some(settings)) = (
            self.exchange_dir(&x),
            crate::queue::dedup::DedupSettings::from_arguments(arguments),
        ) {
            let cache = std::fs::create_dir_all(&dir)
                .and_then(|()| crate::queue::dedup::DedupCache::persistent(settings, &dir));
            match cache {
                Ok(c) => x.dedup = Some(std::sync::Mutex::new(c)),
                Err(e) => tracing::warn!(
                    vhost = %self.name, exchange = %name, error = %e,
                    "could not open the de-duplication cache; keeping it in memory"
                ),
            }
        }
        Ok(x)
    }

    /// Where a durable exchange keeps its de-duplication cache (None: nothing persists).
    fn exchange_dir(&self, x: &Exchange) -> Option<std::path::PathBuf> {
        let d = self.durability.as_ref().filter(|_| x.durable && x.dedup.is_some())?;
        Some(
            d.store
                .root
                .join("exchanges")
                .join(hex(self.name.as_bytes()))
                .join(hex(x.name.as_bytes())),
        )
    }

    fn build_exchange(
        &self,
        name: &str,
        kind: &str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: &FieldTable,
    ) -> AmqpResult<Exchange> {
        if kind != DELAYED_TYPE {
            let Some(k) = ExchangeKind::parse(kind) else {
                return Err(AmqpError::command_invalid(format!("unknown exchange type '{kind}'")));
            };
            return Ok(Exchange::new(
                name,
                k,
                durable,
                auto_delete,
                internal,
                arguments.clone(),
            ));
        }
        let Some(inner) = args::get_str(arguments, "x-delayed-type").and_then(ExchangeKind::parse) else {
            return Err(AmqpError::precondition(
                "Invalid argument, 'x-delayed-type' must be an existing exchange type",
            ));
        };
        let mut x = Exchange::new(name, inner, durable, auto_delete, internal, arguments.clone());
        let held = match &self.durability {
            Some(d) if durable => {
                let dir = d
                    .store
                    .root
                    .join("delayed")
                    .join(hex(self.name.as_bytes()))
                    .join(hex(name.as_bytes()));
                DelayedMessages::open(&dir, d.store.budget.clone()).map_err(|e| {
                    AmqpError::new(
                        crate::amqp::error::INTERNAL_ERROR,
                        format!("cannot open delayed messages: {e}"),
                    )
                })?
            }
            _ => DelayedMessages::default(),
        };
        x.delayed = Some(std::sync::Mutex::new(held));
        Ok(x)
    }

    /// Routes the held messages of delayed exchanges whose delay has passed (called by the sweeper).
    pub fn release_delayed(&self) {
        let now = crate::store::now_ms();
        let mut due: Vec<(String, Vec<crate::routing::delayed::Released>)> = Vec::new();
        {
            let t = self.read();
            for x in t.exchanges.values() {
                if let Some(d) = &x.delayed {
                    let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                    if !d.is_empty() {
                        let ready = d.take_due(now);
                        if !ready.is_empty() {
                            due.push((x.name.clone(), ready));
                        }
                    }
                }
            }
        }
        for (exchange, messages) in due {
            let mut locs = Vec::new();
            let mut queues = Vec::new();
            for (m, loc) in messages {
                queues.clear();
                let headers = m.properties().headers().clone();
                {
                    let t = self.read();
                    if let Some(x) = t.exchanges.get(&exchange) {
                        let mut visited = Vec::new();
                        route_from(
                            &t,
                            x,
                            m.routing_key.as_str(),
                            headers.as_ref(),
                            &mut visited,
                            &mut queues,
                        );
                    }
                }
                queues.sort_by_key(|q| Arc::as_ptr(q) as usize);
                queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
                for q in &queues {
                    q.publish(m.clone());
                }
                locs.extend(loc);
            }
            let t = self.read();
            if let Some(d) = t.exchanges.get(&exchange).and_then(|x| x.delayed.as_ref()) {
                d.lock().unwrap_or_else(|e| e.into_inner()).released(locs);
            }
        }
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "operation not permitted on the {}",
                if name.is_empty() {
                    "default exchange".to_string()
                } else {
                    format!("exchange '{name}'")
                }
            )));
        }
        let mut t = self.write();
        let Some(x) = t.exchanges.get(name) else {
            return Ok(());
        };
        if if_unused && !x.router.is_empty() {
            return Err(AmqpError::precondition(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        t.remove_exchange(name);
        t.save()
            .map_err(|e| self.not_saved(&format!("the deletion of exchange '{name}'"), e))?;
        // Its files go only once the deletion is stored.
        if let Some(x) = t.take_removed_exchange(name) {
            if let Some(dir) = self.exchange_dir(&x) {
                let _ = std::fs::remove_dir_all(dir);
            }
            if let Some(d) = x.delayed {
                d.lock().unwrap_or_else(|e| e.into_inner()).destroy();
            }
        }
        Ok(())
    }

    /// queue.bind and exchange.bind.
    pub fn bind(&self, source: &str, binding: Binding) -> AmqpResult<()> {
        if source.is_empty() || matches!(&binding.destination, Destination::Exchange(n) if n.is_empty()) {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        let mut t = self.write();
        match &binding.destination {
            Destination::Queue(q) if !t.queues.contains_key(q) => return Err(self.no_queue(q)),
            Destination::Exchange(x) if !t.exchanges.contains_key(x) => return Err(self.no_exchange(x)),
            _ => {}
        }
        let Some(x) = t.exchanges.get(source) else {
            return Err(self.no_exchange(source));
        };
        if x.kind == ExchangeKind::Headers && !valid_x_match(&binding.arguments) {
            return Err(AmqpError::precondition(
                "Invalid x-match field value; expected one of all, any, all-with-x, any-with-x",
            ));
        }
        t.add_binding(source, binding);
        t.save()
            .map_err(|e| self.not_saved(&format!("a binding from exchange '{source}'"), e))
    }

    /// queue.unbind and exchange.unbind: idempotent, as in RabbitMQ.
    pub fn unbind(&self, source: &str, binding: &Binding) -> AmqpResult<()> {
        if source.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        let mut t = self.write();
        match &binding.destination {
            Destination::Queue(q) if !t.queues.contains_key(q) => return Err(self.no_queue(q)),
            Destination::Exchange(x) if !t.exchanges.contains_key(x) => return Err(self.no_exchange(x)),
            _ => {}
        }
        let Some(x) = t.exchanges.get(source) else {
            return Err(self.no_exchange(source));
        };
        let auto_delete = x.auto_delete;
        if t.remove_binding(source, binding)
            && auto_delete
            && t.exchanges.get(source).is_some_and(|x| x.router.is_empty())
        {
            t.remove_exchange(source);
        }
        t.save()
            .map_err(|e| self.not_saved(&format!("the removal of a binding from exchange '{source}'"), e))
    }

    /// Checks that a publish may go to `exchange`, and resolves the queues it reaches into `out`. Returns whether
    /// the result depends only on (exchange, routing key), so a channel may cache it for this `generation`.
    pub fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        message: Option<&crate::message::Message>,
        out: &mut Vec<Arc<Queue>>,
    ) -> AmqpResult<Routed> {
        self.route_checked(exchange, routing_key, headers, message, out, false)
    }

    /// Like `route`, for messages the broker itself republishes (dead letters, admin moves): an internal exchange
    /// may take them, as in RabbitMQ (only clients may not publish to one).
    pub fn route_internal(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        message: Option<&crate::message::Message>,
        out: &mut Vec<Arc<Queue>>,
    ) -> AmqpResult<Routed> {
        self.route_checked(exchange, routing_key, headers, message, out, true)
    }

    fn route_checked(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&FieldTable>,
        message: Option<&crate::message::Message>,
        out: &mut Vec<Arc<Queue>>,
        allow_internal: bool,
    ) -> AmqpResult<Routed> {
        let t = self.read();
        if exchange.is_empty() {
            if let Some(q) = t.queues.get(routing_key) {
                out.push(q.clone());
            }
            return Ok(Routed {
                cacheable: true,
                duplicate: false,
                ticket: 0,
            });
        }
        let Some(x) = t.exchanges.get(exchange) else {
            return Err(self.no_exchange(exchange));
        };
        if x.internal && !allow_internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                self.name
            )));
        }
        if let Some(cache) = &x.dedup {
            let key = message.and_then(crate::queue::dedup::dedup_key);
            if let Some(key) = key {
                if cache.lock().unwrap_or_else(|e| e.into_inner()).check_and_insert(key) {
                    return Ok(Routed {
                        cacheable: false,
                        duplicate: true,
                        ticket: 0,
                    });
                }
            }
        }
        if let (Some(held), Some(m)) = (&x.delayed, message) {
            if let Some(delay) = crate::routing::delayed::delay_of(m) {
                let held = held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .hold(Arc::new(m.clone_shallow()), delay);
                let cannot = |e: std::io::Error| {
                    AmqpError::new(
                        crate::amqp::error::INTERNAL_ERROR,
                        format!("cannot hold a delayed message: {e}"),
                    )
                };
                let ticket = self.sync_ticket(held.map_err(cannot)?).map_err(cannot)?;
                return Ok(Routed {
                    cacheable: false,
                    duplicate: true,
                    ticket,
                });
            }
        }
        let mut visited: Vec<&str> = Vec::new();
        route_from(&t, x, routing_key, headers, &mut visited, out);
        if out.len() > 1 {
            out.sort_by_key(|q| Arc::as_ptr(q) as usize);
            out.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        let cacheable = x.dedup.is_none()
            && x.delayed.is_none()
            && visited
                .iter()
                .all(|n| t.exchanges.get(*n).is_none_or(|x| x.kind != ExchangeKind::Headers));
        Ok(Routed {
            cacheable,
            duplicate: false,
            ticket: 0,
        })
    }

    /// Makes `files` durable as the store's fsync mode says: a group-commit ticket (batch), a sync now (always), or
    /// nothing (never, or no store).
    fn sync_ticket(&self, files: Vec<Arc<std::fs::File>>) -> std::io::Result<u64> {
        let Some(d) = &self.durability else { return Ok(0) };
        match d.store.fsync {
            crate::store::FsyncMode::Batch => Ok(files.iter().map(|f| d.store.syncer.mark_dirty(f)).max().unwrap_or(0)),
            crate::store::FsyncMode::Always => {
                crate::store::blocking(|| files.iter().try_for_each(|f| f.sync_data()))?;
                Ok(0)
            }
            crate::store::FsyncMode::Never => Ok(0),
        }
    }

    /// Every binding, as (source, binding).
    pub fn bindings(&self) -> Vec<(String, Binding)> {
        let t = self.read();
        t.exchanges
            .values()
            .flat_map(|x| x.router.bindings().into_iter().map(|b| (x.name.clone(), b.clone())))
            .collect()
    }

    /// Every exchange, for the admin API.
    pub fn exchange_infos(&self) -> Vec<warren_shared::ExchangeInfo> {
        self.read()
            .exchanges
            .values()
            .map(|x| warren_shared::ExchangeInfo {
                vhost: self.name.clone(),
                name: x.name.clone(),
                kind: x.type_name().to_string(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: crate::admin::table_json(&x.arguments),
            })
            .collect()
    }

    pub fn has_exchange(&self, name: &str) -> bool {
        name.is_empty() || self.read().exchanges.contains_key(name)
    }
}

fn route_from<'t>(
    t: &'t Topology,
    x: &'t Exchange,
    routing_key: &str,
    headers: Option<&FieldTable>,
    visited: &mut Vec<&'t str>,
    out: &mut Vec<Arc<Queue>>,
) {
    if visited.contains(&x.name.as_str()) || visited.len() >= MAX_EXCHANGE_HOPS {
        return;
    }
    visited.push(&x.name);
    let mut dests = Vec::new();
    x.router.route(routing_key, headers, &mut dests);
    if dests.is_empty() {
        if let Some(ae) = x.alternate_exchange().and_then(|n| t.exchanges.get(n)) {
            route_from(t, ae, routing_key, headers, visited, out);
        }
        return;
    }
    for d in dests {
        match d {
            Destination::Queue(n) => {
                if let Some(q) = t.queues.get(n) {
                    out.push(q.clone());
                }
            }
            Destination::Exchange(n) => {
                if let Some(next) = t.exchanges.get(n) {
                    route_from(t, next, routing_key, headers, visited, out);
                }
            }
        }
    }
}

/// `amq.gen-` followed by 22 url-safe random characters, like RabbitMQ's server-named queues.
fn generate_queue_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("amq.gen-{suffix}")
}

/// Rejects queue arguments whose type or value is wrong, as RabbitMQ does at declare time.
fn validate_queue_arguments(arguments: &FieldTable) -> AmqpResult<()> {
    for (k, v) in arguments.inner() {
        let key = k.as_str();
        let int_arg = matches!(
            key,
            "x-max-priority"
                | "x-message-ttl"
                | "x-expires"
                | "x-max-length"
                | "x-max-length-bytes"
                | "x-delivery-limit"
        );
        if int_arg {
            match args::as_i64(v) {
                Some(n) if n >= 0 => {}
                _ => {
                    return Err(AmqpError::precondition(format!(
                        "invalid arg '{key}' for queue: expected a non-negative integer, got {}",
                        args::describe(Some(v))
                    )))
                }
            }
        }
    }
    Ok(())
}
