//! Dead-lettering, TTL, length limits, delivery limits and queue expiry, as RabbitMQ clients see them.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use warren_tests::client::*;
use warren_tests::TestBroker;

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// Declares `dlq` and a source queue whose dead letters go to it through the default exchange.
async fn with_dlq(ch: &Channel, source: &str, extra: &[(&str, AMQPValue)]) -> String {
    let dlq = format!("{source}.dlq");
    ch.queue_declare(
        dlq.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("dlq");
    let mut a = vec![
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(&dlq)),
    ];
    a.extend(extra.iter().cloned());
    ch.queue_declare(source.into(), QueueDeclareOptions::default(), args(&a))
        .await
        .expect("source");
    dlq
}

async fn publish(ch: &Channel, q: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), body, props)
        .await
        .expect("publish");
}

async fn get(ch: &Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
}

/// The first x-death entry of a delivery, and its x-death array length.
fn first_death(p: &BasicProperties) -> (FieldTable, usize) {
    let h = p.headers().clone().expect("headers");
    match h.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => match a.as_slice().first() {
            Some(AMQPValue::FieldTable(t)) => (t.clone(), a.as_slice().len()),
            other => panic!("x-death entry: {other:?}"),
        },
        other => panic!("x-death: {other:?}"),
    }
}

fn text(t: &FieldTable, k: &str) -> String {
    match t.inner().get(k) {
        Some(AMQPValue::LongString(v)) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(v)) => v.to_string(),
        other => panic!("{k}: {other:?}"),
    }
}

#[tokio::test]
async fn rejected_message_is_dead_lettered_with_x_death() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let dlq = with_dlq(&ch, "work", &[]).await;
    publish(
        &ch,
        "work",
        b"poison",
        BasicProperties::default().with_headers(args(&[("app", s("demo"))])),
    )
    .await;
    let m = ch
        .basic_get("work".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    ch.basic_reject(m.delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let d = get(&ch, &dlq).await.expect("dead letter");
    assert_eq!(&d.delivery.data[..], b"poison");
    assert_eq!(d.delivery.routing_key.as_str(), dlq);
    let (death, n) = first_death(&d.delivery.properties);
    assert_eq!(n, 1);
    assert_eq!(text(&death, "reason"), "rejected");
    assert_eq!(text(&death, "queue"), "work");
    assert_eq!(text(&death, "exchange"), "");
    assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
    assert!(matches!(death.inner().get("time"), Some(AMQPValue::Timestamp(_))));
    match death.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => assert_eq!(a.as_slice(), &[s("work")]),
        other => panic!("routing-keys: {other:?}"),
    }
    let h = d.delivery.properties.headers().clone().expect("headers");
    assert_eq!(text(&h, "x-first-death-queue"), "work");
    assert_eq!(text(&h, "x-first-death-reason"), "rejected");
    assert_eq!(text(&h, "x-last-death-queue"), "work");
    assert_eq!(text(&h, "app"), "demo", "the message's own headers are kept");
    // nack without requeue dead-letters too.
    publish(&ch, "work", b"again", BasicProperties::default()).await;
    let m = ch
        .basic_get("work".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    ch.basic_nack(
        m.delivery.delivery_tag,
        BasicNackOptions {
            requeue: false,
            multiple: false,
        },
    )
    .await
    .expect("nack");
    assert_eq!(&get(&ch, &dlq).await.expect("dead letter").delivery.data[..], b"again");
}

#[tokio::test]
async fn expired_messages_are_dead_lettered_without_a_consumer() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let dlq = with_dlq(&ch, "ttl", &[("x-message-ttl", AMQPValue::LongInt(100))]).await;
    publish(&ch, "ttl", b"queue-ttl", BasicProperties::default()).await;
    let dlq2 = with_dlq(&ch, "ttl2", &[]).await;
    publish(
        &ch,
        "ttl2",
        b"message-ttl",
        BasicProperties::default().with_expiration("150".into()),
    )
    .await;
    sync(&ch).await;
    broker.advance(Duration::from_millis(150));
    // Nobody consumed: the sweep moved them.
    let d = get(&ch, &dlq).await.expect("expired by x-message-ttl");
    assert_eq!(text(&first_death(&d.delivery.properties).0, "reason"), "expired");
    let d2 = get(&ch, &dlq2).await.expect("expired by expiration");
    let (death, _) = first_death(&d2.delivery.properties);
    assert_eq!(text(&death, "original-expiration"), "150");
    assert!(d2.delivery.properties.expiration().is_none(), "expiration is removed");
    for q in ["ttl", "ttl2"] {
        let n = ch
            .queue_declare(
                q.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive");
        assert_eq!(n.message_count(), 0);
    }
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_the_oldest() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let dlq = with_dlq(&ch, "bounded", &[("x-max-length", AMQPValue::LongInt(2))]).await;
    for b in ["a", "b", "c", "d"] {
        publish(&ch, "bounded", b.as_bytes(), BasicProperties::default()).await;
    }
    let mut kept = Vec::new();
    while let Some(m) = get(&ch, "bounded").await {
        kept.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    assert_eq!(kept, vec!["c", "d"]);
    let mut dropped = Vec::new();
    while let Some(m) = get(&ch, &dlq).await {
        assert_eq!(text(&first_death(&m.delivery.properties).0, "reason"), "maxlen");
        dropped.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    assert_eq!(dropped, vec!["a", "b"]);
}

#[tokio::test]
async fn reject_publish_nacks_and_reject_publish_dlx_also_dead_letters() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for (q, overflow) in [("rp", "reject-publish"), ("rpdlx", "reject-publish-dlx")] {
        let dlq = with_dlq(
            &ch,
            q,
            &[("x-max-length", AMQPValue::LongInt(1)), ("x-overflow", s(overflow))],
        )
        .await;
        let mut outcomes = Vec::new();
        for b in ["first", "second"] {
            let c = ch
                .basic_publish(
                    "".into(),
                    q.into(),
                    BasicPublishOptions::default(),
                    b.as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
            outcomes.push(c.await.expect("confirm").is_ack());
        }
        assert_eq!(outcomes, vec![true, false], "{overflow}: the second publish is nacked");
        assert_eq!(&get(&ch, q).await.expect("kept").delivery.data[..], b"first");
        let dead = get(&ch, &dlq).await;
        if overflow == "reject-publish-dlx" {
            let d = dead.expect("dead-lettered");
            assert_eq!(&d.delivery.data[..], b"second");
            assert_eq!(text(&first_death(&d.delivery.properties).0, "reason"), "maxlen");
        } else {
            assert!(dead.is_none(), "reject-publish does not dead-letter");
        }
    }
    // Bytes limit.
    ch.queue_declare(
        "bytes".into(),
        QueueDeclareOptions::default(),
        args(&[
            ("x-max-length-bytes", AMQPValue::LongInt(10)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await
    .expect("declare");
    let c = ch
        .basic_publish(
            "".into(),
            "bytes".into(),
            BasicPublishOptions::default(),
            b"12345678901",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    assert!(!c.await.expect("confirm").is_ack(), "11 bytes do not fit in 10");
}

#[tokio::test]
async fn delivery_limit_counts_returns_then_dead_letters() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let dlq = with_dlq(&ch, "limited", &[("x-delivery-limit", AMQPValue::LongInt(2))]).await;
    publish(&ch, "limited", b"poison", BasicProperties::default()).await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let m = ch
            .basic_get("limited".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("message");
        let count = m
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count").cloned());
        counts.push(count);
        ch.basic_nack(
            m.delivery.delivery_tag,
            BasicNackOptions {
                requeue: true,
                multiple: false,
            },
        )
        .await
        .expect("nack");
    }
    assert_eq!(
        counts,
        vec![None, Some(AMQPValue::LongLongInt(1)), Some(AMQPValue::LongLongInt(2))]
    );
    assert!(get(&ch, "limited").await.is_none(), "past the limit it left the queue");
    let d = get(&ch, &dlq).await.expect("dead-lettered");
    assert_eq!(text(&first_death(&d.delivery.properties).0, "reason"), "delivery_limit");
}

#[tokio::test]
async fn unused_queue_expires() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "idle".into(),
        QueueDeclareOptions::default(),
        args(&[("x-expires", AMQPValue::LongInt(60_000))]),
    )
    .await
    .expect("declare");
    broker.advance(Duration::ZERO);
    let still = ch
        .queue_declare(
            "idle".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(still.is_ok(), "not unused for long enough yet");
    broker.advance(Duration::from_secs(60));
    let err = ch
        .queue_declare(
            "idle".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("gone");
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn dead_letter_cycle_without_rejection_is_dropped() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    // A queue whose expired messages are dead-lettered back into itself.
    let a = args(&[
        ("x-message-ttl", AMQPValue::LongInt(50)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("loop")),
    ]);
    ch.queue_declare("loop".into(), QueueDeclareOptions::default(), a)
        .await
        .expect("declare");
    publish(&ch, "loop", b"round", BasicProperties::default()).await;
    sync(&ch).await;
    // Two sweeps: the first expires it, a second would find it again had it been cycled back.
    broker.advance(Duration::from_millis(50));
    broker.advance(Duration::from_millis(50));
    let n = ch
        .queue_declare(
            "loop".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(n.message_count(), 0, "dropped instead of cycling forever");
}

#[tokio::test]
async fn bad_arguments_are_406() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    for a in [
        args(&[("x-overflow", s("sideways"))]),
        args(&[("x-dead-letter-routing-key", s("k"))]),
        args(&[("x-max-length", AMQPValue::LongInt(-1))]),
    ] {
        let ch = channel(&conn).await;
        let err = ch
            .queue_declare("bad".into(), QueueDeclareOptions::default(), a)
            .await
            .expect_err("406");
        assert_eq!(reply_code(&err), Some(406));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_dead_letters_survive_a_restart() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare("dur.dlq".into(), durable, FieldTable::default())
            .await
            .expect("dlq");
        let a = args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dur.dlq")),
        ]);
        ch.queue_declare("dur".into(), durable, a).await.expect("source");
        publish(&ch, "dur", b"keep me", BasicProperties::default().with_delivery_mode(2)).await;
        let m = ch
            .basic_get("dur".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("message");
        ch.basic_reject(m.delivery.delivery_tag, BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        depth(&ch, "dur.dlq").await;
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let d = get(&ch, "dur.dlq").await.expect("the dead letter survived");
    assert_eq!(&d.delivery.data[..], b"keep me");
    assert_eq!(text(&first_death(&d.delivery.properties).0, "queue"), "dur");
    assert!(get(&ch, "dur").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_count_survives_a_restart() {
    let mut broker = TestBroker::start();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        ch.queue_declare("lim.dlq".into(), durable, FieldTable::default())
            .await
            .expect("dlq");
        let a = args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("lim.dlq")),
            ("x-delivery-limit", AMQPValue::LongInt(2)),
        ]);
        ch.queue_declare("lim".into(), durable, a).await.expect("declare");
        publish(&ch, "lim", b"poison", BasicProperties::default().with_delivery_mode(2)).await;
        for _ in 0..2 {
            let m = ch
                .basic_get("lim".into(), BasicGetOptions::default())
                .await
                .expect("get")
                .expect("message");
            ch.basic_nack(
                m.delivery.delivery_tag,
                BasicNackOptions {
                    requeue: true,
                    multiple: false,
                },
            )
            .await
            .expect("nack");
        }
        depth(&ch, "lim").await;
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let m = ch
        .basic_get("lim".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("still there");
    assert!(m.delivery.redelivered);
    let count = m
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    assert_eq!(count, Some(AMQPValue::LongLongInt(2)), "the count came back from disk");
    ch.basic_nack(
        m.delivery.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .expect("nack");
    assert!(get(&ch, "lim").await.is_none(), "a third return is past the limit");
    assert_eq!(
        text(
            &first_death(&get(&ch, "lim.dlq").await.expect("dead letter").delivery.properties).0,
            "reason"
        ),
        "delivery_limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ttl_counts_from_the_original_enqueue_across_a_restart() {
    let mut broker = TestBroker::start();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        ch.queue_declare("ttl.dlq".into(), durable, FieldTable::default())
            .await
            .expect("dlq");
        let a = args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("ttl.dlq")),
            ("x-message-ttl", AMQPValue::LongInt(60_000)),
        ]);
        ch.queue_declare("ttl.d".into(), durable, a).await.expect("declare");
        publish(
            &ch,
            "ttl.d",
            b"short-lived",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
        depth(&ch, "ttl.d").await;
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();
    broker.advance(Duration::from_secs(60));
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    assert!(
        get(&ch, "ttl.d").await.is_none(),
        "expired, although the broker restarted in between"
    );
    let d = get(&ch, "ttl.dlq").await.expect("dead-lettered after the restart");
    assert_eq!(text(&first_death(&d.delivery.properties).0, "reason"), "expired");
}

/// An internal exchange refuses client publishes but takes dead letters, as in RabbitMQ.
#[tokio::test]
async fn an_internal_exchange_can_be_the_dead_letter_exchange() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.exchange_declare(
        "dlx.internal".into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare("parked".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("parked");
    ch.queue_bind(
        "parked".into(),
        "dlx.internal".into(),
        "dead".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let source_args = args(&[
        ("x-dead-letter-exchange", s("dlx.internal")),
        ("x-dead-letter-routing-key", s("dead")),
    ]);
    ch.queue_declare("work.i".into(), QueueDeclareOptions::default(), source_args)
        .await
        .expect("source");
    ch.basic_publish(
        "".into(),
        "work.i".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let m = ch
        .basic_get("work.i".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("message");
    ch.basic_reject(m.delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert_eq!(
        depth(&ch, "parked").await,
        1,
        "the dead letter went through the internal exchange"
    );
}
