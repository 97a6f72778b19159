//! Pause and resume (issue 15, item 4): a paused queue keeps its consumers and delivers nothing, not even to
//! basic.get; publishing and peek go on; the state shows in the API (and RabbitMQ's `state`) and in Prometheus;
//! a durable queue stays paused across a restart; resuming delivers what waited.

use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::http::{get_text, request};
use warren_tests::TestBroker;

const QUIET: Duration = Duration::from_millis(400);

async fn publish(ch: &lapin::Channel, n: usize) {
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            format!("j{i}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_delivers_nothing_keeps_its_consumers_and_stays_paused_across_a_restart() {
    let mut broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let worker = channel(&conn).await;
    let mut consumer = worker
        .basic_consume(
            "jobs".into(),
            "w".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let (status, body) = request(admin, "PUT", "/api/queues/%2F/jobs/pause", "guest:guest", "");
    assert_eq!(
        (status, body["paused"].clone(), body["changed"].clone()),
        (200, true.into(), true.into()),
        "{body}"
    );
    let (_, again) = request(admin, "PUT", "/api/queues/%2F/jobs/pause", "guest:guest", "");
    assert_eq!(again["changed"], false, "pausing a paused queue changes nothing");
    let (status, _) = request(admin, "PUT", "/api/queues/%2F/nowhere/pause", "guest:guest", "");
    assert_eq!(status, 404);

    publish(&ch, 3).await;
    assert!(
        next(&mut consumer, QUIET).await.is_none(),
        "a paused queue delivers nothing"
    );
    let got = ch
        .basic_get("jobs".into(), BasicGetOptions::default())
        .await
        .expect("get");
    assert!(got.is_none(), "nor to basic.get");
    let (_, q) = request(admin, "GET", "/api/queues/%2F/jobs", "guest:guest", "");
    assert_eq!(
        (q["paused"].clone(), q["state"].clone()),
        (true.into(), "paused".into()),
        "{q}"
    );
    assert_eq!(
        (q["messages_ready"].clone(), q["consumers"].clone()),
        (3.into(), 1.into()),
        "{q}"
    );
    let (_, page) = request(admin, "POST", "/api/queues/%2F/jobs/peek", "guest:guest", "{}");
    assert_eq!(page.as_array().map(Vec::len), Some(3), "peek works while paused");
    let metrics = get_text(
        broker.prometheus_addr.expect("prometheus"),
        "/metrics/per-object",
        None,
        None,
    )
    .body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("warren_queue_paused{") && l.contains("queue=\"jobs\"") && l.ends_with(" 1")),
        "{metrics}"
    );
    let (_, audit) = request(admin, "GET", "/api/audit", "guest:guest", "");
    assert!(audit.to_string().contains("\"pause\""), "{audit}");

    // A restart keeps the pause.
    drop(consumer);
    drop(worker);
    drop(ch);
    let _ = conn.close(200, "bye".into()).await;
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut consumer = ch
        .basic_consume(
            "jobs".into(),
            "w".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    assert!(
        next(&mut consumer, QUIET).await.is_none(),
        "still paused after the restart"
    );
    let (_, q) = request(broker.admin_addr, "GET", "/api/queues/%2F/jobs", "guest:guest", "");
    assert_eq!(q["paused"], true, "{q}");

    // Resuming delivers what waited, at once.
    let (status, body) = request(
        broker.admin_addr,
        "PUT",
        "/api/queues/%2F/jobs/resume",
        "guest:guest",
        "",
    );
    assert_eq!((status, body["changed"].clone()), (200, true.into()), "{body}");
    let got = drain(&ch, &mut consumer, QUIET, true).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    assert_eq!(bodies, vec!["j0", "j1", "j2"]);
    let (_, q) = request(broker.admin_addr, "GET", "/api/queues/%2F/jobs", "guest:guest", "");
    assert_eq!(
        (q["paused"].clone(), q["state"].clone()),
        (false.into(), "running".into()),
        "{q}"
    );
}
