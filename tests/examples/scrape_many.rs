//! Measures a Prometheus scrape of a broker with many queues: declares N queues (transient: durable ones cost the
//! scrape the same but take minutes to declare, see `declare_many`), puts one message in each and moves a few through
//! a consumer so that their latency histograms have series, then times `GET /metrics`, `GET /metrics/per-object`
//! and the admin API's `GET /metrics` several times each, printing bytes and milliseconds. Not a test: timings vary
//! by machine; the figures in docs/benchmarks.md come from a release build:
//!
//! `cargo run --release -p warren-tests --example scrape_many -- 10000`

use std::time::{Duration, Instant};

use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_tests::client::{channel, connect, next, sync};
use warren_tests::http::get_text;
use warren_tests::TestBroker;

/// Queues whose messages go through a consumer (so that they have latency histograms).
const BUSY: usize = 100;
const RUNS: usize = 5;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let started = Instant::now();
    for i in 0..n {
        let q = format!("q{i:06}");
        ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    sync(&ch).await;
    for i in 0..BUSY.min(n) {
        let mut c = ch
            .basic_consume(
                format!("q{i:06}").as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        next(&mut c, Duration::from_secs(5)).await.expect("a delivery");
    }
    println!(
        "{n} queues declared and filled in {:.1} s ({} with a consumer)",
        started.elapsed().as_secs_f64(),
        BUSY.min(n)
    );
    let prometheus = broker.prometheus_addr.expect("Prometheus listener");
    for (what, addr, path, auth) in [
        ("Prometheus /metrics", prometheus, "/metrics", None),
        (
            "Prometheus /metrics/per-object",
            prometheus,
            "/metrics/per-object",
            None,
        ),
        (
            "admin API /metrics (warren_*)",
            broker.admin_addr,
            "/metrics",
            Some("guest:guest"),
        ),
    ] {
        let mut ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let r = get_text(addr, path, auth, None);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r.status, 200, "{what}");
            bytes = r.body.len();
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{what}: {bytes} bytes ({:.1} MB), median {:.1} ms, min {:.1} ms, max {:.1} ms over {RUNS} scrapes",
            bytes as f64 / 1e6,
            ms[RUNS / 2],
            ms[0],
            ms[RUNS - 1]
        );
    }
    conn.close(200, "bye".into()).await.ok();
}
