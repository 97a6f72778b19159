//! The admin API without a socket: `app()` driven by `tower::ServiceExt::oneshot`.

use super::*;
use axum::body::Body;
use axum::http::Method;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::config::{Config, UserConfig};

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let config = Config {
        data_dir: dir.to_path_buf(),
        users: vec![UserConfig {
            name: "watcher".into(),
            password: Some("pw".into()),
            password_hash: None,
            tags: vec!["monitoring".into()],
        }],
        ..Config::default()
    };
    Broker::new(config).expect("broker")
}

async fn call(
    b: &Arc<Broker>,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    call_from(b, None, method, path, auth, body.as_bytes()).await
}

/// `call` as a client at `peer` (the server inserts `ConnectInfo`; `oneshot` alone has no peer).
async fn call_from(
    b: &Arc<Broker>,
    peer: Option<std::net::SocketAddr>,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(a);
        req = req.header(header::AUTHORIZATION, format!("Basic {token}"));
    }
    if let Some(p) = peer {
        req = req.extension(axum::extract::ConnectInfo(p));
    }
    let resp = app(b.clone())
        .oneshot(req.body(Body::from(body.to_vec())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

#[tokio::test]
async fn auth_is_required_and_monitoring_may_only_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let (s, body) = call(&b, Method::GET, "/api/overview", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "not_authorised");
    let (s, _) = call(&b, Method::GET, "/api/overview", Some("guest:wrong"), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = call(&b, Method::GET, "/api/overview", Some("watcher:pw"), "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["product"], "Warren");
    let (s, body) = call(&b, Method::DELETE, "/api/queues/%2F/q/contents", Some("watcher:pw"), "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body["reason"]
        .as_str()
        .is_some_and(|r| r.contains("may not change anything")));
}

#[tokio::test]
async fn every_read_endpoint_answers_and_unknowns_are_404_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    for path in [
        "/api/overview",
        "/api/vhosts",
        "/api/users",
        "/api/queues",
        "/api/queues/%2F",
        "/api/exchanges",
        "/api/exchanges/%2F",
        "/api/bindings",
        "/api/bindings/%2F",
        "/api/policies",
        "/api/connections",
        "/api/channels",
        "/api/consumers",
    ] {
        let (s, _) = call(&b, Method::GET, path, Some("guest:guest"), "").await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (s, body) = call(&b, Method::GET, "/api/users", Some("guest:guest"), "").await;
    assert_eq!(s, StatusCode::OK);
    let text = body.to_string();
    assert!(
        !text.contains("password_hash") && !text.contains("$argon2"),
        "never password hashes: {body}"
    );
    for path in ["/api/queues/nope", "/api/queues/%2F/missing", "/api/nothing-here"] {
        let (s, body) = call(&b, Method::GET, path, Some("guest:guest"), "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "not_found");
    }
    let (s, _) = call(&b, Method::GET, "/metrics", Some("guest:guest"), "").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn peek_changes_nothing_and_purge_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let vhost = b.vhost("/").expect("vhost");
    let args = amq_protocol::types::FieldTable::default();
    let q = vhost
        .declare_queue(&crate::vhost::QueueDeclare {
            name: "q",
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: &args,
            connection_id: 1,
        })
        .expect("declare");
    for i in 0..5 {
        let props = amq_protocol::protocol::basic::AMQPProperties::default().with_delivery_mode(2);
        let m =
            crate::message::Message::with_properties("".into(), "q".into(), props, bytes::Bytes::from(format!("m{i}")));
        q.publish(Arc::new(m));
    }
    let (s, body) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/q/peek",
        Some("guest:guest"),
        r#"{"from":1,"count":2}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let bodies: Vec<&str> = body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["m1", "m2"]);
    assert_eq!(body[0]["id"], 2);
    assert_eq!(body[0]["properties"]["delivery_mode"], 2);
    let (s, _) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/q/peek",
        Some("guest:guest"),
        r#"{"count":0}"#,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, info) = call(&b, Method::GET, "/api/queues/%2F/q", Some("guest:guest"), "").await;
    assert_eq!(info["messages_ready"], 5, "peek took nothing");
    // Published to, with no consumer: the backlog does not drain at this rate.
    assert_eq!(info["drain_ms"], serde_json::Value::Null, "{info}");
    let (s, body) = call(
        &b,
        Method::DELETE,
        "/api/queues/%2F/q/contents",
        Some("guest:guest"),
        "",
    )
    .await;
    assert_eq!((s, body["purged"].clone()), (StatusCode::OK, serde_json::json!(5)));
    let (_, info) = call(&b, Method::GET, "/api/queues/%2F/q", Some("guest:guest"), "").await;
    assert_eq!(info["drain_ms"], 0, "nothing ready: drained");
}

/// The OpenAPI document is generated from the routers: every operation in it is served (no "no such endpoint", no
/// 405) and answers JSON errors; every one has a summary, declares its path parameters, and documents the `ApiError`
/// body as its `default` answer; and it covers the endpoints the hand-kept list of before left out.
#[tokio::test]
async fn every_documented_operation_is_routed_and_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let (s, doc) = call(&b, Method::GET, "/api/openapi.json", Some("guest:guest"), "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops: Vec<(String, String, serde_json::Value)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("ops")
                .iter()
                .map(|(m, op)| (path.clone(), m.clone(), op.clone()))
        })
        .collect();
    // Deletes last: one of them removes the default vhost that the others address.
    ops.sort_by_key(|(_, m, _)| m == "delete");
    assert!(ops.len() >= 80, "{} operations", ops.len());
    for (path, method, op) in &ops {
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path}: no summary"
        );
        assert_eq!(
            op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ApiError",
            "{method} {path}"
        );
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let mut uri = path.clone();
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(['{', '}']);
            assert!(declared.contains(&name), "{method} {path}: {name} is not declared");
            let value = match name {
                "vhost" => "%2F",
                "kind" => "q",
                _ => "no-such-thing",
            };
            uri = uri.replace(seg, value);
        }
        if path == "/api/stream" {
            continue; // never ends; tested against a live broker
        }
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let (s, body) = call(&b, m, &uri, Some("guest:guest"), "{}").await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(body["reason"], "no such endpoint", "{method} {path}");
        if !s.is_success() && s != StatusCode::SERVICE_UNAVAILABLE {
            assert!(body["error"].is_string(), "{method} {path}: {s} {body}");
        }
    }
    for (method, path) in [
        ("get", "/api/whoami"),
        ("put", "/api/users/{user}"),
        ("get", "/api/vhosts/{vhost}/permissions"),
        ("put", "/api/permissions/{vhost}/{user}"),
        ("delete", "/api/topic-permissions/{vhost}/{user}"),
        ("put", "/api/vhost-limits/{vhost}/{name}"),
        ("get", "/api/user-limits/{user}"),
        ("get", "/api/definitions"),
        ("post", "/api/definitions/{vhost}"),
        ("get", "/api/audit"),
        ("get", "/api/nodes/{name}"),
        ("get", "/api/health/checks/port-listener/{port}"),
        ("post", "/api/queues/{vhost}/{name}/get"),
        ("post", "/api/bindings/{vhost}/e/{source}/{kind}/{destination}"),
        (
            "delete",
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
        ),
        ("get", "/metrics"),
        ("get", "/api/openapi.json"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} is not documented");
    }
}

/// Query parameters are typed in the document, and a value of the wrong type is a JSON 400.
#[tokio::test]
async fn query_parameters_are_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let (_, doc) = call(&b, Method::GET, "/api/openapi.json", Some("guest:guest"), "").await;
    let params = doc["paths"]["/api/queues"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let kind = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name && p["in"] == "query")
            .map(|p| p["schema"]["type"].clone())
            .unwrap_or_default()
    };
    assert_eq!(kind("page"), serde_json::json!(["integer", "null"]));
    assert_eq!(kind("page_size"), serde_json::json!(["integer", "null"]));
    assert_eq!(kind("use_regex"), serde_json::json!(["boolean", "null"]));
    assert_eq!(kind("sort_reverse"), serde_json::json!(["boolean", "null"]));
    assert_eq!(kind("columns"), serde_json::json!(["string", "null"]));
    let audit = doc["paths"]["/api/audit"]["get"]["parameters"].to_string();
    assert!(audit.contains("before") && audit.contains("page_size"), "{audit}");
    for uri in [
        "/api/queues?page=x",
        "/api/exchanges?use_regex=maybe",
        "/api/audit?before=-1",
    ] {
        let (s, body) = call(&b, Method::GET, uri, Some("guest:guest"), "").await;
        assert_eq!(
            (s, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request")),
            "{uri}: {body}"
        );
    }
}

/// Issue 10 #4: a body over the limit is 413 with the API's JSON error (it was a 400 before).
#[tokio::test]
async fn an_over_limit_body_is_413_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let big = format!(r#"{{"routing_key":"q","payload":"{}"}}"#, "x".repeat(3 << 20));
    for path in ["/api/exchanges/%2F/amq.default/publish", "/api/queues/%2F/q/peek"] {
        let (s, body) = call_from(&b, None, Method::POST, path, Some("guest:guest"), big.as_bytes()).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert_eq!(body["error"], "payload_too_large", "{path}: {body}");
        assert!(body["reason"].is_string(), "{path}: {body}");
    }
}

/// Issue 10 #12f: a `step` far beyond any priority saturates instead of overflowing an i16 (a panic in debug builds
/// after the messages were taken out, a wrap in release builds).
#[tokio::test]
async fn a_huge_priority_step_saturates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let g = Some("guest:guest");
    let (s, _) = call(
        &b,
        Method::PUT,
        "/api/queues/%2F/jobs",
        g,
        r#"{"arguments":{"x-max-priority":5}}"#,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for (body, p) in [("low", 0), ("high", 200)] {
        let req = format!(r#"{{"routing_key":"jobs","payload":"{body}","priority":{p}}}"#);
        let (s, _) = call(&b, Method::POST, "/api/exchanges/%2F/amq.default/publish", g, &req).await;
        assert_eq!(s, StatusCode::OK);
    }
    let priorities = || async {
        let (_, page) = call(&b, Method::POST, "/api/queues/%2F/jobs/peek", g, "{}").await;
        let mut v: Vec<(String, i64)> = page
            .as_array()
            .expect("array")
            .iter()
            .map(|m| {
                let body = m["body"].as_str().unwrap_or_default().to_string();
                (body, m["properties"]["priority"].as_i64().unwrap_or(-1))
            })
            .collect();
        v.sort();
        v
    };
    let (s, r) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/jobs/priority",
        g,
        r#"{"body_contains":"","step":32767}"#,
    )
    .await;
    assert_eq!((s, r["changed"].clone()), (StatusCode::OK, serde_json::json!(2)), "{r}");
    assert_eq!(priorities().await, vec![("high".into(), 5), ("low".into(), 5)]);
    let (s, r) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/jobs/priority",
        g,
        r#"{"body_contains":"","step":-32768}"#,
    )
    .await;
    assert_eq!((s, r["changed"].clone()), (StatusCode::OK, serde_json::json!(2)), "{r}");
    assert_eq!(priorities().await, vec![("high".into(), 0), ("low".into(), 0)]);
    let (s, r) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/jobs/priority",
        g,
        r#"{"body_contains":"","step":40000}"#,
    )
    .await;
    assert_eq!(
        (s, r["error"].clone()),
        (StatusCode::BAD_REQUEST, serde_json::json!("bad_request")),
        "out of i16: {r}"
    );
}

/// Issue 10 #11: `guest` may use the API only from loopback, and an IPv4-mapped loopback address is loopback.
#[tokio::test]
async fn guest_is_loopback_only_and_ipv4_mapped_loopback_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let g = Some("guest:guest");
    for (peer, ok) in [
        ("127.0.0.1:40000", true),
        ("[::1]:40000", true),
        ("[::ffff:127.0.0.1]:40000", true),
        ("10.0.0.1:40000", false),
        ("[::ffff:10.0.0.1]:40000", false),
    ] {
        let peer: std::net::SocketAddr = peer.parse().expect("addr");
        let (s, body) = call_from(&b, Some(peer), Method::GET, "/api/overview", g, b"").await;
        if ok {
            assert_eq!(s, StatusCode::OK, "{peer}: {body}");
        } else {
            assert_eq!(
                (s, body["error"].clone()),
                (StatusCode::FORBIDDEN, serde_json::json!("forbidden")),
                "{peer}: {body}"
            );
        }
    }
    let (s, _) = call_from(
        &b,
        Some("10.0.0.1:1".parse().expect("addr")),
        Method::GET,
        "/api/overview",
        Some("watcher:pw"),
        b"",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "other users may log in from anywhere");
}

#[test]
fn an_admin_api_open_to_other_hosts_with_only_guest_as_administrator_is_warned_of() {
    let dir = tempfile::tempdir().expect("dir");
    let b = Broker::new(Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    })
    .expect("broker");
    let lo: std::net::SocketAddr = "127.0.0.1:15672".parse().expect("addr");
    let any: std::net::SocketAddr = "0.0.0.0:15672".parse().expect("addr");
    assert_eq!(server::exposed_guest(&b, &[lo]), None);
    let warning = server::exposed_guest(&b, &[lo, any]).expect("a warning");
    assert!(
        warning.contains("0.0.0.0:15672") && warning.contains("guest"),
        "{warning}"
    );
    let with_admin = tempfile::tempdir().expect("dir");
    let b = Broker::new(Config {
        data_dir: with_admin.path().to_path_buf(),
        users: vec![UserConfig {
            name: "ops".into(),
            password: Some("pw".into()),
            password_hash: None,
            tags: vec!["administrator".into()],
        }],
        ..Config::default()
    })
    .expect("broker");
    assert_eq!(server::exposed_guest(&b, &[any]), None, "ops may log in from anywhere");
}

/// Message journeys over the API (`admin/trace.rs`, and the events of peek, purge, priority, move and edit).
#[path = "tests_trace.rs"]
mod journeys;
