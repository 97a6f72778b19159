//! Measures declaring many durable queues one after another on one channel (each declare waits for its
//! declare-ok), against an in-process broker on a temporary data directory. Not a test: timings vary by machine.
//!
//! `cargo run -p warren-tests --example declare_many -- 10000`

use std::time::Instant;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use warren_tests::client::{channel, connect};
use warren_tests::TestBroker;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let started = Instant::now();
    let mut window = Instant::now();
    let step = (n / 10).max(1);
    for i in 0..n {
        ch.queue_declare(format!("q{i:06}").as_str().into(), durable, FieldTable::default())
            .await
            .expect("declare");
        if (i + 1) % step == 0 {
            let ms = window.elapsed().as_secs_f64() * 1000.0 / step as f64;
            println!("queues {:>6}: {ms:.3} ms per declare over the last {step}", i + 1);
            window = Instant::now();
        }
    }
    let total = started.elapsed();
    println!(
        "{n} durable queues in {:.2} s: {:.3} ms per declare on average",
        total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / n as f64
    );
    conn.close(200, "bye".into()).await.ok();
}
