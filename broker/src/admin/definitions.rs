//! `POST /api/definitions`: the access part of a RabbitMQ definitions export (`rabbitmqctl export_definitions`):
//! users with their password hashes (RabbitMQ's SHA-256 and SHA-512 hashes are kept as they are, so the users
//! log in with their old passwords), vhosts, permissions, topic permissions and limits, stored as one change.
//!
//! Every record is checked before anything is stored (a bad hash or expression is a 400 naming it), so a file is
//! imported whole or not at all. Queues, exchanges, bindings and policies are not imported yet: a file with any is
//! refused rather than half-applied. Administrators only.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::access::{audit, set_limit, stored, tags};
use super::caller::Caller;
use super::{AdminState, Body, Error};
use crate::auth::password;
use crate::broker::Broker;
use crate::store::access_defs::{AccessOp, Limits, Origin, PermissionDef, TopicPermissionDef, UserDef, VHostDef};

pub fn router() -> Router<AdminState> {
    Router::new().route("/api/definitions", post(import_definitions))
}

/// The access part of a RabbitMQ definitions file (what `rabbitmqctl export_definitions` writes).
#[derive(Deserialize)]
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
    queues: Vec<Value>,
    #[serde(default)]
    exchanges: Vec<Value>,
    #[serde(default)]
    bindings: Vec<Value>,
    #[serde(default)]
    policies: Vec<Value>,
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
struct ImportVHost {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct PermissionImport {
    user: String,
    vhost: String,
    configure: String,
    write: String,
    read: String,
}

#[derive(Deserialize)]
struct TopicPermissionImport {
    user: String,
    vhost: String,
    exchange: String,
    write: String,
    read: String,
}

#[derive(Deserialize)]
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
    if !(d.queues.is_empty() && d.exchanges.is_empty() && d.bindings.is_empty() && d.policies.is_empty()) {
        return Err(Error::bad_request(
            "importing queues, exchanges, bindings and policies is not supported yet; remove them from the file \
             (users, vhosts, permissions, topic permissions and limits are imported)",
        ));
    }
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
        if !u.password_hash.is_empty() {
            password::validate(&u.password_hash, &alg)
                .map_err(|e| Error::bad_request(format!("user '{}': {e}", u.name)))?;
        }
        ops.push(AccessOp::PutUser {
            user: UserDef {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
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
    audit(
        &b,
        &caller,
        "import_definitions",
        &format!("{nu} users, {nv} vhosts"),
        "ok",
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
