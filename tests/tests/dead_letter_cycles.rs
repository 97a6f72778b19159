//! Dead-letter cycles and long dead-letter chains (issue 10, item 2). Before dead-lettering became a work list, the
//! first test recursed through `publish` and `route_dead_letters` until the broker's stack overflowed.

use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::TestBroker;

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// A queue that keeps nothing (`x-max-length` 0) and dead-letters everything to `next` through the default
/// exchange.
fn passthrough_to(next: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-max-length".into(), AMQPValue::LongInt(0));
    t.insert("x-dead-letter-exchange".into(), s(""));
    t.insert("x-dead-letter-routing-key".into(), s(next));
    t
}

/// Headers whose `x-death` says the message was once rejected from `queue`.
fn once_rejected_in(queue: &str) -> FieldTable {
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(1));
    death.insert("reason".into(), s("rejected"));
    death.insert("queue".into(), s(queue));
    death.insert("exchange".into(), s(""));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![s(queue)])),
    );
    let mut h = FieldTable::default();
    h.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    h
}

#[tokio::test]
async fn an_automatic_cycle_after_an_old_rejection_is_dropped_not_a_stack_overflow() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    for (q, next) in [("ping", "pong"), ("pong", "ping")] {
        ch.queue_declare(q.into(), QueueDeclareOptions::default(), passthrough_to(next))
            .await
            .expect("declare");
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let props = BasicProperties::default().with_headers(once_rejected_in("elsewhere"));
    let confirm = ch
        .basic_publish("".into(), "ping".into(), BasicPublishOptions::default(), b"loop", props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    // ping -> pong -> ping is a cycle with no rejection in it: RabbitMQ drops the message there.
    assert_eq!(depth(&ch, "ping").await, 0);
    assert_eq!(depth(&ch, "pong").await, 0);
    let stats = broker
        .broker
        .as_ref()
        .and_then(|b| b.vhost("/"))
        .and_then(|v| v.queue("pong"));
    assert!(stats.is_some(), "the broker is alive and still has its queues");
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn a_chain_longer_than_the_hop_bound_stops_there() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    // hop0 -> hop1 -> ... -> hop99 -> end: no cycle, but 100 dead-letterings of one message in one go.
    let hops = 100;
    ch.queue_declare("end".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("end");
    for i in (0..hops).rev() {
        let next = if i + 1 == hops {
            "end".to_string()
        } else {
            format!("hop{}", i + 1)
        };
        ch.queue_declare(
            format!("hop{i}").as_str().into(),
            QueueDeclareOptions::default(),
            passthrough_to(&next),
        )
        .await
        .expect("declare");
    }
    ch.basic_publish(
        "".into(),
        "hop0".into(),
        BasicPublishOptions::default(),
        b"far",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(depth(&ch, "end").await, 0, "dropped at the hop bound");
    // A chain within the bound delivers: start at hop60, 40 hops from the end.
    ch.basic_publish(
        "".into(),
        "hop60".into(),
        BasicPublishOptions::default(),
        b"near",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(depth(&ch, "end").await, 1);
    conn.close(200, "bye".into()).await.expect("close");
}
