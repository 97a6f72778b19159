//! Vhost and user limits on RabbitMQ's paths: `GET /api/vhost-limits[/{vhost}]`,
//! `PUT`/`DELETE /api/vhost-limits/{vhost}/{max-connections|max-queues}`, `GET /api/user-limits[/{user}]`,
//! `PUT`/`DELETE /api/user-limits/{user}/{max-connections|max-channels}`; a PUT body is `{"value": N}` (a negative
//! value, RabbitMQ's -1, removes the limit). Changes are for administrators, stored before they apply, and
//! audited; they apply to the next connection, channel or queue declared.

use std::sync::Arc;

use aide::axum::routing::{get_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use warren_shared::management::{UserLimits, VhostLimits};

use super::access::{audit, limits_json, set_limit, stored};
use super::caller::Caller;
use super::{AdminState, Body, Error};
use crate::broker::Broker;
use crate::store::access_defs::{AccessOp, Origin};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/vhost-limits",
            get_with(vhost_limits, |o| o.summary("The limits of every vhost that has any")),
        )
        .api_route(
            "/api/vhost-limits/{vhost}",
            get_with(vhost_limits_of, |o| {
                o.summary("One vhost's limits (an empty list: none)")
            }),
        )
        .api_route(
            "/api/vhost-limits/{vhost}/{name}",
            put_with(put_vhost_limit, |o| {
                o.summary("Set a vhost limit: max-connections or max-queues (a negative value removes it)")
                    .response_with::<204, (), _>(|r| r.description("Set"))
            })
            .delete_with(delete_vhost_limit, |o| {
                super::access::deleted(o.summary("Remove a vhost limit"))
            }),
        )
        .api_route(
            "/api/user-limits",
            get_with(user_limits, |o| o.summary("The limits of every user that has any")),
        )
        .api_route(
            "/api/user-limits/{user}",
            get_with(user_limits_of, |o| o.summary("One user's limits (an empty list: none)")),
        )
        .api_route(
            "/api/user-limits/{user}/{name}",
            put_with(put_user_limit, |o| {
                o.summary("Set a user limit: max-connections or max-channels (a negative value removes it)")
                    .response_with::<204, (), _>(|r| r.description("Set"))
            })
            .delete_with(delete_user_limit, |o| {
                super::access::deleted(o.summary("Remove a user limit"))
            }),
        )
}

async fn vhost_limits(State(b): State<Arc<Broker>>, caller: Caller) -> Json<Vec<VhostLimits>> {
    Json(
        b.access
            .vhosts()
            .iter()
            .filter(|v| !v.limits.is_empty() && caller.may_see(&b, &v.name))
            .map(|v| VhostLimits {
                vhost: v.name.clone(),
                value: limits_json(&v.limits),
            })
            .collect(),
    )
}

async fn vhost_limits_of(
    State(b): State<Arc<Broker>>,
    Path(vhost): Path<String>,
) -> Result<Json<Vec<VhostLimits>>, Error> {
    let v = b
        .access
        .vhost(&vhost)
        .ok_or_else(|| Error::not_found(format!("no vhost '{vhost}'")))?;
    Ok(Json(if v.limits.is_empty() {
        Vec::new()
    } else {
        vec![VhostLimits {
            vhost: v.name.clone(),
            value: limits_json(&v.limits),
        }]
    }))
}

#[derive(Deserialize, JsonSchema)]
struct LimitRequest {
    /// The limit; a negative value (RabbitMQ's -1) removes it.
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

async fn user_limits(State(b): State<Arc<Broker>>, caller: Caller) -> Result<Json<Vec<UserLimits>>, Error> {
    caller.require_admin()?;
    Ok(Json(
        b.access
            .users()
            .iter()
            .filter(|u| !u.limits.is_empty())
            .map(|u| UserLimits {
                user: u.name.clone(),
                value: limits_json(&u.limits),
            })
            .collect(),
    ))
}

async fn user_limits_of(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<Vec<UserLimits>>, Error> {
    caller.require_admin()?;
    let u = b
        .access
        .user(&user)
        .ok_or_else(|| Error::not_found(format!("no user '{user}'")))?;
    Ok(Json(if u.limits.is_empty() {
        Vec::new()
    } else {
        vec![UserLimits {
            user: u.name.clone(),
            value: limits_json(&u.limits),
        }]
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
