//! The store's read threads (`store::io_pool`): a durable queue whose next message is only on disk waits for a
//! read-ahead there, and nothing else waits with it: no connection task reads a file for a delivery.

use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_broker::store::DiskBudget;
use warren_tests::client::*;
use warren_tests::TestBroker;

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Publishes `bodies` persistently to `queue` and waits for every confirm.
async fn publish_confirmed(ch: &lapin::Channel, queue: &str, bodies: impl IntoIterator<Item = String>) {
    let mut confirms = Vec::new();
    for body in bodies {
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent(),
            )
            .await
            .expect("publish");
        confirms.push(c);
    }
    for c in confirms {
        assert!(c.await.expect("confirm").is_ack(), "confirmed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_read_ahead_holds_its_own_queue_only_and_delivers_in_order_once_done() {
    let budget = DiskBudget::default();
    let mut broker = TestBroker::start_full(|_| {}, budget.clone());
    let deep = unique("deep");
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        ch.queue_declare(deep.as_str().into(), durable(), FieldTable::default())
            .await
            .expect("declare");
        publish_confirmed(&ch, &deep, (0..300).map(|i| format!("m{i}"))).await;
        conn.close(200, "bye".into()).await.expect("close");
    }
    // After a restart the queue's messages are only on disk: each delivery needs a read.
    broker.restart();
    budget.hold_reads(true);

    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.basic_qos(50, BasicQosOptions::default()).await.expect("qos");
    let mut stuck = ch
        .basic_consume(
            deep.as_str().into(),
            "stuck".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let waited = std::time::Instant::now();
    while budget.held_reads() < 1 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no read-ahead was asked for"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Meanwhile another connection publishes (with confirms, through the group commit) and consumes on another
    // durable queue, and publishes to the stuck queue too.
    let other_conn = connect(&broker.url()).await;
    let och = channel(&other_conn).await;
    och.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let other = unique("other");
    och.queue_declare(other.as_str().into(), durable(), FieldTable::default())
        .await
        .expect("declare");
    publish_confirmed(&och, &other, (0..100).map(|i| format!("o{i}"))).await;
    publish_confirmed(&och, &deep, ["late".to_string()]).await;
    let mut flowing = och
        .basic_consume(
            other.as_str().into(),
            "flowing".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..100 {
        let d = next(&mut flowing, Duration::from_secs(20))
            .await
            .expect("a delivery while the read is stuck");
        assert_eq!(d.data, format!("o{i}").into_bytes());
    }
    assert_eq!(budget.held_reads(), 1, "the read is still held");
    assert_eq!(
        depth(&och, &deep).await,
        301,
        "nothing of the stuck queue went out, nothing was skipped"
    );

    budget.hold_reads(false);
    let expected: Vec<String> = (0..300).map(|i| format!("m{i}")).chain(["late".to_string()]).collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let d = next(&mut stuck, Duration::from_secs(20))
            .await
            .expect("delivered once the read is done");
        ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
        got.push(String::from_utf8(d.data).expect("utf8"));
    }
    assert_eq!(got, expected, "in order, the stuck head first");
    other_conn.close(200, "bye".into()).await.expect("close");
    conn.close(200, "bye".into()).await.expect("close");
}

/// Publishes `bodies` persistently to `queue`; whether each was confirmed (ack) or not (nack).
async fn publish_outcomes(ch: &lapin::Channel, queue: &str, bodies: impl IntoIterator<Item = String>) -> Vec<bool> {
    let mut confirms = Vec::new();
    for body in bodies {
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent(),
            )
            .await
            .expect("publish");
        confirms.push(c);
    }
    let mut out = Vec::new();
    for c in confirms {
        out.push(c.await.expect("confirm").is_ack());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_nacks_its_publishes_and_recovery_finds_exactly_the_confirmed_messages() {
    let budget = DiskBudget::default();
    let mut broker = TestBroker::start_full(|_| {}, budget.clone());
    let q = unique("write-fails");
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(q.as_str().into(), durable(), FieldTable::default())
        .await
        .expect("declare");
    publish_confirmed(&ch, &q, (0..50).map(|i| format!("before{i}"))).await;

    // The syncer thread's writes fail now, as on a full disk.
    budget.fail_writes(true);
    let lost = publish_outcomes(&ch, &q, (0..50).map(|i| format!("lost{i}"))).await;
    assert!(
        lost.iter().all(|ack| !ack),
        "every publish whose write failed is nacked: {lost:?}"
    );
    assert_eq!(
        depth(&ch, &q).await,
        50,
        "the queue forgot the messages it could not write"
    );

    budget.fail_writes(false);
    publish_confirmed(&ch, &q, (0..50).map(|i| format!("after{i}"))).await;
    assert_eq!(depth(&ch, &q).await, 100);
    conn.close(200, "bye".into()).await.expect("close");

    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let mut consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let expected: Vec<String> = (0..50)
        .map(|i| format!("before{i}"))
        .chain((0..50).map(|i| format!("after{i}")))
        .collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let d = next(&mut consumer, Duration::from_secs(20))
            .await
            .expect("a recovered message");
        got.push(String::from_utf8(d.data).expect("utf8"));
    }
    assert_eq!(got, expected, "exactly the confirmed messages, in order");
    assert_eq!(depth(&ch, &q).await, 0, "nothing else was recovered");
    conn.close(200, "bye".into()).await.expect("close");
}

/// `--total-queue-ram`: four queues, each far below its own `--queue-ram`, page their transient messages once their
/// sum passes the total; every message comes back in order, and a deleted queue gives its share of the sum back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_total_queue_ram_every_queue_pages_and_a_deleted_queue_gives_its_memory_back() {
    use warren_tests::http::request;
    let broker = TestBroker::start_with(|c| {
        c.queue_ram = 64 << 20;
        c.total_queue_ram = 256 << 10;
    });
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let queues = ["t0", "t1", "t2", "t3"];
    for q in queues {
        ch.queue_declare(q.into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
    }
    // 4 x 500 messages of 512 B (about 770 B each in memory): 1.5 MB, six times the total.
    let body = |q: &str, i: usize| format!("{q}-{i:05}-{}", "x".repeat(500));
    for i in 0..500 {
        for q in queues {
            ch.basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                body(q, i).as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        }
    }
    let returned = ch.wait_for_confirms().await.expect("every publish confirmed");
    assert!(returned.is_empty());
    let overview = |b: &TestBroker| request(b.admin_addr, "GET", "/api/overview", "guest:guest", "").1;
    let o = overview(&broker);
    let used = o["resources"]["queue_memory_used"].as_u64().expect("queue_memory_used");
    assert_eq!(o["resources"]["queue_memory_limit"], 256 << 10, "{o}");
    assert!(
        (256 << 10..(256 << 10) + 2048).contains(&used),
        "the queues stopped keeping messages in memory at the total: {used}"
    );
    let mut paged = 0;
    for q in queues {
        let (_, j) = request(
            broker.admin_addr,
            "GET",
            &format!("/api/queues/%2F/{q}"),
            "guest:guest",
            "",
        );
        assert_eq!(j["messages_ready"], 500, "{j}");
        paged += j["messages_paged_out"].as_u64().expect("messages_paged_out");
    }
    assert!(
        paged >= 1_600,
        "each queue paged once the sum was reached: {paged} of 2000"
    );

    // Every message comes back, in order; then t0 is deleted with what it holds, and its share leaves the sum.
    for q in &queues[1..] {
        let mut got = Vec::new();
        while let Some(m) = ch
            .basic_get((*q).into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            got.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        }
        let want: Vec<String> = (0..500).map(|i| body(q, i)).collect();
        assert!(got == want, "{q}: {} messages, in order: {}", got.len(), got == want);
    }
    assert!(
        overview(&broker)["resources"]["queue_memory_used"].as_u64() > Some(0),
        "t0 still holds its share"
    );
    ch.queue_delete("t0".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(overview(&broker)["resources"]["queue_memory_used"], 0);
    conn.close(200, "bye".into()).await.expect("close");
}
