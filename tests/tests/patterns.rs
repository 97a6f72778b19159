//! Delivery patterns through a real broker, driven by lapin: work queues, pub-sub, topic and headers routing,
//! request-reply (classic and direct reply-to).

use std::collections::HashSet;
use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, ExchangeKind};
use warren_tests::client::*;
use warren_tests::TestBroker;

const IDLE: Duration = Duration::from_millis(400);

async fn publish(ch: &lapin::Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props)
        .await
        .expect("publish");
}

#[tokio::test]
async fn work_queue_competing_consumers_get_each_message_once() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("work");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");

    let (ch_a, ch_b) = (channel(&conn).await, channel(&conn).await);
    ch_a.basic_qos(10, BasicQosOptions::default()).await.expect("qos");
    ch_b.basic_qos(10, BasicQosOptions::default()).await.expect("qos");
    let mut a = ch_a
        .basic_consume(
            q.as_str().into(),
            "a".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume a");
    let mut b = ch_b
        .basic_consume(
            q.as_str().into(),
            "b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume b");
    for i in 0..200u32 {
        publish(&ch, "", &q, &i.to_be_bytes(), BasicProperties::default()).await;
    }
    let (got_a, got_b) = tokio::join!(drain(&ch_a, &mut a, IDLE, true), drain(&ch_b, &mut b, IDLE, true));
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both consumers get work");
    let all: Vec<u32> = got_a
        .iter()
        .chain(&got_b)
        .map(|d| u32::from_be_bytes(d.data[..4].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(all.len(), 200, "every message delivered exactly once");
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 200);
}

#[tokio::test]
async fn unacked_messages_of_a_closed_consumer_go_to_the_other() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("work");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    for i in 0..5u8 {
        publish(&ch, "", &q, &[i], BasicProperties::default()).await;
    }
    // The first consumer takes everything and closes without acking.
    let conn_a = connect(&broker.url()).await;
    let ch_a = channel(&conn_a).await;
    let mut a = ch_a
        .basic_consume(
            q.as_str().into(),
            "a".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let taken = drain(&ch_a, &mut a, IDLE, false).await;
    assert_eq!(taken.len(), 5);
    assert!(taken.iter().all(|d| !d.redelivered));
    conn_a.close(200, "bye".into()).await.expect("close");

    let ch_b = channel(&conn).await;
    let mut b = ch_b
        .basic_consume(
            q.as_str().into(),
            "b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let again = drain(&ch_b, &mut b, IDLE, true).await;
    assert_eq!(
        again.iter().map(|d| d.data[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4],
        "in the original order"
    );
    assert!(again.iter().all(|d| d.redelivered), "flagged redelivered");
}

#[tokio::test]
async fn fanout_reaches_every_bound_queue() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let x = unique("fan");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        ch.queue_bind(
            q.name().clone(),
            x.as_str().into(),
            "ignored".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        consumers.push(
            ch.basic_consume(
                q.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume"),
        );
    }
    publish(&ch, &x, "any", b"hello", BasicProperties::default()).await;
    for c in &mut consumers {
        let d = next(c, Duration::from_secs(2))
            .await
            .expect("each queue gets the message");
        assert_eq!(&d.data[..], b"hello");
    }
}

#[tokio::test]
async fn topic_routing_with_star_and_hash() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let x = unique("topic");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    let mut queues = Vec::new();
    for pattern in ["logs.*.error", "logs.#", "*.web.*"] {
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        ch.queue_bind(
            q.name().clone(),
            x.as_str().into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        queues.push(q.name().clone());
    }
    for key in [
        "logs.web.error",
        "logs.db.info",
        "logs",
        "metrics.web.cpu",
        "logs.web.error.extra",
    ] {
        publish(&ch, &x, key, key.as_bytes(), BasicProperties::default()).await;
    }
    let mut got = Vec::new();
    for q in &queues {
        let mut c = ch
            .basic_consume(
                q.clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let keys: Vec<String> = drain(&ch, &mut c, IDLE, false)
            .await
            .iter()
            .map(|d| String::from_utf8_lossy(&d.data).into_owned())
            .collect();
        got.push(keys);
    }
    assert_eq!(got[0], vec!["logs.web.error"]);
    assert_eq!(
        got[1],
        vec!["logs.web.error", "logs.db.info", "logs", "logs.web.error.extra"]
    );
    assert_eq!(got[2], vec!["logs.web.error", "metrics.web.cpu"]);
}

#[tokio::test]
async fn headers_routing_all_and_any() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let x = unique("hdr");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Headers,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    let bind_args = |mode: &str| {
        let mut t = FieldTable::default();
        t.insert("x-match".into(), AMQPValue::LongString(mode.into()));
        t.insert("format".into(), AMQPValue::LongString("pdf".into()));
        t.insert("type".into(), AMQPValue::LongString("report".into()));
        t
    };
    let mut names = Vec::new();
    for mode in ["all", "any"] {
        let q = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        ch.queue_bind(
            q.name().clone(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            bind_args(mode),
        )
        .await
        .expect("bind");
        names.push(q.name().clone());
    }
    let headers = |pairs: &[(&str, &str)]| {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), AMQPValue::LongString((*v).into()));
        }
        BasicProperties::default().with_headers(t)
    };
    publish(&ch, &x, "", b"both", headers(&[("format", "pdf"), ("type", "report")])).await;
    publish(&ch, &x, "", b"one", headers(&[("format", "pdf"), ("type", "log")])).await;
    publish(&ch, &x, "", b"none", headers(&[("format", "zip")])).await;
    let mut got = Vec::new();
    for q in &names {
        let mut c = ch
            .basic_consume(
                q.clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        got.push(
            drain(&ch, &mut c, IDLE, false)
                .await
                .iter()
                .map(|d| d.data.clone())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(got[0], vec![b"both".to_vec()]);
    assert_eq!(got[1], vec![b"both".to_vec(), b"one".to_vec()]);
}

/// A server that answers each request with its body upper-cased, to `reply_to`, with the same correlation id.
async fn run_server(url: String, queue: String) {
    let conn = connect(&url).await;
    let ch = channel(&conn).await;
    let mut c = ch
        .basic_consume(
            queue.as_str().into(),
            "server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    while let Some(d) = next(&mut c, Duration::from_secs(5)).await {
        let reply_to = d.properties.reply_to().clone().expect("reply_to");
        let corr = d.properties.correlation_id().clone().expect("correlation_id");
        let body = String::from_utf8_lossy(&d.data).to_uppercase();
        ch.basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_correlation_id(corr),
        )
        .await
        .expect("reply");
        ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
    }
}

#[tokio::test]
async fn request_reply_with_reply_queue_and_correlation_id() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let rpc = unique("rpc");
    ch.queue_declare(
        rpc.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let server = tokio::spawn(run_server(broker.url(), rpc.clone()));
    let reply = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply queue");
    let mut replies = ch
        .basic_consume(
            reply.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for (i, word) in ["ping", "pong"].iter().enumerate() {
        let corr: ShortString = format!("req-{i}").into();
        let props = BasicProperties::default()
            .with_reply_to(reply.name().clone())
            .with_correlation_id(corr.clone());
        publish(&ch, "", &rpc, word.as_bytes(), props).await;
        let d = next(&mut replies, Duration::from_secs(3)).await.expect("reply");
        assert_eq!(d.properties.correlation_id().as_ref(), Some(&corr));
        assert_eq!(String::from_utf8_lossy(&d.data), word.to_uppercase());
    }
    server.abort();
}

#[tokio::test]
async fn request_reply_with_direct_reply_to() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let rpc = unique("rpc");
    ch.queue_declare(
        rpc.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let server = tokio::spawn(run_server(broker.url(), rpc.clone()));
    let mut replies = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume the pseudo-queue");
    let props = BasicProperties::default()
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_correlation_id("c1".into());
    publish(&ch, "", &rpc, b"direct", props).await;
    let d = next(&mut replies, Duration::from_secs(3)).await.expect("direct reply");
    assert_eq!(&d.data[..], b"DIRECT");
    assert_eq!(d.properties.correlation_id().as_ref().map(|c| c.as_str()), Some("c1"));
    server.abort();
}

#[tokio::test]
async fn direct_reply_to_without_consumer_is_406() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    // In confirm mode the pending confirm carries the channel.close: a later request might instead meet lapin's own
    // "channel is closing" error, without the reply code.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let props = BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into());
    let err = ch
        .basic_publish("".into(), "nowhere".into(), BasicPublishOptions::default(), b"x", props)
        .await
        .expect("publish is async")
        .await
        .expect_err("channel closed");
    assert_eq!(reply_code(&err), Some(406), "{err:?}");
}
