//! `warren-demo` rides out a broker restart (issue 13: "warren-demo reconnects when the broker restarts"). Before,
//! its producer and workers ended with the first connection error and the demo exited.

use std::time::{Duration, Instant};

use warren_bench::demo::{self, Demo};
use warren_tests::http::request;
use warren_tests::TestBroker;

const G: &str = "guest:guest";

/// The queue's consumers and the messages published to it since the broker started.
fn queue_stats(b: &TestBroker, queue: &str) -> (u64, u64) {
    let (status, q) = request(b.admin_addr, "GET", &format!("/api/queues/%2F/{queue}"), G, "");
    if status != 200 {
        return (0, 0);
    }
    let consumers = q["consumers"].as_u64().unwrap_or(0);
    let published = q["message_stats"]["publish"].as_u64().unwrap_or(0);
    (consumers, published)
}

/// Waits (real time: the demo is a real client on real timers) until every worker consumes and orders flow.
async fn flowing(b: &TestBroker, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = ["orders", "emails", "audit", "analytics"].map(|q| queue_stats(b, q));
        if all.iter().all(|(consumers, _)| *consumers == 1) && all[0].1 > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the demo's traffic flows: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reconnects_after_a_broker_restart() {
    let mut b = TestBroker::start();
    let tasks = demo::start(&Demo {
        url: b.url(),
        rate: 200.0,
        reject: 0.1,
    });
    flowing(&b, "at start").await;

    tokio::task::block_in_place(|| b.restart());
    flowing(&b, "after the restart").await;
    drop(tasks);
}
