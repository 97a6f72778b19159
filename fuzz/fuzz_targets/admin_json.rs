#![no_main]
//! Fuzz target `admin_json`: arbitrary bytes as the JSON body of every admin API endpoint that reads one, sent
//! through the real router (`warren_broker::admin::app`, auth middleware and all) with `tower::ServiceExt::oneshot`.
//!
//! The first input byte picks the endpoint, the rest is the body. Invariants checked: no panic, never a 5xx (bad
//! input is the client's fault: 4xx), and every error is the API's JSON `{"error", "reason"}`. One broker (a
//! temporary data directory, fsync off) lives for the whole run, with a priority queue `q` holding messages and a
//! queue `dlq`, so peeks, deletes, moves and priority changes have something to work on. Time is paused (tokio's
//! auto-advance), so a rate-limited move with `"wait": true` does not stall the run.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use warren_broker::store::FsyncMode;
use warren_broker::{Broker, Config};

/// Every endpoint with a JSON body: (method, path).
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/api/queues/%2F/q/peek"),
    ("POST", "/api/queues/%2F/q/delete"),
    ("POST", "/api/exchanges/%2F/amq.default/publish"),
    ("POST", "/api/queues/%2F/q/move"),
    ("POST", "/api/queues/%2F/q/priority"),
    ("PUT", "/api/queues/%2F/fuzz-q"),
    ("PUT", "/api/exchanges/%2F/fuzz-x"),
    ("PUT", "/api/policies/%2F/fuzz"),
    ("POST", "/api/bindings/%2F"),
    ("DELETE", "/api/bindings/%2F"),
    ("DELETE", "/api/connections/1"),
];

/// `guest:guest`.
const AUTH: &str = "Basic Z3Vlc3Q6Z3Vlc3Q=";

struct Fixture {
    rt: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// Sends one request; returns the status and the body.
async fn call(broker: &Arc<Broker>, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, AUTH)
        .body(Body::from(body))
        .expect("request");
    let resp = warren_broker::admin::app(broker.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let broker = rt.block_on(async {
            let config = Config {
                data_dir: dir.path().to_path_buf(),
                fsync: FsyncMode::Never,
                ..Config::default()
            };
            let broker = Broker::new(config).expect("broker");
            let setup: &[(&str, &str, &str)] = &[
                (
                    "PUT",
                    "/api/queues/%2F/q",
                    r#"{"durable":true,"arguments":{"x-max-priority":9,"x-max-length":1000}}"#,
                ),
                (
                    "PUT",
                    "/api/queues/%2F/dlq",
                    r#"{"durable":true,"arguments":{"x-max-length":1000}}"#,
                ),
                (
                    "POST",
                    "/api/exchanges/%2F/amq.default/publish",
                    r#"{"routing_key":"q","payload":"a","priority":3,"persistent":true}"#,
                ),
                (
                    "POST",
                    "/api/exchanges/%2F/amq.default/publish",
                    r#"{"routing_key":"q","payload":"Yg==","payload_encoding":"base64","headers":{"k":"v"}}"#,
                ),
            ];
            for (method, path, body) in setup {
                let (s, b) = call(&broker, method, path, body.as_bytes().to_vec()).await;
                assert!(
                    s.is_success(),
                    "setup {method} {path}: {s} {}",
                    String::from_utf8_lossy(&b)
                );
            }
            broker
        });
        Fixture { rt, broker, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path) = ENDPOINTS[pick as usize % ENDPOINTS.len()];
    let f = fixture();
    let (status, answer) = f.rt.block_on(call(&f.broker, method, path, body.to_vec()));
    let shown = || String::from_utf8_lossy(body).chars().take(300).collect::<String>();
    assert!(
        !status.is_server_error(),
        "{method} {path} answered {status} to {:?}: {}",
        shown(),
        String::from_utf8_lossy(&answer)
    );
    if !status.is_success() {
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        assert!(
            json["error"].is_string() && json["reason"].is_string(),
            "{method} {path} answered {status} without the JSON error to {:?}: {}",
            shown(),
            String::from_utf8_lossy(&answer)
        );
    }
});
