//! Bindings on RabbitMQ's paths: `GET`/`POST /api/bindings/{vhost}/e/{source}/q/{queue}` (and `/e/{source}/e/{exchange}`
//! for exchange-to-exchange), and `GET`/`DELETE` of one binding by its properties key
//! (`.../{properties_key}`). A POST answers 201 with the new binding's key in `Location`, as RabbitMQ does.
//!
//! The properties key is RabbitMQ's: the routing key, percent-encoded (`~` for the empty key), and for a binding
//! with arguments `~` and a digest of them. It names a binding within its source and destination.

use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use amq_protocol::types::FieldTable;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use warren_shared::BindingInfo;

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::resources::{amqp, arguments};
use super::{AdminState, Error, OptionalBody};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::routing::{Binding, Destination};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get_with(between, |o| {
                o.summary("The bindings from an exchange to a queue (kind q) or an exchange (kind e)")
            })
            .post_with(create, |o| {
                o.summary("Bind (201, with the new binding's properties key in Location)")
                    .response_with::<201, (), _>(|r| r.description("Bound"))
            }),
        )
        .api_route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get_with(one, |o| o.summary("One binding, by its properties key")).delete_with(remove, |o| {
                o.summary("Unbind, by the binding's properties key")
                    .response_with::<204, (), _>(|r| r.description("Unbound"))
            }),
        )
}

/// Bytes kept as they are in a properties key (RabbitMQ quotes everything else).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'#')
}

/// A binding's properties key (see the module doc).
pub fn properties_key(routing_key: &str, args: &FieldTable) -> String {
    let mut key: String = if routing_key.is_empty() {
        "~".into()
    } else {
        routing_key
            .bytes()
            .map(|b| {
                if plain(b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    if !args.inner().is_empty() {
        let json = serde_json::Value::Object(super::json::table(args)).to_string();
        let digest = Sha256::digest(json.as_bytes());
        key.push('~');
        key.extend(digest.iter().take(8).map(|b| format!("{b:02x}")));
    }
    key
}

/// The destination named by the path's `q` or `e`.
fn destination(kind: &str, name: String) -> Result<Destination, Error> {
    match kind {
        "q" => Ok(Destination::Queue(name)),
        "e" => Ok(Destination::Exchange(name)),
        other => Err(Error::not_found(format!(
            "no such binding path: '{other}' is neither q nor e"
        ))),
    }
}

fn between_list(b: &Broker, v: &str, source: &str, dest: &Destination) -> Result<Vec<BindingInfo>, Error> {
    let vh = vhost(b, v)?;
    let kind = match dest {
        Destination::Queue(_) => "queue",
        Destination::Exchange(_) => "exchange",
    };
    Ok(super::exchanges::bindings(&vh)
        .into_iter()
        .filter(|x| x.source == source && x.destination == dest.name() && x.destination_type == kind)
        .collect())
}

async fn between(
    State(b): State<Arc<Broker>>,
    Path((v, source, kind, dest)): Path<(String, String, String, String)>,
) -> Result<Json<Vec<BindingInfo>>, Error> {
    Ok(Json(between_list(&b, &v, &source, &destination(&kind, dest)?)?))
}

async fn one(
    State(b): State<Arc<Broker>>,
    Path((v, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> Result<Json<BindingInfo>, Error> {
    between_list(&b, &v, &source, &destination(&kind, dest)?)?
        .into_iter()
        .find(|x| x.properties_key == props)
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("no binding '{props}' from '{source}'")))
}

#[derive(Deserialize, Default, JsonSchema)]
struct NewBinding {
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: serde_json::Map<String, serde_json::Value>,
}

/// A binding needs `write` on its destination and `read` on its source.
fn check(b: &Broker, caller: &Caller, v: &str, source: &str, dest: &Destination) -> Result<(), Error> {
    let kind = match dest {
        Destination::Queue(_) => Kind::Queue,
        Destination::Exchange(_) => Kind::Exchange,
    };
    caller.check(b, v, Perm::Write, kind, dest.name())?;
    caller.check(b, v, Perm::Read, Kind::Exchange, source)
}

async fn create(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, source, kind, dest)): Path<(String, String, String, String)>,
    OptionalBody(req): OptionalBody<NewBinding>,
) -> Result<Response, Error> {
    let dest = destination(&kind, dest)?;
    check(&b, &caller, &v, &source, &dest)?;
    let args = arguments(&req.arguments)?;
    let key = properties_key(&req.routing_key, &args);
    let name = dest.name().to_string();
    vhost(&b, &v)?
        .bind(
            &source,
            Binding {
                destination: dest,
                routing_key: req.routing_key,
                arguments: args,
            },
        )
        .map_err(amqp)?;
    audit(&b, &caller, "bind", &v, &format!("{source} -> {name}"), 0);
    Ok((StatusCode::CREATED, [(header::LOCATION, key)]).into_response())
}

async fn remove(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> Result<Response, Error> {
    let dest = destination(&kind, dest)?;
    check(&b, &caller, &v, &source, &dest)?;
    let vh = vhost(&b, &v)?;
    let Some(found) = vh
        .bindings()
        .into_iter()
        .find(|(s, x)| *s == source && x.destination == dest && properties_key(&x.routing_key, &x.arguments) == props)
    else {
        return Err(Error::not_found(format!(
            "no binding '{props}' from '{source}' to '{}'",
            dest.name()
        )));
    };
    vh.unbind(&source, &found.1).map_err(amqp)?;
    audit(&b, &caller, "unbind", &v, &format!("{source} -> {}", dest.name()), 0);
    Ok(StatusCode::NO_CONTENT.into_response())
}
