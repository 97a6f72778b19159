//! The memory-alarm flood: one connection publishes large transient messages to a queue that nobody consumes, as
//! fast as it can, and the broker's resident memory is watched from outside.
//!
//! What it shows (figures, not assertions: `scripts/flood` runs it against a release broker):
//! 1. flood: the publisher is blocked (`connection.blocked`) once the broker passes its memory high watermark, and
//!    RSS plateaus near the watermark instead of growing until the allocator aborts;
//! 2. drain: a consumer takes half the queue; the alarm clears, the publisher is unblocked and publishes again;
//! 3. purge: the queue is purged through the admin API and RSS is sampled over the next seconds, to see how much
//!    memory goes back to the operating system.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, Event};

#[derive(Parser)]
struct Args {
    /// AMQP URL of the broker.
    #[arg(long)]
    url: String,
    /// Admin API base URL (for depth and purge).
    #[arg(long)]
    admin: String,
    /// The broker's pid, to read its RSS.
    #[arg(long)]
    pid: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 65536)]
    size: usize,
    /// How long the flood runs before the drain, seconds.
    #[arg(long, default_value_t = 20)]
    flood_s: u64,
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn depth(http: &reqwest::Client, admin: &str) -> u64 {
    let r = http
        .get(format!("{admin}/api/queues/%2F/flood"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
    match r {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["messages_ready"].as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::main]
async fn main() -> color_eyre::Result<()> {
    color_eyre::install()?;
    let a = Args::parse();
    let http = reqwest::Client::new();
    let conn = Connection::connect(&a.url, ConnectionProperties::default()).await?;
    let blocked = Arc::new(AtomicBool::new(false));
    let blocks = Arc::new(AtomicU64::new(0));
    {
        let (blocked, blocks) = (blocked.clone(), blocks.clone());
        let mut events = conn.events_listener();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                match e {
                    Event::ConnectionBlocked(_) => {
                        blocked.store(true, Ordering::Relaxed);
                        blocks.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::ConnectionUnblocked => blocked.store(false, Ordering::Relaxed),
                    _ => {}
                }
            }
        });
    }
    let ch = conn.create_channel().await?;
    ch.queue_declare("flood".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await?;
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, stop) = (published.clone(), stop.clone());
        let body = vec![0x5au8; a.size];
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = ch
                    .basic_publish(
                        "".into(),
                        "flood".into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default(),
                    )
                    .await;
                if sent.is_err() {
                    break;
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let start = Instant::now();
    let idle_rss = rss_mb(a.pid);
    println!("phase  t(s)  published  queued  blocked  rss(MB)");
    let mut peak = idle_rss;
    let sample = |phase: &str, peak: &mut f64, queued: u64| {
        let rss = rss_mb(a.pid);
        *peak = peak.max(rss);
        println!(
            "{phase:<6} {:>5.1} {:>10} {:>7} {:>8} {:>8.0}",
            start.elapsed().as_secs_f64(),
            published.load(Ordering::Relaxed),
            queued,
            blocked.load(Ordering::Relaxed),
            rss
        );
    };
    while start.elapsed() < Duration::from_secs(a.flood_s) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let q = depth(&http, &a.admin).await;
        sample("flood", &mut peak, q);
    }
    let flood_peak = peak;
    let at_block = published.load(Ordering::Relaxed);
    // Drain half of what is queued with a no-ack consumer on its own connection.
    let queued = depth(&http, &a.admin).await;
    let consumer_conn = Connection::connect(&a.url, ConnectionProperties::default()).await?;
    let cch = consumer_conn.create_channel().await?;
    // A bounded prefetch and an ack each: the consumer takes half and no more (unacked ones go back on close).
    cch.basic_qos(50, BasicQosOptions::default()).await?;
    let mut consumer = cch
        .basic_consume(
            "flood".into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut taken = 0u64;
    while taken < queued / 2 {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
            Ok(Some(Ok(d))) => {
                cch.basic_ack(d.delivery_tag, BasicAckOptions::default()).await?;
                taken += 1;
            }
            _ => break,
        }
    }
    cch.close(200, "drained half".into()).await?;
    let drain_started = Instant::now();
    while drain_started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let q = depth(&http, &a.admin).await;
        sample("drain", &mut peak, q);
    }
    let resumed = published.load(Ordering::Relaxed) > at_block;
    stop.store(true, Ordering::Relaxed);
    // The publisher may sit blocked in a write; it ends with the connection.
    publisher.abort();
    let before_purge = rss_mb(a.pid);
    let purge = http
        .delete(format!("{}/api/queues/%2F/flood/contents", a.admin))
        .basic_auth("guest", Some("guest"))
        .send()
        .await?;
    println!("purge: HTTP {}", purge.status());
    let purged = Instant::now();
    let mut after = Vec::new();
    for s in [1u64, 3, 5, 10] {
        tokio::time::sleep_until((purged + Duration::from_secs(s)).into()).await;
        let q = depth(&http, &a.admin).await;
        sample("purged", &mut peak, q);
        after.push((s, rss_mb(a.pid)));
    }
    println!(
        "summary: size {} B, idle {idle_rss:.0} MB, flood peak {flood_peak:.0} MB (blocked {} times), drained {taken}, \
         publishing resumed after the drain: {resumed}, before purge {before_purge:.0} MB, after purge {}",
        a.size,
        blocks.load(Ordering::Relaxed),
        after
            .iter()
            .map(|(s, r)| format!("{r:.0} MB at +{s}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = consumer_conn.close(200, "bye".into()).await;
    let _ = conn.close(200, "bye".into()).await;
    Ok(())
}
