//! `warren-demo`'s traffic, in the library so tests can drive it against a test broker.
//!
//! It declares a small shop: `orders` (its rejects dead-letter into `orders.dlq`), `payments` (a 15 s message TTL;
//! expired payments also land in `orders.dlq`), a priority queue `emails` (x-max-priority 10), and a fan-out
//! exchange `events` feeding `audit` (fast consumer) and `analytics` (a consumer that keeps pausing, so its backlog
//! grows and drains). It publishes at a modest rate that swells and ebbs and consumes with workers that reject a
//! share of orders without requeueing.
//!
//! Invariant: every part (the producer and each worker) runs in its own connection and reconnects by itself, with a
//! backoff of 0.5 s doubling to 5 s, when the broker goes away or closes it; the producer declares the topology again
//! on every connect, so a broker restarted on an empty data directory gets it back.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The broker's AMQP URL.
    pub url: String,
    /// Average orders published per second (the other queues get a share of it).
    pub rate: f64,
    /// Share of orders the order worker rejects (they dead-letter into orders.dlq).
    pub reject: f64,
}

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

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
    declare(&ch).await?;
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

/// Runs `part` again and again: after an error, or after the broker closed its connection, it waits (0.5 s, doubling
/// to 5 s; back to 0.5 s after a run that lasted 10 s) and reconnects. Never returns.
pub async fn forever<F, Fut>(name: &str, mut part: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Res<()>>,
{
    let mut wait = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let result = part().await;
        if started.elapsed() > Duration::from_secs(10) {
            wait = Duration::from_millis(500);
        }
        match result {
            Ok(()) => eprintln!("warren-demo: {name}: the broker ended the connection; reconnecting in {wait:?}"),
            Err(e) => eprintln!("warren-demo: {name}: {e}; reconnecting in {wait:?}"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Runs the producer and the four workers, each reconnecting by itself, until the returned set is dropped.
pub fn start(demo: &Demo) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let (url, rate) = (demo.url.clone(), demo.rate);
    tasks.spawn(async move { forever("producer", || producer(url.clone(), rate)).await });
    let workers: [(&'static str, u64, f64, bool); 4] = [
        ("orders", 45, demo.reject, false),
        ("emails", 120, 0.0, false),
        ("audit", 5, 0.0, false),
        ("analytics", 40, 0.02, true),
    ];
    for (queue, work_ms, reject, pause) in workers {
        let url = demo.url.clone();
        tasks.spawn(async move {
            forever(&format!("{queue} worker"), || {
                worker(url.clone(), queue, Duration::from_millis(work_ms), reject, pause)
            })
            .await
        });
    }
    tasks
}
