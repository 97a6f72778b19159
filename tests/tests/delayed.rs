//! The `x-delayed-message` exchange: messages with `x-delay` are routed once the delay has passed, also across a
//! restart when persistent on a durable exchange.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use warren_tests::client::*;
use warren_tests::TestBroker;

async fn setup(ch: &Channel) {
    let mut a = FieldTable::default();
    a.insert("x-delayed-type".into(), AMQPValue::LongString("direct".into()));
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        "later".into(),
        ExchangeKind::Custom("x-delayed-message".into()),
        durable,
        a,
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        "inbox".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue");
    ch.queue_bind(
        "inbox".into(),
        "later".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
}

fn delayed(ms: i64) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("x-delay".into(), AMQPValue::LongLongInt(ms));
    BasicProperties::default().with_headers(h).with_delivery_mode(2)
}

async fn depth(ch: &Channel) -> u32 {
    ch.queue_declare(
        "inbox".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive")
    .message_count()
}

#[tokio::test]
async fn delayed_messages_arrive_after_their_delay() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    setup(&ch).await;
    ch.basic_publish(
        "later".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"soon",
        delayed(60_000),
    )
    .await
    .expect("publish");
    ch.basic_publish(
        "later".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"now",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(depth(&ch).await, 1, "only the undelayed one so far");
    broker.advance(Duration::from_secs(30));
    assert_eq!(depth(&ch).await, 1, "still held");
    broker.advance(Duration::from_secs(30));
    assert_eq!(depth(&ch).await, 2, "the delayed one arrived");

    // An x-delayed-message exchange needs x-delayed-type.
    let ch2 = channel(&conn).await;
    let err = ch2
        .exchange_declare(
            "bad".into(),
            ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("406");
    assert_eq!(reply_code(&err), Some(406));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_delayed_messages_survive_a_restart() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        setup(&ch).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        ch.basic_publish(
            "later".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"after restart",
            delayed(60_000),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    assert_eq!(depth(&ch).await, 0, "still held");
    broker.advance(Duration::from_secs(60));
    let m = ch
        .basic_get("inbox".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("released after the restart");
    assert_eq!(&m.delivery.data[..], b"after restart");
}

/// Scheduled messages (issue 15): the held messages are listed in due order with their due times, filtered, and
/// can be cancelled, delivered now or rescheduled; a reschedule of a persistent message holds across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_are_listed_cancelled_delivered_now_and_rescheduled() {
    use warren_tests::http::request;
    let mut broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    setup(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for (body, delay) in [("c", 30_000), ("a", 10_000), ("b", 20_000), ("d", 40_000)] {
        ch.basic_publish(
            "later".into(),
            "k".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            delayed(delay),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let admin = broker.admin_addr;
    let post = |path: &str, body: &str| request(admin, "POST", path, "guest:guest", body);
    let bodies = |page: &serde_json::Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {page}"))
            .iter()
            .map(|m| m["body"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (status, summary) = request(admin, "GET", "/api/scheduled", "guest:guest", "");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary[0]["exchange"], "later");
    assert_eq!(summary[0]["messages"], 4);
    let (status, page) = post("/api/scheduled/%2F", "{}");
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page), ["a", "b", "c", "d"], "in due order: {page}");
    assert_eq!((page["total"].clone(), page["matching"].clone()), (4.into(), 4.into()));
    let first = &page["messages"][0];
    assert_eq!(
        first["due_ms"].as_u64().unwrap_or(0) - first["held_ms"].as_u64().unwrap_or(0),
        10_000,
        "{first}"
    );
    let id_of = |body: &str| -> u64 {
        page["messages"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["body"] == body))
            .and_then(|m| m["id"].as_u64())
            .unwrap_or_else(|| panic!("no {body} in {page}"))
    };
    let (_, paged) = post("/api/scheduled/%2F", r#"{"exchange": "later", "from": 1, "count": 2}"#);
    assert_eq!(bodies(&paged), ["b", "c"]);
    let (_, filtered) = post("/api/scheduled/%2F", r#"{"body_contains": "d"}"#);
    assert_eq!(
        (bodies(&filtered), filtered["matching"].clone()),
        (vec!["d".to_string()], 1.into())
    );

    // Cancel one by id; deliver one now; both are gone from the list.
    let (status, done) = post(
        "/api/exchanges/%2F/later/scheduled/cancel",
        &format!(r#"{{"ids": [{}]}}"#, id_of("a")),
    );
    assert_eq!((status, done["affected"].clone()), (200, 1.into()), "{done}");
    let (status, done) = post(
        "/api/exchanges/%2F/later/scheduled/deliver",
        r#"{"body_contains": "b"}"#,
    );
    assert_eq!((status, done["affected"].clone()), (200, 1.into()), "{done}");
    let got = ch
        .basic_get("inbox".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("b was delivered at once");
    assert_eq!(&got.delivery.data[..], b"b");
    assert_eq!(depth(&ch).await, 0, "a was cancelled, not delivered");

    // Reschedule c an hour ahead; it holds across a restart.
    let (status, done) = post(
        "/api/exchanges/%2F/later/scheduled/reschedule",
        &format!(r#"{{"ids": [{}], "delay_ms": 3600000}}"#, id_of("c")),
    );
    assert_eq!((status, done["affected"].clone()), (200, 1.into()), "{done}");
    // Bad requests say what is wrong.
    for (path, body) in [
        ("/api/exchanges/%2F/later/scheduled/cancel", "{}"),
        ("/api/exchanges/%2F/later/scheduled/reschedule", r#"{"all": true}"#),
        (
            "/api/exchanges/%2F/later/scheduled/deliver",
            r#"{"all": true, "delay_ms": 5}"#,
        ),
        ("/api/exchanges/%2F/amq.direct/scheduled/cancel", r#"{"all": true}"#),
    ] {
        let (status, answer) = post(path, body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()), "{answer}");
    }
    let (status, answer) = post("/api/exchanges/%2F/later/scheduled/explode", r#"{"all": true}"#);
    assert_eq!(status, 404, "{answer}");
    drop(ch);
    conn.close(200, "bye".into()).await.ok();
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let (_, page) = request(broker.admin_addr, "POST", "/api/scheduled/%2F", "guest:guest", "{}");
    assert_eq!(bodies(&page), ["d", "c"], "c is due after d now: {page}");
    broker.advance(Duration::from_secs(60));
    assert_eq!(depth(&ch).await, 1, "d arrived; c is an hour away");
    broker.advance(Duration::from_secs(3600));
    assert_eq!(depth(&ch).await, 2, "c arrived at its new time");
    let (_, page) = request(broker.admin_addr, "POST", "/api/scheduled/%2F", "guest:guest", "{}");
    assert_eq!(page["total"], 0, "{page}");
}
