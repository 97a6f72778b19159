//! Declaring and deleting queues and exchanges: the AMQP rules (reserved names, exclusivity, equivalence of a
//! redeclare, argument checks) and building what a declare creates (a queue's store, an exchange's caches).
//!
//! Invariants: every change goes through `TopologyWrite` and is saved before it is answered (or undone); files a
//! change creates are removed again when it cannot be saved, and files a deletion frees go only once it is saved.

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use rand::Rng;

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::args;
use crate::counters::Churn;
use crate::queue::spill::Spill;
use crate::queue::{MessageStore, Queue, QueueSpec, SyncPolicy};
use crate::routing::delayed::{open_hold, DelayedHold};
use crate::routing::{Exchange, ExchangeKind, DELAYED_TYPE};
use crate::store::txlog::TxView;
use crate::store::{hex, FsyncMode};

use super::{Durability, ExchangeDeclare, QueueDeclare, VHost};

impl VHost {
    /// queue.declare. Returns the queue (with its final name).
    pub fn declare_queue(&self, d: &QueueDeclare<'_>) -> AmqpResult<Arc<Queue>> {
        if d.passive {
            if d.name.is_empty() {
                return Err(AmqpError::not_found("no queue name given for a passive declare"));
            }
            return self.queue_for(d.name, d.connection_id);
        }
        Churn::inc(&self.churn.queues_declared);
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
        if crate::stream::args::is_stream(d.arguments) {
            self.check_stream_declare(d, &name)?;
        }
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
        Churn::inc(&self.churn.queues_created);
        Ok(q)
    }

    /// RabbitMQ's rules for declaring a stream: durable, not exclusive, not auto-delete, and only the arguments a
    /// stream has.
    fn check_stream_declare(&self, d: &QueueDeclare<'_>, name: &str) -> AmqpResult<()> {
        let property = |p: &str| {
            AmqpError::precondition(format!(
                "invalid property '{p}' for queue '{name}' in vhost '{}'",
                self.name
            ))
        };
        if !d.durable {
            return Err(property("non-durable"));
        }
        if d.exclusive {
            return Err(property("exclusive-owner"));
        }
        if d.auto_delete {
            return Err(property("auto-delete"));
        }
        crate::stream::args::settings(d.arguments, name, &self.name).map_err(AmqpError::precondition)?;
        if self.durability.is_none() {
            return Err(AmqpError::precondition(format!(
                "cannot declare stream '{name}' in vhost '{}': streams need a data directory",
                self.name
            )));
        }
        Ok(())
    }

    /// Opens a stream's files (recovering them) and builds its queue.
    fn make_stream(&self, spec: QueueSpec, d: &Durability) -> std::io::Result<Arc<Queue>> {
        // The declare checked the arguments; a policy may lower retention and segment size.
        let settings = crate::stream::args::effective_settings(&spec.effective_arguments());
        let dir = d.store.queue_dir(&self.name, &spec.name);
        let mut state = crate::stream::state::StreamState::open(&dir, settings, crate::stream::state::TAIL_BYTES)?;
        state.reader = d.store.reader.clone();
        if state.message_count() > 0 {
            tracing::info!(
                vhost = %self.name,
                queue = %spec.name,
                first_offset = state.log.first_offset(),
                next_offset = state.log.next_offset(),
                segments = state.log.segment_count(),
                "recovered stream"
            );
        }
        let sync = SyncPolicy {
            mode: d.store.fsync,
            syncer: d.store.syncer.clone(),
        };
        Ok(Queue::new_stream(
            spec,
            state,
            Some(sync),
            self.me.clone(),
            self.clock.clone(),
            self.timer.clone(),
        ))
    }

    /// Builds a queue: durable (and not auto-delete) queues get a disk-backed store, recovering what their
    /// directory holds; the rest live in memory.
    pub(super) fn make_queue(&self, mut spec: QueueSpec) -> std::io::Result<Arc<Queue>> {
        spec.policy = crate::policy::select(
            self.policies.read().unwrap_or_else(|e| e.into_inner()).effective(),
            &self.name,
            &spec.name,
        )
        .cloned()
        .map(Arc::new);
        let persists = spec.durable && !spec.auto_delete && spec.exclusive_owner.is_none();
        if crate::stream::args::is_stream(&spec.arguments) {
            return match &self.durability {
                Some(d) => self.make_stream(spec, d),
                None => Err(std::io::Error::other("streams need a data directory")),
            };
        }
        match &self.durability {
            Some(d) if persists => {
                let started = std::time::Instant::now();
                let dir = d.store.queue_dir(&self.name, &spec.name);
                let (p, ttl) = Queue::store_settings(&spec);
                let sealing = d.store.sealer.clone().map(|s| (s, d.store.fsync != FsyncMode::Never));
                let txs = TxView(Some(&d.store.txlog));
                let (store, rec) = MessageStore::open_on_disk(&dir, d.store.budget.clone(), &txs, p, ttl, sealing)?;
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
                let store = paging(store, d);
                Ok(Queue::new(
                    spec,
                    store,
                    Some(sync),
                    self.me.clone(),
                    self.clock.clone(),
                    self.timer.clone(),
                ))
            }
            // A queue whose messages all live in memory pages its transient messages out under memory pressure.
            Some(d) => {
                let (p, ttl) = Queue::store_settings(&spec);
                let store = paging(MessageStore::new(p, ttl), d);
                Ok(Queue::new(
                    spec,
                    store,
                    None,
                    self.me.clone(),
                    self.clock.clone(),
                    self.timer.clone(),
                ))
            }
            None => Ok(Queue::new_in_memory(
                spec,
                self.me.clone(),
                self.clock.clone(),
                self.timer.clone(),
            )),
        }
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
                .map_err(|e| self.not_saved(&format!("the deletion of queue '{name}'"), e))?;
            Churn::inc(&self.churn.queues_deleted);
            Ok(())
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
        Churn::inc(&self.churn.queues_deleted);
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
    pub(super) fn make_exchange(
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
                .and_then(|()| crate::queue::dedup::DedupCache::persistent(settings, &dir, self.clock.clone()));
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
                &self.clock,
            ));
        }
        let Some(inner) = args::get_str(arguments, "x-delayed-type").and_then(ExchangeKind::parse) else {
            return Err(AmqpError::precondition(
                "Invalid argument, 'x-delayed-type' must be an existing exchange type",
            ));
        };
        let mut x = Exchange::new(
            name,
            inner,
            durable,
            auto_delete,
            internal,
            arguments.clone(),
            &self.clock,
        );
        let held = open_hold(self.durability.as_ref(), &self.name, name, durable).map_err(|e| {
            AmqpError::new(
                crate::amqp::error::INTERNAL_ERROR,
                format!("cannot open delayed messages: {e}"),
            )
        })?;
        x.delayed = Some(DelayedHold::new(held, self.me.clone(), name, self.timer.clone()));
        Ok(x)
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
                if std::fs::remove_dir_all(&dir).is_ok() {
                    crate::store::repl::removed_dir(&dir);
                }
            }
            if let Some(d) = x.delayed {
                d.lock().destroy();
            }
        }
        Ok(())
    }
}

/// `amq.gen-` followed by 22 url-safe random characters, like RabbitMQ's server-named queues.
pub fn generate_queue_name() -> String {
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

/// A queue's store with the data directory's spill log (for transient messages under memory pressure) and read
/// threads.
fn paging(store: MessageStore, d: &Durability) -> MessageStore {
    store
        .with_spill(Spill::new(
            d.store.spill_dir(),
            d.store.budget.clone(),
            d.store.page_pressure.clone(),
        ))
        .with_reader(d.store.reader.clone())
}
