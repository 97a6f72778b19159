//! Consumer priorities, and transactions that commit persistent messages durably.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::TestBroker;

#[tokio::test]
async fn higher_priority_consumer_gets_messages_while_it_has_room() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare("prio".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    let (low_ch, high_ch) = (channel(&conn).await, channel(&conn).await);
    low_ch.basic_qos(10, BasicQosOptions::default()).await.expect("qos");
    high_ch.basic_qos(3, BasicQosOptions::default()).await.expect("qos");
    let mut a = FieldTable::default();
    a.insert("x-priority".into(), AMQPValue::LongInt(10));
    let mut low = low_ch
        .basic_consume(
            "prio".into(),
            "low".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("low");
    let mut high = high_ch
        .basic_consume("prio".into(), "high".into(), BasicConsumeOptions::default(), a)
        .await
        .expect("high");
    for i in 0..5u8 {
        ch.basic_publish(
            "".into(),
            "prio".into(),
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let got_high = drain(&high_ch, &mut high, Duration::from_millis(400), false).await;
    let got_low = drain(&low_ch, &mut low, Duration::from_millis(400), false).await;
    assert_eq!(
        got_high.iter().map(|d| d.data[0]).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "the high-priority consumer fills its prefetch first"
    );
    assert_eq!(
        got_low.iter().map(|d| d.data[0]).collect::<Vec<_>>(),
        vec![3, 4],
        "the rest overflow to the lower priority"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_persistent_publishes_and_acks_survive_a_restart() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for q in ["in", "out"] {
            ch.queue_declare(q.into(), durable, FieldTable::default())
                .await
                .expect("declare");
        }
        let persistent = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(
            "".into(),
            "in".into(),
            BasicPublishOptions::default(),
            b"job",
            persistent.clone(),
        )
        .await
        .expect("publish");
        // Consume the input and publish the result in one transaction.
        ch.tx_select().await.expect("tx");
        let m = ch
            .basic_get("in".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("job");
        ch.basic_publish(
            "".into(),
            "out".into(),
            BasicPublishOptions::default(),
            b"result",
            persistent,
        )
        .await
        .expect("publish");
        ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
        ch.tx_commit().await.expect("commit");
        conn.close(200, "bye".into()).await.ok();
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    assert!(
        ch.basic_get("in".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .is_none(),
        "the ack was committed"
    );
    let r = ch
        .basic_get("out".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the result was committed");
    assert_eq!(&r.delivery.data[..], b"result");
}
