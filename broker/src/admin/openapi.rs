//! `GET /api/openapi.json`: the OpenAPI 3.0 document of this API.
//!
//! The schemas are generated from the `shared` types the handlers use (with `schemars`), so the document cannot
//! drift from the bodies the broker sends; the list of operations below is kept next to the routers, and a test
//! checks that every route answers as documented (`every_documented_operation_is_routed`). Every error answers
//! with the `ApiError` body, documented as each operation's `default` response.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use schemars::gen::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use warren_shared::*;

use super::AdminState;
use crate::broker::Broker;

pub fn router() -> Router<AdminState> {
    Router::new().route("/api/openapi.json", get(document))
}

async fn document(State(_): State<Arc<Broker>>) -> Json<Value> {
    Json(build())
}

/// What an operation answers with on success.
enum Answer {
    Json(&'static [u16], Value),
    Text(&'static str),
}

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<Value>,
    answer: Answer,
    query: &'static [(&'static str, &'static str)],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    serde_json::to_value(g.subschema_for::<T>()).unwrap_or(Value::Null)
}

/// Every operation of the API, in the order the README presents them.
fn operations(g: &mut SchemaGenerator) -> Vec<Op> {
    let op = |method, path, summary, body: Option<Value>, answer| Op {
        method,
        path,
        summary,
        body,
        answer,
        query: &[],
    };
    let ok = |v: Value| Answer::Json(&[200], v);
    vec![
        op(
            "get",
            "/api/overview",
            "Version, uptime, totals, global rates and error counters",
            None,
            ok(schema::<Overview>(g)),
        ),
        op(
            "get",
            "/api/vhosts",
            "Virtual hosts",
            None,
            ok(schema::<Vec<VhostInfo>>(g)),
        ),
        op(
            "get",
            "/api/users",
            "Users and their tags (never password hashes)",
            None,
            ok(schema::<Vec<UserInfo>>(g)),
        ),
        op(
            "get",
            "/api/queues",
            "Every queue with its counters, rates, lag and latency",
            None,
            ok(schema::<Vec<QueueInfo>>(g)),
        ),
        op(
            "get",
            "/api/queues/{vhost}",
            "The queues of a vhost",
            None,
            ok(schema::<Vec<QueueInfo>>(g)),
        ),
        op(
            "get",
            "/api/queues/{vhost}/{name}",
            "One queue",
            None,
            ok(schema::<QueueInfo>(g)),
        ),
        op(
            "put",
            "/api/queues/{vhost}/{name}",
            "Declare a queue (201 with the queue when new, 204 when it existed, as RabbitMQ)",
            Some(schema::<QueueRequest>(g)),
            Answer::Json(&[201, 204], schema::<QueueInfo>(g)),
        ),
        op(
            "delete",
            "/api/queues/{vhost}/{name}",
            "Delete a queue and its messages",
            None,
            ok(schema::<QueueDeleted>(g)),
        ),
        op(
            "post",
            "/api/queues/{vhost}/{name}/peek",
            "Look at ready messages without consuming them",
            Some(schema::<PeekRequest>(g)),
            ok(schema::<Vec<PeekedMessage>>(g)),
        ),
        op(
            "delete",
            "/api/queues/{vhost}/{name}/contents",
            "Purge a queue's ready messages",
            None,
            ok(schema::<PurgeResult>(g)),
        ),
        op(
            "post",
            "/api/queues/{vhost}/{name}/delete",
            "Delete ready messages by id",
            Some(schema::<DeleteMessages>(g)),
            ok(schema::<DeleteResult>(g)),
        ),
        op(
            "post",
            "/api/queues/{vhost}/{name}/priority",
            "Change the priority of ready messages",
            Some(schema::<PriorityRequest>(g)),
            ok(schema::<PriorityResult>(g)),
        ),
        op(
            "post",
            "/api/queues/{vhost}/{name}/move",
            "Move or redrive messages in a background task (202; 200 with wait)",
            Some(schema::<MoveRequest>(g)),
            Answer::Json(&[200, 202], schema::<MoveTask>(g)),
        ),
        op(
            "get",
            "/api/moves",
            "Move tasks, running and recent",
            None,
            ok(schema::<Vec<MoveTask>>(g)),
        ),
        op(
            "get",
            "/api/moves/{id}",
            "One move task",
            None,
            ok(schema::<MoveTask>(g)),
        ),
        op(
            "delete",
            "/api/moves/{id}",
            "Cancel a move task",
            None,
            ok(schema::<MoveTask>(g)),
        ),
        op(
            "get",
            "/api/exchanges",
            "Every exchange",
            None,
            ok(schema::<Vec<ExchangeInfo>>(g)),
        ),
        op(
            "get",
            "/api/exchanges/{vhost}",
            "The exchanges of a vhost",
            None,
            ok(schema::<Vec<ExchangeInfo>>(g)),
        ),
        op(
            "put",
            "/api/exchanges/{vhost}/{name}",
            "Declare an exchange (201 when new, 204 when it existed, as RabbitMQ)",
            Some(schema::<ExchangeRequest>(g)),
            Answer::Json(&[201, 204], schema::<Done>(g)),
        ),
        op(
            "delete",
            "/api/exchanges/{vhost}/{name}",
            "Delete an exchange",
            None,
            ok(schema::<Done>(g)),
        ),
        op(
            "post",
            "/api/exchanges/{vhost}/{name}/publish",
            "Publish a message (the default exchange is amq.default)",
            Some(schema::<PublishRequest>(g)),
            ok(schema::<PublishResult>(g)),
        ),
        op(
            "get",
            "/api/bindings",
            "Every binding",
            None,
            ok(schema::<Vec<BindingInfo>>(g)),
        ),
        op(
            "get",
            "/api/bindings/{vhost}",
            "The bindings of a vhost",
            None,
            ok(schema::<Vec<BindingInfo>>(g)),
        ),
        op(
            "post",
            "/api/bindings/{vhost}",
            "Bind",
            Some(schema::<BindingRequest>(g)),
            ok(schema::<Done>(g)),
        ),
        op(
            "delete",
            "/api/bindings/{vhost}",
            "Unbind",
            Some(schema::<BindingRequest>(g)),
            ok(schema::<Done>(g)),
        ),
        op(
            "get",
            "/api/policies",
            "Every policy",
            None,
            ok(schema::<Vec<PolicyInfo>>(g)),
        ),
        op(
            "get",
            "/api/policies/{vhost}",
            "The policies of a vhost",
            None,
            ok(schema::<Vec<PolicyInfo>>(g)),
        ),
        op(
            "put",
            "/api/policies/{vhost}/{name}",
            "Create or replace a policy (201 created, 200 replaced)",
            Some(schema::<PolicyRequest>(g)),
            Answer::Json(&[200, 201], schema::<PolicyInfo>(g)),
        ),
        op(
            "delete",
            "/api/policies/{vhost}/{name}",
            "Delete a policy set through the API",
            None,
            ok(schema::<Done>(g)),
        ),
        op(
            "get",
            "/api/connections",
            "Client connections",
            None,
            ok(schema::<Vec<ConnectionInfo>>(g)),
        ),
        op(
            "get",
            "/api/connections/{id}",
            "One connection, by its numeric id or RabbitMQ's name (\"peer -> local\")",
            None,
            ok(schema::<ConnectionInfo>(g)),
        ),
        op(
            "get",
            "/api/connections/{id}/channels",
            "One connection's channels",
            None,
            ok(schema::<Vec<ChannelInfo>>(g)),
        ),
        op(
            "delete",
            "/api/connections/{id}",
            "Close a connection, with an optional reason",
            Some(schema::<CloseRequest>(g)),
            ok(schema::<Done>(g)),
        ),
        op(
            "get",
            "/api/channels",
            "Channels",
            None,
            ok(schema::<Vec<ChannelInfo>>(g)),
        ),
        op(
            "get",
            "/api/consumers",
            "Consumers",
            None,
            ok(schema::<Vec<ConsumerInfo>>(g)),
        ),
        Op {
            query: &[(
                "interval_ms",
                "Milliseconds between updates (default 1000, at least 100)",
            )],
            ..op(
                "get",
                "/api/stream",
                "Server-Sent Events: a StreamSnapshot on connect, then one per interval",
                None,
                Answer::Text("text/event-stream"),
            )
        },
        Op {
            query: &[
                (
                    "page_size",
                    "Records per page, newest first (default 100, at most 1000)",
                ),
                ("before", "Only records with ids below this one (the next page)"),
            ],
            ..op(
                "get",
                "/api/audit",
                "The audit trail: operator actions, access changes, refusals and failed logins \
                 (administrator and monitoring users)",
                None,
                ok(schema::<Vec<AuditEntry>>(g)),
            )
        },
        op(
            "get",
            "/api/whoami",
            "The calling user's name and tags",
            None,
            ok(schema::<UserInfo>(g)),
        ),
        op(
            "get",
            "/metrics",
            "Prometheus text format",
            None,
            Answer::Text("text/plain"),
        ),
        op(
            "get",
            "/api/openapi.json",
            "This document",
            None,
            ok(json!({"type": "object"})),
        ),
    ]
}

/// The whole document.
pub fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let ops = operations(&mut g);
    let error = schema::<ApiError>(&mut g);
    let mut paths = Map::new();
    for op in ops {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let (schema, example) = match name {
                    "id" => (json!({"type": "integer", "format": "int64", "minimum": 0}), json!(1)),
                    "vhost" => (json!({"type": "string"}), json!("/")),
                    _ => (json!({"type": "string"}), json!("orders")),
                };
                json!({"name": name, "in": "path", "required": true, "schema": schema, "example": example})
            })
            .collect();
        for (name, description) in op.query {
            parameters.push(json!({
                "name": name, "in": "query", "required": false, "description": description,
                "schema": {"type": "integer", "minimum": 0}
            }));
        }
        let mut responses = Map::new();
        match &op.answer {
            Answer::Json(codes, s) => {
                for code in *codes {
                    let answer = if *code == 204 {
                        json!({"description": "No content (it existed already)"})
                    } else {
                        json!({"description": "OK", "content": {"application/json": {"schema": s}}})
                    };
                    responses.insert(code.to_string(), answer);
                }
            }
            Answer::Text(kind) => {
                responses.insert(
                    "200".into(),
                    json!({"description": "OK", "content": {*kind: {"schema": {"type": "string"}}}}),
                );
            }
        }
        responses.insert(
            "default".into(),
            json!({"description": "An error: {error, reason}", "content": {"application/json": {"schema": error}}}),
        );
        let mut operation = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
            "responses": responses,
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = op.body {
            operation["requestBody"] = json!({
                "required": op.path != "/api/connections/{id}",
                "content": {"application/json": {"schema": body}}
            });
        }
        let entry = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    let schemas = serde_json::to_value(g.definitions()).unwrap_or(Value::Null);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Warren admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Queues, exchanges, bindings, connections, live metrics and operator actions. \
                            HTTP basic auth with broker users: tag `administrator` may act, `monitoring` may read."
        },
        "security": [{"basic": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": schemas,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_with_every_schema_it_refers_to() {
        let doc = build();
        assert_eq!(doc["openapi"], "3.0.3");
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for (i, _) in text.match_indices("#/components/schemas/") {
            let rest = &text[i + "#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').expect("closing quote")];
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
        assert!(doc["paths"]["/api/queues/{vhost}/{name}/move"]["post"]["responses"]["202"].is_object());
    }
}
