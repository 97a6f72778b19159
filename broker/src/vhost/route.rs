//! Routing through a vhost's topology: a publish's queues (`route`), following exchange-to-exchange bindings and
//! alternate exchanges, with de-duplicating and delayed exchanges taking their messages first; and which queues
//! an exchange can reach at all (`dead_letter_sources`), which the admin API shows.
//!
//! Invariants: each call takes the topology read lock once, briefly, and never while holding a queue lock; a
//! route follows at most `MAX_EXCHANGE_HOPS` exchanges and never the same one twice, so no topology makes it loop.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::types::FieldTable;

use crate::amqp::error::{AmqpError, AmqpResult};
use crate::queue::Queue;
use crate::routing::{Destination, Exchange, ExchangeKind};

use super::{Routed, Topology, VHost};

/// How far exchange-to-exchange bindings are followed before a route is cut (cycles are also cut by a visited set).
const MAX_EXCHANGE_HOPS: usize = 32;

impl VHost {
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
                let held = held.hold(Arc::new(m.clone_shallow()), delay, self.clock.now_ms());
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

    /// For each queue, the queues whose dead letters reach it (names, sorted), as the admin API shows them. A
    /// dead-letter exchange with a dead-letter routing key is routed like a message; without one (each message
    /// keeps its own key), or for a headers exchange (it routes on each message's headers), every queue the
    /// exchange can reach counts: through its bindings, exchange-to-exchange bindings and alternate exchanges.
    pub fn dead_letter_sources(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for q in self.queues() {
            let limits = q.limits();
            let Some(dlx) = &limits.dead_letter_exchange else {
                continue;
            };
            let mut targets: Vec<String> = Vec::new();
            match (&limits.dead_letter_routing_key, dlx.is_empty()) {
                (Some(key), true) => targets.push(key.clone()),
                (None, true) => {}
                (Some(key), false) => {
                    let mut routed = Vec::new();
                    if self.route_internal(dlx, key, None, None, &mut routed).is_ok() {
                        targets.extend(routed.iter().map(|t| t.name().to_string()));
                    }
                    let headers = self.read().exchanges.get(dlx.as_str()).is_some_and(|x| {
                        // As the API names its type: a delayed exchange is not "headers", whatever it routes by.
                        x.type_name() == ExchangeKind::Headers.as_str()
                    });
                    if targets.is_empty() && headers {
                        targets = reachable_queues(&self.read(), dlx);
                    }
                }
                (None, false) => targets = reachable_queues(&self.read(), dlx),
            }
            targets.sort();
            targets.dedup();
            for t in targets {
                out.entry(t).or_default().push(q.name().to_string());
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
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

/// Every queue reachable from exchange `start`, whatever the routing key and headers: through bindings,
/// exchange-to-exchange bindings and alternate exchanges (each exchange visited once). A queue reached twice is
/// listed twice.
fn reachable_queues(t: &Topology, start: &str) -> Vec<String> {
    let mut seen: Vec<String> = vec![start.to_string()];
    let mut todo: Vec<String> = vec![start.to_string()];
    let mut queues = Vec::new();
    while let Some(x) = todo.pop() {
        let Some(x) = t.exchanges.get(&x) else {
            continue;
        };
        let next = x
            .router
            .bindings()
            .into_iter()
            .map(|b| b.destination.clone())
            .chain(x.alternate_exchange().map(|ae| Destination::Exchange(ae.to_string())));
        for d in next {
            match d {
                Destination::Queue(q) => queues.push(q),
                Destination::Exchange(e) if !seen.contains(&e) => {
                    seen.push(e.clone());
                    todo.push(e);
                }
                Destination::Exchange(_) => {}
            }
        }
    }
    queues
}
