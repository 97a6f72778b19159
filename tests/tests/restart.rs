//! Restarts: durable definitions and persistent messages survive in order with the right redelivered flags;
//! transient messages and non-durable, exclusive and auto-delete queues do not.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::client::*;
use warren_tests::TestBroker;

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn passive(ch: &lapin::Channel, q: &str) -> Result<u32, lapin::Error> {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|q| q.message_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_definitions_and_persistent_messages_survive_a_restart() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(5));
        ch.queue_declare("orders".into(), durable, args)
            .await
            .expect("durable queue");
        ch.queue_declare("scratch".into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("transient queue");
        ch.queue_declare(
            "auto".into(),
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("auto-delete queue");
        ch.queue_declare(
            "mine".into(),
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exclusive queue");
        ch.exchange_declare(
            "events".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("durable exchange");
        ch.exchange_declare(
            "temp".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        ch.queue_bind(
            "orders".into(),
            "events".into(),
            "order.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

        for (i, body) in ["p1", "p2", "t3", "p4", "p5"].iter().enumerate() {
            let props = if body.starts_with('t') {
                BasicProperties::default()
            } else {
                persistent()
            };
            let props = if i == 4 { props.with_priority(3) } else { props };
            ch.basic_publish(
                "events".into(),
                "order.new".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        }
        // p5 (priority 3) is delivered first and left unacked; p1 is delivered and acked.
        let ch2 = channel(&conn).await;
        ch2.basic_qos(2, BasicQosOptions::default()).await.expect("qos");
        let mut c = ch2
            .basic_consume(
                "orders".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let first = next(&mut c, Duration::from_secs(2)).await.expect("first");
        let second = next(&mut c, Duration::from_secs(2)).await.expect("second");
        assert_eq!((&first.data[..], &second.data[..]), (&b"p5"[..], &b"p1"[..]));
        // Stop deliveries before the ack frees prefetch room (or p2 would go out, and rightly come back flagged).
        ch2.basic_cancel(c.tag(), BasicCancelOptions::default())
            .await
            .expect("cancel");
        ch2.basic_ack(second.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack p1");
        // Make sure the ack reached the broker before it stops.
        passive(&ch, "orders").await.expect("round trip");
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();

    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    assert_eq!(
        passive(&ch, "orders").await.expect("orders survives"),
        3,
        "p5, p2, p4 (t3 was transient)"
    );
    for gone in ["scratch", "auto", "mine"] {
        let ch = channel(&conn).await;
        let err = passive(&ch, gone).await.expect_err("gone");
        assert_eq!(reply_code(&err), Some(404), "{gone}");
    }
    let ch = channel(&conn).await;
    let err = ch
        .exchange_declare(
            "temp".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("non-durable exchange is gone");
    assert_eq!(reply_code(&err), Some(404));
    let ch = channel(&conn).await;
    // The binding survived: a new publish through the durable exchange arrives.
    ch.basic_publish(
        "events".into(),
        "order.late".into(),
        BasicPublishOptions::default(),
        b"p6",
        persistent(),
    )
    .await
    .expect("publish");
    let mut c = ch
        .basic_consume(
            "orders".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let got = drain(&ch, &mut c, Duration::from_millis(500), true).await;
    let seen: Vec<(String, bool)> = got
        .iter()
        .map(|d| (String::from_utf8_lossy(&d.data).into_owned(), d.redelivered))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("p5".into(), true),
            ("p2".into(), false),
            ("p4".into(), false),
            ("p6".into(), false)
        ],
        "priority first, then arrival order; only the delivered-unacked one is flagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_broker_on_the_same_data_dir_is_refused() {
    let broker = TestBroker::start();
    let config = warren_broker::Config {
        data_dir: broker.data_dir().to_path_buf(),
        ..Default::default()
    };
    let err = warren_broker::Broker::new(config).err().expect("locked");
    assert!(err.to_string().contains("in use by another broker"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_delete_are_durable() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        for q in ["purged", "deleted"] {
            ch.queue_declare(
                q.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare");
            for _ in 0..10 {
                ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), b"x", persistent())
                    .await
                    .expect("publish");
            }
        }
        assert_eq!(
            ch.queue_purge("purged".into(), QueuePurgeOptions::default())
                .await
                .expect("purge"),
            10
        );
        assert_eq!(
            ch.queue_delete("deleted".into(), QueueDeleteOptions::default())
                .await
                .expect("delete"),
            10
        );
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    assert_eq!(passive(&ch, "purged").await.expect("still declared"), 0);
    let err = passive(&ch, "deleted").await.expect_err("deleted stays deleted");
    assert_eq!(reply_code(&err), Some(404));
}

/// A data directory whose definitions are gone but whose queue directories are not: starting as if empty would
/// hide every queue and its messages, so the broker refuses and says what is missing and where.
#[test]
fn missing_definitions_with_queue_directories_refuse_to_start() {
    let mut broker = TestBroker::start();
    let data = broker.data_dir().to_path_buf();
    let admin = broker.admin_addr;
    let (s, _) = warren_tests::http::request(
        admin,
        "PUT",
        "/api/queues/%2F/kept",
        "guest:guest",
        r#"{"durable":true}"#,
    );
    assert!(s < 300);
    broker.stop();
    for name in ["definitions.json", "definitions.log"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    let config = warren_broker::Config {
        data_dir: data.clone(),
        ..Default::default()
    };
    let err = warren_broker::Broker::new(config).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains(&data.display().to_string()) && text.contains("definitions"),
        "names the data dir and what is missing: {text}"
    );
    assert!(warren_broker::store::queue_dir::hashed(&data, "/", "kept").is_dir());
}

/// `force_empty_definitions` (`--force-empty-definitions`) starts anyway: no queues, the queue directory left as
/// it was, and declaring the queue again under its name brings its messages back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_empty_definitions_starts_and_leaves_queue_directories_alone() {
    let mut broker = TestBroker::start_with(|c| c.force_empty_definitions = true);
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("kept".into(), durable, FieldTable::default())
            .await
            .expect("declare");
        ch.basic_publish(
            "".into(),
            "kept".into(),
            BasicPublishOptions::default(),
            b"m",
            persistent(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
        conn.close(200, "bye".into()).await.ok();
    }
    let data = broker.data_dir().to_path_buf();
    broker.stop();
    std::fs::remove_file(data.join("definitions.log")).expect("lose the definitions");
    broker.restart();
    let queue_dir = warren_broker::store::queue_dir::hashed(&data, "/", "kept");
    assert!(queue_dir.is_dir(), "left alone");
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let err = passive(&ch, "kept").await.expect_err("no definitions, no queue");
    assert_eq!(reply_code(&err), Some(404));
    let ch = channel(&conn).await;
    ch.queue_declare(
        "kept".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare again");
    assert_eq!(passive(&ch, "kept").await.expect("declared"), 1, "its message is back");
}

/// A data directory from before `definitions.log` keeps its definitions in `definitions.json`: the first start
/// migrates them (and keeps the JSON as `definitions.json.migrated`), later starts read the log.
#[test]
fn definitions_json_of_earlier_versions_is_migrated() {
    use warren_tests::http::request;
    let mut broker = TestBroker::start();
    let data = broker.data_dir().to_path_buf();
    broker.stop();
    // As the previous version wrote it.
    let old = r#"{"vhosts":{"/":{"exchanges":[{"name":"events","kind":"topic","auto_delete":false,"internal":false,
        "arguments":{}}],"queues":[{"name":"orders","arguments":{"x-max-priority":{"ShortShortUInt":5}}}],
        "bindings":[{"source":"events","destination":"orders","to_queue":true,"routing_key":"order.#",
        "arguments":{}}],"policies":[{"name":"cap","pattern":"^orders$","priority":0,
        "definition":{"max-length":10}}]}}}"#;
    std::fs::write(data.join("definitions.json"), old).expect("write");
    std::fs::remove_file(data.join("definitions.log")).expect("as before the log");
    for start in ["migrates", "reads the log"] {
        broker.restart();
        let admin = broker.admin_addr;
        let (_, q) = request(admin, "GET", "/api/queues/%2F/orders", "guest:guest", "");
        assert_eq!(q["arguments"]["x-max-priority"], 5, "{start}: {q}");
        assert_eq!(q["policy"], "cap", "{start}: {q}");
        let (_, b) = request(admin, "GET", "/api/bindings/%2F", "guest:guest", "");
        assert!(b.to_string().contains("order.#"), "{start}: {b}");
        assert!(!data.join("definitions.json").exists(), "{start}");
        assert!(data.join("definitions.json.migrated").exists(), "{start}");
    }
}
