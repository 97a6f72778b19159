//! Message journeys over the API without a socket: switches, `GET /api/trace/{vhost}/{id}`, peek's `trace_id`,
//! and the events operators' actions add (purge, priority change, move, edit).

use super::*;

/// Message journeys over the API: switching a queue's tracing, the journey of a message published through the API
/// (keyed by its `message_id`, or by the `trace_id` peek shows), an untraced queue that records nothing, purge as
/// the last event, and JSON 404s.
#[tokio::test]
async fn journeys_are_switched_and_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let admin = Some("guest:guest");
    for q in ["traced", "plain"] {
        let (s, _) = call(
            &b,
            Method::PUT,
            &format!("/api/queues/%2F/{q}"),
            admin,
            r#"{"durable":false}"#,
        )
        .await;
        assert!(s.is_success(), "{s}");
    }
    let (s, body) = call(&b, Method::PUT, "/api/queues/%2F/nope/trace", admin, "").await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, _) = call(&b, Method::PUT, "/api/queues/%2F/traced/trace", Some("watcher:pw"), "").await;
    assert!(s.is_client_error(), "monitoring may not switch tracing: {s}");
    let (s, body) = call(&b, Method::PUT, "/api/queues/%2F/traced/trace", admin, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (body["on"].clone(), body["changed"].clone()),
        (true.into(), true.into())
    );
    let publish = |key: &str, id: Option<&str>| {
        let mut req =
            serde_json::json!({"routing_key": key, "payload": "hi", "payload_encoding": "string", "properties": {}});
        if let Some(id) = id {
            req["properties"]["message_id"] = id.into();
        }
        req.to_string()
    };
    let path = "/api/exchanges/%2F/amq.default/publish";
    let (s, _) = call(&b, Method::POST, path, admin, &publish("traced", Some("order-1"))).await;
    assert_eq!(s, StatusCode::OK);
    call(&b, Method::POST, path, admin, &publish("traced", None)).await;
    call(&b, Method::POST, path, admin, &publish("plain", Some("order-2"))).await;
    let (_, peeked) = call(&b, Method::POST, "/api/queues/%2F/traced/peek", admin, "{}").await;
    assert_eq!(peeked[0]["trace_id"], "order-1");
    let broker_id = peeked[1]["trace_id"]
        .as_str()
        .expect("a broker id for a message without message_id");
    assert!(broker_id.starts_with("w-"), "{broker_id}");
    let (_, peeked) = call(&b, Method::POST, "/api/queues/%2F/plain/peek", admin, "{}").await;
    assert_eq!(
        peeked[0]["trace_id"], "order-2",
        "a message_id is its id, traced or not"
    );
    let kinds = |j: &serde_json::Value| -> Vec<String> {
        j["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .collect()
    };
    let (s, j) = call(&b, Method::GET, "/api/trace/%2F/order-1", Some("watcher:pw"), "").await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(kinds(&j), ["published", "routed"]);
    assert_eq!(j["events"][0]["user"], "guest");
    assert_eq!(j["events"][1]["queues"], serde_json::json!(["traced"]));
    let (s, j) = call(&b, Method::GET, &format!("/api/trace/%2F/{broker_id}"), admin, "").await;
    assert_eq!((s, kinds(&j).len()), (StatusCode::OK, 2));
    let (s, j) = call(&b, Method::GET, "/api/trace/%2F/order-2", admin, "").await;
    assert_eq!(
        (s, j["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "untraced: nothing"
    );
    let (s, _) = call(&b, Method::GET, "/api/trace/nowhere/order-1", admin, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    call(&b, Method::DELETE, "/api/queues/%2F/traced/contents", admin, "").await;
    let (_, j) = call(&b, Method::GET, "/api/trace/%2F/order-1", admin, "").await;
    assert_eq!(kinds(&j), ["published", "routed", "purged"]);
    // Off again: the vhost's one flag goes down with it; a vhost-wide switch traces even the plain queue.
    let (_, body) = call(&b, Method::DELETE, "/api/queues/%2F/traced/trace", admin, "").await;
    assert_eq!(body["on"], false);
    assert!(!b.vhost("/").expect("vhost").trace.any(), "nothing traced: nil cost");
    let (s, body) = call(&b, Method::PUT, "/api/vhosts/%2F/trace", admin, "").await;
    assert_eq!((s, body["changed"].clone()), (StatusCode::OK, true.into()));
    call(&b, Method::POST, path, admin, &publish("plain", Some("order-3"))).await;
    let (_, j) = call(&b, Method::GET, "/api/trace/%2F/order-3", admin, "").await;
    assert_eq!(kinds(&j), ["published", "routed"]);
    call(&b, Method::DELETE, "/api/vhosts/%2F/trace", admin, "").await;
    assert!(!b.vhost("/").expect("vhost").trace.any());
}

/// Operators' actions on a traced message are in its journey: a priority change (from, to) and a move.
#[tokio::test]
async fn priority_changes_and_moves_are_journey_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let g = Some("guest:guest");
    call(
        &b,
        Method::PUT,
        "/api/queues/%2F/jobs",
        g,
        r#"{"arguments":{"x-max-priority":5}}"#,
    )
    .await;
    call(&b, Method::PUT, "/api/queues/%2F/later", g, "{}").await;
    call(&b, Method::PUT, "/api/queues/%2F/jobs/trace", g, "").await;
    let req = r#"{"routing_key":"jobs","payload":"x","priority":1,"message_id":"job-1"}"#;
    call(&b, Method::POST, "/api/exchanges/%2F/amq.default/publish", g, req).await;
    let (_, page) = call(&b, Method::POST, "/api/queues/%2F/jobs/peek", g, "{}").await;
    let id = page[0]["id"].as_u64().expect("id");
    let (s, _) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/jobs/priority",
        g,
        &format!(r#"{{"ids":[{id}],"set":4}}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, task) = call(
        &b,
        Method::POST,
        "/api/queues/%2F/jobs/move",
        g,
        r#"{"to":"queue","queue":"later","wait":true}"#,
    )
    .await;
    assert_eq!((s, task["moved"].clone()), (StatusCode::OK, 1.into()), "{task}");
    let (_, j) = call(&b, Method::GET, "/api/trace/%2F/job-1", g, "").await;
    let e = &j["events"];
    let kinds: Vec<&str> = e
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["published", "routed", "reprioritised", "moved"], "{j}");
    assert_eq!((e[2]["from"].clone(), e[2]["to"].clone()), (1.into(), 4.into()));
    assert_eq!(
        (e[3]["from"].clone(), e[3]["to"].clone()),
        ("jobs".into(), serde_json::json!(["later"]))
    );
}

/// Edit and redrive records `edited` in the original's journey, then where the copy went (the copy keeps the
/// journey: same `message_id`).
#[tokio::test]
async fn an_edit_is_a_journey_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let g = Some("guest:guest");
    call(&b, Method::PUT, "/api/queues/%2F/held", g, "{}").await;
    call(&b, Method::PUT, "/api/queues/%2F/fixed", g, "{}").await;
    call(&b, Method::PUT, "/api/queues/%2F/held/trace", g, "").await;
    let req = r#"{"routing_key":"held","payload":"bad","message_id":"e-1"}"#;
    call(&b, Method::POST, "/api/exchanges/%2F/amq.default/publish", g, req).await;
    let (_, page) = call(&b, Method::POST, "/api/queues/%2F/held/peek", g, "{}").await;
    let id = page[0]["id"].as_u64().expect("id");
    let (s, done) = call(
        &b,
        Method::POST,
        &format!("/api/queues/%2F/held/messages/{id}/edit"),
        g,
        r#"{"to":"queue","queue":"fixed","body":"good"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let (_, j) = call(&b, Method::GET, "/api/trace/%2F/e-1", g, "").await;
    let e = &j["events"];
    let kinds: Vec<&str> = e
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["published", "routed", "edited", "routed"], "{j}");
    assert_eq!(
        (e[2]["by"].clone(), e[2]["new_id"].clone()),
        ("guest".into(), serde_json::Value::Null)
    );
    assert_eq!(e[3]["queues"], serde_json::json!(["fixed"]));
}
