//! The publisher side: mandatory returns, publisher confirms, transactions.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use lapin::Confirmation;
use warren_tests::client::*;
use warren_tests::TestBroker;

#[tokio::test]
async fn mandatory_unroutable_is_returned_before_its_confirm() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirm = ch
        .basic_publish(
            "".into(),
            "no-such-queue".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    match confirm {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(&ret.delivery.data[..], b"lost");
        }
        other => panic!("expected an ack carrying the returned message, got {other:?}"),
    }
    // Not mandatory: silently dropped, still acked.
    let confirm = ch
        .basic_publish(
            "".into(),
            "no-such-queue".into(),
            BasicPublishOptions::default(),
            b"dropped",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(matches!(confirm, Confirmation::Ack(None)));
}

#[tokio::test]
async fn confirms_ack_every_publish() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("confirms");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(matches!(p.await.expect("confirm"), Confirmation::Ack(None)));
    }
    let q = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(q.message_count(), 500);
}

#[tokio::test]
async fn tx_commit_delivers_and_rollback_discards() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let q = unique("tx");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.tx_select().await.expect("tx.select");
    let publish = |body: &'static [u8]| {
        let ch = ch.clone();
        let q = q.clone();
        async move {
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        }
    };
    publish(b"rolled-back").await;
    ch.tx_rollback().await.expect("rollback");
    publish(b"committed-1").await;
    publish(b"committed-2").await;
    let before = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(before.message_count(), 0, "nothing is enqueued before commit");
    ch.tx_commit().await.expect("commit");

    // Acks are transactional too: a rolled-back ack leaves the message unacked.
    let mut c = ch
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let d1 = next(&mut c, Duration::from_secs(2)).await.expect("first");
    let d2 = next(&mut c, Duration::from_secs(2)).await.expect("second");
    assert_eq!((&d1.data[..], &d2.data[..]), (&b"committed-1"[..], &b"committed-2"[..]));
    ch.basic_ack(d1.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.tx_rollback().await.expect("rollback the ack");
    ch.basic_ack(d2.delivery_tag, BasicAckOptions { multiple: true })
        .await
        .expect("ack both");
    ch.tx_commit().await.expect("commit");
    ch.basic_cancel(c.tag(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    let after = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(after.message_count(), 0);
    drop(c.next());
}
