//! Durable definitions on a full disk: a declare, delete, bind, unbind or policy change that cannot be saved is
//! refused (AMQP 541, or an HTTP 500 JSON error) and not applied, so what the broker serves and what a restart
//! brings back are the same. The full disk is a `DiskBudget` run down to zero and raised again.

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, ExchangeKind};
use warren_broker::store::DiskBudget;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

const PLENTY: u64 = 1 << 40;
const AUTH: &str = "guest:guest";

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn passive(ch: &lapin::Channel, q: &str) -> Result<u32, lapin::Error> {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|q| q.message_count())
}

/// Names of a vhost's queues, through the admin API.
fn queue_names(broker: &TestBroker) -> Vec<String> {
    let (_, list) = request(broker.admin_addr, "GET", "/api/queues/%2F", AUTH, "");
    let mut names: Vec<String> = list
        .as_array()
        .map(|a| a.iter().filter_map(|q| q["name"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// (source, destination, routing key) of every binding in `/` whose source is not the default exchange.
fn bindings(broker: &TestBroker) -> Vec<(String, String, String)> {
    let (_, list) = request(broker.admin_addr, "GET", "/api/bindings/%2F", AUTH, "");
    let mut v: Vec<(String, String, String)> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|b| b["source"] != "")
                .map(|b| {
                    let s = |k: &str| b[k].as_str().unwrap_or_default().to_string();
                    (s("source"), s("destination"), s("routing_key"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn exchange_names(broker: &TestBroker) -> Vec<String> {
    let (_, list) = request(broker.admin_addr, "GET", "/api/exchanges/%2F", AUTH, "");
    let mut names: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .filter(|n| !n.is_empty() && !n.starts_with("amq."))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The issue's case: the declare used to be answered declare-ok although nothing was saved; publishes to the
/// queue were then confirmed, and a restart lost the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_queue_declared_on_a_full_disk_is_refused_and_not_created() {
    let budget = DiskBudget::limited(PLENTY);
    let mut broker = TestBroker::start_full(|_| {}, budget.clone());
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    budget.set_remaining(0);
    let err = ch
        .queue_declare("orders".into(), durable(), FieldTable::default())
        .await
        .expect_err("a declare that cannot be saved is refused");
    assert_eq!(reply_code(&err), Some(541), "{err}");
    budget.set_remaining(PLENTY);

    // Nothing was half-applied: there is no queue, so a mandatory persistent publish comes back unroutable
    // instead of being confirmed into a queue that a restart would lose.
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let err = passive(&ch, "orders").await.expect_err("no queue");
    assert_eq!(reply_code(&err), Some(404));
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = ch
        .basic_publish(
            "".into(),
            "orders".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(matches!(confirm, Confirmation::Ack(Some(_))), "returned: {confirm:?}");

    // With space back, the same declare works and survives a restart with its messages.
    ch.queue_declare("orders".into(), durable(), FieldTable::default())
        .await
        .expect("declare with space");
    ch.basic_publish(
        "".into(),
        "orders".into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    conn.close(200, "bye".into()).await.ok();
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    assert_eq!(passive(&ch, "orders").await.expect("survives"), 1);
}

/// Every other kind of durable change on a full disk: refused with 541, memory unchanged, and a restart shows the
/// same topology as before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_unbinds_and_deletes_on_a_full_disk_change_nothing() {
    let budget = DiskBudget::limited(PLENTY);
    let mut broker = TestBroker::start_full(|_| {}, budget.clone());
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        for q in ["a", "b"] {
            ch.queue_declare(q.into(), durable(), FieldTable::default())
                .await
                .expect("queue");
        }
        ch.exchange_declare("x".into(), ExchangeKind::Direct, durable_x, FieldTable::default())
            .await
            .expect("exchange");
        ch.queue_bind(
            "a".into(),
            "x".into(),
            "ka".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        conn.close(200, "bye".into()).await.ok();
    }
    let queues = vec!["a".to_string(), "b".to_string()];
    let bound = vec![("x".to_string(), "a".to_string(), "ka".to_string())];
    assert_eq!(
        (queue_names(&broker), bindings(&broker)),
        (queues.clone(), bound.clone())
    );

    budget.set_remaining(0);
    let conn = connect(&broker.url()).await;
    // Each failure closes the connection (541 is a connection error), so each step gets a fresh one.
    macro_rules! refused {
        ($what:literal, |$ch:ident| $call:expr) => {{
            let conn = connect(&broker.url()).await;
            let $ch = channel(&conn).await;
            let err = $call.await.expect_err($what);
            assert_eq!(reply_code(&err), Some(541), "{}: {err}", $what);
        }};
    }
    drop(conn);
    refused!("bind", |ch| ch.queue_bind(
        "b".into(),
        "x".into(),
        "kb".into(),
        Default::default(),
        FieldTable::default()
    ));
    refused!("unbind", |ch| ch.queue_unbind(
        "a".into(),
        "x".into(),
        "ka".into(),
        FieldTable::default()
    ));
    refused!("queue delete", |ch| ch.queue_delete("b".into(), Default::default()));
    refused!("exchange delete", |ch| ch
        .exchange_delete("x".into(), Default::default()));
    refused!("exchange declare", |ch| ch.exchange_declare(
        "y".into(),
        ExchangeKind::Fanout,
        durable_x,
        FieldTable::default()
    ));
    budget.set_remaining(PLENTY);

    assert_eq!(
        (queue_names(&broker), bindings(&broker)),
        (queues.clone(), bound.clone())
    );
    assert_eq!(exchange_names(&broker), ["x"]);
    broker.restart();
    assert_eq!((queue_names(&broker), bindings(&broker)), (queues, bound));
    assert_eq!(exchange_names(&broker), ["x"]);
}

/// The admin API: a queue or policy that cannot be saved is a 500 JSON error and is not applied.
#[test]
fn admin_changes_on_a_full_disk_are_errors_and_not_applied() {
    let budget = DiskBudget::limited(PLENTY);
    let mut broker = TestBroker::start_full(|_| {}, budget.clone());
    let admin = broker.admin_addr;
    budget.set_remaining(0);
    let (status, body) = request(admin, "PUT", "/api/queues/%2F/q", AUTH, r#"{"durable":true}"#);
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "store_failed", "{body}");
    let policy = r#"{"pattern":"^q","definition":{"max-length":1}}"#;
    let (status, body) = request(admin, "PUT", "/api/policies/%2F/cap", AUTH, policy);
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "store_failed", "{body}");
    assert!(queue_names(&broker).is_empty());
    let (_, policies) = request(admin, "GET", "/api/policies", AUTH, "");
    assert_eq!(policies, serde_json::json!([]), "the policy was not applied");

    budget.set_remaining(PLENTY);
    let (status, _) = request(admin, "PUT", "/api/policies/%2F/cap", AUTH, policy);
    assert_eq!(status, 201);
    budget.set_remaining(0);
    let (status, body) = request(admin, "DELETE", "/api/policies/%2F/cap", AUTH, "");
    assert_eq!(status, 500, "{body}");
    budget.set_remaining(PLENTY);
    broker.restart();
    let (_, policies) = request(broker.admin_addr, "GET", "/api/policies", AUTH, "");
    assert_eq!(
        policies.as_array().map(Vec::len),
        Some(1),
        "the policy stays: {policies}"
    );
}

/// What the broker removes by itself (here an exclusive queue at connection close, and with it a durable
/// auto-delete exchange left without bindings) goes even on a full disk; the exchange's deletion is stored ahead of
/// the next change that can be, so a restart after that does not bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_the_broker_makes_on_a_full_disk_stand_and_are_stored_later() {
    let budget = DiskBudget::limited(PLENTY);
    let mut broker = TestBroker::start_full(|_| {}, budget.clone());
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let auto_delete = ExchangeDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    ch.exchange_declare("ad".into(), ExchangeKind::Fanout, auto_delete, FieldTable::default())
        .await
        .expect("exchange");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    ch.queue_declare("mine".into(), exclusive, FieldTable::default())
        .await
        .expect("queue");
    ch.queue_bind(
        "mine".into(),
        "ad".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    budget.set_remaining(0);
    // The exclusive queue goes before close-ok, and the emptied auto-delete exchange with it.
    conn.close(200, "bye".into()).await.expect("close");
    assert!(exchange_names(&broker).is_empty(), "{:?}", exchange_names(&broker));
    budget.set_remaining(PLENTY);
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare("next".into(), durable(), FieldTable::default())
        .await
        .expect("the next change is stored, after the deferred deletion");
    conn.close(200, "bye".into()).await.ok();
    broker.restart();
    assert!(exchange_names(&broker).is_empty(), "{:?}", exchange_names(&broker));
    assert_eq!(queue_names(&broker), ["next"]);
}
