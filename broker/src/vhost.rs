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
//!
//! This file holds the `VHost` itself, its locks, lookups, restore and binds; the rest is split by concern, each an
//! `impl VHost` block in a child module: `declare.rs` (declaring and deleting queues and exchanges), `route.rs`
//! (routing a publish, and which queues an exchange can reach), `policies.rs` (operator policies), `pause.rs`
//! (pausing queues) and `topology_write.rs` (the write lock and saving changes). Delayed-message release is in `routing/delayed.rs`.
//! Nothing here knows the admin API: it asks these methods and builds its own DTOs.

mod declare;
mod pause;
pub use declare::generate_queue_name;
mod policies;
mod route;
mod topology_write;
mod trace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use amq_protocol::types::FieldTable;

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::clock::Clock;
use crate::queue::{Queue, QueueSpec};
use crate::routing::{headers::valid_x_match, Binding, Destination, Exchange, ExchangeKind};
use crate::store::definitions::VHostDefinitions;
use crate::store::definitions_log::DefinitionsLog;
use crate::store::Store;
use crate::timer::Timer;
use policies::Policies;
use topology_write::TopologyWrite;

/// Exchanges every vhost has from the start.
const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

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
    /// The broker's clock, handed to every queue and exchange made here.
    pub clock: Clock,
    /// The broker's timer, which queues and delayed exchanges made here arm with their deadlines.
    pub(crate) timer: Timer,
    /// Queue declare and delete counts, shared by the broker's vhosts (a vhost of its own has its own).
    pub churn: Arc<crate::counters::Churn>,
    /// Message journeys: this vhost's switches and the broker's journal, shared with its queues (`vhost/trace.rs`).
    pub trace: Arc<crate::trace::VhostTrace>,
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

impl VHost {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new_cyclic(|me| Self::with_durability(name, None, Clock::system(), Timer::detached(), me.clone()))
    }

    /// Built inside `Arc::new_cyclic`, so queues can hold `me`.
    pub fn with_durability(
        name: &str,
        durability: Option<Durability>,
        clock: Clock,
        timer: Timer,
        me: std::sync::Weak<VHost>,
    ) -> Self {
        let mut t = Topology::default();
        for (n, k) in PREDECLARED {
            t.exchanges.insert(
                (*n).to_string(),
                Exchange::new(n, *k, true, false, false, FieldTable::default(), &clock),
            );
        }
        VHost {
            name: name.to_string(),
            topology: RwLock::new(t),
            generation: AtomicU64::new(1),
            durability,
            me,
            policies: RwLock::new(Policies::default()),
            trace: crate::trace::VhostTrace::new(crate::trace::Journal::in_memory(clock.clone())),
            clock,
            timer,
            churn: Arc::default(),
        }
    }

    /// Counts queue churn in the broker's counters instead of this vhost's own.
    pub fn with_churn(mut self, churn: Arc<crate::counters::Churn>) -> Self {
        self.churn = churn;
        self
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Topology> {
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
    /// Rebuilds the durable topology saved in `definitions.log` (at start, before any client connects).
    pub fn restore(&self, defs: &VHostDefinitions) -> std::io::Result<()> {
        // What is restored is what the log says: it goes straight into the topology, with nothing to save.
        let mut t = self.write();
        self.restore_policies(&defs.policies);
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
            queue.set_paused(q.paused);
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
    /// Every binding, as (source, binding).
    pub fn bindings(&self) -> Vec<(String, Binding)> {
        let t = self.read();
        t.exchanges
            .values()
            .flat_map(|x| x.router.bindings().into_iter().map(|b| (x.name.clone(), b.clone())))
            .collect()
    }

    /// Runs `f` on every exchange under the read lock (short: `f` must not block or take other locks), for
    /// callers that describe exchanges (the admin API builds its DTOs from what `f` returns).
    pub fn map_exchanges<T>(&self, f: impl FnMut(&Exchange) -> T) -> Vec<T> {
        self.read().exchanges.values().map(f).collect()
    }

    pub fn has_exchange(&self, name: &str) -> bool {
        name.is_empty() || self.read().exchanges.contains_key(name)
    }
}
