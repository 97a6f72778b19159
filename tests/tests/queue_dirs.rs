//! Durable queues' directories: any legal name fits (255 bytes), and data directories written in the legacy
//! layout (`queues/<vhost hex>/<queue hex>/`) still load after an upgrade.

use std::path::Path;
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_broker::store::queue_dir;
use warren_tests::client::*;
use warren_tests::TestBroker;

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// Declares durable `queue` and publishes `bodies` as persistent messages, waiting for each confirm.
async fn declare_and_publish(broker: &TestBroker, queue: &str, bodies: &[&str]) {
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare a durable queue");
    for b in bodies {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                persistent(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
    }
    conn.close(200, "bye".into()).await.ok();
}

/// Everything in `queue`, acked.
async fn consume_all(broker: &TestBroker, queue: &str) -> Vec<String> {
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut c = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let got = drain(&ch, &mut c, Duration::from_millis(400), true)
        .await
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    conn.close(200, "bye".into()).await.ok();
    got
}

/// Issue 10, item 12e: a 255-byte durable queue name (RabbitMQ's limit) failed with 541, its hex directory name being
/// past NAME_MAX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_queue_with_a_255_byte_name_survives_a_restart() {
    let mut broker = TestBroker::start();
    let name = "q".repeat(255);
    declare_and_publish(&broker, &name, &["kept"]).await;
    broker.restart();
    assert_eq!(consume_all(&broker, &name).await, ["kept"]);
    let dir = queue_dir::hashed(broker.data_dir(), "/", &name);
    let named = queue_dir::read_name(&dir).expect("the directory names its queue");
    assert_eq!((named.vhost.as_str(), named.queue.as_str()), ("/", name.as_str()));
}

/// Moves a queue's directory back to where the legacy layout kept it, as a data directory from before would be.
fn to_legacy_layout(data: &Path, queue: &str) {
    let dir = queue_dir::hashed(data, "/", queue);
    let old = queue_dir::legacy(data, "/", queue);
    std::fs::create_dir_all(old.parent().expect("vhost dir")).expect("mkdir");
    std::fs::remove_file(dir.join(queue_dir::NAME_FILE)).expect("no name file then");
    std::fs::rename(&dir, &old).expect("move to the legacy layout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_layout_data_dir_loads_and_is_moved_to_the_current_layout() {
    let mut broker = TestBroker::start();
    declare_and_publish(&broker, "orders", &["a", "b"]).await;
    declare_and_publish(&broker, "jobs", &["j"]).await;
    broker.stop();
    to_legacy_layout(broker.data_dir(), "orders");
    to_legacy_layout(broker.data_dir(), "jobs");

    broker.restart();
    let data = broker.data_dir().to_path_buf();
    for q in ["orders", "jobs"] {
        assert!(!queue_dir::legacy(&data, "/", q).exists(), "{q} was moved");
        assert!(queue_dir::hashed(&data, "/", q).join(queue_dir::NAME_FILE).exists());
    }
    assert!(
        !data.join("queues").join("2f").exists(),
        "the emptied legacy vhost directory goes"
    );
    declare_and_publish(&broker, "orders", &["c"]).await;
    // Once more, from the moved directories.
    broker.restart();
    assert_eq!(consume_all(&broker, "orders").await, ["a", "b", "c"]);
    assert_eq!(consume_all(&broker, "jobs").await, ["j"]);
}
