//! `GET /api/definitions` (and `/api/definitions/{vhost}`): the broker's definitions in RabbitMQ's export format,
//! which `POST /api/definitions` here or on RabbitMQ imports: users (with their password hashes and
//! `hashing_algorithm`), vhosts, permissions, topic permissions, limits (as `vhost-limits` parameters), policies,
//! and the durable exchanges, queues and bindings. The per-vhost form holds the vhost's topology and policies only.
//!
//! As RabbitMQ does, the built-in exchanges (the default exchange, `amq.*`) are left out, and so are transient and
//! exclusive queues and the bindings that involve them. Administrators only.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::access::limits_json;
use super::caller::Caller;
use super::json::table;
use super::Error;
use crate::broker::Broker;
use crate::routing::Destination;
use crate::vhost::VHost;

/// The RabbitMQ version whose format this follows.
pub const RABBITMQ_FORMAT: &str = "3.10.8";

pub async fn all(State(b): State<Arc<Broker>>, caller: Caller) -> Result<Json<Value>, Error> {
    caller.require_admin()?;
    let a = &b.access;
    let users: Vec<Value> = a
        .users()
        .iter()
        .map(|u| {
            let (hash, algorithm) = crate::auth::password::to_definitions(&u.password_hash, &u.hashing_algorithm);
            json!({
                "name": u.name,
                "password_hash": hash,
                "hashing_algorithm": algorithm,
                "tags": u.tags,
                "limits": limits_json(&u.limits),
            })
        })
        .collect();
    let vhosts: Vec<Value> = a
        .vhosts()
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "limits": [],
                "metadata": {"description": v.description, "tags": v.tags},
            })
        })
        .collect();
    let parameters: Vec<Value> = a
        .vhosts()
        .iter()
        .filter(|v| !v.limits.is_empty())
        .map(|v| json!({"vhost": v.name, "component": "vhost-limits", "name": "limits", "value": limits_json(&v.limits)}))
        .collect();
    let permissions: Vec<Value> = a
        .permissions()
        .iter()
        .map(|p| json!({"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read}))
        .collect();
    let topic_permissions: Vec<Value> = a
        .topic_permissions()
        .iter()
        .map(|t| json!({"user": t.user, "vhost": t.vhost, "exchange": t.exchange, "write": t.write, "read": t.read}))
        .collect();
    let mut vhs = b.vhosts();
    vhs.sort_by(|x, y| x.name.cmp(&y.name));
    let mut topo = Topology::default();
    for vh in &vhs {
        topo.add(vh);
    }
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_FORMAT,
        "rabbitmq_version": RABBITMQ_FORMAT,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": parameters,
        "global_parameters": [],
        "policies": topo.policies,
        "queues": topo.queues,
        "exchanges": topo.exchanges,
        "bindings": topo.bindings,
    })))
}

pub async fn one_vhost(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, Error> {
    caller.require_admin()?;
    let vh = b
        .vhost(&vhost)
        .ok_or_else(|| Error::not_found(format!("no vhost '{vhost}'")))?;
    let mut topo = Topology::default();
    topo.add(&vh);
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_FORMAT,
        "rabbitmq_version": RABBITMQ_FORMAT,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "parameters": [],
        "policies": topo.policies,
        "queues": topo.queues,
        "exchanges": topo.exchanges,
        "bindings": topo.bindings,
    })))
}

#[derive(Default)]
struct Topology {
    policies: Vec<Value>,
    queues: Vec<Value>,
    exchanges: Vec<Value>,
    bindings: Vec<Value>,
}

impl Topology {
    fn add(&mut self, vh: &VHost) {
        let v = &vh.name;
        let mut policies = vh.policies();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        self.policies.extend(policies.iter().map(|p| {
            json!({
                "vhost": v,
                "name": p.name,
                "pattern": p.pattern.as_str(),
                "apply-to": "queues",
                "definition": Value::Object(p.definition.clone()),
                "priority": p.priority,
            })
        }));
        let mut queues = vh.queues();
        queues.retain(|q| q.spec.durable && q.spec.exclusive_owner.is_none());
        queues.sort_by(|a, b| a.name().cmp(b.name()));
        self.queues.extend(queues.iter().map(|q| {
            json!({
                "name": q.name(),
                "vhost": v,
                "type": "classic",
                "durable": true,
                "auto_delete": q.spec.auto_delete,
                "arguments": Value::Object(table(&q.spec.arguments)),
            })
        }));
        let mut exchanges: Vec<(String, Value)> = vh
            .map_exchanges(|x| {
                let builtin = x.name.is_empty() || x.name.starts_with("amq.");
                (!builtin && x.durable).then(|| {
                    (
                        x.name.clone(),
                        json!({
                            "name": x.name,
                            "vhost": v,
                            "type": x.type_name(),
                            "durable": true,
                            "auto_delete": x.auto_delete,
                            "internal": x.internal,
                            "arguments": Value::Object(table(&x.arguments)),
                        }),
                    )
                })
            })
            .into_iter()
            .flatten()
            .collect();
        exchanges.sort_by(|a, b| a.0.cmp(&b.0));
        let durable_exchange = |name: &str| name.starts_with("amq.") || exchanges.iter().any(|(n, _)| n == name);
        let durable_queue = |name: &str| queues.iter().any(|q| q.name() == name);
        for (source, binding) in vh.bindings() {
            let (destination, kind, durable) = match &binding.destination {
                Destination::Queue(q) => (q.as_str(), "queue", durable_queue(q)),
                Destination::Exchange(x) => (x.as_str(), "exchange", durable_exchange(x)),
            };
            if source.is_empty() || !durable_exchange(&source) || !durable {
                continue;
            }
            self.bindings.push(json!({
                "source": source,
                "vhost": v,
                "destination": destination,
                "destination_type": kind,
                "routing_key": binding.routing_key,
                "arguments": Value::Object(table(&binding.arguments)),
            }));
        }
        self.exchanges.extend(exchanges.into_iter().map(|(_, x)| x));
    }
}
