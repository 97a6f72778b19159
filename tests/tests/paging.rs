//! Paging transient messages to disk (issue 10, item 3): past half the memory high watermark, new transient
//! messages go to the queue's spill log instead of memory, and come back in order. Its own test binary, so that the
//! process's memory (which the broker measures) is this test's alone.

use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_broker::alarm::Watermark;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

const N: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_half_the_watermark_transient_messages_are_paged_out_and_come_back_in_order() {
    let broker = TestBroker::start_with(|c| c.memory_high_watermark = Watermark::Bytes(0));
    let alarms = broker.broker.as_ref().expect("broker").alarms.clone();
    // Log in first: checking a password (argon2id) takes a few MB for a moment, which must not count against the
    // watermark set below.
    let conn = connect(&broker.url()).await;
    let started = Instant::now();
    while alarms.memory_used() == 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "no memory sample");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A watermark 1.9 times what the process uses now: past its paging share (0.5), well below the alarm, which
    // would block the publisher (the test's own client lives in this process too).
    alarms.set_memory_limit(alarms.memory_used() * 19 / 10);
    assert!(alarms.paging() && !alarms.state().memory, "paging, and no alarm");

    let ch = channel(&conn).await;
    ch.queue_declare("spilled".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for i in 0..N {
        assert!(
            alarms.paging() && !alarms.state().memory,
            "still paging, no alarm ({i} published)"
        );
        ch.basic_publish(
            "".into(),
            "spilled".into(),
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let (_, q) = request(broker.admin_addr, "GET", "/api/queues/%2F/spilled", "guest:guest", "");
    assert_eq!(q["messages_ready"], N, "{q}");
    assert_eq!(q["messages_paged_out"], N, "every one went to disk: {q}");

    alarms.set_memory_limit(0);
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get("spilled".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        got.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    let (_, q) = request(broker.admin_addr, "GET", "/api/queues/%2F/spilled", "guest:guest", "");
    assert_eq!(q["messages_paged_out"], 0, "{q}");
    conn.close(200, "bye".into()).await.expect("close");
}
