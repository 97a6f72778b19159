//! Declaration and access rules: exclusive queues, server-named queues, passive declares, equivalence,
//! reserved names, auto-delete.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::client::*;
use warren_tests::TestBroker;

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let broker = TestBroker::start();
    let owner = connect(&broker.url()).await;
    let ch = channel(&owner).await;
    let q = unique("excl");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let other = connect(&broker.url()).await;
    for op in ["declare", "passive", "consume", "get", "purge", "delete", "bind"] {
        let ch2 = channel(&other).await;
        let err = match op {
            "declare" => ch2
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .err(),
            "passive" => ch2
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .err(),
            "consume" => ch2
                .basic_consume(
                    q.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .err(),
            "get" => ch2.basic_get(q.as_str().into(), BasicGetOptions::default()).await.err(),
            "purge" => ch2
                .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
                .await
                .err(),
            "delete" => ch2
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .err(),
            _ => ch2
                .queue_bind(
                    q.as_str().into(),
                    "amq.direct".into(),
                    "k".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .err(),
        };
        assert_eq!(
            err.as_ref().and_then(reply_code),
            Some(405),
            "{op} from another connection"
        );
    }
    // The owner still can, and the queue goes when its connection does.
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("owner");
    owner.close(200, "bye".into()).await.expect("close");
    let ch3 = channel(&other).await;
    let err = ch3
        .queue_declare(
            q.as_str().into(),
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
async fn server_named_queues() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let a = ch
        .queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("a");
    let b = ch
        .queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("b");
    assert!(a.name().as_str().starts_with("amq.gen-"), "{}", a.name());
    assert_ne!(a.name(), b.name());
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let err = ch
        .queue_declare(
            "missing".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("404");
    assert_eq!(reply_code(&err), Some(404));
    let ch = channel(&conn).await;
    let err = ch
        .exchange_declare(
            "missing".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("404");
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn inequivalent_redeclare_is_406() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("eq");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let err = ch
        .queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect_err("durable differs");
    assert_eq!(reply_code(&err), Some(406));

    let ch = channel(&conn).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(10));
    let err = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect_err("arguments differ");
    assert_eq!(reply_code(&err), Some(406));

    let ch = channel(&conn).await;
    let x = unique("x");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    let err = ch
        .exchange_declare(
            x.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("type differs");
    assert_eq!(reply_code(&err), Some(406));
}

#[tokio::test]
async fn reserved_names_are_403() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let err = ch
        .exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("403");
    assert_eq!(reply_code(&err), Some(403));
    let ch = channel(&conn).await;
    let err = ch
        .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default())
        .await
        .expect_err("403");
    assert_eq!(reply_code(&err), Some(403));
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("auto");
    ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let c = ch
        .basic_consume(
            q.as_str().into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    ch.basic_cancel(c.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    let err = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("deleted");
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("del");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    let mut c = ch
        .basic_consume(
            q.as_str().into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let other = channel(&conn).await;
    assert_eq!(
        other
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete"),
        0
    );
    // lapin ends the consumer stream when the broker cancels it.
    let ended = tokio::time::timeout(Duration::from_secs(2), futures_lite::StreamExt::next(&mut c))
        .await
        .expect("stream ends");
    assert!(ended.is_none());
}

#[tokio::test]
async fn exchange_to_exchange_and_alternate_exchange() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let (front, back, ae) = (unique("front"), unique("back"), unique("ae"));
    ch.exchange_declare(
        ae.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("ae");
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), AMQPValue::LongString(ae.as_str().into()));
    ch.exchange_declare(
        front.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .expect("front");
    ch.exchange_declare(
        back.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("back");
    ch.exchange_bind(
        back.as_str().into(),
        front.as_str().into(),
        "k".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("e2e bind");
    let (qb, qa) = (unique("qb"), unique("qa"));
    for (q, x) in [(&qb, &back), (&qa, &ae)] {
        ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue");
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
    ch.basic_publish(
        front.as_str().into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"routed",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    ch.basic_publish(
        front.as_str().into(),
        "other".into(),
        BasicPublishOptions::default(),
        b"unroutable",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let got_b = ch
        .basic_get(qb.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("via e2e");
    assert_eq!(&got_b.delivery.data[..], b"routed");
    let got_a = ch
        .basic_get(qa.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("via AE");
    assert_eq!(&got_a.delivery.data[..], b"unroutable");
}
