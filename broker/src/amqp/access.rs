//! A connection's permissions: the [`Grant`] for its user on its vhost, checked where RabbitMQ checks
//! (`configure` to declare and delete, `write` on the destination and `read` on the source to bind and unbind,
//! `write` to publish, `read` to consume, get and purge), with RabbitMQ's 403 ACCESS_REFUSED texts.
//!
//! Invariant: the grant is looked up again whenever `Access::generation` moved, so a permission change applies to
//! open connections from their next check on (a revoked permission refuses at once). Publishing remembers what it
//! allowed under the current generation: the last exchange (a steady publisher pays one atomic load and one string
//! compare per message), and the other exchanges and, where topic permissions apply, routing keys (a hash lookup),
//! each set bounded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::auth::{Access, Grant, Kind, Perm};

/// The most exchanges, and routing keys per exchange, a connection remembers as allowed (then it starts afresh).
const REMEMBERED: usize = 256;

type FoldSet<T> = HashSet<T, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct ConnAccess {
    user: String,
    vhost: String,
    grant: Option<Arc<Grant>>,
    generation: u64,
    /// Exchanges allowed for writing under `generation`, and for those with topic permissions, the routing keys
    /// allowed: a publisher's exchanges and keys are few, so a check is a hash lookup, not a regex match.
    written: HashMap<String, FoldSet<String>, foldhash::fast::RandomState>,
    /// The exchange allowed last (the steady state of a publisher: one string compare).
    last_write: Option<String>,
}

impl ConnAccess {
    /// The access of `user` on `vhost` now; `None` when they have no permissions there (connection.open is
    /// refused).
    pub fn open(access: &Access, user: &str, vhost: &str) -> Option<Self> {
        let generation = access.generation();
        let grant = access.grant(vhost, user)?;
        Some(ConnAccess {
            user: user.to_string(),
            vhost: vhost.to_string(),
            grant: Some(grant),
            generation,
            ..ConnAccess::default()
        })
    }

    /// Looks the grant up again if access control changed since.
    fn refresh(&mut self, access: &Access) {
        let generation = access.generation();
        if generation != self.generation {
            self.grant = access.grant(&self.vhost, &self.user);
            self.generation = generation;
            self.written.clear();
            self.last_write = None;
        }
    }

    /// Checks `perm` on a queue or exchange.
    pub fn check(&mut self, access: &Access, perm: Perm, kind: Kind, name: &str) -> AmqpResult<()> {
        self.refresh(access);
        match &self.grant {
            Some(g) => g.check(perm, kind, name).map_err(AmqpError::access_refused),
            None => Err(AmqpError::access_refused(crate::auth::permissions::refused(
                perm,
                kind,
                crate::auth::permissions::exchange_name(name),
                &self.vhost,
                &self.user,
            ))),
        }
    }

    /// The user this connection authenticated as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// basic.publish: `write` on the exchange, and the user's topic permissions on the routing key.
    pub fn check_publish(&mut self, access: &Access, exchange: &str, routing_key: &str) -> AmqpResult<()> {
        if self.last_write.as_deref() == Some(exchange) && access.generation() == self.generation {
            return Ok(());
        }
        self.refresh(access);
        let topics = self
            .grant
            .as_ref()
            .is_some_and(|g| g.has_topic_permissions_on(exchange));
        if let Some(keys) = self.written.get(exchange) {
            if !topics || keys.contains(routing_key) {
                return Ok(());
            }
        } else {
            self.check(access, Perm::Write, Kind::Exchange, exchange)?;
            if self.written.len() >= REMEMBERED {
                self.written.clear();
            }
            self.written.insert(exchange.to_string(), FoldSet::default());
        }
        if !topics {
            self.last_write = Some(exchange.to_string());
            return Ok(());
        }
        // Topic checks depend on the key: remember the keys allowed.
        if let Some(g) = &self.grant {
            g.check_topic(Perm::Write, exchange, routing_key)
                .map_err(AmqpError::access_refused)?;
        }
        if let Some(keys) = self.written.get_mut(exchange) {
            if keys.len() >= REMEMBERED {
                keys.clear();
            }
            keys.insert(routing_key.to_string());
        }
        Ok(())
    }

    /// queue.bind to a topic exchange: the user's topic `read` permission on the binding key.
    pub fn check_bind_key(&mut self, access: &Access, exchange: &str, key: &str) -> AmqpResult<()> {
        self.refresh(access);
        match &self.grant {
            Some(g) => g
                .check_topic(Perm::Read, exchange, key)
                .map_err(AmqpError::access_refused),
            None => Ok(()),
        }
    }
}
