//! Exchanges and bindings, read-only for now.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use warren_shared::{BindingInfo, ExchangeInfo};

use super::caller::Caller;
use super::queues::vhost;
use super::{json, AdminState, ApiResult};
use crate::broker::Broker;
use crate::routing::Destination;
use crate::vhost::VHost;

pub fn router() -> Router<AdminState> {
    Router::new()
        .route("/api/exchanges", get(exchanges_all))
        .route("/api/exchanges/{vhost}", get(exchanges_in))
        .route("/api/bindings", get(bindings_all))
        .route("/api/bindings/{vhost}", get(bindings_in))
}

fn exchanges(v: &VHost) -> Vec<ExchangeInfo> {
    let mut out = v.map_exchanges(|x| ExchangeInfo {
        vhost: v.name.clone(),
        name: x.name.clone(),
        kind: x.type_name().to_string(),
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        arguments: json::table(&x.arguments),
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn bindings(v: &VHost) -> Vec<BindingInfo> {
    v.bindings()
        .into_iter()
        .map(|(source, b)| BindingInfo {
            vhost: v.name.clone(),
            source,
            destination: b.destination.name().to_string(),
            destination_type: match b.destination {
                Destination::Queue(_) => "queue".into(),
                Destination::Exchange(_) => "exchange".into(),
            },
            routing_key: b.routing_key,
            arguments: json::table(&b.arguments),
        })
        .collect()
}

async fn exchanges_all(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<ExchangeInfo>> {
    Ok(Json(
        b.vhosts()
            .iter()
            .filter(|v| caller.may_see(&b, &v.name))
            .flat_map(|v| exchanges(v))
            .collect(),
    ))
}

async fn exchanges_in(State(b): State<Arc<Broker>>, Path(v): Path<String>) -> ApiResult<Vec<ExchangeInfo>> {
    let v = vhost(&b, &v)?;
    Ok(Json(exchanges(&v)))
}

async fn bindings_all(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<BindingInfo>> {
    Ok(Json(
        b.vhosts()
            .iter()
            .filter(|v| caller.may_see(&b, &v.name))
            .flat_map(|v| bindings(v))
            .collect(),
    ))
}

async fn bindings_in(State(b): State<Arc<Broker>>, Path(v): Path<String>) -> ApiResult<Vec<BindingInfo>> {
    let v = vhost(&b, &v)?;
    Ok(Json(bindings(&v)))
}
