//! Users, vhosts, permissions and limits, on RabbitMQ's paths and in its JSON shapes:
//! `/api/whoami`, `/api/users[/{name}[/permissions]]`, `/api/vhosts[/{vhost}[/permissions]]`,
//! `/api/permissions[/{vhost}/{user}]`, `/api/topic-permissions[/{vhost}/{user}]`,
//! (limits are `limits.rs`; `POST /api/definitions`, which imports the same records from a RabbitMQ export, is
//! `definitions.rs`).
//!
//! Reads of other users' records and every change are for administrators (`caller::gate` lets nothing else
//! through, and the handlers say so again); `GET /api/vhosts` shows a user the vhosts they may see. Each change is
//! stored in `definitions.log` before it is answered (a 500 with nothing changed when it cannot be), takes effect
//! on open connections at their next check, and is logged under the audit target with who made it.

use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use aide::transform::TransformOperation;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use warren_shared::management::{
    LimitValues, PermissionInfo, TopicPermissionInfo, UserInfo, VhostInfo, VhostMetadata, Whoami,
};

use super::caller::Caller;
use super::{AdminState, Body, Error, OptionalBody};
use crate::auth::{password, AccessError};
use crate::broker::Broker;
use crate::store::access_defs::{AccessOp, Limits, Origin, PermissionDef, TopicPermissionDef, UserDef, VHostDef};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/whoami",
            get_with(whoami, |o| o.summary("The calling user's name and tags")),
        )
        .api_route(
            "/api/users",
            get_with(users, |o| o.summary("Users and their tags (never password hashes)")),
        )
        .api_route(
            "/api/users/{user}",
            get_with(user, |o| o.summary("One user"))
                .put_with(put_user, |o| {
                    put_answers(o.summary("Create or change a user: a password, or a password hash, and tags"))
                })
                .delete_with(delete_user, |o| {
                    deleted(o.summary("Delete a user and close their connections"))
                }),
        )
        .api_route(
            "/api/users/{user}/permissions",
            get_with(user_permissions, |o| o.summary("One user's permissions")),
        )
        .api_route(
            "/api/vhosts",
            get_with(vhosts, |o| o.summary("Virtual hosts the caller may see")),
        )
        .api_route(
            "/api/vhosts/{vhost}",
            get_with(vhost, |o| o.summary("One vhost"))
                .put_with(put_vhost, |o| {
                    put_answers(o.summary("Create a vhost, or change its description and tags"))
                })
                .delete_with(delete_vhost, |o| {
                    deleted(o.summary("Delete a vhost and everything in it"))
                }),
        )
        .api_route(
            "/api/vhosts/{vhost}/permissions",
            get_with(vhost_permissions, |o| o.summary("The permissions in one vhost")),
        )
        .api_route(
            "/api/permissions",
            get_with(permissions, |o| o.summary("Every permission")),
        )
        .api_route(
            "/api/permissions/{vhost}/{user}",
            get_with(permission, |o| o.summary("One user's permissions in one vhost"))
                .put_with(put_permission, |o| {
                    put_answers(o.summary("Set a user's permissions in a vhost"))
                })
                .delete_with(delete_permission, |o| {
                    deleted(o.summary("Clear a user's permissions in a vhost"))
                }),
        )
        .api_route(
            "/api/topic-permissions",
            get_with(topic_permissions, |o| o.summary("Every topic permission")),
        )
        .api_route(
            "/api/topic-permissions/{vhost}/{user}",
            get_with(topic_permission, |o| {
                o.summary("One user's topic permissions in one vhost")
            })
            .put_with(put_topic_permission, |o| {
                put_answers(o.summary("Set a user's topic permissions for one exchange"))
            })
            .delete_with(delete_topic_permission, |o| {
                deleted(o.summary("Clear a user's topic permissions in a vhost"))
            }),
        )
}

/// RabbitMQ's answers to a PUT (see [`created`]).
pub(super) fn put_answers(o: TransformOperation) -> TransformOperation {
    o.response_with::<201, (), _>(|r| r.description("Created"))
        .response_with::<204, (), _>(|r| r.description("Changed"))
}

/// RabbitMQ's answer to a DELETE.
pub(super) fn deleted(o: TransformOperation) -> TransformOperation {
    o.response_with::<204, (), _>(|r| r.description("Deleted"))
}

pub(super) fn stored(e: AccessError) -> Error {
    match e {
        AccessError::Invalid(r) => Error::bad_request(r),
        AccessError::NotFound(r) => Error::not_found(r),
        AccessError::NotSaved(e) => Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            format!("the change could not be saved, so it was not made; try again when the disk has room: {e}"),
        ),
    }
}

/// 201 for something new, 204 for a change (RabbitMQ's answers to PUT).
fn created(new: bool) -> Response {
    if new {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

pub(super) fn audit(b: &Broker, caller: &Caller, action: &str, object: &str, result: &str) {
    b.audit.record(crate::audit::Event {
        user: &caller.user,
        peer: caller.peer,
        action,
        object,
        result,
        ..Default::default()
    });
}

pub(super) fn limits_json(l: &Limits) -> LimitValues {
    LimitValues {
        max_connections: l.max_connections,
        max_queues: l.max_queues,
        max_channels: l.max_channels,
    }
}

/// Sets one limit by RabbitMQ's name; a negative value (RabbitMQ's -1) or `None` removes it.
pub(super) fn set_limit(l: &mut Limits, name: &str, value: Option<i64>, for_user: bool) -> Result<(), Error> {
    let v = value.and_then(|v| u64::try_from(v).ok());
    match (name, for_user) {
        ("max-connections", _) => l.max_connections = v,
        ("max-queues", false) => l.max_queues = v,
        ("max-channels", true) => l.max_channels = v,
        _ => {
            return Err(Error::bad_request(format!(
                "unknown limit '{name}' (a {} has {})",
                if for_user { "user" } else { "vhost" },
                if for_user {
                    "max-connections and max-channels"
                } else {
                    "max-connections and max-queues"
                }
            )))
        }
    }
    Ok(())
}

/// A user as the API shows it: never the password hash (a definitions export is where hashes leave the broker).
fn user_json(u: &UserDef) -> UserInfo {
    UserInfo {
        name: u.name.clone(),
        hashing_algorithm: u.hashing_algorithm.clone(),
        tags: u.tags.clone(),
        limits: limits_json(&u.limits),
    }
}

fn vhost_json(v: &VHostDef) -> VhostInfo {
    VhostInfo {
        name: v.name.clone(),
        description: v.description.clone(),
        tags: v.tags.clone(),
        metadata: VhostMetadata {
            description: v.description.clone(),
            tags: v.tags.clone(),
        },
    }
}

pub(super) fn permission_json(p: &PermissionDef) -> PermissionInfo {
    PermissionInfo {
        user: p.user.clone(),
        vhost: p.vhost.clone(),
        configure: p.configure.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    }
}

pub(super) fn topic_json(t: &TopicPermissionDef) -> TopicPermissionInfo {
    TopicPermissionInfo {
        user: t.user.clone(),
        vhost: t.vhost.clone(),
        exchange: t.exchange.clone(),
        write: t.write.clone(),
        read: t.read.clone(),
    }
}

/// Tags as RabbitMQ takes them: a comma-separated string or a list.
pub(super) fn tags(v: Option<&Value>) -> Result<Vec<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(String::from)
                    .ok_or_else(|| Error::bad_request("tags must be strings"))
            })
            .collect(),
        Some(_) => Err(Error::bad_request("tags must be a string or a list of strings")),
    }
}

async fn whoami(caller: Caller) -> Json<Whoami> {
    Json(Whoami {
        name: caller.user,
        tags: caller.tags,
    })
}

async fn users(State(b): State<Arc<Broker>>, caller: Caller) -> Result<Json<Vec<UserInfo>>, Error> {
    caller.require_admin()?;
    Ok(Json(b.access.users().iter().map(user_json).collect()))
}

async fn user(State(b): State<Arc<Broker>>, caller: Caller, Path(name): Path<String>) -> Result<Json<UserInfo>, Error> {
    if caller.user != name {
        caller.require_admin()?;
    }
    b.access
        .user(&name)
        .map(|u| Json(user_json(&u)))
        .ok_or_else(|| Error::not_found(format!("no user '{name}'")))
}

/// The body of `PUT /api/users/{name}`.
#[derive(Deserialize, JsonSchema)]
struct UserRequest {
    /// Hashed here with argon2id.
    password: Option<String>,
    /// Instead of `password`: a hash, RabbitMQ's or Warren's (empty: no password).
    password_hash: Option<String>,
    /// The hash's algorithm (default: detected from the hash).
    hashing_algorithm: Option<String>,
    /// A comma-separated string or a list of strings.
    tags: Option<Value>,
}

/// `PUT /api/users/{name}`: `password` (hashed here with argon2id) or `password_hash` with `hashing_algorithm`
/// (RabbitMQ's), and `tags`.
async fn put_user(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<UserRequest>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    if name.is_empty() || name.len() > 255 {
        return Err(Error::bad_request("a user name is 1 to 255 bytes"));
    }
    let existing = b.access.user(&name);
    let tags = tags(req.tags.as_ref())?;
    let (password_hash, hashing_algorithm) = match (req.password, req.password_hash) {
        (Some(p), _) => {
            let (h, a) = tokio::task::spawn_blocking(move || password::hash(&p))
                .await
                .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
            (h, a.to_string())
        }
        (None, Some(h)) => {
            let alg = match req.hashing_algorithm {
                Some(a) => a,
                None => password::detect(&h).unwrap_or(password::RABBIT_SHA256).to_string(),
            };
            // RabbitMQ's passwordless users have an empty hash.
            if !h.is_empty() {
                password::validate(&h, &alg).map_err(|e| Error::bad_request(e.to_string()))?;
            }
            (h, alg)
        }
        (None, None) => match &existing {
            Some(u) => (u.password_hash.clone(), u.hashing_algorithm.clone()),
            None => (String::new(), password::ARGON2ID.to_string()),
        },
    };
    let user = UserDef {
        name: name.clone(),
        password_hash,
        hashing_algorithm,
        tags,
        limits: existing.as_ref().map(|u| u.limits).unwrap_or_default(),
        origin: Origin::Api,
    };
    b.access.change(vec![AccessOp::PutUser { user }]).map_err(stored)?;
    audit(&b, &caller, "put_user", &name, "ok");
    Ok(created(existing.is_none()))
}

async fn delete_user(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    if b.access.user(&name).is_none() {
        return Err(Error::not_found(format!("no user '{name}'")));
    }
    b.access
        .change(vec![AccessOp::DeleteUser {
            name: name.clone(),
            by_api: true,
        }])
        .map_err(stored)?;
    let closed = b.close_connections(
        |c| *c.user.lock().unwrap_or_else(|e| e.into_inner()) == name,
        &format!("user '{name}' is deleted"),
    );
    audit(
        &b,
        &caller,
        "delete_user",
        &name,
        &format!("ok, {closed} connections closed"),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn user_permissions(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<PermissionInfo>>, Error> {
    caller.require_admin()?;
    Ok(Json(
        b.access
            .permissions()
            .iter()
            .filter(|p| p.user == name)
            .map(permission_json)
            .collect(),
    ))
}

async fn vhosts(State(b): State<Arc<Broker>>, caller: Caller) -> Json<Vec<VhostInfo>> {
    Json(
        b.access
            .vhosts()
            .iter()
            .filter(|v| caller.may_see(&b, &v.name))
            .map(vhost_json)
            .collect(),
    )
}

async fn vhost(State(b): State<Arc<Broker>>, Path(name): Path<String>) -> Result<Json<VhostInfo>, Error> {
    b.access
        .vhost(&name)
        .map(|v| Json(vhost_json(&v)))
        .ok_or_else(|| Error::not_found(format!("no vhost '{name}'")))
}

#[derive(Deserialize, Default, JsonSchema)]
struct VHostRequest {
    description: Option<String>,
    /// A comma-separated string or a list of strings.
    tags: Option<Value>,
}

async fn put_vhost(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(name): Path<String>,
    OptionalBody(req): OptionalBody<VHostRequest>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let existing = b.access.vhost(&name);
    let def = VHostDef {
        name: name.clone(),
        description: req
            .description
            .or_else(|| existing.as_ref().map(|v| v.description.clone()))
            .unwrap_or_default(),
        tags: match req.tags {
            Some(t) => tags(Some(&t))?,
            None => existing.as_ref().map(|v| v.tags.clone()).unwrap_or_default(),
        },
        limits: existing.as_ref().map(|v| v.limits).unwrap_or_default(),
        origin: Origin::Api,
    };
    let new = b.put_vhost(def).map_err(stored)?;
    audit(&b, &caller, "put_vhost", &name, "ok");
    Ok(created(new))
}

async fn delete_vhost(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    b.delete_vhost(&name).map_err(stored)?;
    audit(&b, &caller, "delete_vhost", &name, "ok");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vhost_permissions(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> Result<Json<Vec<PermissionInfo>>, Error> {
    caller.require_admin()?;
    Ok(Json(
        b.access
            .permissions()
            .iter()
            .filter(|p| p.vhost == vhost)
            .map(permission_json)
            .collect(),
    ))
}

async fn permissions(State(b): State<Arc<Broker>>, caller: Caller) -> Result<Json<Vec<PermissionInfo>>, Error> {
    caller.require_admin()?;
    Ok(Json(b.access.permissions().iter().map(permission_json).collect()))
}

async fn permission(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Json<PermissionInfo>, Error> {
    if caller.user != user {
        caller.require_admin()?;
    }
    b.access
        .permission(&vhost, &user)
        .map(|p| Json(permission_json(&p)))
        .ok_or_else(|| Error::not_found(format!("no permissions for user '{user}' in vhost '{vhost}'")))
}

#[derive(Deserialize, JsonSchema)]
struct PermissionRequest {
    configure: String,
    write: String,
    read: String,
}

/// The user and vhost a permission names must both exist.
fn user_and_vhost(b: &Broker, vhost: &str, user: &str) -> Result<(), Error> {
    if b.access.vhost(vhost).is_none() {
        return Err(Error::bad_request(format!("vhost '{vhost}' does not exist")));
    }
    if b.access.user(user).is_none() {
        return Err(Error::bad_request(format!("user '{user}' does not exist")));
    }
    Ok(())
}

async fn put_permission(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    Body(req): Body<PermissionRequest>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    user_and_vhost(&b, &vhost, &user)?;
    let permission = PermissionDef {
        user: user.clone(),
        vhost: vhost.clone(),
        configure: req.configure,
        write: req.write,
        read: req.read,
        origin: Origin::Api,
    };
    crate::auth::permissions::validate(&permission).map_err(Error::bad_request)?;
    let new = b.access.permission(&vhost, &user).is_none();
    b.access
        .change(vec![AccessOp::SetPermission { permission }])
        .map_err(stored)?;
    audit(&b, &caller, "set_permissions", &format!("{user}@{vhost}"), "ok");
    Ok(created(new))
}

async fn delete_permission(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    if b.access.permission(&vhost, &user).is_none() {
        return Err(Error::not_found(format!(
            "no permissions for user '{user}' in vhost '{vhost}'"
        )));
    }
    b.access
        .change(vec![AccessOp::ClearPermission {
            vhost: vhost.clone(),
            user: user.clone(),
            by_api: true,
        }])
        .map_err(stored)?;
    audit(&b, &caller, "clear_permissions", &format!("{user}@{vhost}"), "ok");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn topic_permissions(
    State(b): State<Arc<Broker>>,
    caller: Caller,
) -> Result<Json<Vec<TopicPermissionInfo>>, Error> {
    caller.require_admin()?;
    Ok(Json(b.access.topic_permissions().iter().map(topic_json).collect()))
}

async fn topic_permission(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Json<Vec<TopicPermissionInfo>>, Error> {
    caller.require_admin()?;
    let found: Vec<TopicPermissionInfo> = b
        .access
        .topic_permissions()
        .iter()
        .filter(|t| t.vhost == vhost && t.user == user)
        .map(topic_json)
        .collect();
    if found.is_empty() {
        return Err(Error::not_found(format!(
            "no topic permissions for user '{user}' in vhost '{vhost}'"
        )));
    }
    Ok(Json(found))
}

#[derive(Deserialize, JsonSchema)]
struct TopicPermissionRequest {
    exchange: String,
    write: String,
    read: String,
}

async fn put_topic_permission(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    Body(req): Body<TopicPermissionRequest>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    user_and_vhost(&b, &vhost, &user)?;
    let permission = TopicPermissionDef {
        user: user.clone(),
        vhost: vhost.clone(),
        exchange: req.exchange,
        write: req.write,
        read: req.read,
    };
    crate::auth::permissions::validate_topic(&permission).map_err(Error::bad_request)?;
    let new = !b
        .access
        .topic_permissions()
        .iter()
        .any(|t| t.vhost == vhost && t.user == user && t.exchange == permission.exchange);
    b.access
        .change(vec![AccessOp::SetTopicPermission { permission }])
        .map_err(stored)?;
    audit(&b, &caller, "set_topic_permissions", &format!("{user}@{vhost}"), "ok");
    Ok(created(new))
}

async fn delete_topic_permission(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let ops: Vec<AccessOp> = b
        .access
        .topic_permissions()
        .into_iter()
        .filter(|t| t.vhost == vhost && t.user == user)
        .map(|t| AccessOp::ClearTopicPermission {
            vhost: t.vhost,
            user: t.user,
            exchange: t.exchange,
        })
        .collect();
    if ops.is_empty() {
        return Err(Error::not_found(format!(
            "no topic permissions for user '{user}' in vhost '{vhost}'"
        )));
    }
    b.access.change(ops).map_err(stored)?;
    audit(&b, &caller, "clear_topic_permissions", &format!("{user}@{vhost}"), "ok");
    Ok(StatusCode::NO_CONTENT.into_response())
}
