//! The management API driven exactly as the operations tools drive it (issue 13), each tool's requests and the
//! fields it reads written out from its source:
//! - KEDA's RabbitMQ scaler (`pkg/scalers/rabbitmq_scaler.go`, HTTP protocol): `GET /api/queues/{vhost}/{queue}`,
//!   and with `useRegex` `GET /api/queues/{vhost}?page=1&use_regex=true&pagination=false&name=...&page_size=...`
//!   (it reads `items`); fields `messages`, `message_stats.publish_details.rate`,
//!   `message_stats.deliver_get_details.rate`.
//! - Celery Flower's broker tab (`flower/utils/broker.py`, class `RabbitMQ`): `GET /api/queues/{vhost}`, keeping
//!   the queues it knows by `name`, showing `messages`, `messages_ready`, `messages_unacknowledged`, `consumers`.
//! - Datadog's `rabbitmq` check (management mode): `/api/overview` (`object_totals`, `queue_totals`,
//!   `message_stats`), `/api/nodes` (`fd_used`, `mem_used`, `sockets_used`, `disk_free`, `running`, `partitions`),
//!   `/api/queues`, `/api/exchanges`, `/api/connections?columns=state`, `/api/aliveness-test/{vhost}` (`status`).
//! - telegraf's `rabbitmq` input: `/api/overview` (`message_stats.*`, `object_totals.*`, `queue_totals.*`,
//!   `listeners`), `/api/nodes` (`disk_free`, `disk_free_limit`, `fd_total`, `fd_used`, `mem_limit`, `mem_used`,
//!   `sockets_total`, `sockets_used`, `uptime`, `running`, `mem_alarm`, `disk_free_alarm`), `/api/queues`.

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::Value;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

const G: &str = "guest:guest";

async fn with_traffic() -> (TestBroker, lapin::Connection) {
    let b = TestBroker::start();
    let conn = connect(&b.url()).await;
    let ch = channel(&conn).await;
    for q in ["celery", "default", "other"] {
        ch.queue_declare(q.into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
    }
    for _ in 0..3 {
        ch.basic_publish(
            "".into(),
            "celery".into(),
            BasicPublishOptions::default(),
            b"t",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    sync(&ch).await;
    (b, conn)
}

fn number(v: &Value, path: &str) -> f64 {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

#[tokio::test]
async fn keda_reads_a_queue_and_a_regex_page() {
    let (b, _conn) = with_traffic().await;
    let (s, q) = request(b.admin_addr, "GET", "/api/queues/%2F/celery", G, "");
    assert_eq!(s, 200);
    assert_eq!(number(&q, "messages"), 3.0);
    number(&q, "message_stats.publish_details.rate");
    number(&q, "message_stats.deliver_get_details.rate");
    let (s, page) = request(
        b.admin_addr,
        "GET",
        "/api/queues/%2F?page=1&use_regex=true&pagination=false&name=%5Ecel&page_size=100",
        G,
        "",
    );
    assert_eq!(s, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["name"], "celery");
    assert_eq!(number(&items[0], "messages"), 3.0);
}

#[tokio::test]
async fn flower_lists_the_queues_of_a_vhost() {
    let (b, _conn) = with_traffic().await;
    let (s, list) = request(b.admin_addr, "GET", "/api/queues/%2F", G, "");
    assert_eq!(s, 200);
    let known = ["celery", "default"];
    let shown: Vec<&Value> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter(|q| q["name"].as_str().is_some_and(|n| known.contains(&n)))
        .collect();
    assert_eq!(shown.len(), 2);
    for q in shown {
        for field in ["messages", "messages_ready", "messages_unacknowledged", "consumers"] {
            number(q, field);
        }
    }
}

#[tokio::test]
async fn datadog_and_telegraf_read_overview_nodes_queues_exchanges_and_connections() {
    let (b, _conn) = with_traffic().await;
    let (s, o) = request(b.admin_addr, "GET", "/api/overview", G, "");
    assert_eq!(s, 200);
    for path in [
        "object_totals.queues",
        "object_totals.connections",
        "object_totals.channels",
        "object_totals.exchanges",
        "object_totals.consumers",
        "queue_totals.messages",
        "queue_totals.messages_ready",
        "queue_totals.messages_unacknowledged",
        "message_stats.publish",
        "message_stats.publish_details.rate",
        "message_stats.ack_details.rate",
        "message_stats.deliver_get_details.rate",
        "message_stats.redeliver_details.rate",
    ] {
        number(&o, path);
    }
    assert_eq!(number(&o, "queue_totals.messages"), 3.0);
    assert!(o["rabbitmq_version"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(o["listeners"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x["protocol"] == "amqp")));

    let (s, nodes) = request(b.admin_addr, "GET", "/api/nodes", G, "");
    assert_eq!(s, 200);
    let node = &nodes[0];
    for field in [
        "disk_free",
        "disk_free_limit",
        "fd_total",
        "fd_used",
        "mem_limit",
        "mem_used",
        "sockets_total",
        "sockets_used",
        "uptime",
    ] {
        number(node, field);
    }
    assert_eq!(node["running"], true);
    assert_eq!(node["mem_alarm"], false);
    assert_eq!(node["disk_free_alarm"], false);
    assert!(node["partitions"].as_array().is_some_and(Vec::is_empty));
    let name = node["name"].as_str().expect("name");
    let (s, _) = request(b.admin_addr, "GET", &format!("/api/nodes/{name}"), G, "");
    assert_eq!(s, 200);

    let (s, queues) = request(b.admin_addr, "GET", "/api/queues", G, "");
    assert_eq!(s, 200);
    assert_eq!(queues.as_array().map(Vec::len), Some(3));
    let (s, _) = request(b.admin_addr, "GET", "/api/exchanges", G, "");
    assert_eq!(s, 200);
    let (s, conns) = request(b.admin_addr, "GET", "/api/connections?columns=state", G, "");
    assert_eq!(s, 200);
    assert_eq!(conns, serde_json::json!([{"state": "running"}]));
    let (s, alive) = request(b.admin_addr, "GET", "/api/aliveness-test/%2F", G, "");
    assert_eq!((s, alive["status"].as_str()), (200, Some("ok")));
    let (s, alarms) = request(b.admin_addr, "GET", "/api/health/checks/alarms", G, "");
    assert_eq!((s, alarms["status"].as_str()), (200, Some("ok")));
    let port = b.addr.port();
    let (s, _) = request(
        b.admin_addr,
        "GET",
        &format!("/api/health/checks/port-listener/{port}"),
        G,
        "",
    );
    assert_eq!(s, 200);
    let (s, _) = request(b.admin_addr, "GET", "/api/health/checks/port-listener/1", G, "");
    assert_eq!(s, 503);
}
