//! The consumer side: nack and reject with requeue, prefetch limits, basic.get.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::TestBroker;

async fn queue_with(ch: &lapin::Channel, n: u8) -> String {
    let q = unique("q");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    q
}

#[tokio::test]
async fn nack_and_reject_with_requeue_redeliver() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = queue_with(&ch, 2).await;
    let mut c = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = next(&mut c, Duration::from_secs(2)).await.expect("first");
    let second = next(&mut c, Duration::from_secs(2)).await.expect("second");
    assert!(!first.redelivered && !second.redelivered);
    ch.basic_nack(
        first.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    )
    .await
    .expect("nack");
    ch.basic_reject(second.delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let again: Vec<_> = drain(&ch, &mut c, Duration::from_millis(400), true).await;
    assert_eq!(
        again.iter().map(|d| (d.data[0], d.redelivered)).collect::<Vec<_>>(),
        vec![(0, true), (1, true)]
    );

    // Without requeue the message is gone.
    ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let d = next(&mut c, Duration::from_secs(2)).await.expect("delivery");
    ch.basic_reject(d.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert!(next(&mut c, Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn prefetch_caps_unacked_deliveries() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = queue_with(&ch, 50).await;
    let ch2 = channel(&conn).await;
    ch2.basic_qos(3, BasicQosOptions::default()).await.expect("qos");
    let mut c = ch2
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    // Without acks, exactly 3 arrive.
    let held = drain(&ch2, &mut c, Duration::from_millis(400), false).await;
    assert_eq!(held.len(), 3);
    // Acking one lets exactly one more in.
    ch2.basic_ack(held[0].delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    let more = drain(&ch2, &mut c, Duration::from_millis(400), false).await;
    assert_eq!(more.len(), 1);
    // Ack everything as it comes, while counting what is outstanding.
    ch2.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut seen = 4;
    while let Some(d) = next(&mut c, Duration::from_millis(400)).await {
        let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(now <= 3, "never more than the prefetch outstanding");
        ch2.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
        outstanding.fetch_sub(1, Ordering::SeqCst);
        seen += 1;
    }
    assert_eq!(seen, 50);
}

#[tokio::test]
async fn basic_get_and_get_empty() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = queue_with(&ch, 2).await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(m.delivery.data, vec![0]);
    assert_eq!(m.message_count, 1);
    ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(m.delivery.data, vec![1]);
    assert!(ch
        .basic_get(q.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get")
        .is_none());
}

/// An ack of a tag that was never delivered closes the channel with 406, and the connection survives. A raw client
/// sends it: with lapin, the next request could meet lapin's own "channel is closing" error instead of the broker's
/// reply code, depending on which arrives first (CI saw exactly that).
#[test]
fn ack_of_unknown_tag_is_406() {
    use amq_protocol::protocol::{basic, channel, queue, AMQPClass};
    use warren_tests::raw::{Closed, RawClient};
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 99,
            multiple: false,
        })),
    );
    match c.expect_close() {
        Closed::Channel(1, 406, text) => assert!(text.starts_with("PRECONDITION_FAILED"), "{text}"),
        other => panic!("expected channel.close 406, got {other:?}"),
    }
    c.send_method(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
    // The connection survives a channel error.
    c.send_method(2, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    match c.recv_method() {
        Some((2, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) => {}
        other => panic!("expected channel.open-ok, got {other:?}"),
    }
    c.send_method(
        2,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "x".into(),
            ..Default::default()
        })),
    );
    match c.recv_method() {
        Some((2, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

/// A consumer with no prefetch limit whose client stops reading must not pull its whole queue into the broker's
/// memory (a flood of publishers took the broker to 4.2 GB this way): its connection's outbox holds a bounded number
/// of deliveries, the rest stays in the queue (ready, paged like any backlog), and everything arrives, in order,
/// once the client reads again.
#[test]
fn a_consumer_that_stops_reading_leaves_its_backlog_in_the_queue() {
    use amq_protocol::protocol::{basic, AMQPClass};
    use warren_tests::http::request;
    use warren_tests::raw::RawClient;

    const N: u64 = 40_000;
    let body = vec![b'x'; 1024];
    let broker = TestBroker::start();
    let mut reader = RawClient::handshake(broker.addr, 0);
    reader.send_method(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "slow-reader".into(),
                ..Default::default()
            },
        )),
    );
    assert!(matches!(reader.recv_method(), Some((1, AMQPClass::Queue(_)))));
    reader.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "slow-reader".into(),
            consumer_tag: "slow".into(),
            ..Default::default()
        })),
    );
    assert!(matches!(
        reader.recv_method(),
        Some((1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))))
    ));
    // From here the reader reads nothing until every message is published.
    let mut publisher = RawClient::handshake(broker.addr, 0);
    for i in 0..N {
        let mut b = body.clone();
        b[..8].copy_from_slice(&i.to_be_bytes());
        publisher.publish("slow-reader", &b);
    }
    let queue = || {
        request(
            broker.admin_addr,
            "GET",
            "/api/queues/%2F/slow-reader",
            "guest:guest",
            "",
        )
        .1
    };
    let started = std::time::Instant::now();
    while queue()["counters"]["published"] != N {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all published: {}",
            queue()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let q = queue();
    // What may have left the queue: the outbox's bound, the connection's 1 MiB write buffer, and what the kernel's
    // socket buffers took (a few MB on loopback).
    let ready = q["messages_ready"].as_u64().expect("ready");
    assert!(
        ready >= N / 2,
        "the backlog stays in the queue, not in the connection: {q}"
    );

    // The reader reads again: everything arrives, in order.
    let mut next = 0u64;
    let mut last_tag = 0;
    while next < N {
        match reader.recv() {
            Some(amq_protocol::frame::AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Deliver(d)))) => {
                last_tag = d.delivery_tag;
            }
            Some(amq_protocol::frame::AMQPFrame::Body(1, b)) => {
                let i = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                assert_eq!(i, next, "in order, none lost");
                next += 1;
            }
            Some(_) => {}
            None => panic!("the reader's connection closed after {next} messages"),
        }
    }
    reader.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: last_tag,
            multiple: true,
        })),
    );
    let started = std::time::Instant::now();
    while queue()["messages"] != 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "left over: {}", queue());
        std::thread::sleep(Duration::from_millis(20));
    }
}
