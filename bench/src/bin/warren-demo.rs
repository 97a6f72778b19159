//! `warren-demo`: live traffic for a newcomer to watch in `warren-console`.
//!
//! It declares a small shop: `orders` (its rejects dead-letter into `orders.dlq`), `payments` (a 15 s message TTL;
//! expired payments also land in `orders.dlq`), a priority queue `emails` (x-max-priority 10), and a fan-out
//! exchange `events` feeding `audit` (fast consumer) and `analytics` (a consumer that keeps pausing, so its backlog
//! grows and drains). It then publishes at a modest rate that swells and ebbs, consumes with workers that reject a
//! share of orders without requeueing, and runs until Ctrl-C.
//!
//! Usage: `cargo run -p warren-bench --bin warren-demo [-- --url amqp://guest:guest@127.0.0.1:5672/%2f --rate 20]`

use std::time::{Duration, Instant};

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

#[derive(Parser)]
#[command(about = "Fills a few queues with live traffic for warren-console to show")]
struct Args {
    /// The broker to talk to.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// Average orders published per second (the other queues get a share of it).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Share of orders the order worker rejects (they dead-letter into orders.dlq).
    #[arg(long, default_value_t = 0.1)]
    reject: f64,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A small deterministic random source (xorshift), enough for demo traffic.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

async fn channel(url: &str, name: &str) -> Res<(Connection, Channel)> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let conn = Connection::connect(url, props).await?;
    let ch = conn.create_channel().await?;
    Ok((conn, ch))
}

async fn declare(ch: &Channel) -> Res<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let s = |v: &str| AMQPValue::LongString(v.into());
    ch.queue_declare("orders.dlq".into(), durable, FieldTable::default())
        .await?;
    let dead_letter = [
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("orders.dlq")),
    ];
    ch.queue_declare("orders".into(), durable, args(&dead_letter)).await?;
    let mut payments = dead_letter.to_vec();
    payments.push(("x-message-ttl", AMQPValue::LongInt(15_000)));
    ch.queue_declare("payments".into(), durable, args(&payments)).await?;
    ch.queue_declare(
        "emails".into(),
        durable,
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
    )
    .await?;
    ch.exchange_declare(
        "events".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    for q in ["audit", "analytics"] {
        ch.queue_declare(q.into(), durable, FieldTable::default()).await?;
        ch.queue_bind(
            q.into(),
            "events".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: String, props: BasicProperties) -> Res<()> {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props.with_content_type("application/json".into()).with_delivery_mode(2),
    )
    .await?;
    Ok(())
}

/// Publishes until the process stops: the order rate follows a slow wave between 0.4x and 1.6x `rate`.
async fn producer(url: String, rate: f64) -> Res<()> {
    let (_conn, ch) = channel(&url, "demo-producer").await?;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let (mut orders, mut payments, mut emails, mut events) = (0.0, 0.0, 0.0, 0.0);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let t = start.elapsed().as_secs_f64();
        let wave = 1.0 + 0.6 * (t / 20.0).sin();
        orders += rate * wave * 0.05;
        payments += rate * 0.1 * 0.05;
        emails += rate * 0.5 * (1.0 + 0.8 * (t / 45.0).cos()) * 0.05;
        events += rate * 0.8 * 0.05;
        while orders >= 1.0 {
            orders -= 1.0;
            n += 1;
            let body = format!(
                r#"{{"order_id":{n},"customer":"c-{}","amount":{:.2},"items":{}}}"#,
                dice.next() % 500,
                5.0 + dice.unit() * 200.0,
                1 + dice.next() % 6
            );
            let mut headers = FieldTable::default();
            headers.insert(
                "x-tenant".into(),
                AMQPValue::LongString(format!("t{}", dice.next() % 4).into()),
            );
            let props = BasicProperties::default()
                .with_message_id(format!("order-{n}").into())
                .with_headers(headers);
            publish(&ch, "", "orders", body, props).await?;
        }
        while payments >= 1.0 {
            payments -= 1.0;
            n += 1;
            let body = format!(
                r#"{{"payment_id":{n},"order_id":{},"status":"pending"}}"#,
                n.saturating_sub(3)
            );
            publish(&ch, "", "payments", body, BasicProperties::default()).await?;
        }
        while emails >= 1.0 {
            emails -= 1.0;
            n += 1;
            let priority = (dice.next() % 10) as u8;
            let body = format!(
                r#"{{"to":"user{}@example.com","template":"receipt","n":{n}}}"#,
                dice.next() % 900
            );
            publish(
                &ch,
                "",
                "emails",
                body,
                BasicProperties::default().with_priority(priority),
            )
            .await?;
        }
        while events >= 1.0 {
            events -= 1.0;
            n += 1;
            let body = format!(r#"{{"event":"page_view","seq":{n}}}"#);
            publish(&ch, "events", "", body, BasicProperties::default()).await?;
        }
    }
}

/// Consumes `queue`, taking `work` per message; rejects (without requeue) a `reject` share; when `pause` is set,
/// stops for 15 s out of every 40 s.
async fn worker(url: String, queue: &'static str, work: Duration, reject: f64, pause: bool) -> Res<()> {
    let (_conn, ch) = channel(&url, &format!("demo-{queue}-worker")).await?;
    ch.basic_qos(10, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            format!("demo-{queue}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut dice = Dice((queue.len() as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let start = Instant::now();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        if pause && start.elapsed().as_secs() % 40 >= 25 {
            tokio::time::sleep(Duration::from_secs(40 - start.elapsed().as_secs() % 40)).await;
        }
        tokio::time::sleep(work).await;
        if dice.unit() < reject {
            ch.basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false })
                .await?;
        } else {
            ch.basic_ack(delivery.delivery_tag, BasicAckOptions::default()).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    let (conn, ch) = channel(&args.url, "demo-setup").await?;
    declare(&ch).await?;
    conn.close(200, "declared".into()).await?;
    println!(
        "warren-demo: publishing to orders, payments, emails and events (fan-out to audit and analytics) at ~{}/s;",
        args.rate
    );
    println!(
        "             rejecting {:.0}% of orders into orders.dlq. Ctrl-C stops.",
        args.reject * 100.0
    );
    println!("             watch it with: cargo run -p warren-console");
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(producer(args.url.clone(), args.rate));
    tasks.spawn(worker(
        args.url.clone(),
        "orders",
        Duration::from_millis(45),
        args.reject,
        false,
    ));
    tasks.spawn(worker(
        args.url.clone(),
        "emails",
        Duration::from_millis(120),
        0.0,
        false,
    ));
    tasks.spawn(worker(args.url.clone(), "audit", Duration::from_millis(5), 0.0, false));
    tasks.spawn(worker(
        args.url.clone(),
        "analytics",
        Duration::from_millis(40),
        0.02,
        true,
    ));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            println!("warren-demo: stopped");
            Ok(())
        }
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        },
    }
}
