//! `warren-perf`: a lean PerfTest-like load generator for AMQP 0-9-1 brokers, and the null sink that measures it.
//!
//! The data flow of a run ([`run`]):
//! 1. A setup connection declares the exchange (if any), the durable queues and their bindings, and closes.
//! 2. Consumer connections open their channels (basic.qos, basic.consume); producer connections open theirs
//!    (confirm.select). Channels are grouped `channels_per_connection` to a connection, one task per connection.
//! 3. The clock starts ([`Config::epoch`] is the time origin stamped into bodies) and the tasks run their tight
//!    loops (`producer::run`, `consumer::run`); this task prints a progress line each second.
//! 4. At the deadline (or once every producer has sent `count`), producers stop and collect their last confirms.
//!    With `integrity` or a count, consumers then drain until every queue has what was sent to it (or nothing
//!    arrived for `drain_idle`); otherwise they stop at the deadline.
//! 5. The [`Report`]: totals, rates over the measured window, latency percentiles, client CPU per message, and
//!    what the integrity check found.
//!
//! Routing: producer `i` publishes to queue `i % queues` (its routing key is the queue's name); consumer `j`
//! consumes queue `j % queues`. With a fanout exchange every queue gets every message.
//!
//! The hot paths allocate nothing per message: no task per message, no `Vec` per frame, one clock read per batch.

pub mod codec;
pub mod conn;
pub mod consumer;
pub mod pacer;
pub mod producer;
pub mod sink;
pub mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use conn::{Conn, Endpoint};
pub use consumer::AckMode;
use consumer::{ConsumerChannel, ConsumerOptions, ConsumerResult};
use pacer::Pacer;
use producer::{ProducerChannel, ProducerOptions, ProducerResult};
use stats::{Counters, Latencies, LatencySummary, Snapshot};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Closed(String),
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Publish for this long (`-z`).
    Time(Duration),
    /// Each producer publishes this many messages (`-C`).
    Count(u64),
}

/// The exchange producers publish to when not the default one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Topic,
    Fanout,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
        }
    }
}

/// One run's settings; [`Config::default`] is PerfTest's 1 producer, 1 consumer, 16 B transient, 10 s.
#[derive(Debug, Clone)]
pub struct Config {
    pub uri: String,
    pub producers: usize,
    pub consumers: usize,
    /// Producer (and separately consumer) channels per connection.
    pub channels_per_connection: usize,
    pub size: usize,
    pub persistent: bool,
    /// Confirm window per producer channel; 0 = no confirms.
    pub confirm: usize,
    /// basic.qos prefetch per consumer channel; 0 = unlimited.
    pub prefetch: u16,
    pub ack: AckMode,
    /// Messages per second per producer (open loop).
    pub rate: Option<f64>,
    pub limit: Limit,
    pub queues: usize,
    /// The queue name, or the prefix of `queue-0`, `queue-1`, ... when `queues > 1`.
    pub queue: String,
    pub exchange_type: Option<ExchangeKind>,
    /// Exchange name (default `perf-test-<type>`); only with `exchange_type`.
    pub exchange: Option<String>,
    /// The queues' `x-queue-type` argument (`quorum` on RabbitMQ); none: the broker's default.
    pub queue_type: Option<String>,
    /// Check loss, duplicates and per-producer order; needs at most one consumer per queue.
    pub integrity: bool,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// How long the final drain waits without any message arriving before it gives up.
    pub drain_idle: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            uri: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            producers: 1,
            consumers: 1,
            channels_per_connection: 1,
            size: 16,
            persistent: false,
            confirm: 0,
            prefetch: 0,
            ack: AckMode::Multiple(100),
            rate: None,
            limit: Limit::Time(Duration::from_secs(10)),
            queues: 1,
            queue: "perf-test".into(),
            exchange_type: None,
            exchange: None,
            queue_type: None,
            integrity: false,
            progress: false,
            drain_idle: Duration::from_secs(5),
        }
    }
}

impl Config {
    pub fn queue_name(&self, i: usize) -> String {
        if self.queues == 1 {
            self.queue.clone()
        } else {
            format!("{}-{i}", self.queue)
        }
    }

    fn exchange_name(&self) -> String {
        match (self.exchange_type, &self.exchange) {
            (None, _) => String::new(),
            (Some(_), Some(name)) => name.clone(),
            (Some(k), None) => format!("perf-test-{}", k.as_str()),
        }
    }

    fn fanout(&self) -> bool {
        self.exchange_type == Some(ExchangeKind::Fanout)
    }

    fn validate(&self) -> Result<(), PerfError> {
        let fail = |m: &str| Err(PerfError::Usage(m.into()));
        if self.queues == 0 {
            return fail("--queues must be at least 1");
        }
        if self.producers > u16::MAX as usize {
            return fail("at most 65535 producers");
        }
        if self.channels_per_connection == 0 || self.channels_per_connection > 2047 {
            return fail("--channels-per-connection must be between 1 and 2047");
        }
        if self.producers == 0 && self.consumers == 0 {
            return fail("nothing to do: no producers and no consumers");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return fail("--rate must be a positive number of messages per second");
        }
        if let AckMode::Multiple(0) = self.ack {
            return fail("--multiple-ack must be at least 1");
        }
        if self.queue.len() > 200 {
            return fail("--queue is too long for a queue name");
        }
        if self.integrity {
            if self.size < codec::Stamp::LEN {
                return fail("--integrity needs bodies of at least 16 bytes (-s 16)");
            }
            if self.consumers == 0 || self.producers == 0 {
                return fail("--integrity needs producers and consumers");
            }
            if self.consumers > self.queues {
                return fail("--integrity checks per-producer order, which needs at most one consumer per queue");
            }
        }
        Ok(())
    }
}

/// State every connection task shares with the reporter.
pub struct Shared {
    pub counters: Counters,
    pub latencies: Latencies,
    /// Messages received per queue, for the final drain.
    per_queue: Vec<AtomicU64>,
    /// The queues that have a consumer: the ones the drain waits for.
    consumed_queues: Vec<usize>,
    /// Woken when consumers receive something (the drain waits on it).
    pub progress: Notify,
}

impl Shared {
    fn new(queues: usize, consumers: usize) -> Self {
        let mut consumed_queues: Vec<usize> = (0..consumers).map(|j| j % queues).collect();
        consumed_queues.sort_unstable();
        consumed_queues.dedup();
        Shared {
            counters: Counters::default(),
            latencies: Latencies::default(),
            per_queue: (0..queues).map(|_| AtomicU64::new(0)).collect(),
            consumed_queues,
            progress: Notify::new(),
        }
    }

    pub fn note_received(&self, queue: usize, n: u64) {
        if let Some(c) = self.per_queue.get(queue) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The run's outcome; serialised as the final JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sent: u64,
    pub received: u64,
    pub confirmed: u64,
    pub nacked: u64,
    /// The measured window: to the deadline, or until the last message arrived in count mode.
    pub duration_s: f64,
    pub send_rate: f64,
    pub recv_rate: f64,
    pub confirm_rate: f64,
    pub latency_us: LatencySummary,
    /// This process's CPU (user + system) in the measured window.
    pub client_cpu_s: f64,
    /// `client_cpu_s` per message sent or received, whichever is more.
    pub client_cpu_us_per_msg: f64,
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    pub persistent: bool,
    pub confirm: usize,
    pub prefetch: u16,
    pub queues: usize,
    /// Messages per second per producer, when fixed.
    pub rate: Option<f64>,
    /// The fixed-rate pacer's tick: how long a due message may wait on the client.
    pub pacer_tick_us: Option<u64>,
    pub redelivered: u64,
    pub integrity: Option<IntegrityReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntegrityReport {
    pub ok: bool,
    pub errors: Vec<String>,
}

/// Runs one load as `config` says and reports on it.
pub async fn run(config: Config) -> Result<Report, PerfError> {
    config.validate()?;
    let ep = Endpoint::parse(&config.uri)?;
    setup(&ep, &config).await?;

    let shared = Arc::new(Shared::new(config.queues, config.consumers));
    let stop_producers = CancellationToken::new();
    let stop_consumers = CancellationToken::new();
    let per_conn = config.channels_per_connection;

    // Consumers first, so nothing published is missed.
    let mut consumer_conns = Vec::new();
    for group in chunks(config.consumers, per_conn) {
        let mut conn = Conn::open(&ep).await?;
        let mut channels = Vec::new();
        for (k, j) in group.enumerate() {
            let ch = (k + 1) as u16;
            let queue = j % config.queues;
            conn.open_channel(ch).await?;
            if config.prefetch > 0 && config.ack != AckMode::Auto {
                conn.qos(ch, config.prefetch).await?;
            }
            conn.consume(ch, &config.queue_name(queue), config.ack == AckMode::Auto)
                .await?;
            channels.push(ConsumerChannel::new(
                ch,
                queue,
                config.integrity.then_some(config.producers),
            ));
        }
        consumer_conns.push((conn, channels));
    }
    let exchange = config.exchange_name();
    let mut producer_conns = Vec::new();
    for group in chunks(config.producers, per_conn) {
        let mut conn = Conn::open(&ep).await?;
        let mut channels = Vec::new();
        for (k, i) in group.enumerate() {
            let ch = (k + 1) as u16;
            let queue = i % config.queues;
            conn.open_channel(ch).await?;
            if config.confirm > 0 {
                conn.confirm_select(ch).await?;
            }
            let template = codec::PublishTemplate::new(
                ch,
                &exchange,
                &config.queue_name(queue),
                config.size,
                config.persistent,
                conn.frame_max,
            );
            channels.push(ProducerChannel::new(i as u16, ch, queue, template));
        }
        producer_conns.push((conn, channels));
    }

    // A multiple ack every N must not wait for more than the prefetch lets through.
    let ack = match (config.ack, config.prefetch) {
        (AckMode::Multiple(n), p) if p > 0 => AckMode::Multiple(n.min((u32::from(p) / 2).max(1))),
        (a, _) => a,
    };
    let pacer = config.rate.map(Pacer::start);
    let _pacer_guard = pacer.clone().map(StopOnDrop);
    let epoch = Instant::now();
    let cpu_start = stats::process_cpu_us();
    let mut consumers = JoinSet::new();
    for (conn, channels) in consumer_conns {
        let opts = ConsumerOptions { ack, epoch };
        consumers.spawn(consumer::run(
            conn,
            channels,
            opts,
            shared.clone(),
            stop_consumers.clone(),
        ));
    }
    let popts = ProducerOptions {
        confirm: config.confirm,
        rate: config.rate,
        count: match config.limit {
            Limit::Count(n) => Some(n),
            Limit::Time(_) => None,
        },
        confirm_timeout: Duration::from_secs(30),
        epoch,
    };
    let mut producers = JoinSet::new();
    for (conn, channels) in producer_conns {
        producers.spawn(producer::run(
            conn,
            channels,
            popts.clone(),
            shared.clone(),
            pacer.clone(),
            stop_producers.clone(),
        ));
    }

    let mut reporter = Reporter::new(&shared, config.progress, epoch);
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(epoch) + second, second);
    let mut producer_results: Vec<ProducerResult> = Vec::new();
    // The measured window: counters, CPU and time at its end.
    let mut window: Option<(Snapshot, Option<u64>, Duration)> = None;
    if let Limit::Time(d) = config.limit {
        let deadline = tokio::time::Instant::from_std(epoch + d);
        loop {
            tokio::select! {
                _ = tick.tick() => reporter.line(),
                _ = tokio::time::sleep_until(deadline) => break,
                Some(r) = producers.join_next() => producer_results.extend(joined(r)?),
                Some(r) = consumers.join_next() => { joined(r)?; }
            }
        }
        window = Some((shared.counters.snapshot(), stats::process_cpu_us(), epoch.elapsed()));
        stop_producers.cancel();
    }
    // Producers stop (at the deadline, or after their count) and collect their last confirms.
    while !producers.is_empty() {
        tokio::select! {
            _ = tick.tick() => reporter.line(),
            Some(r) = producers.join_next() => producer_results.extend(joined(r)?),
        }
    }
    let drain = config.consumers > 0 && (config.integrity || matches!(config.limit, Limit::Count(_)));
    if drain {
        let expected = expected_per_queue(&config, &producer_results);
        let mut last = shared.counters.snapshot().received;
        let mut idle_until = tokio::time::Instant::now() + config.drain_idle;
        loop {
            if shared.drained(&expected) {
                break;
            }
            tokio::select! {
                _ = shared.progress.notified() => {
                    let now = shared.counters.snapshot().received;
                    if now != last {
                        last = now;
                        idle_until = tokio::time::Instant::now() + config.drain_idle;
                    }
                }
                _ = tick.tick() => reporter.line(),
                _ = tokio::time::sleep_until(idle_until) => break,
                Some(r) = consumers.join_next() => { joined(r)?; }
            }
        }
    }
    let (snap, cpu_end, elapsed) =
        window.unwrap_or_else(|| (shared.counters.snapshot(), stats::process_cpu_us(), epoch.elapsed()));
    stop_consumers.cancel();
    let mut consumer_results: Vec<ConsumerResult> = Vec::new();
    while let Some(r) = consumers.join_next().await {
        consumer_results.extend(joined(r)?);
    }

    let totals = shared.counters.snapshot();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let cpu_us = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let per_msg = snap.sent.max(snap.received).max(1);
    let integrity = config
        .integrity
        .then(|| check_integrity(&config, &producer_results, &consumer_results, &totals));
    Ok(Report {
        sent: totals.sent,
        received: totals.received,
        confirmed: totals.confirmed,
        nacked: totals.nacked,
        duration_s: secs,
        send_rate: snap.sent as f64 / secs,
        recv_rate: snap.received as f64 / secs,
        confirm_rate: snap.confirmed as f64 / secs,
        latency_us: shared.latencies.summary(),
        client_cpu_s: cpu_us as f64 / 1e6,
        client_cpu_us_per_msg: cpu_us as f64 / per_msg as f64,
        producers: config.producers,
        consumers: config.consumers,
        size: config.size,
        persistent: config.persistent,
        confirm: config.confirm,
        prefetch: config.prefetch,
        queues: config.queues,
        rate: config.rate,
        pacer_tick_us: pacer.as_ref().map(|p| p.tick.as_micros() as u64),
        redelivered: consumer_results.iter().map(|c| c.redelivered).sum(),
        integrity,
    })
}

/// Only declares what a run would (the exchange, the queues, their bindings): for another client's run.
pub async fn declare(config: &Config) -> Result<(), PerfError> {
    config.validate()?;
    setup(&Endpoint::parse(&config.uri)?, config).await
}

/// Declares the exchange, the queues and their bindings on a connection of its own.
async fn setup(ep: &Endpoint, config: &Config) -> Result<(), PerfError> {
    let mut conn = Conn::open(ep).await?;
    conn.open_channel(1).await?;
    let exchange = config.exchange_name();
    if let Some(kind) = config.exchange_type {
        conn.declare_exchange(1, &exchange, kind.as_str()).await?;
    }
    for q in 0..config.queues {
        let name = config.queue_name(q);
        conn.declare_queue(1, &name, config.queue_type.as_deref()).await?;
        if config.exchange_type.is_some() {
            let key = if config.fanout() { "" } else { name.as_str() };
            conn.bind_queue(1, &name, &exchange, key).await?;
        }
    }
    conn.close(Duration::from_secs(5)).await;
    Ok(())
}

/// How many messages each queue should end up with, from what the producers sent.
fn expected_per_queue(config: &Config, producers: &[ProducerResult]) -> Vec<u64> {
    let mut expected = vec![0u64; config.queues];
    for p in producers {
        if config.fanout() {
            expected.iter_mut().for_each(|e| *e += p.sent);
        } else if let Some(e) = expected.get_mut(p.queue) {
            *e += p.sent;
        }
    }
    expected
}

impl Shared {
    /// Whether every queue that has a consumer has received what was sent to it.
    fn drained(&self, expected: &[u64]) -> bool {
        self.consumed_queues
            .iter()
            .all(|&q| self.per_queue[q].load(Ordering::Relaxed) >= expected.get(q).copied().unwrap_or(0))
    }
}

fn check_integrity(
    config: &Config,
    producers: &[ProducerResult],
    consumers: &[ConsumerResult],
    totals: &Snapshot,
) -> IntegrityReport {
    let mut errors = Vec::new();
    for c in consumers {
        let Some(i) = &c.integrity else { continue };
        let qname = config.queue_name(c.queue);
        if i.duplicates > 0 {
            errors.push(format!(
                "queue {qname}: {} duplicate or reordered messages",
                i.duplicates
            ));
        }
        if i.gaps > 0 {
            errors.push(format!("queue {qname}: {} sequence numbers skipped", i.gaps));
        }
        if i.unstamped > 0 {
            errors.push(format!("queue {qname}: {} messages without a valid stamp", i.unstamped));
        }
        errors.extend(i.examples.iter().take(5).map(|e| format!("queue {qname}: {e}")));
        for p in producers.iter().filter(|p| config.fanout() || p.queue == c.queue) {
            let got = i.next.get(p.id as usize).copied().unwrap_or(0);
            if got < p.sent {
                errors.push(format!(
                    "queue {qname}: producer {} sent {} messages, the last {} never arrived",
                    p.id,
                    p.sent,
                    p.sent - got
                ));
            }
        }
    }
    let sent: u64 = producers.iter().map(|p| p.sent).sum();
    let nacked: u64 = producers.iter().map(|p| p.nacked).sum();
    let confirmed: u64 = producers.iter().map(|p| p.confirmed).sum();
    if nacked > 0 {
        errors.push(format!("the broker nacked {nacked} messages"));
    }
    if config.confirm > 0 && confirmed + nacked < sent {
        errors.push(format!("{} messages were never confirmed", sent - confirmed - nacked));
    }
    let expected: u64 = expected_per_queue(config, producers).iter().sum();
    if totals.received != expected {
        errors.push(format!(
            "received {} messages, expected {expected} (sent {sent}, confirmed {confirmed})",
            totals.received
        ));
    }
    IntegrityReport {
        ok: errors.is_empty(),
        errors,
    }
}

/// The once-a-second progress line on stderr.
struct Reporter<'a> {
    shared: &'a Shared,
    enabled: bool,
    epoch: Instant,
    last: Snapshot,
    last_at: Instant,
}

impl<'a> Reporter<'a> {
    fn new(shared: &'a Shared, enabled: bool, epoch: Instant) -> Self {
        Reporter {
            shared,
            enabled,
            epoch,
            last: Snapshot::default(),
            last_at: epoch,
        }
    }

    fn line(&mut self) {
        let now = Instant::now();
        let s = self.shared.counters.snapshot();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let lat = self.shared.latencies.roll();
        if self.enabled {
            let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
            let lat = match lat {
                Some((p50, p99)) => format!("p50 {p50} µs, p99 {p99} µs"),
                None => "no latency sample".into(),
            };
            eprintln!(
                "time {:.0}s, sent {:.0} msg/s, received {:.0} msg/s, confirmed {:.0} msg/s, {lat}",
                now.duration_since(self.epoch).as_secs_f64(),
                rate(s.sent, self.last.sent),
                rate(s.received, self.last.received),
                rate(s.confirmed, self.last.confirmed),
            );
        }
        self.last = s;
        self.last_at = now;
    }
}

/// Stops the pacer thread however the run ends.
struct StopOnDrop(Arc<Pacer>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A connection task's outcome; a panic in one is reported as an error of the run.
fn joined<T>(r: Result<Result<T, PerfError>, tokio::task::JoinError>) -> Result<T, PerfError> {
    match r {
        Ok(r) => r,
        Err(e) => Err(PerfError::Protocol(format!("a connection task failed: {e}"))),
    }
}

/// Splits `n` items into groups of at most `size`, as index ranges.
fn chunks(n: usize, size: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n.div_ceil(size)).map(move |g| g * size..((g + 1) * size).min(n))
}
