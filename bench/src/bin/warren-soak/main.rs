//! `warren-soak`: hours of mixed load on one broker, with every message accounted for and the broker's memory and
//! file descriptors watched (see `scripts/soak`, which starts a broker for it).
//!
//! The load: `--connections` AMQP connections, of which `--publishers` publish persistent messages with confirms
//! (each body names its message: `<publisher>:<seq>:`) to a few durable work queues at `--rate` msg/s in all,
//! `--consumers` consume them with manual acks and reject a small share without requeue (the work queues dead-letter
//! into `<queue>.dlq`), and the rest only hold their connection open (heartbeats). Beside them, the DLQs are
//! redriven back to their source queues through the admin API every `--redrive-every`, `--admin-readers` poll
//! `/api/overview`, `/api/queues` and `/metrics` every second, and one more reader holds `/api/stream` open.
//!
//! The end, in order: publishers stop and collect their last confirms; consumers stop rejecting; the DLQs are
//! redriven until every queue is empty (or `--drain-timeout`); every client leaves; what is still queued is taken
//! with `basic.get`; then the ledger is audited: every confirmed message must have been acked at least once (lost =
//! 0); duplicates are allowed (at-least-once) and counted. Last, the broker's descriptors must come back to where
//! they were before the load, and its memory must not still be climbing in the second half of the load.
//!
//! Exit status: 0 pass, 1 a check failed (the summary says which), 2 the soak itself could not run.

mod admin;
mod ledger;
mod load;
mod probe;
mod report;
mod stats;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use color_eyre::eyre::{bail, Result, WrapErr};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use admin::{Admin, Latest};
use ledger::Ledger;
use load::Role;
use probe::{Probe, Sample};
use report::{Measure, Summary};
use stats::Stats;

#[derive(Parser)]
#[command(
    name = "warren-soak",
    about = "Mixed load on one broker for a given time; counts every message and watches the broker's RSS and fds"
)]
struct Args {
    /// The broker's AMQP URL.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    /// The broker's admin API.
    #[arg(long, default_value = "http://127.0.0.1:15672")]
    admin: String,
    /// Admin API user (an administrator: redrives are actions).
    #[arg(long, default_value = "guest")]
    user: String,
    #[arg(long, default_value = "guest")]
    password: String,
    /// How long the load runs, e.g. 90s, 10m, 1h (the drain comes after).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    duration: Duration,
    /// AMQP connections in all: publishers, consumers, and idle ones for the rest.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    #[arg(long, default_value_t = 50)]
    publishers: usize,
    #[arg(long, default_value_t = 50)]
    consumers: usize,
    /// Durable work queues (each with its DLQ).
    #[arg(long, default_value_t = 4)]
    queues: usize,
    /// Messages published per second, all publishers together.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Share of deliveries a consumer rejects without requeue (they dead-letter).
    #[arg(long, default_value_t = 0.01)]
    reject: f64,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 50)]
    prefetch: u16,
    /// Heartbeat interval asked for by every connection, in seconds.
    #[arg(long, default_value_t = 10)]
    heartbeat: u16,
    /// How often the DLQs are redriven back to their queues.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    redrive_every: Duration,
    /// Admin readers polling overview, queues and metrics every second (one more holds /api/stream).
    #[arg(long, default_value_t = 3)]
    admin_readers: usize,
    /// The broker's process id, to watch its RSS and open files in /proc (without it they are not checked).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// How often a progress line is printed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    report_every: Duration,
    /// Longest wait for the queues to empty once the publishers have stopped.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Broker descriptors allowed above their start after every client left (segment files of the queues).
    #[arg(long, default_value_t = 64)]
    fd_margin: u64,
    /// Broker RSS allowed above the first half's peak in the second half of the load, in MB (or a quarter of the
    /// first half's peak, if more).
    #[arg(long, default_value_t = 128)]
    rss_growth_mb: u64,
    /// Queue name prefix: queues are <prefix>-0 .. and <prefix>-0.dlq .. (deleted and declared again at the start).
    #[arg(long, default_value = "soak")]
    prefix: String,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32)]
    connect_parallelism: usize,
    /// Also write the summary JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// `90s`, `10m`, `1h`, `500ms`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit '{unit}' in '{s}' (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is out of range"))
}

/// What every task of the soak shares.
pub struct Ctx {
    /// The AMQP URL with the heartbeat asked for.
    url: String,
    admin: String,
    user: String,
    password: String,
    /// The work queues; each dead-letters into `<name>.dlq`.
    queues: Vec<String>,
    size: usize,
    reject: f64,
    prefetch: u16,
    fd_margin: u64,
    rss_growth_mb: u64,
    ledger: Ledger,
    stats: Stats,
    /// Set once the publishers have stopped: consumers then ack everything so the queues can empty.
    draining: AtomicBool,
    /// Caps connections being opened at once: 1,000 handshakes in the same instant measure the accept backlog.
    connect_gate: Semaphore,
    probe: Probe,
    samples: Mutex<Vec<Sample>>,
    latest: Mutex<Latest>,
}

impl Ctx {
    fn is_ours(&self, name: &str) -> bool {
        let base = name.strip_suffix(".dlq").unwrap_or(name);
        self.queues.iter().any(|q| q == base)
    }

    fn all_queues(&self) -> Vec<String> {
        self.queues
            .iter()
            .flat_map(|q| [q.clone(), format!("{q}.dlq")])
            .collect()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = color_eyre::install().and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .wrap_err("cannot start the async runtime")?
            .block_on(run(args))
    });
    match outcome {
        Ok(summary) if summary.result == "pass" => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("warren-soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<Summary> {
    if args.publishers == 0 || args.consumers == 0 || args.queues == 0 {
        bail!("--publishers, --consumers and --queues must each be at least 1");
    }
    if args.publishers + args.consumers > args.connections {
        bail!(
            "--connections {} cannot hold {} publishers and {} consumers",
            args.connections,
            args.publishers,
            args.consumers
        );
    }
    if args.prefix.is_empty()
        || !args
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        bail!(
            "--prefix '{}': use letters, digits, '-' and '_' (it goes into URL paths)",
            args.prefix
        );
    }
    let idle = args.connections - args.publishers - args.consumers;
    let sep = if args.url.contains('?') { '&' } else { '?' };
    let ctx = Arc::new(Ctx {
        url: format!("{}{sep}heartbeat={}", args.url, args.heartbeat),
        admin: args.admin.clone(),
        user: args.user.clone(),
        password: args.password.clone(),
        queues: (0..args.queues).map(|i| format!("{}-{i}", args.prefix)).collect(),
        size: args.size,
        reject: args.reject,
        prefetch: args.prefetch,
        fd_margin: args.fd_margin,
        rss_growth_mb: args.rss_growth_mb,
        ledger: Ledger::new(args.publishers, args.size),
        stats: Stats::default(),
        draining: AtomicBool::new(false),
        connect_gate: Semaphore::new(args.connect_parallelism.max(1)),
        probe: Probe::new(args.broker_pid),
        samples: Mutex::new(Vec::new()),
        latest: Mutex::new(Latest::default()),
    });
    declare(&ctx, &args.url).await?;

    // The broker before the load: the setup connection has gone, no HTTP client has connected yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_start, fds_start) = (ctx.probe.rss_kb().unwrap_or(0), ctx.probe.fds().unwrap_or(0));
    match args.broker_pid {
        Some(pid) => println!(
            "broker pid {pid}: RSS {}, {fds_start} open files before the load",
            probe::mb(rss_start)
        ),
        None => println!("no --broker-pid: the broker's RSS and open files are not watched"),
    }
    println!(
        "soak for {} s: {} connections ({} publishers with confirms at {} msg/s in all, {} consumers rejecting {:.1}%, \
         {idle} idle), {} queues + DLQs, redrive every {} s, {} admin readers + 1 stream",
        args.duration.as_secs(),
        args.connections,
        args.publishers,
        args.rate,
        args.consumers,
        args.reject * 100.0,
        args.queues,
        args.redrive_every.as_secs(),
        args.admin_readers,
    );

    let started = Instant::now();
    let stop_monitor = CancellationToken::new();
    let monitor = tokio::spawn(report::monitor(
        ctx.clone(),
        started,
        args.report_every,
        stop_monitor.clone(),
    ));
    let (stop_publishers, stop_clients, stop_admin, stop_redrive) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let mut publishers = JoinSet::new();
    let mut clients = JoinSet::new();
    let mut readers = JoinSet::new();
    let rate = Role::Publisher {
        rate: args.rate / args.publishers as f64,
    };
    for i in 0..args.consumers {
        clients.spawn(load::client(ctx.clone(), Role::Consumer, i, stop_clients.clone()));
    }
    for i in 0..args.publishers {
        publishers.spawn(load::client(ctx.clone(), rate, i, stop_publishers.clone()));
    }
    for i in 0..idle {
        clients.spawn(load::client(ctx.clone(), Role::Idle, i, stop_clients.clone()));
    }
    for i in 0..args.admin_readers {
        let http = Admin::new(&ctx, Some(Duration::from_secs(10)))?;
        readers.spawn(admin::reader(ctx.clone(), http, i, stop_admin.clone()));
    }
    readers.spawn(admin::stream(ctx.clone(), Admin::new(&ctx, None)?, stop_admin.clone()));
    let redrive = tokio::spawn(admin::redrive_loop(
        ctx.clone(),
        Admin::new(&ctx, Some(Duration::from_secs(30)))?,
        args.redrive_every,
        stop_redrive.clone(),
    ));

    // Ramp: every connection open (the progress line shows how far it got if it never is).
    let ramp_deadline = started + Duration::from_secs(120).min(args.duration);
    while (ctx.stats.open.get() as usize) < args.connections && Instant::now() < ramp_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp = started.elapsed();
    println!(
        "{} of {} connections open after {:.1} s",
        ctx.stats.open.get(),
        args.connections,
        ramp.as_secs_f64()
    );

    let interrupted = tokio::select! {
        _ = tokio::time::sleep_until((started + args.duration).into()) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let load_end = started.elapsed();
    println!(
        "{} after {} s: stopping the publishers, then draining",
        if interrupted { "interrupted" } else { "load over" },
        load_end.as_secs()
    );
    stop_publishers.cancel();
    while publishers.join_next().await.is_some() {}
    stop_redrive.cancel();
    redrive.await.wrap_err("the redrive task panicked")?;

    ctx.draining.store(true, Ordering::Relaxed);
    let drained = drain(&ctx, args.drain_timeout).await?;
    stop_clients.cancel();
    while clients.join_next().await.is_some() {}
    stop_admin.cancel();
    while readers.join_next().await.is_some() {}
    // A failed sweep (a dead broker, say) still ends in a summary: what it could not take counts as lost.
    let (swept, sweep_error) = match sweep(&ctx, &args.url).await {
        Ok(n) => (n, None),
        Err(e) => (0, Some(format!("{e:#}"))),
    };
    let drain_end = started.elapsed();
    let audit = ctx.ledger.audit();

    // After every client left: the broker's descriptors should come back (admin keep-alives close within the
    // admin idle timeout, 30 s by default).
    let settle_deadline = Instant::now() + Duration::from_secs(45);
    let mut fds_end = ctx.probe.fds().unwrap_or(0);
    while ctx.probe.watching() && fds_end > fds_start + ctx.fd_margin && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fds_end = ctx.probe.fds().unwrap_or(0);
    }
    stop_monitor.cancel();
    monitor.await.wrap_err("the monitor task panicked")?;

    let samples = ctx.samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (from, to) = (ramp.as_secs_f64(), load_end.as_secs_f64());
    let mut rss = Measure::from_samples(&samples, from, to, |s| s.rss_kb);
    rss.start = rss_start;
    rss.peak = ctx.probe.peak_rss_kb().unwrap_or(rss.peak);
    rss.end = ctx.probe.rss_kb().unwrap_or(0);
    let mut fds = Measure::from_samples(&samples, from, to, |s| s.fds);
    fds.start = fds_start;
    fds.end = fds_end;
    let mut summary = Summary {
        result: "pass",
        duration_s: started.elapsed().as_secs(),
        load_s: load_end.as_secs(),
        drain_s: (drain_end - load_end).as_secs(),
        connections: args.connections as u64,
        publishers: args.publishers as u64,
        consumers: args.consumers as u64,
        idle: idle as u64,
        target_rate: args.rate,
        totals: ctx.stats.totals(),
        swept,
        sweep_error,
        drained,
        ledger: audit,
        broker: report::Broker {
            pid: args.broker_pid,
            rss_kb: rss,
            fds,
        },
        failures: Vec::new(),
    };
    summary.judge(&ctx, ctx.probe.alive());
    let json = serde_json::to_string(&summary).wrap_err("cannot encode the summary")?;
    println!("{}", summary.line());
    for f in &summary.failures {
        println!("  FAILED: {f}");
    }
    println!("SOAK-JSON {json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json}\n")).wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    Ok(summary)
}

/// Declares the work queues (dead-lettering into their DLQs) and the DLQs, durable, deleting any earlier ones so
/// the ledger starts from empty queues.
async fn declare(ctx: &Ctx, url: &str) -> Result<()> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("soak-setup".into()),
    )
    .await
    .wrap_err_with(|| format!("cannot connect to {url}"))?;
    let ch = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for q in &ctx.queues {
        let dlq = format!("{q}.dlq");
        for name in [q, &dlq] {
            ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        ch.queue_declare(dlq.as_str().into(), durable, FieldTable::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dlq.as_str().into()),
        );
        ch.queue_declare(q.as_str().into(), durable, args)
            .await
            .wrap_err_with(|| format!("cannot declare {q}"))?;
    }
    conn.close(200, "declared".into()).await?;
    Ok(())
}

/// With the publishers stopped and the consumers acking everything: redrives the DLQs until every queue is empty.
/// Returns whether they emptied before `timeout`.
async fn drain(ctx: &Ctx, timeout: Duration) -> Result<bool> {
    let admin = Admin::new(ctx, Some(Duration::from_secs(30)))?;
    let deadline = Instant::now() + timeout;
    loop {
        // An admin error here is counted (and fails the run) but does not end it: the ledger still gets audited.
        let queues = match admin.our_queues(ctx).await {
            Ok(q) => q,
            Err(e) if Instant::now() < deadline => {
                ctx.stats.admin_errors.inc();
                ctx.stats.error(format!("drain: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                ctx.stats.admin_errors.inc();
                ctx.stats
                    .error(format!("drain: {e:#}; giving up after {} s", timeout.as_secs()));
                return Ok(false);
            }
        };
        let left: u64 = queues.iter().map(|q| q.messages).sum();
        if left == 0 {
            println!("drained: every queue is empty");
            return Ok(true);
        }
        if Instant::now() > deadline {
            let detail: Vec<String> = queues
                .iter()
                .filter(|q| q.messages > 0)
                .map(|q| format!("{} {} ready {} unacked", q.name, q.messages_ready, q.messages_unacked))
                .collect();
            println!("not drained after {} s: {}", timeout.as_secs(), detail.join(", "));
            return Ok(false);
        }
        if queues.iter().any(|q| q.name.ends_with(".dlq") && q.messages_ready > 0) {
            admin::redrive_all(ctx, &admin).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Takes whatever is still queued once every consumer has gone (nothing, after a drain), recording each message as
/// acked: a message still in a queue is not lost. Returns how many it took.
async fn sweep(ctx: &Ctx, url: &str) -> Result<u64> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("soak-sweep".into()),
    )
    .await
    .wrap_err("cannot connect for the final sweep")?;
    let ch = conn.create_channel().await?;
    let mut swept = 0;
    for q in ctx.all_queues() {
        while let Some(m) = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .wrap_err_with(|| format!("basic.get from {q}"))?
        {
            ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                .await?;
            swept += 1;
            if ctx.ledger.acked(&m.delivery.data) == ledger::Ack::Unknown {
                ctx.stats.unknown.inc();
            }
        }
    }
    conn.close(200, "swept".into()).await?;
    if swept > 0 {
        println!("swept {swept} messages left in the queues");
    }
    Ok(swept)
}
