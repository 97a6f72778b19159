//! The admin API against a running broker carrying real AMQP traffic.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_traffic_peek_changes_nothing_and_purge_counts() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut a = FieldTable::default();
    a.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    a.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("work.dlq".into()),
    );
    ch.queue_declare("work.dlq".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("dlq");
    ch.queue_declare("work".into(), QueueDeclareOptions::default(), a)
        .await
        .expect("declare");
    for i in 0..6u8 {
        ch.basic_publish(
            "".into(),
            "work".into(),
            BasicPublishOptions::default(),
            &[b'a' + i],
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    // A round trip on the same channel: the publishes before it have been handled.
    depth(&ch, "work").await;
    let (s, q) = request(admin, "GET", "/api/queues/%2F/work", "guest:guest", "");
    assert_eq!(s, 200);
    assert_eq!(q["messages_ready"], 6, "{q}");
    assert_eq!(q["counters"]["published"], 6);
    assert_eq!(q["dead_letter_routing_key"], "work.dlq");

    // Peek twice at the same page: same ids, nothing consumed.
    let (_, p1) = request(
        admin,
        "POST",
        "/api/queues/%2F/work/peek",
        "guest:guest",
        r#"{"count":3}"#,
    );
    let (_, p2) = request(
        admin,
        "POST",
        "/api/queues/%2F/work/peek",
        "guest:guest",
        r#"{"count":3}"#,
    );
    assert_eq!(p1, p2);
    assert_eq!(p1.as_array().map(|a| a.len()), Some(3));

    // A consumer takes two, acks one and rejects one (dead-lettered).
    let ch2 = channel(&conn).await;
    ch2.basic_qos(2, BasicQosOptions::default()).await.expect("qos");
    let mut c = ch2
        .basic_consume(
            "work".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let d1 = next(&mut c, Duration::from_secs(2)).await.expect("first");
    let d2 = next(&mut c, Duration::from_secs(2)).await.expect("second");
    assert_eq!(
        (d1.data[0], d1.redelivered),
        (b'a', false),
        "peek did not change what the consumer sees"
    );
    ch2.basic_cancel(c.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    ch2.basic_ack(d1.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch2.basic_reject(d2.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    depth(&ch2, "work").await;
    let (_, q) = request(admin, "GET", "/api/queues/%2F/work", "guest:guest", "");
    assert_eq!(q["latency_deliver"]["count"], 2, "latency moves with deliveries: {q}");
    assert_eq!(q["latency_ack"]["count"], 1);
    assert!(q["time_behind_ms"].as_u64().is_some(), "lag in time is reported");
    assert_eq!(q["counters"]["delivered"], 2);
    assert_eq!(q["counters"]["acked"], 1);
    assert_eq!(q["counters"]["rejected"], 1);
    assert_eq!(q["counters"]["dead_lettered"], 1);
    assert_eq!(q["messages_ready"], 4);
    let (_, dlq) = request(admin, "POST", "/api/queues/%2F/work.dlq/peek", "guest:guest", "{}");
    assert_eq!(
        dlq[0]["properties"]["headers"]["x-death"][0]["reason"], "rejected",
        "x-death decoded: {dlq}"
    );

    assert_eq!(
        (q["consumers"].clone(), q["consumer_utilisation"].clone()),
        (0.into(), serde_json::Value::Null)
    );
    let (_, dlq_info) = request(admin, "GET", "/api/queues/%2F/work.dlq", "guest:guest", "");
    assert_eq!(
        dlq_info["dead_letter_sources"],
        serde_json::json!(["work"]),
        "{dlq_info}"
    );

    // A nack and an unroutable mandatory publish count as errors too.
    let m = ch
        .basic_get("work".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    ch.basic_nack(
        m.delivery.delivery_tag,
        BasicNackOptions {
            requeue: false,
            ..Default::default()
        },
    )
    .await
    .expect("nack");
    ch.basic_publish(
        "".into(),
        "no-such-queue".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"lost",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    depth(&ch, "work").await;
    let (_, q) = request(admin, "GET", "/api/queues/%2F/work", "guest:guest", "");
    assert_eq!(
        (q["counters"]["nacked"].clone(), q["counters"]["rejected"].clone()),
        (1.into(), 1.into())
    );
    let (_, o) = request(admin, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(o["totals"]["returned"], 1, "{o}");
    assert_eq!(o["totals"]["nacked"], 1);

    let (s, r) = request(admin, "DELETE", "/api/queues/%2F/work/contents", "guest:guest", "");
    assert_eq!((s, r["purged"].clone()), (200, serde_json::json!(3)));
    let (_, o) = request(admin, "GET", "/api/overview", "guest:guest", "");
    assert!(o["totals"]["connections"].as_u64().is_some_and(|n| n >= 1));
    let (s, m) = request(admin, "GET", "/metrics", "guest:guest", "");
    assert_eq!(s, 200);
    let text = m.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("warren_queue_published_total{vhost=\"/\",queue=\"work\"} 6"),
        "{text}"
    );
    let (s, e) = request(admin, "GET", "/api/queues/%2F/nope", "guest:guest", "");
    assert_eq!((s, e["error"].clone()), (404, serde_json::json!("not_found")));
    let (s, _) = request(admin, "GET", "/api/overview", "guest:nope", "");
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_puts_rejected_messages_back_on_their_source() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut a = FieldTable::default();
    a.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    a.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("orders.dlq".into()),
    );
    ch.queue_declare("orders.dlq".into(), durable, FieldTable::default())
        .await
        .expect("dlq");
    ch.queue_declare("orders".into(), durable, a).await.expect("orders");
    for i in 0..5u8 {
        let props = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(
            "".into(),
            "orders".into(),
            BasicPublishOptions::default(),
            format!("o{i}").as_bytes(),
            props,
        )
        .await
        .expect("publish");
    }
    // A consumer rejects o1 and o3, acks the rest.
    for _ in 0..5 {
        let m = ch
            .basic_get("orders".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("order");
        if matches!(&m.delivery.data[..], b"o1" | b"o3") {
            ch.basic_reject(m.delivery.delivery_tag, BasicRejectOptions { requeue: false })
                .await
                .expect("reject");
        } else {
            ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                .await
                .expect("ack");
        }
    }
    depth(&ch, "orders").await;
    let (_, dlq) = request(admin, "POST", "/api/queues/%2F/orders.dlq/peek", "guest:guest", "{}");
    assert_eq!(dlq.as_array().map(|a| a.len()), Some(2), "{dlq}");

    let (s, r) = request(
        admin,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        "guest:guest",
        r#"{"to":"source","wait":true}"#,
    );
    assert_eq!(
        (s, r["state"].clone(), r["moved"].clone(), r["not_moved"].clone()),
        (
            200,
            serde_json::json!("done"),
            serde_json::json!(2),
            serde_json::json!(0)
        ),
        "{r}"
    );
    let (_, back) = request(admin, "POST", "/api/queues/%2F/orders/peek", "guest:guest", "{}");
    let bodies: Vec<&str> = back
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["o1", "o3"], "exactly the rejected ones are back");
    assert_eq!(back[0]["properties"]["headers"]["x-redriven"], 1);
    assert_eq!(
        back[0]["properties"]["headers"]["x-death"][0]["reason"], "rejected",
        "x-death is kept"
    );
    let (_, dlq) = request(admin, "GET", "/api/queues/%2F/orders.dlq", "guest:guest", "");
    assert_eq!(dlq["messages_ready"], 0);

    // Delete one by id; a second delete of the same id is a conflict.
    let id = back[0]["id"].as_u64().expect("id");
    let body = format!(r#"{{"ids":[{id}]}}"#);
    let (s, r) = request(admin, "POST", "/api/queues/%2F/orders/delete", "guest:guest", &body);
    assert_eq!((s, r["deleted"].clone()), (200, serde_json::json!(1)));
    let (s, _) = request(admin, "POST", "/api/queues/%2F/orders/delete", "guest:guest", &body);
    assert_eq!(s, 409);

    // Publish through the API; bad input is a 400 with a reason.
    let (s, r) = request(
        admin,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        "guest:guest",
        r#"{"routing_key":"orders","payload":"from-api"}"#,
    );
    assert_eq!((s, r["routed"].clone()), (200, serde_json::json!(true)));
    let (s, r) = request(
        admin,
        "POST",
        "/api/queues/%2F/orders/move",
        "guest:guest",
        r#"{"to":"sideways"}"#,
    );
    assert_eq!(s, 400, "{r}");
    let (s, r) = request(admin, "POST", "/api/queues/%2F/orders/move", "guest:guest", "not json");
    assert_eq!((s, r["error"].clone()), (400, serde_json::json!("bad_request")), "{r}");
    let (_, q) = request(admin, "GET", "/api/queues/%2F/orders", "guest:guest", "");
    assert_eq!(q["messages_ready"], 2, "o3 and from-api");
}

/// Polls `GET /api/moves/{id}` until `done(task)` holds (at most ~20 s).
fn wait_for_move(admin: std::net::SocketAddr, id: u64, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..400 {
        let (_, t) = request(admin, "GET", &format!("/api/moves/{id}"), "guest:guest", "");
        if done(&t) {
            return t;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("move {id} never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_run_in_the_background_with_progress_rate_limit_cancel_and_filters() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    for q in ["parked", "target"] {
        let (s, r) = request(
            admin,
            "PUT",
            &format!("/api/queues/%2F/{q}"),
            "guest:guest",
            r#"{"durable":true}"#,
        );
        assert!(s == 200 || s == 201, "{s} {r}");
    }
    for i in 0..200 {
        let body = format!(r#"{{"routing_key":"parked","payload":"m{i}","persistent":true}}"#);
        let (s, _) = request(
            admin,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            "guest:guest",
            &body,
        );
        assert_eq!(s, 200);
    }

    // A rate-limited move answers at once (202) and makes progress in the background.
    let (s, t) = request(
        admin,
        "POST",
        "/api/queues/%2F/parked/move",
        "guest:guest",
        r#"{"to":"queue","queue":"target","rate":20}"#,
    );
    assert_eq!(
        (s, t["state"].clone(), t["total"].clone()),
        (202, "running".into(), 200.into()),
        "{t}"
    );
    let id = t["id"].as_u64().expect("id");
    let t = wait_for_move(admin, id, |t| t["moved"].as_u64() > Some(0));
    assert_eq!(t["state"], "running", "20/s cannot have moved 200 yet: {t}");
    let (_, list) = request(admin, "GET", "/api/moves", "guest:guest", "");
    assert!(list.as_array().expect("list").iter().any(|m| m["id"] == id), "{list}");

    // Cancel: it stops, and every message is in exactly one of the two queues.
    let (s, _) = request(admin, "DELETE", &format!("/api/moves/{id}"), "guest:guest", "");
    assert_eq!(s, 200);
    let t = wait_for_move(admin, id, |t| t["state"] != "running");
    assert_eq!(t["state"], "cancelled", "{t}");
    let moved = t["moved"].as_u64().expect("moved");
    assert!(moved > 0 && moved < 200, "{t}");
    let (_, parked) = request(admin, "GET", "/api/queues/%2F/parked", "guest:guest", "");
    let (_, target) = request(admin, "GET", "/api/queues/%2F/target", "guest:guest", "");
    assert_eq!(target["messages_ready"].as_u64(), Some(moved));
    assert_eq!(
        parked["messages_ready"].as_u64(),
        Some(200 - moved),
        "the rest went back"
    );
    assert_eq!(parked["messages_unacked"], 0);

    // A filtered move takes exactly the matching messages.
    let (s, t) = request(
        admin,
        "POST",
        "/api/queues/%2F/target/move",
        "guest:guest",
        r#"{"to":"queue","queue":"parked","body_contains":"m1","wait":true}"#,
    );
    let matching = (0..moved).filter(|i| format!("m{i}").contains("m1")).count() as u64;
    assert_eq!(
        (s, t["state"].clone(), t["moved"].clone()),
        (200, "done".into(), matching.into()),
        "{t}"
    );
    let (_, left) = request(
        admin,
        "POST",
        "/api/queues/%2F/target/peek",
        "guest:guest",
        r#"{"count":1000}"#,
    );
    assert!(left
        .as_array()
        .expect("array")
        .iter()
        .all(|m| !m["body"].as_str().unwrap_or_default().contains("m1")));

    // Unknown tasks are 404s; a zero rate is a 400.
    let (s, _) = request(admin, "GET", "/api/moves/99999", "guest:guest", "");
    assert_eq!(s, 404);
    let (s, r) = request(
        admin,
        "POST",
        "/api/queues/%2F/parked/move",
        "guest:guest",
        r#"{"to":"source","rate":0}"#,
    );
    assert_eq!(s, 400, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_sends_a_snapshot_then_updates_and_rates_follow_traffic() {
    let mut broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare("busy".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    // Traffic for a while, so that the once-a-second sampler sees it.
    let publisher = {
        let ch = ch.clone();
        tokio::spawn(async move {
            for _ in 0..250 {
                let _ = ch
                    .basic_publish(
                        "".into(),
                        "busy".into(),
                        BasicPublishOptions::default(),
                        b"x",
                        BasicProperties::default(),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // Read the stream with reqwest, as the console will.
    let resp = reqwest::Client::new()
        .get(format!("http://{admin}/api/stream?interval_ms=500"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("stream request");
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut events: Vec<(String, serde_json::Value)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while events.len() < 6 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(3), futures::StreamExt::next(&mut body)).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_string();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                if let Ok(v) = serde_json::from_str(data) {
                    events.push((name, v));
                }
            }
        }
    }
    publisher.abort();
    assert!(events.len() >= 3, "got {} events", events.len());
    assert_eq!(events[0].0, "snapshot");
    assert!(events[1..].iter().all(|(n, _)| n == "update"));
    let busy = |v: &serde_json::Value| {
        v["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == "busy").cloned())
    };
    let last = busy(&events[events.len() - 1].1).expect("the queue is in the stream");
    assert!(last["counters"]["published"].as_u64().is_some_and(|n| n > 0));
    assert!(
        last["rates"]["publish"]["last_1s"].as_f64().is_some_and(|r| r > 0.0),
        "the publish rate moves: {last}"
    );
    let (_, m) = request(admin, "GET", "/metrics", "guest:guest", "");
    assert!(m
        .as_str()
        .is_some_and(|t| t.contains("warren_queue_published_total{vhost=\"/\",queue=\"busy\"}")));
    let (s, e) = request(admin, "GET", "/api/stream?interval_ms=soon", "guest:guest", "");
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_request")), "{e}");

    // An open stream does not hold up shutdown: the broker stops, and the stream ends.
    let stopping = tokio::task::spawn_blocking(move || broker.stop());
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the broker stops with a stream open")
        .expect("stop");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = futures::StreamExt::next(&mut body).await {}
    })
    .await;
    assert!(end.is_ok(), "the stream ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_priority_changes_through_the_api() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let (s, q) = request(
        admin,
        "PUT",
        "/api/queues/%2F/jobs",
        "guest:guest",
        r#"{"durable":true,"arguments":{"x-max-priority":9}}"#,
    );
    assert_eq!(s, 201, "created, as RabbitMQ answers: {q}");
    assert_eq!(q["arguments"]["x-max-priority"], 9);
    let (s, _) = request(
        admin,
        "PUT",
        "/api/exchanges/%2F/jobs.in",
        "guest:guest",
        r#"{"type":"direct"}"#,
    );
    assert_eq!(s, 201);
    let (s, _) = request(
        admin,
        "PUT",
        "/api/exchanges/%2F/jobs.in",
        "guest:guest",
        r#"{"type":"direct","durable":"true"}"#,
    );
    assert_eq!(
        s, 204,
        "declaring it again: no content; booleans as strings, as rabbitmqadmin sends them"
    );
    let (s, _) = request(
        admin,
        "POST",
        "/api/bindings/%2F",
        "guest:guest",
        r#"{"source":"jobs.in","destination":"jobs","routing_key":"j"}"#,
    );
    assert_eq!(s, 200);
    let (s, e) = request(
        admin,
        "PUT",
        "/api/exchanges/%2F/amq.nope",
        "guest:guest",
        r#"{"type":"direct"}"#,
    );
    assert_eq!(s, 403, "reserved names are refused: {e}");
    let (s, _) = request(
        admin,
        "PUT",
        "/api/queues/%2F/jobs",
        "guest:guest",
        r#"{"durable":false}"#,
    );
    assert_eq!(s, 409, "an inequivalent redeclare is a conflict");

    for body in ["a", "b", "c"] {
        let req = format!(r#"{{"routing_key":"j","payload":"{body}","priority":1,"persistent":true}}"#);
        let (s, r) = request(admin, "POST", "/api/exchanges/%2F/jobs.in/publish", "guest:guest", &req);
        assert_eq!((s, r["routed"].clone()), (200, serde_json::json!(true)));
    }
    let (_, page) = request(admin, "POST", "/api/queues/%2F/jobs/peek", "guest:guest", "{}");
    let b_id = page
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["body"] == "b")
        .and_then(|m| m["id"].as_u64())
        .expect("b");
    let (s, r) = request(
        admin,
        "POST",
        "/api/queues/%2F/jobs/priority",
        "guest:guest",
        &format!(r#"{{"ids":[{b_id}],"set":9}}"#),
    );
    assert_eq!((s, r["changed"].clone()), (200, serde_json::json!(1)), "{r}");
    // By filter, a step: c goes up one level (to 2), above a but below b.
    let (s, r) = request(
        admin,
        "POST",
        "/api/queues/%2F/jobs/priority",
        "guest:guest",
        r#"{"body_contains":"c","step":1}"#,
    );
    assert_eq!((s, r["changed"].clone()), (200, serde_json::json!(1)), "{r}");
    let (s, _) = request(
        admin,
        "POST",
        "/api/queues/%2F/jobs/priority",
        "guest:guest",
        r#"{"set":1}"#,
    );
    assert_eq!(s, 400, "ids or a filter are required");

    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut c = ch
        .basic_consume(
            "jobs".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let order: Vec<u8> = drain(&ch, &mut c, Duration::from_millis(400), false)
        .await
        .iter()
        .map(|d| d.data[0])
        .collect();
    assert_eq!(order, b"bca".to_vec(), "the changed priorities reorder delivery");

    let (s, r) = request(admin, "DELETE", "/api/queues/%2F/jobs", "guest:guest", "");
    assert_eq!((s, r["deleted"].clone()), (200, serde_json::json!(true)));
    let (s, _) = request(admin, "DELETE", "/api/queues/%2F/jobs", "guest:guest", "");
    assert_eq!(s, 404);
    let (s, _) = request(admin, "DELETE", "/api/exchanges/%2F/jobs.in", "guest:guest", "");
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_consumers_and_closing_a_connection() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare("watched".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    let _c = ch
        .basic_consume(
            "watched".into(),
            "watcher".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (_, conns) = request(admin, "GET", "/api/connections", "guest:guest", "");
    let first = &conns[0];
    assert_eq!(
        (first["user"].clone(), first["vhost"].clone(), first["channels"].clone()),
        (serde_json::json!("guest"), serde_json::json!("/"), serde_json::json!(1)),
        "{conns}"
    );
    let (_, chans) = request(admin, "GET", "/api/channels", "guest:guest", "");
    assert_eq!(chans.as_array().map(|a| a.len()), Some(1));
    let (_, consumers) = request(admin, "GET", "/api/consumers", "guest:guest", "");
    assert_eq!(consumers[0]["consumer_tag"], "watcher");
    assert_eq!(consumers[0]["queue"], "watched");
    assert_eq!(consumers[0]["ack_required"], true);
    assert_eq!(consumers[0]["channel_details"]["number"], 1, "{consumers}");
    assert_eq!(consumers[0]["channel_details"]["user"], "guest", "{consumers}");
    assert!(
        conns[0]["client"].as_str().is_some_and(|c| c.contains("lapin")),
        "the client library, as it reports itself: {conns}"
    );
    let (_, q) = request(admin, "GET", "/api/queues/%2F/watched", "guest:guest", "");
    assert_eq!(
        q["consumer_utilisation"], 1.0,
        "an idle consumer with room could take a message at any time"
    );
    let id = first["id"].as_u64().expect("id");
    // RabbitMQ's name, "peer -> local", addresses the connection as the numeric id does (rabbitmqadmin's
    // `close connection name=...` sends it percent-encoded).
    let name = first["name"].as_str().expect("name").to_string();
    assert_eq!(
        name,
        format!("{} -> {}", first["peer"].as_str().expect("peer"), broker.addr),
        "{first}"
    );
    assert_eq!(first["peer_host"], "127.0.0.1");
    assert_eq!(first["port"], broker.addr.port());
    let by_name = format!("/api/connections/{}", name.replace(' ', "%20").replace('>', "%3E"));
    let (s, one) = request(admin, "GET", &by_name, "guest:guest", "");
    assert_eq!((s, one["id"].as_u64()), (200, Some(id)), "{one}");
    let (s, chans) = request(admin, "GET", &format!("{by_name}/channels"), "guest:guest", "");
    assert_eq!(s, 200);
    assert_eq!(chans[0]["name"], format!("{name} (1)"), "{chans}");
    assert_eq!(chans[0]["connection_details"]["name"], name.as_str(), "{chans}");
    let mut events = conn.events_listener();
    let (s, _) = request(admin, "DELETE", &by_name, "guest:guest", r#"{"reason":"maintenance"}"#);
    assert_eq!(s, 200);
    // The client sees connection.close 320 with the reason (as its error callback reports it: a request racing the
    // close may fail with lapin's own "closing" error instead), and the broker forgets the connection.
    let err = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = futures_lite::StreamExt::next(&mut events).await {
            if let lapin::Event::Error(e) = event {
                return Some(e);
            }
        }
        None
    })
    .await
    .expect("closed in time")
    .expect("the connection was closed with an error");
    assert_eq!(reply_code(&err), Some(320), "{err:?}");
    assert!(format!("{err:?}").contains("maintenance"), "{err:?}");
    drop(ch);
    let started = std::time::Instant::now();
    loop {
        let (_, conns) = request(admin, "GET", "/api/connections", "guest:guest", "");
        if conns.as_array().map(|a| a.len()) == Some(0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still listed: {conns}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = request(admin, "DELETE", &format!("/api/connections/{id}"), "guest:guest", "");
    assert_eq!(s, 404);
}

/// A slow move (even one whose caller waits for it) does not hold up shutdown: it is cancelled after its batch,
/// and after a restart every message is in the source or the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_running_moves() {
    let mut broker = TestBroker::start();
    let admin = broker.admin_addr;
    for q in ["from", "to"] {
        assert!(request(admin, "PUT", &format!("/api/queues/%2F/{q}"), "guest:guest", "{}").0 < 300);
    }
    for i in 0..100 {
        let body = format!(r#"{{"routing_key":"from","payload":"m{i}","persistent":true}}"#);
        assert_eq!(
            request(
                admin,
                "POST",
                "/api/exchanges/%2F/amq.default/publish",
                "guest:guest",
                &body
            )
            .0,
            200
        );
    }
    let waiter = std::thread::spawn(move || {
        request(
            admin,
            "POST",
            "/api/queues/%2F/from/move",
            "guest:guest",
            r#"{"to":"queue","queue":"to","rate":10,"wait":true}"#,
        )
    });
    wait_for_move(admin, 1, |t| t["moved"].as_u64() > Some(0));
    let stopping = tokio::task::spawn_blocking(move || {
        broker.stop();
        broker
    });
    let mut broker = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the broker stops with a move running")
        .expect("stop");
    let _ = waiter.join();
    broker.restart();
    let admin = broker.admin_addr;
    let depth = |q: &str| {
        request(admin, "GET", &format!("/api/queues/%2F/{q}"), "guest:guest", "").1["messages_ready"].as_u64()
    };
    assert_eq!(depth("from").zip(depth("to")).map(|(a, b)| a + b), Some(100));
}

/// Dead-letter links follow exchange-to-exchange bindings and alternate exchanges.
#[test]
fn dead_letter_sources_follow_exchange_bindings() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let put = |path: &str, body: &str| {
        let (s, r) = request(admin, "PUT", path, "guest:guest", body);
        assert!(s < 300, "{path}: {s} {r}");
    };
    put(
        "/api/exchanges/%2F/dlx.in",
        r#"{"type":"direct","arguments":{"alternate-exchange":"dlx.ae"}}"#,
    );
    put("/api/exchanges/%2F/dlx.ae", r#"{"type":"fanout"}"#);
    put("/api/exchanges/%2F/dlx.next", r#"{"type":"fanout"}"#);
    put("/api/queues/%2F/deep", "{}");
    put("/api/queues/%2F/caught", "{}");
    put(
        "/api/queues/%2F/src",
        r#"{"arguments":{"x-dead-letter-exchange":"dlx.in"}}"#,
    );
    for body in [
        r#"{"source":"dlx.in","destination":"dlx.next","destination_type":"exchange","routing_key":"k"}"#,
        r#"{"source":"dlx.next","destination":"deep"}"#,
        r#"{"source":"dlx.ae","destination":"caught"}"#,
    ] {
        assert_eq!(
            request(admin, "POST", "/api/bindings/%2F", "guest:guest", body).0,
            200,
            "{body}"
        );
    }
    for q in ["deep", "caught"] {
        let (_, info) = request(admin, "GET", &format!("/api/queues/%2F/{q}"), "guest:guest", "");
        assert_eq!(info["dead_letter_sources"], serde_json::json!(["src"]), "{q}: {info}");
    }
}

/// Issue 15: a redrive of "all 322 ready messages" moved 346, because messages that arrived in between were taken
/// too. With `limit` (what the console's dialog counted), a move takes exactly that many from the head; the
/// messages that arrived later stay.
#[tokio::test]
async fn a_move_with_a_limit_takes_exactly_that_many_from_the_head() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    for q in ["parked", "target"] {
        let (s, r) = request(
            admin,
            "PUT",
            &format!("/api/queues/%2F/{q}"),
            "guest:guest",
            r#"{"durable":true}"#,
        );
        assert!(s == 200 || s == 201, "{s} {r}");
    }
    // The operator was shown 3; 2 more arrived before the move started.
    for i in 0..5 {
        let body = format!(r#"{{"routing_key":"parked","payload":"m{i}","persistent":true}}"#);
        let (s, _) = request(
            admin,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            "guest:guest",
            &body,
        );
        assert_eq!(s, 200);
    }
    let (s, t) = request(
        admin,
        "POST",
        "/api/queues/%2F/parked/move",
        "guest:guest",
        r#"{"to":"queue","queue":"target","limit":3,"wait":true}"#,
    );
    assert_eq!(
        (s, t["total"].clone(), t["moved"].clone()),
        (200, 3.into(), 3.into()),
        "{t}"
    );
    let (_, moved) = request(admin, "POST", "/api/queues/%2F/target/peek", "guest:guest", "{}");
    let bodies: Vec<&str> = moved
        .as_array()
        .expect("a page")
        .iter()
        .map(|m| m["body"].as_str().expect("body"))
        .collect();
    assert_eq!(bodies, vec!["m0", "m1", "m2"]);
    let (_, parked) = request(admin, "GET", "/api/queues/%2F/parked", "guest:guest", "");
    assert_eq!(parked["messages_ready"], 2, "the later arrivals stay");
}
