//! The AMQP side of the soak: publishers with confirms, consumers with manual acks (a few rejects that dead-letter),
//! and idle connections that only exchange heartbeats.
//!
//! Each client is one task and one lapin connection (lapin runs a thread per connection, so 1,000 connections are
//! 1,000 client threads, nearly all asleep). A client whose connection fails counts a failure and connects again
//! after a second, so the load stays on; what it had in flight is settled by the ledger (unconfirmed publishes are
//! not counted as confirmed; unacked deliveries come back from the broker).
//!
//! Invariants:
//! - a publisher takes its seq from the ledger before the publish, and marks it confirmed only on the broker's ack;
//! - a consumer records an ack in the ledger only after `basic.ack` was handed to the connection;
//! - once `Ctx::draining` is set, consumers ack everything (so the queues can be emptied and counted).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::{bail, eyre, Result};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::ledger::{self, Ack};
use crate::Ctx;

/// Publishes in flight per publisher before it waits for confirms (the soak wants steady load, not a backlog).
const CONFIRM_WINDOW: usize = 500;
/// How often a publisher wakes to publish what its rate allows since the last time.
const PUBLISH_TICK: Duration = Duration::from_millis(100);
/// A message redriven this many times is no longer rejected: every message ends up acked.
const MAX_REJECTS: i64 = 2;

#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// Persistent messages with confirms, at this many per second.
    Publisher { rate: f64 },
    /// Consumes one queue, acks each message (rejects a few).
    Consumer,
    /// Connects and stays: heartbeats only.
    Idle,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Publisher { .. } => "publisher",
            Role::Consumer => "consumer",
            Role::Idle => "idle",
        }
    }
}

/// Runs one client until `stop`, connecting again after a failure.
pub async fn client(ctx: Arc<Ctx>, role: Role, index: usize, stop: CancellationToken) {
    let name = format!("soak-{}-{index}", role.name());
    loop {
        match session(&ctx, role, index, &name, &stop).await {
            Ok(()) => return,
            Err(e) => {
                ctx.stats.connection_failures.inc();
                ctx.stats.error(format!("{name}: {e:#}"));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One connection's life: connect (a few at a time), play the role, close.
async fn session(ctx: &Ctx, role: Role, index: usize, name: &str, stop: &CancellationToken) -> Result<()> {
    let conn = {
        let _turn = ctx.connect_gate.acquire().await?;
        let props = ConnectionProperties::default().with_connection_name(name.into());
        Connection::connect(&ctx.url, props).await?
    };
    ctx.stats.open.inc();
    let result = match role {
        Role::Publisher { rate } => publish(ctx, &conn, index, rate, stop).await,
        Role::Consumer => consume(ctx, &conn, index, stop).await,
        Role::Idle => idle(&conn, stop).await,
    };
    ctx.stats.open.sub(1);
    // After a failure the connection is usually gone already; closing it anyway releases lapin's thread.
    let closed = conn.close(200, "soak over".into()).await;
    result?;
    Ok(closed?)
}

async fn publish(ctx: &Ctx, conn: &Connection, index: usize, rate: f64, stop: &CancellationToken) -> Result<()> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut pending = FuturesUnordered::new();
    // Spread the publishers' ticks over the period, so the broker sees a steady stream rather than bursts.
    let phase = PUBLISH_TICK.mul_f64((index as f64 * 0.618_034) % 1.0);
    let mut tick = tokio::time::interval_at(Instant::now() + phase, PUBLISH_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut credit = 0.0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some((seq, confirmation)) = pending.next(), if !pending.is_empty() => {
                settle(ctx, index, seq, confirmation)?;
            }
            _ = tick.tick() => {
                // Never more than one tick's worth of backlog: a slow broker slows the soak down, visibly.
                credit = (credit + rate * PUBLISH_TICK.as_secs_f64()).min(rate.max(1.0));
                while credit >= 1.0 && pending.len() < CONFIRM_WINDOW {
                    credit -= 1.0;
                    let seq = ctx.ledger.sent(index);
                    let queue = &ctx.queues[(index + seq as usize) % ctx.queues.len()];
                    let body = ledger::body(index, seq, ctx.size);
                    let confirm = ch
                        .basic_publish("".into(), queue.as_str().into(), BasicPublishOptions::default(), &body, props.clone())
                        .await?;
                    ctx.stats.published.inc();
                    pending.push(confirm.map(move |c| (seq, c)));
                }
            }
        }
    }
    // Stopping: every publish still gets its answer, so the ledger knows what the broker promised to keep.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(next) = tokio::time::timeout_at(deadline, pending.next()).await.transpose() {
        let (seq, confirmation) = next.map_err(|_| eyre!("{} confirms still missing after 60 s", pending.len()))?;
        settle(ctx, index, seq, confirmation)?;
    }
    close(ch).await
}

/// Closes a channel before its connection: dropping it instead has lapin close it on the side, and a connection
/// close racing that fails with "invalid channel state: Closing".
async fn close(ch: lapin::Channel) -> Result<()> {
    ch.close(200, "soak over".into()).await?;
    Ok(())
}

fn settle(ctx: &Ctx, index: usize, seq: u64, confirmation: lapin::Result<Confirmation>) -> Result<()> {
    match confirmation? {
        Confirmation::Ack(_) => {
            ctx.ledger.confirmed(index, seq);
            ctx.stats.confirmed.inc();
        }
        Confirmation::Nack(_) => {
            ctx.ledger.nacked(index, seq);
            ctx.stats.nacked.inc();
        }
        Confirmation::NotRequested => bail!("the broker did not confirm a publish on a confirm channel"),
    }
    Ok(())
}

async fn consume(ctx: &Ctx, conn: &Connection, index: usize, stop: &CancellationToken) -> Result<()> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(ctx.prefetch, BasicQosOptions::default()).await?;
    let queue = &ctx.queues[index % ctx.queues.len()];
    let mut deliveries = ch
        .basic_consume(
            queue.as_str().into(),
            format!("soak-consumer-{index}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut dice = Dice::new(index as u64);
    loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => return close(ch).await,
            d = deliveries.next() => match d {
                Some(d) => d?,
                None => bail!("the broker ended the consumer on {queue}"),
            },
        };
        ctx.stats.delivered.inc();
        if delivery.redelivered {
            ctx.stats.redelivered.inc();
        }
        let draining = ctx.draining.load(Ordering::Relaxed);
        if !draining && redriven(&delivery.properties) < MAX_REJECTS && dice.unit() < ctx.reject {
            ch.basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false })
                .await?;
            ctx.stats.rejected.inc();
            continue;
        }
        ch.basic_ack(delivery.delivery_tag, BasicAckOptions::default()).await?;
        ctx.stats.acked.inc();
        if ctx.ledger.acked(&delivery.data) == Ack::Unknown {
            ctx.stats.unknown.inc();
            ctx.stats.error(format!(
                "{queue}: a body that is not one of ours ({} bytes, starts {:?})",
                delivery.data.len(),
                String::from_utf8_lossy(&delivery.data[..delivery.data.len().min(32)])
            ));
        }
    }
}

/// How many times the message was redriven out of a dead-letter queue (the broker's `x-redriven` header).
fn redriven(props: &BasicProperties) -> i64 {
    let Some(headers) = props.headers() else {
        return 0;
    };
    match headers.inner().get("x-redriven") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 0,
    }
}

/// Holds the connection until `stop`; lapin and the broker exchange heartbeats meanwhile. Fails when the
/// connection reports an error (a missed heartbeat closes it on either side).
async fn idle(conn: &Connection, stop: &CancellationToken) -> Result<()> {
    let mut events = conn.events_listener();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            event = events.next() => match event {
                Some(lapin::Event::Error(e)) => return Err(e.into()),
                Some(_) => {}
                None => bail!("the connection closed"),
            },
        }
    }
}

/// A small deterministic random source (xorshift): which deliveries a consumer rejects.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Dice(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as f64 / 1_000_000.0
    }
}
