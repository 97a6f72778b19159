//! A connection's permissions: the [`Grant`] for its user on its vhost, checked where RabbitMQ checks
//! (`configure` to declare and delete, `write` on the destination and `read` on the source to bind and unbind,
//! `write` to publish, `read` to consume, get and purge), with RabbitMQ's 403 ACCESS_REFUSED texts.
//!
//! Invariant: the grant is looked up again whenever `Access::generation` moved, so a permission change applies to
//! open connections from their next check on (a revoked permission refuses at once). Publishing remembers the
//! last exchange it allowed for the current generation, so a steady publisher pays one atomic load and one string
//! compare per message.

use std::sync::Arc;

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::auth::{Access, Grant, Kind, Perm};

#[derive(Default)]
pub struct ConnAccess {
    user: String,
    vhost: String,
    grant: Option<Arc<Grant>>,
    generation: u64,
    /// The exchange (and whether it needs a topic check) last allowed for writing under `generation`.
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
            last_write: None,
        })
    }

    fn current(&mut self, access: &Access) -> Option<&Grant> {
        let generation = access.generation();
        if generation != self.generation {
            self.grant = access.grant(&self.vhost, &self.user);
            self.generation = generation;
            self.last_write = None;
        }
        self.grant.as_deref()
    }

    /// Checks `perm` on a queue or exchange.
    pub fn check(&mut self, access: &Access, perm: Perm, kind: Kind, name: &str) -> AmqpResult<()> {
        let (user, vhost) = (self.user.clone(), self.vhost.clone());
        match self.current(access) {
            Some(g) => g.check(perm, kind, name).map_err(AmqpError::access_refused),
            None => Err(AmqpError::access_refused(crate::auth::permissions::refused(
                perm,
                kind,
                crate::auth::permissions::exchange_name(name),
                &vhost,
                &user,
            ))),
        }
    }

    /// basic.publish: `write` on the exchange, and the user's topic permissions on the routing key.
    pub fn check_publish(&mut self, access: &Access, exchange: &str, routing_key: &str) -> AmqpResult<()> {
        let generation = access.generation();
        if generation == self.generation && self.last_write.as_deref() == Some(exchange) {
            return Ok(());
        }
        self.check(access, Perm::Write, Kind::Exchange, exchange)?;
        let grant = self.grant.clone();
        if let Some(g) = grant.filter(|g| g.has_topic_permissions()) {
            // Topic checks depend on the key: nothing to remember.
            return g
                .check_topic(Perm::Write, exchange, routing_key)
                .map_err(AmqpError::access_refused);
        }
        self.last_write = Some(exchange.to_string());
        Ok(())
    }

    /// queue.bind to a topic exchange: the user's topic `read` permission on the binding key.
    pub fn check_bind_key(&mut self, access: &Access, exchange: &str, key: &str) -> AmqpResult<()> {
        match self.current(access) {
            Some(g) => g
                .check_topic(Perm::Read, exchange, key)
                .map_err(AmqpError::access_refused),
            None => Ok(()),
        }
    }
}
