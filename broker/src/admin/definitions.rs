//! `POST /api/definitions` (and `/api/definitions/{vhost}`): imports a RabbitMQ definitions file
//! (`rabbitmqctl export_definitions`, or Warren's own `GET /api/definitions`, `definitions_export.rs`): users with
//! their password hashes (RabbitMQ's SHA-256 and SHA-512 hashes are kept as they are, so the users log in with their
//! old passwords), vhosts, permissions, topic permissions and limits, then exchanges, queues, bindings and policies.
//!
//! The access records are checked before anything is stored (a bad hash or expression is a 400 naming it) and
//! stored as one change. The topology is then declared as a client would declare it, in order (exchanges, queues,
//! bindings, policies); the first record the broker refuses ends the import with a 400 naming it, and what was
//! declared before it stays, as in RabbitMQ. Policies that apply to exchanges are skipped (Warren's policies apply
//! to queues), and said so in the audit trail. Booleans may be strings, as rabbitmqadmin sends them.
//! Administrators only.

use std::collections::HashMap;
use std::sync::Arc;

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::access::{audit, set_limit, stored, tags};
use super::caller::Caller;
use super::resources::arguments;
use super::{AdminState, Body, Error};
use crate::amqp::error::AmqpError;
use crate::auth::password;
use crate::broker::Broker;
use crate::policy::Policy;
use crate::routing::{Binding, Destination};
use crate::store::access_defs::{AccessOp, Limits, Origin, PermissionDef, TopicPermissionDef, UserDef, VHostDef};
use crate::vhost::{ExchangeDeclare, QueueDeclare};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/definitions",
            post_with(import_definitions, |o| {
                o.summary(
                    "Import a definitions file (RabbitMQ's format): users, vhosts, permissions, limits, exchanges, \
                     queues, bindings, policies",
                )
                .response_with::<204, (), _>(|r| r.description("Imported"))
            })
            .get_with(super::definitions_export::all, |o| {
                o.summary("Export the definitions in RabbitMQ's format (with password hashes)")
                    .response_with::<200, Json<DefinitionsImport>, _>(|r| {
                        r.description("A definitions file, which POST /api/definitions imports")
                    })
            }),
        )
        .api_route(
            "/api/definitions/{vhost}",
            post_with(import_vhost_definitions, |o| {
                o.summary("Import a vhost's exchanges, queues, bindings and policies")
                    .response_with::<204, (), _>(|r| r.description("Imported"))
            })
            .get_with(super::definitions_export::one_vhost, |o| {
                o.summary("Export one vhost's exchanges, queues, bindings and policies")
                    .response_with::<200, Json<DefinitionsImport>, _>(|r| {
                        r.description("A vhost's definitions, which POST /api/definitions/{vhost} imports")
                    })
            }),
        )
}

/// A RabbitMQ definitions file (what `rabbitmqctl export_definitions` and `GET /api/definitions` write).
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "Definitions")]
struct DefinitionsImport {
    #[serde(default)]
    users: Vec<ImportUser>,
    #[serde(default)]
    vhosts: Vec<ImportVHost>,
    #[serde(default)]
    permissions: Vec<PermissionImport>,
    #[serde(default)]
    topic_permissions: Vec<TopicPermissionImport>,
    #[serde(default)]
    parameters: Vec<ParameterImport>,
    #[serde(default)]
    queues: Vec<QueueImport>,
    #[serde(default)]
    exchanges: Vec<ExchangeImport>,
    #[serde(default)]
    bindings: Vec<BindingImport>,
    #[serde(default)]
    policies: Vec<PolicyImport>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, JsonSchema)]
struct QueueImport {
    name: String,
    vhost: Option<String>,
    #[serde(default = "yes", deserialize_with = "loose_bool")]
    durable: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    auto_delete: bool,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
struct ExchangeImport {
    name: String,
    vhost: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes", deserialize_with = "loose_bool")]
    durable: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    auto_delete: bool,
    #[serde(default, deserialize_with = "loose_bool")]
    internal: bool,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
struct BindingImport {
    source: String,
    vhost: Option<String>,
    destination: String,
    destination_type: String,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
struct PolicyImport {
    vhost: Option<String>,
    name: String,
    pattern: String,
    #[serde(rename = "apply-to", default)]
    apply_to: Option<String>,
    #[serde(default)]
    definition: serde_json::Map<String, Value>,
    #[serde(default)]
    priority: i64,
}

/// A boolean as RabbitMQ's tools send it: `true`, or `"true"` (rabbitmqadmin sends strings).
pub(super) fn loose_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!("expected a boolean, not {other}"))),
    }
}

#[derive(Deserialize, JsonSchema)]
struct ImportUser {
    name: String,
    #[serde(default)]
    password_hash: String,
    #[serde(default)]
    hashing_algorithm: Option<String>,
    #[serde(default)]
    tags: Value,
    #[serde(default)]
    limits: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
struct ImportVHost {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize, JsonSchema)]
struct PermissionImport {
    user: String,
    vhost: String,
    configure: String,
    write: String,
    read: String,
}

#[derive(Deserialize, JsonSchema)]
struct TopicPermissionImport {
    user: String,
    vhost: String,
    exchange: String,
    write: String,
    read: String,
}

#[derive(Deserialize, JsonSchema)]
struct ParameterImport {
    component: String,
    vhost: String,
    value: Value,
}

fn limits_from(m: Option<&serde_json::Map<String, Value>>, for_user: bool) -> Result<Limits, Error> {
    let mut l = Limits::default();
    for (k, v) in m.into_iter().flatten() {
        set_limit(&mut l, k, v.as_i64(), for_user)?;
    }
    Ok(l)
}

/// Imports a definitions file (see the module doc).
async fn import_definitions(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Body(d): Body<DefinitionsImport>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let (summary, result) = import(&b, d)?;
    audit(&b, &caller, "import_definitions", &summary, &result);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `--load-definitions FILE`: imports a definitions file at start, as RabbitMQ's `load_definitions` does (at
/// every start, so the file's records win over changes made since). The error is one readable line.
pub fn load_file(b: &Broker, path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read the definitions file {}: {e}", path.display()))?;
    let d: DefinitionsImport = serde_json::from_slice(&text)
        .map_err(|e| format!("the definitions file {} is not valid: {e}", path.display()))?;
    let (summary, result) =
        import(b, d).map_err(|e| format!("the definitions file {} was not loaded: {}", path.display(), e.1.reason))?;
    b.audit.record(crate::audit::Event {
        user: "(--load-definitions)",
        action: "import_definitions",
        object: &summary,
        result: &result,
        ..Default::default()
    });
    Ok(summary)
}

/// Imports definitions; returns what was imported and the result (with anything skipped).
fn import(b: &Broker, d: DefinitionsImport) -> Result<(String, String), Error> {
    let mut vhost_limits: HashMap<String, Limits> = HashMap::new();
    for p in &d.parameters {
        if p.component == "vhost-limits" {
            vhost_limits.insert(p.vhost.clone(), limits_from(p.value.as_object(), false)?);
        }
    }
    let mut vhosts = Vec::new();
    for v in &d.vhosts {
        let meta = v.metadata.as_ref();
        vhosts.push(VHostDef {
            name: v.name.clone(),
            description: v
                .description
                .clone()
                .or_else(|| {
                    meta.and_then(|m| m.get("description"))
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .unwrap_or_default(),
            tags: tags(meta.and_then(|m| m.get("tags")))?,
            limits: vhost_limits.get(&v.name).copied().unwrap_or_default(),
            origin: Origin::Api,
        });
    }
    let mut ops = Vec::new();
    for u in &d.users {
        let alg = u
            .hashing_algorithm
            .clone()
            .unwrap_or_else(|| password::RABBIT_SHA256.to_string());
        let bad = |e: password::HashError| Error::bad_request(format!("user '{}': {e}", u.name));
        let (hash, alg) = password::from_definitions(&u.password_hash, &alg).map_err(bad)?;
        if !hash.is_empty() {
            password::validate(&hash, &alg).map_err(bad)?;
        }
        ops.push(AccessOp::PutUser {
            user: UserDef {
                name: u.name.clone(),
                password_hash: hash,
                hashing_algorithm: alg,
                tags: tags(Some(&u.tags))?,
                limits: limits_from(u.limits.as_ref(), true)?,
                origin: Origin::Api,
            },
        });
    }
    for p in d.permissions {
        let permission = PermissionDef {
            user: p.user,
            vhost: p.vhost,
            configure: p.configure,
            write: p.write,
            read: p.read,
            origin: Origin::Api,
        };
        crate::auth::permissions::validate(&permission).map_err(Error::bad_request)?;
        ops.push(AccessOp::SetPermission { permission });
    }
    for t in d.topic_permissions {
        let permission = TopicPermissionDef {
            user: t.user,
            vhost: t.vhost,
            exchange: t.exchange,
            write: t.write,
            read: t.read,
        };
        crate::auth::permissions::validate_topic(&permission).map_err(Error::bad_request)?;
        ops.push(AccessOp::SetTopicPermission { permission });
    }
    let (nv, nu) = (vhosts.len(), d.users.len());
    for v in vhosts {
        b.put_vhost(v).map_err(stored)?;
    }
    b.access.change(ops).map_err(stored)?;
    let topology = Topology {
        queues: d.queues,
        exchanges: d.exchanges,
        bindings: d.bindings,
        policies: d.policies,
    };
    let counts = topology.counts();
    let skipped = topology.apply(b, None)?;
    Ok((format!("{nu} users, {nv} vhosts, {counts}"), skipped_result(&skipped)))
}

fn skipped_result(skipped: &[String]) -> String {
    if skipped.is_empty() {
        "ok".into()
    } else {
        format!("ok, skipped: {}", skipped.join("; "))
    }
}

/// `POST /api/definitions/{vhost}`: the topology and policies of one vhost (what RabbitMQ's per-vhost export
/// holds); a `vhost` field in the records is ignored.
async fn import_vhost_definitions(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    axum::extract::Path(vhost): axum::extract::Path<String>,
    Body(d): Body<DefinitionsImport>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    if !(d.users.is_empty() && d.vhosts.is_empty() && d.permissions.is_empty() && d.topic_permissions.is_empty()) {
        return Err(Error::bad_request(
            "a vhost's definitions hold no users, vhosts or permissions: import those with POST /api/definitions",
        ));
    }
    if b.vhost(&vhost).is_none() {
        return Err(Error::not_found(format!("no vhost '{vhost}'")));
    }
    let topology = Topology {
        queues: d.queues,
        exchanges: d.exchanges,
        bindings: d.bindings,
        policies: d.policies,
    };
    let counts = topology.counts();
    let skipped = topology.apply(&b, Some(&vhost))?;
    audit(
        &b,
        &caller,
        "import_definitions",
        &format!("vhost {vhost}: {counts}"),
        &skipped_result(&skipped),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Exchanges, queues, bindings and policies to declare, in that order (so bindings find what they bind).
struct Topology {
    queues: Vec<QueueImport>,
    exchanges: Vec<ExchangeImport>,
    bindings: Vec<BindingImport>,
    policies: Vec<PolicyImport>,
}

impl Topology {
    fn counts(&self) -> String {
        format!(
            "{} exchanges, {} queues, {} bindings, {} policies",
            self.exchanges.len(),
            self.queues.len(),
            self.bindings.len(),
            self.policies.len()
        )
    }

    /// Declares everything (into `only` when given, else each record's own vhost), as a client would; the first
    /// record the broker refuses ends the import with a 400 that names it (what came before it stays, as in
    /// RabbitMQ). Returns what was skipped on purpose (policies for exchanges).
    fn apply(self, b: &Broker, only: Option<&str>) -> Result<Vec<String>, Error> {
        let vhost_of = |v: &Option<String>| -> Result<Arc<crate::vhost::VHost>, Error> {
            let name = only.or(v.as_deref()).unwrap_or("/");
            b.vhost(name)
                .ok_or_else(|| Error::bad_request(format!("vhost '{name}' does not exist (list it under \"vhosts\")")))
        };
        let refused = |what: String| move |e: AmqpError| Error::bad_request(format!("{what}: {}", e.text));
        for x in &self.exchanges {
            let vh = vhost_of(&x.vhost)?;
            let args = arguments(&x.arguments)?;
            vh.declare_exchange(&ExchangeDeclare {
                name: &x.name,
                kind: &x.kind,
                passive: false,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: &args,
            })
            .map_err(refused(format!("exchange '{}'", x.name)))?;
        }
        for q in &self.queues {
            let vh = vhost_of(&q.vhost)?;
            // RabbitMQ 3.10 exports `x-queue-type: classic` for queues that never set it; Warren's are classic, and
            // a client declaring the queue again without it must find it equivalent.
            let mut json = q.arguments.clone();
            if json.get("x-queue-type").and_then(Value::as_str) == Some("classic") {
                json.remove("x-queue-type");
            }
            let args = arguments(&json)?;
            vh.declare_queue(&QueueDeclare {
                name: &q.name,
                passive: false,
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: &args,
                connection_id: super::resources::API_CONNECTION,
            })
            .map_err(refused(format!("queue '{}'", q.name)))?;
        }
        for bd in &self.bindings {
            let vh = vhost_of(&bd.vhost)?;
            let destination = match bd.destination_type.as_str() {
                "queue" => Destination::Queue(bd.destination.clone()),
                "exchange" => Destination::Exchange(bd.destination.clone()),
                other => {
                    return Err(Error::bad_request(format!(
                        "binding to '{}': destination_type must be queue or exchange, not '{other}'",
                        bd.destination
                    )))
                }
            };
            let binding = Binding {
                destination,
                routing_key: bd.routing_key.clone(),
                arguments: arguments(&bd.arguments)?,
            };
            vh.bind(&bd.source, binding)
                .map_err(refused(format!("binding '{}' -> '{}'", bd.source, bd.destination)))?;
        }
        let mut skipped = Vec::new();
        for p in &self.policies {
            if matches!(p.apply_to.as_deref(), Some("exchanges")) {
                skipped.push(format!(
                    "policy '{}' (apply-to exchanges: Warren's policies apply to queues)",
                    p.name
                ));
                continue;
            }
            let vh = vhost_of(&p.vhost)?;
            let policy = Policy::from_json(&p.name, &vh.name, &p.pattern, p.priority, &p.definition)
                .map_err(|e| Error::bad_request(format!("policy '{}': {e}", p.name)))?;
            vh.set_policy(policy)
                .map_err(|e| stored(crate::auth::AccessError::NotSaved(e)))?;
        }
        Ok(skipped)
    }
}
