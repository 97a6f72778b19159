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
