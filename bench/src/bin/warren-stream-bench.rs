//! `warren-stream-bench`: streams (`x-queue-type: stream`) side by side, the same lapin client against each broker.
//!
//! Per target: publish N messages of `--size` bytes with confirms into a fresh stream (a window of confirms in
//! flight); then 1, 4 and 16 consumers (each on its own connection, prefetch 1000, acking with `multiple` every 100)
//! replay the whole stream from `first` at once; then the time from `basic.consume` at offset 0.9 N to the first
//! delivery. With `--pid NAME=PID` it samples that broker's RSS every 200 ms and reports the peak of each phase.
//!
//! Usage: `warren-stream-bench --target warren=amqp://... --target rabbitmq=amqp://... [--pid warren=123]` (see
//! `scripts/bench-streams`).

use std::time::{Duration, Instant};

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

#[derive(Parser)]
struct Args {
    /// NAME=AMQP_URL, repeatable.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// NAME=PID of a target's broker process, for RSS samples.
    #[arg(long = "pid")]
    pids: Vec<String>,
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Publishes awaiting their confirm at once.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Replays to run, each with this many consumers at once.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    consumers: Vec<usize>,
    /// Each replaying consumer reads the first this many messages (default: the whole stream): `M` for every
    /// replay, or `K=M` for the replay with K consumers (comma-separated). For long runs: 16 consumers replaying
    /// 10M messages through one lapin process take most of an hour per broker.
    #[arg(long, value_delimiter = ',')]
    replay_limit: Vec<String>,
}

impl Args {
    /// How many messages each of `k` replaying consumers reads.
    fn replay_of(&self, k: usize) -> Res<u64> {
        let mut limit = self.messages;
        for l in &self.replay_limit {
            match l.split_once('=') {
                Some((count, m)) if count.parse::<usize>()? == k => limit = m.parse()?,
                Some(_) => {}
                None => limit = l.parse()?,
            }
        }
        Ok(limit.min(self.messages))
    }
}

/// The broker's peak RSS while `f` runs, sampled every 200 ms (with the sample at its end).
async fn peak_rss<T>(pid: Option<u32>, f: impl std::future::Future<Output = T>) -> (T, String) {
    let Some(pid) = pid else {
        return (f.await, "-".into());
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut peak = 0.0f64;
            loop {
                peak = peak.max(rss_kb(pid).unwrap_or(0.0));
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let out = f.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(0.0);
    (out, format!("{:.0} MB", peak / 1024.0))
}

fn rss_kb(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const STREAM: &str = "bench-stream";

async fn open(url: &str) -> Res<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    Ok((conn, ch))
}

async fn publish_all(url: &str, n: u64, size: usize, window: usize) -> Res<f64> {
    let (_c, ch) = open(url).await?;
    ch.queue_delete(STREAM.into(), QueueDeleteOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
    ch.queue_declare(
        STREAM.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = vec![b'x'; size];
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let batch = window.max(1).min((n - sent) as usize);
        let publishes = (0..batch).map(|_| {
            ch.basic_publish(
                "".into(),
                STREAM.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
        });
        let mut confirms = Vec::with_capacity(batch);
        for r in futures::future::join_all(publishes).await {
            confirms.push(r?);
        }
        for c in futures::future::join_all(confirms).await {
            if !c?.is_ack() {
                return Err("a publish was nacked".into());
            }
        }
        sent += batch as u64;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn offset_args(offset: AMQPValue) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-stream-offset".into(), offset);
    t
}

/// One consumer reading `n` messages from `first`; its msg/s.
async fn replay_one(url: String, n: u64) -> Res<f64> {
    let (_c, ch) = open(&url).await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let t = Instant::now();
    let mut c = ch
        .basic_consume(
            STREAM.into(),
            "".into(),
            BasicConsumeOptions::default(),
            offset_args(AMQPValue::LongString(LongString::from("first"))),
        )
        .await?;
    let mut got = 0u64;
    while got < n {
        let d = match tokio::time::timeout(Duration::from_secs(60), c.next()).await {
            Ok(Some(d)) => d?,
            _ => return Err(format!("replay stalled after {got} of {n}").into()),
        };
        got += 1;
        if got.is_multiple_of(100) || got == n {
            ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }).await?;
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn first_delivery_from(url: &str, offset: u64) -> Res<Duration> {
    let (_c, ch) = open(url).await?;
    ch.basic_qos(10, BasicQosOptions::default()).await?;
    let t = Instant::now();
    let mut c = ch
        .basic_consume(
            STREAM.into(),
            "".into(),
            BasicConsumeOptions::default(),
            offset_args(AMQPValue::LongLongInt(offset as i64)),
        )
        .await?;
    match tokio::time::timeout(Duration::from_secs(60), c.next()).await {
        Ok(Some(d)) => {
            d?;
            Ok(t.elapsed())
        }
        _ => Err("no delivery from the offset".into()),
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    let split = |s: &str| -> Res<(String, String)> {
        let (a, b) = s.split_once('=').ok_or("expected NAME=VALUE")?;
        Ok((a.to_string(), b.to_string()))
    };
    let targets = args.targets.iter().map(|t| split(t)).collect::<Res<Vec<_>>>()?;
    let pids = args.pids.iter().map(|t| split(t)).collect::<Res<Vec<_>>>()?;
    let pid_of = |name: &str| pids.iter().find(|(n, _)| n == name).and_then(|(_, p)| p.parse().ok());
    let n = args.messages;
    let replays = args
        .consumers
        .iter()
        .map(|&k| Ok((k, args.replay_of(k)?)))
        .collect::<Res<Vec<(usize, u64)>>>()?;
    println!(
        "streams: {} messages of {} B, confirms (window {}), replays from first: {}",
        n,
        args.size,
        args.window,
        replays
            .iter()
            .map(|(k, m)| format!("{k} consumer(s) reading {m} each"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for (name, url) in &targets {
        let pid = pid_of(name);
        let mut cells = Vec::new();
        eprintln!("[{name}] publishing");
        let (rate, rss) = peak_rss(pid, publish_all(url, n, args.size, args.window)).await;
        cells.push(format!("{:.0}", rate?));
        cells.push(rss);
        for &(k, replay) in &replays {
            eprintln!("[{name}] replay with {k} consumers");
            let t = Instant::now();
            let runs = (0..k).map(|_| tokio::spawn(replay_one(url.clone(), replay)));
            let (results, rss) = peak_rss(pid, futures::future::join_all(runs)).await;
            let mut slowest = f64::MAX;
            for r in results {
                slowest = slowest.min(r??);
            }
            let total = (replay * k as u64) as f64 / t.elapsed().as_secs_f64();
            cells.push(format!("{slowest:.0} each, {total:.0} total"));
            cells.push(rss);
        }
        let first = first_delivery_from(url, n / 10 * 9).await?;
        cells.push(format!("{:.1} ms", first.as_secs_f64() * 1000.0));
        let (_c, ch) = open(url).await?;
        ch.queue_delete(STREAM.into(), QueueDeleteOptions::default()).await?;
        rows.push((name.clone(), cells));
    }
    let mut headers = vec!["publish msg/s".to_string(), "peak RSS publishing".to_string()];
    for k in &args.consumers {
        headers.push(format!("replay x{k} msg/s"));
        headers.push(format!("peak RSS replaying x{k}"));
    }
    headers.push(format!("first delivery from offset {}", n / 10 * 9));
    for (i, h) in headers.iter().enumerate() {
        print!("{h:<30}");
        for (_, cells) in &rows {
            print!("{:>32}", cells[i]);
        }
        println!();
    }
    // Ratios of the first target to each other: rates (the total for replays) and the first delivery's time, each
    // oriented so that above 1 means the first target is ahead.
    if let Some((base_name, base)) = rows.first() {
        let last = |s: &str| s.split_whitespace().rev().nth(1).and_then(|x| x.parse::<f64>().ok());
        let first = |s: &str| s.split_whitespace().next().and_then(|x| x.parse::<f64>().ok());
        for (name, cells) in rows.iter().skip(1) {
            let mut ratios = Vec::new();
            if let (Some(a), Some(b)) = (first(&base[0]), first(&cells[0])) {
                ratios.push(format!("publish {:.2}x", a / b));
            }
            for (i, k) in args.consumers.iter().enumerate() {
                let at = 2 + 2 * i;
                if let (Some(a), Some(b)) = (last(&base[at]), last(&cells[at])) {
                    ratios.push(format!("replay x{k} {:.2}x", a / b));
                }
                if let (Some(a), Some(b)) = (first(&base[at + 1]), first(&cells[at + 1])) {
                    ratios.push(format!("RSS x{k} {:.2}x less", b / a.max(1.0)));
                }
            }
            let at = headers.len() - 1;
            if let (Some(a), Some(b)) = (first(&base[at]), first(&cells[at])) {
                ratios.push(format!("first delivery {:.1}x sooner", b / a.max(0.001)));
            }
            println!("{base_name} vs {name}: {}", ratios.join(", "));
        }
    }
    Ok(())
}
