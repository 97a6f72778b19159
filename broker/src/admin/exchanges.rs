//! Exchanges and bindings, read-only for now.

use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use warren_shared::{BindingInfo, ExchangeInfo};

use super::caller::Caller;
use super::paging::{ListQuery, Paged};
use super::queues::vhost;
use super::{json, AdminState, Error, Query};
use crate::broker::Broker;
use crate::routing::Destination;
use crate::vhost::VHost;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/exchanges",
            get_with(exchanges_all, |o| o.summary("Every exchange")),
        )
        .api_route(
            "/api/exchanges/{vhost}",
            get_with(exchanges_in, |o| o.summary("The exchanges of a vhost")),
        )
        .api_route("/api/bindings", get_with(bindings_all, |o| o.summary("Every binding")))
        .api_route(
            "/api/bindings/{vhost}",
            get_with(bindings_in, |o| o.summary("The bindings of a vhost")),
        )
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

async fn exchanges_all(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Paged<ExchangeInfo>, Error> {
    let all: Vec<ExchangeInfo> = b
        .vhosts()
        .iter()
        .filter(|v| caller.may_see(&b, &v.name))
        .flat_map(|v| exchanges(v))
        .collect();
    super::paging::respond(all, &q)
}

async fn exchanges_in(
    State(b): State<Arc<Broker>>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Paged<ExchangeInfo>, Error> {
    let v = vhost(&b, &v)?;
    super::paging::respond(exchanges(&v), &q)
}

async fn bindings_all(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Paged<BindingInfo>, Error> {
    let all: Vec<BindingInfo> = b
        .vhosts()
        .iter()
        .filter(|v| caller.may_see(&b, &v.name))
        .flat_map(|v| bindings(v))
        .collect();
    super::paging::respond(all, &q)
}

async fn bindings_in(
    State(b): State<Arc<Broker>>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Paged<BindingInfo>, Error> {
    let v = vhost(&b, &v)?;
    super::paging::respond(bindings(&v), &q)
}
