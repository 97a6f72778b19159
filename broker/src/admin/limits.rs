//! Vhost and user limits on RabbitMQ's paths: `GET /api/vhost-limits[/{vhost}]`,
//! `PUT`/`DELETE /api/vhost-limits/{vhost}/{max-connections|max-queues}`, `GET /api/user-limits[/{user}]`,
//! `PUT`/`DELETE /api/user-limits/{user}/{max-connections|max-channels}`; a PUT body is `{"value": N}` (a negative
//! value, RabbitMQ's -1, removes the limit). Changes are for administrators, stored before they apply, and
//! audited; they apply to the next connection, channel or queue declared.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::{audit, limits_json, set_limit, stored};
use super::caller::Caller;
use super::{AdminState, Body, Error};
use crate::broker::Broker;
use crate::store::access_defs::{AccessOp, Origin};

pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/api/vhost-limits", get(vhost_limits))
        .route("/api/vhost-limits/{vhost}", get(vhost_limits_of))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            put(put_vhost_limit).delete(delete_vhost_limit),
        )
        .route("/api/user-limits", get(user_limits))
        .route("/api/user-limits/{user}", get(user_limits_of))
        .route(
            "/api/user-limits/{user}/{name}",
            put(put_user_limit).delete(delete_user_limit),
        )
}

async fn vhost_limits(State(b): State<Arc<Broker>>, caller: Caller) -> Json<Value> {
    Json(
        b.access
            .vhosts()
            .iter()
            .filter(|v| !v.limits.is_empty() && caller.may_see(&b, &v.name))
            .map(|v| json!({"vhost": v.name, "value": limits_json(&v.limits)}))
            .collect(),
    )
}

async fn vhost_limits_of(State(b): State<Arc<Broker>>, Path(vhost): Path<String>) -> Result<Json<Value>, Error> {
    let v = b
        .access
        .vhost(&vhost)
        .ok_or_else(|| Error::not_found(format!("no vhost '{vhost}'")))?;
    Ok(Json(if v.limits.is_empty() {
        json!([])
    } else {
        json!([{"vhost": v.name, "value": limits_json(&v.limits)}])
    }))
}

#[derive(Deserialize)]
struct LimitRequest {
    value: i64,
}

async fn change_vhost_limit(
    b: &Broker,
    caller: &Caller,
    vhost: &str,
    name: &str,
    value: Option<i64>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let mut v = b
        .access
        .vhost(vhost)
        .ok_or_else(|| Error::not_found(format!("no vhost '{vhost}'")))?;
    set_limit(&mut v.limits, name, value, false)?;
    v.origin = Origin::Api;
    b.put_vhost(v).map_err(stored)?;
    audit(b, caller, "set_vhost_limit", &format!("{vhost}:{name}"), "ok");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn put_vhost_limit(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Body(req): Body<LimitRequest>,
) -> Result<Response, Error> {
    change_vhost_limit(&b, &caller, &vhost, &name, Some(req.value)).await
}

async fn delete_vhost_limit(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    change_vhost_limit(&b, &caller, &vhost, &name, None).await
}

async fn user_limits(State(b): State<Arc<Broker>>, caller: Caller) -> Result<Json<Value>, Error> {
    caller.require_admin()?;
    Ok(Json(
        b.access
            .users()
            .iter()
            .filter(|u| !u.limits.is_empty())
            .map(|u| json!({"user": u.name, "value": limits_json(&u.limits)}))
            .collect(),
    ))
}

async fn user_limits_of(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<Value>, Error> {
    caller.require_admin()?;
    let u = b
        .access
        .user(&user)
        .ok_or_else(|| Error::not_found(format!("no user '{user}'")))?;
    Ok(Json(if u.limits.is_empty() {
        json!([])
    } else {
        json!([{"user": u.name, "value": limits_json(&u.limits)}])
    }))
}

async fn change_user_limit(
    b: &Broker,
    caller: &Caller,
    user: &str,
    name: &str,
    value: Option<i64>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let mut u = b
        .access
        .user(user)
        .ok_or_else(|| Error::not_found(format!("no user '{user}'")))?;
    set_limit(&mut u.limits, name, value, true)?;
    u.origin = Origin::Api;
    b.access.change(vec![AccessOp::PutUser { user: u }]).map_err(stored)?;
    audit(b, caller, "set_user_limit", &format!("{user}:{name}"), "ok");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn put_user_limit(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
    Body(req): Body<LimitRequest>,
) -> Result<Response, Error> {
    change_user_limit(&b, &caller, &user, &name, Some(req.value)).await
}

async fn delete_user_limit(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    change_user_limit(&b, &caller, &user, &name, None).await
}
