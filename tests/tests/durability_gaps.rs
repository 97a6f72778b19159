//! Durability gaps found by reading the code (issue 10, item 8): a held delayed message confirmed before its record
//! was synced, and `tx.commit` syncing on the connection's async worker.

use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use lapin::options::*;
use lapin::types::FieldTable as LapinTable;
use lapin::{BasicProperties, ExchangeKind};
use warren_broker::message::Message;
use warren_broker::store::DiskBudget;
use warren_tests::client::*;
use warren_tests::TestBroker;

#[tokio::test]
async fn a_held_persistent_delayed_message_waits_for_a_sync_round() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut a = LapinTable::default();
    a.insert(
        "x-delayed-type".into(),
        lapin::types::AMQPValue::LongString("direct".into()),
    );
    ch.exchange_declare(
        "later".into(),
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        a,
    )
    .await
    .expect("exchange");
    let vhost = broker.broker.as_ref().and_then(|b| b.vhost("/")).expect("vhost /");
    let mut headers = FieldTable::default();
    headers.insert("x-delay".into(), AMQPValue::LongLongInt(60_000));
    let props = AMQPProperties::default().with_headers(headers).with_delivery_mode(2);
    let message = Message::with_properties("later".into(), "k".into(), props, Bytes::from_static(b"held"));
    let mut queues = Vec::new();
    let routed = vhost
        .route(
            "later",
            "k",
            message.properties().headers().as_ref(),
            Some(&message),
            &mut queues,
        )
        .expect("route");
    assert!(routed.duplicate, "held by the exchange");
    // Before: no ticket, so the publisher confirm went out before the held record was synced.
    assert!(
        routed.ticket > 0,
        "the confirm waits for the group commit that covers the record"
    );
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tx_commit_sync_does_not_stall_other_connections() {
    let budget = DiskBudget::default();
    let broker = TestBroker::start_full(|_| {}, budget.clone());
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "tx".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        LapinTable::default(),
    )
    .await
    .expect("declare");
    // Each commit's sync now takes 3 s: with the broker's two workers blocked by two commits, nothing else would
    // run until they finish.
    budget.set_sync_delay(Duration::from_secs(3));
    let mut commits = Vec::new();
    for _ in 0..2 {
        let url = broker.url();
        commits.push(tokio::spawn(async move {
            let conn = connect(&url).await;
            let ch = channel(&conn).await;
            ch.tx_select().await.expect("tx.select");
            ch.basic_publish(
                "".into(),
                "tx".into(),
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
            ch.tx_commit().await.expect("tx.commit");
            std::time::Instant::now()
        }));
    }
    // Wait until both commits sit in their sync. The bound only turns a hang into a failure: before the fix the
    // first commit's sync held a worker and the second often never got to its own while the first lasted.
    let waited = std::time::Instant::now();
    while budget.delayed_syncs() < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the two commits never synced at the same time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = connect(&broker.url()).await;
    let och = channel(&other).await;
    let answered = std::time::Instant::now();
    let _ = och;
    let mut committed = Vec::new();
    for c in commits {
        committed.push(c.await.expect("commit task"));
    }
    // The order, not a duration: a new connection was served while both commits were still syncing.
    assert!(
        committed.iter().all(|t| answered < *t),
        "a new connection had to wait for the commits' syncs"
    );
    assert_eq!(depth(&ch, "tx").await, 2);
    conn.close(200, "bye".into()).await.expect("close");
}
