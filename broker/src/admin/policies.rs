//! Operator policies: `GET /api/policies[/{vhost}]`, `PUT` and `DELETE /api/policies/{vhost}/{name}`.
//!
//! A policy set here is stored in `definitions.log` and then applies to live queues at once; one that cannot be
//! stored is a 500 and changes nothing. It replaces a config-file policy of the same name. Config-file policies cannot be deleted here (they would come back at the next start).

use std::sync::Arc;

use aide::axum::routing::{get_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use warren_shared::{Done, PolicyInfo, PolicyRequest};

use super::caller::Caller;
use super::queues::vhost;
use super::{AdminState, ApiResult, Body, Error};
use crate::broker::Broker;
use crate::policy::Policy;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route("/api/policies", get_with(all, |o| o.summary("Every policy")))
        .api_route(
            "/api/policies/{vhost}",
            get_with(in_vhost, |o| o.summary("The policies of a vhost")),
        )
        .api_route(
            "/api/policies/{vhost}/{name}",
            put_with(set, |o| {
                o.summary("Create or replace a policy (201 created, 200 replaced)")
                    .response_with::<201, Json<PolicyInfo>, _>(|r| r.description("Created"))
                    .response_with::<200, Json<PolicyInfo>, _>(|r| r.description("Replaced"))
            })
            .delete_with(remove, |o| o.summary("Delete a policy set through the API")),
        )
}

fn info(p: &Policy) -> PolicyInfo {
    PolicyInfo {
        name: p.name.clone(),
        vhost: p.vhost.clone(),
        pattern: p.pattern.as_str().to_string(),
        priority: p.priority,
        definition: p.definition.clone(),
        source: if p.from_api { "api" } else { "config" }.into(),
    }
}

/// The change could not be written to the data directory, so it was not made.
fn not_saved(e: std::io::Error) -> Error {
    Error::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store_failed",
        format!("the policy change could not be saved, so it was not made; try again when the disk has room: {e}"),
    )
}

async fn all(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<PolicyInfo>> {
    Ok(Json(
        b.vhosts()
            .iter()
            .filter(|v| caller.may_see(&b, &v.name))
            .flat_map(|v| v.policies())
            .map(|p| info(&p))
            .collect(),
    ))
}

async fn in_vhost(State(b): State<Arc<Broker>>, Path(v): Path<String>) -> ApiResult<Vec<PolicyInfo>> {
    Ok(Json(vhost(&b, &v)?.policies().iter().map(info).collect()))
}

async fn set(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
    Body(req): Body<PolicyRequest>,
) -> Result<(StatusCode, Json<PolicyInfo>), Error> {
    caller.require_policymaker(&b, &v)?;
    let vh = vhost(&b, &v)?;
    if name.is_empty() || name.len() > 255 {
        return Err(Error::bad_request("a policy name is 1 to 255 bytes"));
    }
    let policy =
        Policy::from_json(&name, &v, &req.pattern, req.priority, &req.definition).map_err(Error::bad_request)?;
    let shown = info(&policy);
    let replaced = vh.set_policy(policy).map_err(not_saved)?;
    super::caller::audit(&b, &caller, "set_policy", &v, &name, 0);
    Ok((if replaced { StatusCode::OK } else { StatusCode::CREATED }, Json(shown)))
}

async fn remove(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<Done> {
    caller.require_policymaker(&b, &v)?;
    let vh = vhost(&b, &v)?;
    match vh.policies().iter().find(|p| p.name == name) {
        None => Err(Error::not_found(format!("no policy '{name}' in vhost '{v}'"))),
        Some(p) if !p.from_api => Err(Error::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("policy '{name}' comes from the config file; remove it there"),
        )),
        Some(_) => {
            vh.delete_policy(&name).map_err(not_saved)?;
            super::caller::audit(&b, &caller, "delete_policy", &v, &name, 0);
            Ok(Json(Done { ok: true }))
        }
    }
}
