//! De-duplication (exactly-once publishing) and single active consumer.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use warren_tests::client::*;
use warren_tests::TestBroker;

fn dedup_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-message-deduplication".into(), AMQPValue::Boolean(true));
    t.insert("x-cache-size".into(), AMQPValue::LongInt(100));
    for (k, v) in extra {
        t.insert((*k).into(), v.clone());
    }
    t
}

async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) -> bool {
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm")
        .is_ack()
}

async fn count(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q.into(),
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

fn id(m: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(m.into())
        .with_delivery_mode(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_confirmed_but_not_enqueued() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        ch.queue_declare(
            "dd".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            dedup_args(&[]),
        )
        .await
        .expect("declare");
        for m in ["a", "a", "b"] {
            assert!(
                publish_confirmed(&ch, "", "dd", m.as_bytes(), id(m)).await,
                "every publish is confirmed"
            );
        }
        assert_eq!(count(&ch, "dd").await, 2);
        // The x-deduplication-header header wins over message-id.
        let mut h = FieldTable::default();
        h.insert("x-deduplication-header".into(), AMQPValue::LongString("k1".into()));
        for m in ["c", "d"] {
            let props = id(m).with_headers(h.clone());
            assert!(publish_confirmed(&ch, "", "dd", m.as_bytes(), props).await);
        }
        assert_eq!(count(&ch, "dd").await, 3);
        conn.close(200, "bye".into()).await.ok();
    }
    // The cache of a durable queue survives a restart.
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    assert!(publish_confirmed(&ch, "", "dd", b"a", id("a")).await);
    assert!(publish_confirmed(&ch, "", "dd", b"e", id("e")).await);
    assert_eq!(
        count(&ch, "dd").await,
        4,
        "a is still a duplicate after the restart, e is new"
    );
}

#[tokio::test]
async fn cache_ttl_and_exchange_level_dedup() {
    let mut broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        "ttl".into(),
        QueueDeclareOptions::default(),
        dedup_args(&[("x-cache-ttl", AMQPValue::LongInt(60_000))]),
    )
    .await
    .expect("declare");
    publish_confirmed(&ch, "", "ttl", b"x", id("x")).await;
    publish_confirmed(&ch, "", "ttl", b"x", id("x")).await;
    assert_eq!(count(&ch, "ttl").await, 1);
    broker.advance(Duration::from_secs(60));
    publish_confirmed(&ch, "", "ttl", b"x", id("x")).await;
    assert_eq!(count(&ch, "ttl").await, 2, "the key expired from the cache");

    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare("ddx".into(), ExchangeKind::Fanout, durable, dedup_args(&[]))
        .await
        .expect("exchange");
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("behind".into(), durable_q, FieldTable::default())
        .await
        .expect("queue");
    ch.queue_bind(
        "behind".into(),
        "ddx".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    for _ in 0..3 {
        assert!(publish_confirmed(&ch, "ddx", "", b"e", id("e")).await);
    }
    assert_eq!(count(&ch, "behind").await, 1);
    conn.close(200, "bye".into()).await.ok();

    // A durable exchange's cache survives a restart too.
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    assert!(publish_confirmed(&ch, "ddx", "", b"e", id("e")).await);
    assert!(publish_confirmed(&ch, "ddx", "", b"f", id("f")).await);
    assert_eq!(
        count(&ch, "behind").await,
        2,
        "e is still a duplicate after the restart, f is new"
    );
}

#[tokio::test]
async fn single_active_consumer_fails_over_in_order() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut a = FieldTable::default();
    a.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare("sac".into(), QueueDeclareOptions::default(), a)
        .await
        .expect("declare");
    for i in 0..6u8 {
        ch.basic_publish(
            "".into(),
            "sac".into(),
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let (conn1, conn2) = (connect(&broker.url()).await, connect(&broker.url()).await);
    let (ch1, ch2) = (channel(&conn1).await, channel(&conn2).await);
    ch1.basic_qos(2, BasicQosOptions::default()).await.expect("qos");
    let mut first = ch1
        .basic_consume(
            "sac".into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut second = ch2
        .basic_consume(
            "sac".into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    // Only the active consumer gets messages; it acks 0 and holds 1.
    let d0 = next(&mut first, Duration::from_secs(2)).await.expect("0");
    assert!(
        next(&mut second, Duration::from_millis(300)).await.is_none(),
        "the second consumer is idle"
    );
    ch1.basic_ack(d0.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    let _held = next(&mut first, Duration::from_secs(2)).await.expect("1");
    // The active consumer goes away: the next one continues in order, starting with what was left unacked.
    conn1.close(200, "bye".into()).await.expect("close");
    let got: Vec<u8> = drain(&ch2, &mut second, Duration::from_millis(400), true)
        .await
        .iter()
        .map(|d| d.data[0])
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
}
