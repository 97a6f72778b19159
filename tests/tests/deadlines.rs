//! Deadlines in real time, with no sweep run by the test (`TestBroker::advance` is never called here): the broker's
//! timer wakes a queue or a delayed exchange at its deadline, and only then. Each test waits for the event itself (a
//! delivery), with a generous timeout only as a failure bound, and reads the timer's counters to show that nothing
//! else was woken.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use warren_tests::client::*;
use warren_tests::TestBroker;

/// How long a test waits for the delivery it expects before it fails.
const FAIL_AFTER: Duration = Duration::from_secs(10);

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn timer_stats(broker: &TestBroker) -> warren_broker::timer::TimerStats {
    broker.broker.as_ref().expect("running").timer.stats()
}

async fn consume(ch: &Channel, queue: &str) -> lapin::Consumer {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("consume")
}

#[tokio::test]
async fn a_message_ttl_expires_on_time_while_a_thousand_idle_queues_are_never_woken() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    for i in 0..1_000 {
        ch.queue_declare(
            format!("idle-{i}").as_str().into(),
            QueueDeclareOptions {
                durable: i % 2 == 0,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    }
    ch.queue_declare("expired".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("dead-letter queue");
    let mut dead = consume(&ch, "expired").await;
    ch.queue_declare(
        "ttl".into(),
        QueueDeclareOptions::default(),
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(50)),
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            ("x-dead-letter-routing-key", AMQPValue::LongString("expired".into())),
        ]),
    )
    .await
    .expect("ttl queue");
    sync(&ch).await;
    assert_eq!(timer_stats(&broker).fired, 0, "nothing was due yet, nothing was woken");

    ch.basic_publish(
        "".into(),
        "ttl".into(),
        BasicPublishOptions::default(),
        b"short-lived",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let d = next(&mut dead, FAIL_AFTER)
        .await
        .expect("expired and dead-lettered by the timer, with no sweep");
    assert_eq!(&d.data[..], b"short-lived");

    let stats = timer_stats(&broker);
    assert_eq!(
        stats.fired, 1,
        "one queue had a deadline and was woken once; the 1,000 others never: {stats:?}"
    );
    // A sleep could end a hair before the deadline's millisecond as the clock reads it, which costs one more wake.
    assert!((1..=2).contains(&stats.wakes), "{stats:?}");
}

async fn delayed_exchange(ch: &Channel, durable: bool) {
    let options = ExchangeDeclareOptions {
        durable,
        ..Default::default()
    };
    ch.exchange_declare(
        "later".into(),
        ExchangeKind::Custom("x-delayed-message".into()),
        options,
        args(&[("x-delayed-type", AMQPValue::LongString("direct".into()))]),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        "inbox".into(),
        QueueDeclareOptions {
            durable,
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

async fn publish_delayed(ch: &Channel, body: &[u8], delay_ms: i64) {
    let props = BasicProperties::default()
        .with_headers(args(&[("x-delay", AMQPValue::LongLongInt(delay_ms))]))
        .with_delivery_mode(2);
    ch.basic_publish("later".into(), "k".into(), BasicPublishOptions::default(), body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

#[tokio::test]
async fn delayed_messages_are_released_by_the_timer_in_due_order() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    delayed_exchange(&ch, false).await;
    let mut inbox = consume(&ch, "inbox").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    publish_delayed(&ch, b"second", 150).await;
    publish_delayed(&ch, b"first", 50).await;
    let first = next(&mut inbox, FAIL_AFTER).await.expect("released");
    let second = next(&mut inbox, FAIL_AFTER).await.expect("released");
    assert_eq!((&first.data[..], &second.data[..]), (&b"first"[..], &b"second"[..]));
    let stats = timer_stats(&broker);
    assert!((2..=3).contains(&stats.fired), "one wake per due time: {stats:?}");
}

#[tokio::test]
async fn a_held_message_recovered_at_start_is_released_by_the_timer() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        delayed_exchange(&ch, true).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        publish_delayed(&ch, b"across a restart", 300).await;
        let _ = conn.close(200, "bye".into()).await;
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut inbox = consume(&ch, "inbox").await;
    let d = next(&mut inbox, FAIL_AFTER)
        .await
        .expect("released after the restart with no sweep");
    assert_eq!(&d.data[..], b"across a restart");
}
