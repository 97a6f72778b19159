//! Per-message cost of handing messages to a queue, the measurement behind ARCHITECTURE.md's "Locks, not a
//! queue-owner task": a mutex taken by the publisher's task (Warren's design) against a queue-owner task fed by a
//! channel (rumqttd's router, LavinMQ's fibers), with one or four publishers, one message or a read batch of 64 per
//! hand-over, on a runtime of 2 worker threads like the broker's. Prints CPU and wall time per message.
//!
//! `cargo run --release -p warren-bench --example owner_vs_locks`
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const N: u64 = 10_000_000;

fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for (publishers, batch) in [(1u64, 1u64), (4, 1), (1, 64), (4, 64)] {
        // Locks: each publisher task enqueues its batch under the queue's mutex; a consumer task drains.
        let q = Arc::new(Mutex::new(VecDeque::<u64>::with_capacity(1 << 16)));
        let (c0, t0) = (cpu(), Instant::now());
        let mut hs = Vec::new();
        for _ in 0..publishers {
            let q = q.clone();
            hs.push(tokio::spawn(async move {
                let mut i = 0;
                while i < N / publishers {
                    {
                        let mut g = q.lock().expect("not poisoned");
                        for k in 0..batch {
                            g.push_back(i + k);
                        }
                        // the consumer side of dispatch, under the same lock
                        while let Some(v) = g.pop_front() {
                            std::hint::black_box(v);
                        }
                    }
                    i += batch;
                    if i % 1024 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for h in hs {
            h.await.expect("publisher");
        }
        let (c1, t1) = (cpu(), t0.elapsed());
        println!(
            "locks  publishers={publishers} batch={batch}: {:.1} ns CPU/msg, {:.1} ns wall/msg",
            (c1 - c0) * 1e9 / N as f64,
            t1.as_nanos() as f64 / N as f64
        );

        // Owner task: publishers send batches over an mpsc channel; the owner enqueues and dispatches.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(1024);
        let (c0, t0) = (cpu(), Instant::now());
        let owner = tokio::spawn(async move {
            let mut q = VecDeque::<u64>::with_capacity(1 << 16);
            let mut n = 0u64;
            while let Some(b) = rx.recv().await {
                n += b.len() as u64;
                q.extend(b);
                while let Some(v) = q.pop_front() {
                    std::hint::black_box(v);
                }
            }
            n
        });
        let mut hs = Vec::new();
        for _ in 0..publishers {
            let tx = tx.clone();
            hs.push(tokio::spawn(async move {
                let mut i = 0;
                while i < N / publishers {
                    let b: Vec<u64> = (i..i + batch).collect();
                    tx.send(b).await.expect("owner alive");
                    i += batch;
                }
            }));
        }
        drop(tx);
        for h in hs {
            h.await.expect("publisher");
        }
        let n = owner.await.expect("owner");
        let (c1, t1) = (cpu(), t0.elapsed());
        assert!(n >= N);
        println!(
            "owner  publishers={publishers} batch={batch}: {:.1} ns CPU/msg, {:.1} ns wall/msg",
            (c1 - c0) * 1e9 / N as f64,
            t1.as_nanos() as f64 / N as f64
        );
    }
}
