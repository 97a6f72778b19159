//! Exchanges and bindings, read-only for now.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use warren_shared::{BindingInfo, ExchangeInfo};

use super::caller::Caller;
use super::queues::vhost;
use super::{json, AdminState};
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

pub(super) fn bindings(v: &VHost) -> Vec<BindingInfo> {
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
            properties_key: super::bindings::properties_key(&b.routing_key, &b.arguments),
            routing_key: b.routing_key,
            arguments: json::table(&b.arguments),
        })
        .collect()
}

async fn exchanges_all(State(b): State<Arc<Broker>>, caller: Caller, Query(q): Query<Params>) -> Paged {
    let all: Vec<ExchangeInfo> = b
        .vhosts()
        .iter()
        .filter(|v| caller.may_see(&b, &v.name))
        .flat_map(|v| exchanges(v))
        .collect();
    super::paging::respond(all, &q)
}

async fn exchanges_in(State(b): State<Arc<Broker>>, Path(v): Path<String>, Query(q): Query<Params>) -> Paged {
    let v = vhost(&b, &v)?;
    super::paging::respond(exchanges(&v), &q)
}

async fn bindings_all(State(b): State<Arc<Broker>>, caller: Caller, Query(q): Query<Params>) -> Paged {
    let all: Vec<BindingInfo> = b
        .vhosts()
        .iter()
        .filter(|v| caller.may_see(&b, &v.name))
        .flat_map(|v| bindings(v))
        .collect();
    super::paging::respond(all, &q)
}

async fn bindings_in(State(b): State<Arc<Broker>>, Path(v): Path<String>, Query(q): Query<Params>) -> Paged {
    let v = vhost(&b, &v)?;
    super::paging::respond(bindings(&v), &q)
}

type Params = std::collections::HashMap<String, String>;
type Paged = Result<Json<serde_json::Value>, super::Error>;
