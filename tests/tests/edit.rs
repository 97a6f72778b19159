//! Edit and redrive (issue 15, item 2): a dead letter is fixed through the admin API and sent back to the queue it
//! died in; the copy carries the edit's headers and keeps x-death with its AMQP types; the original leaves the DLQ
//! only once the copy is stored, and stays when the copy cannot go anywhere.

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_dead_letter_goes_back_to_its_source_and_leaves_the_dlq() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("orders.dlq".into(), durable, FieldTable::default())
        .await
        .expect("dlq");
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString("orders.dlq".into()),
    );
    ch.queue_declare("orders".into(), durable, args).await.expect("orders");
    ch.basic_publish(
        "".into(),
        "orders".into(),
        BasicPublishOptions::default(),
        br#"{"order": 1042, "qty": "two"}"#,
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id("m-1042".into()),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let got = ch
        .basic_get("orders".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("the order");
    ch.basic_reject(got.delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    sync(&ch).await;
    let (_, peeked) = request(admin, "POST", "/api/queues/%2F/orders.dlq/peek", "guest:guest", "{}");
    let id = peeked[0]["id"].as_u64().expect("an id");
    let mut properties = peeked[0]["properties"].clone();
    properties["headers"]["note"] = "fixed qty".into();

    // Nowhere to go: the original stays.
    let body = serde_json::json!({"body": "{}", "to": "queue", "queue": "no-such-queue"}).to_string();
    let (status, answer) = request(
        admin,
        "POST",
        &format!("/api/queues/%2F/orders.dlq/messages/{id}/edit"),
        "guest:guest",
        &body,
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        depth(&ch, "orders.dlq").await,
        1,
        "the original stays when the copy cannot go"
    );
    let (status, answer) = request(
        admin,
        "POST",
        "/api/queues/%2F/orders.dlq/messages/99999/edit",
        "guest:guest",
        r#"{"body": "x", "to": "source"}"#,
    );
    assert_eq!(status, 404, "{answer}");

    let body = serde_json::json!({
        "body": r#"{"order": 1042, "qty": 2}"#,
        "properties": properties,
        "to": "source",
    })
    .to_string();
    let (status, answer) = request(
        admin,
        "POST",
        &format!("/api/queues/%2F/orders.dlq/messages/{id}/edit"),
        "guest:guest",
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["routed_to"], serde_json::json!(["orders"]), "{answer}");
    assert_eq!(depth(&ch, "orders.dlq").await, 0, "the original left the DLQ");
    let fixed = ch
        .basic_get("orders".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the fixed copy is back on orders");
    assert_eq!(&fixed.delivery.data[..], br#"{"order": 1042, "qty": 2}"#);
    let props = &fixed.delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|m| m.to_string()),
        Some("m-1042".into())
    );
    let headers = props.headers().clone().unwrap_or_default();
    let h = headers.inner();
    assert_eq!(h.get("x-edited-from"), Some(&AMQPValue::LongLongInt(id as i64)));
    assert_eq!(h.get("x-edited-by"), Some(&AMQPValue::LongString("guest".into())));
    assert_eq!(h.get("note"), Some(&AMQPValue::LongString("fixed qty".into())));
    let Some(AMQPValue::FieldArray(deaths)) = h.get("x-death") else {
        panic!("x-death kept: {headers:?}")
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("an x-death table")
    };
    assert!(
        matches!(death.inner().get("time"), Some(AMQPValue::Timestamp(_))),
        "x-death's time is still a timestamp: {death:?}"
    );
    let (_, audit) = request(admin, "GET", "/api/audit?page_size=5", "guest:guest", "");
    assert!(
        audit
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["action"] == "edit" && e["object"] == "orders.dlq")),
        "{audit}"
    );
}
