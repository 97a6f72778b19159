//! `warren-bench`: the same lapin workloads against one or more brokers, printed side by side.
//!
//! Workloads (16-byte transient messages by default, one client connection each for producer and consumer):
//! - `publish`: one producer publishes N messages without confirms; the figure is N / time until all N are in the
//!   queue (checked with passive declares), i.e. the rate at which messages reach the queue.
//! - `consume`: the queue holds N messages; one consumer with prefetch 1000 acks them (`Channel::basic_ack` with
//!   `multiple` every 50 deliveries, as batching consumers do); the figure is N / time to drain.
//! - `e2e`: producer and no-ack consumer at once; N / time until the consumer has all N.
//! - `confirm`: the producer publishes in confirm mode, waiting for confirms in windows of 1000.
//! - `rpc`: request-reply, one request in flight: a client publishes a request with `reply_to` set to direct
//!   reply-to (`amq.rabbitmq.reply-to`) and waits for the answer, which a server on another connection sends back
//!   through the default exchange; the figure is round trips per second (capped at 20,000 round trips).
//!
//! Usage: `warren-bench --target warren=amqp://... --target rabbitmq=amqp://...` (see `scripts/bench`).

use std::time::{Duration, Instant};

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

#[derive(Parser)]
struct Args {
    /// NAME=AMQP_URL, repeatable.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Messages per workload.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Producers for the `persistent` workload, each on its own connection.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Publishes kept in flight in lapin at once (1 = await each publish before the next).
    #[arg(long, default_value_t = 256)]
    pipeline: usize,
    /// Workloads to run (publish, consume, e2e, confirm, rpc, persistent, fill).
    #[arg(long, value_delimiter = ',', default_value = "publish,consume,e2e,confirm")]
    workloads: Vec<String>,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn open(url: &str) -> Res<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    Ok((conn, ch))
}

async fn fresh_queue(ch: &Channel, name: &str) -> Res<()> {
    ch.queue_delete(name.into(), QueueDeleteOptions::default()).await?;
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), FieldTable::default())
        .await?;
    Ok(())
}

async fn depth(ch: &Channel, name: &str) -> Res<u32> {
    let q = ch
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Publishes `n` messages, keeping up to `pipeline` publishes in flight in lapin at once: awaiting each publish
/// alone makes every message a round trip between the caller and lapin's I/O thread, which measures lapin's
/// hand-off more than the broker (the same client pattern is used for every broker).
async fn publish_n(ch: &Channel, queue: &str, n: u64, body: &[u8], pipeline: usize) -> Res<()> {
    let mut sent = 0;
    while sent < n {
        let batch = pipeline.max(1).min((n - sent) as usize);
        let publishes = (0..batch).map(|_| {
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
        });
        for r in futures::future::join_all(publishes).await {
            r?;
        }
        sent += batch as u64;
    }
    Ok(())
}

async fn wait_depth(ch: &Channel, queue: &str, n: u64) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while (depth(ch, queue).await? as u64) < n {
        if Instant::now() > deadline {
            return Err("queue never reached its expected depth".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn publish(url: &str, n: u64, body: &[u8], pipeline: usize) -> Res<f64> {
    let (_c, ch) = open(url).await?;
    let (_c2, probe) = open(url).await?;
    fresh_queue(&ch, "bench-publish").await?;
    let t = Instant::now();
    publish_n(&ch, "bench-publish", n, body, pipeline).await?;
    let sent = t.elapsed();
    wait_depth(&probe, "bench-publish", n).await?;
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!(
            "[publish: client sent all in {sent:?}, queue full after {:?}]",
            t.elapsed()
        );
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    ch.queue_delete("bench-publish".into(), QueueDeleteOptions::default())
        .await?;
    Ok(rate)
}

/// The consumer acks with `multiple` once per this many deliveries.
const ACK_EVERY: u64 = 50;

async fn consume(url: &str, n: u64, body: &[u8]) -> Res<f64> {
    let (_c, ch) = open(url).await?;
    fresh_queue(&ch, "bench-consume").await?;
    publish_n(&ch, "bench-consume", n, body, 256).await?;
    wait_depth(&ch, "bench-consume", n).await?;
    let (_c2, cch) = open(url).await?;
    cch.basic_qos(1000, BasicQosOptions::default()).await?;
    let t = Instant::now();
    let mut consumer = cch
        .basic_consume(
            "bench-consume".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Ok(Some(Ok(d))) => {
                got += 1;
                if got % ACK_EVERY == 0 || got == n {
                    cch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true })
                        .await?;
                }
            }
            _ => return Err(format!("consumer stalled after {got} messages").into()),
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    ch.queue_delete("bench-consume".into(), QueueDeleteOptions::default())
        .await?;
    Ok(rate)
}

async fn e2e(url: &str, n: u64, body: &[u8], pipeline: usize) -> Res<f64> {
    let (_c, ch) = open(url).await?;
    fresh_queue(&ch, "bench-e2e").await?;
    let (_c2, cch) = open(url).await?;
    let mut consumer = cch
        .basic_consume(
            "bench-e2e".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let t = Instant::now();
    let body = body.to_vec();
    let producer = tokio::spawn(async move { publish_n(&ch, "bench-e2e", n, &body, pipeline).await });
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Ok(Some(Ok(_))) => got += 1,
            _ => return Err(format!("consumer stalled after {got} messages").into()),
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    producer.await??;
    Ok(rate)
}

async fn rpc(url: &str, n: u64, body: &[u8]) -> Res<f64> {
    let n = n.min(20_000);
    let (_s, server) = open(url).await?;
    fresh_queue(&server, "bench-rpc").await?;
    let mut requests = server
        .basic_consume(
            "bench-rpc".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let responder = tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let Some(reply_to) = d.properties.reply_to().clone() else {
                continue;
            };
            let props = BasicProperties::default()
                .with_correlation_id(d.properties.correlation_id().clone().unwrap_or_else(|| "".into()));
            let sent = server
                .basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    &d.data,
                    props,
                )
                .await;
            if sent.is_err() {
                return;
            }
        }
    });
    let (_c, client) = open(url).await?;
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let t = Instant::now();
    for i in 0..n {
        let props = BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id(i.to_string().into());
        client
            .basic_publish(
                "".into(),
                "bench-rpc".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?;
        match tokio::time::timeout(Duration::from_secs(10), replies.next()).await {
            Ok(Some(Ok(_))) => {}
            _ => return Err(format!("no reply to request {i}").into()),
        }
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    responder.abort();
    Ok(rate)
}

async fn confirm(url: &str, n: u64, body: &[u8], pipeline: usize) -> Res<f64> {
    let (_c, ch) = open(url).await?;
    fresh_queue(&ch, "bench-confirm").await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch = (pipeline.max(1) as u64).min(1000).min(n - sent);
        let publishes = (0..batch).map(|_| {
            ch.basic_publish(
                "".into(),
                "bench-confirm".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
        });
        let confirms: Vec<_> = futures::future::join_all(publishes)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for c in futures::future::join_all(confirms).await {
            c?;
        }
        sent += batch;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    ch.queue_delete("bench-confirm".into(), QueueDeleteOptions::default())
        .await?;
    Ok(rate)
}

/// `persistent`: durable queue, delivery_mode 2, confirms (up to 1000 outstanding per producer), `producers`
/// connections publishing `n` messages in all; the figure is n / time until the last confirm.
async fn persistent(url: &str, n: u64, body: &[u8], producers: usize, keep: bool) -> Res<f64> {
    let queue = if keep { "bench-fill" } else { "bench-persistent" };
    let (_c, ch) = open(url).await?;
    if !keep {
        ch.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
    }
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let producers = producers.max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let share = n / producers as u64 + u64::from((p as u64) < n % producers as u64);
        let url = url.to_string();
        let body = body.to_vec();
        tasks.push(tokio::spawn(async move {
            let (_c, ch) = open(&url).await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            let props = BasicProperties::default().with_delivery_mode(2);
            let mut sent = 0;
            while sent < share {
                let batch = 1000.min(share - sent);
                let publishes = (0..batch).map(|_| {
                    ch.basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &body,
                        props.clone(),
                    )
                });
                let confirms: Vec<_> = futures::future::join_all(publishes)
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?;
                for c in futures::future::join_all(confirms).await {
                    if !c?.is_ack() {
                        return Err::<(), Box<dyn std::error::Error + Send + Sync>>("a publish was nacked".into());
                    }
                }
                sent += batch;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    if !keep {
        ch.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
    }
    Ok(rate)
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    let body = vec![b'x'; args.size];
    let targets: Vec<(String, String)> = args
        .targets
        .iter()
        .map(|t| match t.split_once('=') {
            Some((n, u)) => (n.to_string(), u.to_string()),
            None => (t.clone(), t.clone()),
        })
        .collect();
    println!(
        "{} messages of {} B, transient, one lapin client per role",
        args.messages, args.size
    );
    print!("{:<34}", "workload (msg/s)");
    for (name, _) in &targets {
        print!("{name:>14}");
    }
    println!();
    for w in &args.workloads {
        let label = match w.as_str() {
            "publish" => "publish-only (reaches the queue)",
            "consume" => "consume, prefetch 1000, acks",
            "e2e" => "end to end, no-ack",
            "confirm" => "publish with confirms",
            "rpc" => "request-reply round trips",
            "persistent" => "persistent + confirms, durable queue",
            "fill" => "fill durable queue (kept)",
            other => other,
        };
        print!("{label:<34}");
        for (_, url) in &targets {
            let r = match w.as_str() {
                "publish" => publish(url, args.messages, &body, args.pipeline).await,
                "consume" => consume(url, args.messages, &body).await,
                "e2e" => e2e(url, args.messages, &body, args.pipeline).await,
                "confirm" => confirm(url, args.messages, &body, args.pipeline).await,
                "rpc" => rpc(url, args.messages, &body).await,
                "persistent" => persistent(url, args.messages, &body, args.producers, false).await,
                "fill" => persistent(url, args.messages, &body, args.producers, true).await,
                other => Err(format!("unknown workload {other}").into()),
            };
            match r {
                Ok(rate) => print!("{:>14.0}", rate),
                Err(e) => print!("{:>14}", format!("error: {e}")),
            }
        }
        println!();
    }
    Ok(())
}
