//! `warren-perf`: a lean PerfTest-like AMQP 0-9-1 load generator (see `warren_bench::perf` for how it works), and
//! `warren-perf sink`, a null server that shows the client's own limit.
//!
//!   warren-perf -x 1 -y 1 -s 16 -z 10 --json
//!   warren-perf -x 1 -y 0 -s 1024 --persistent -c 1000 -r 20000 -z 15     (fixed rate, confirms)
//!   warren-perf -x 4 -y 4 --queues 4 --integrity -z 5                     (loss/duplicate/order check)
//!   warren-perf sink --listen 127.0.0.1:5690
//!
//! Exit status: 0 done, 1 the integrity check failed, 2 the run could not be done.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use warren_bench::perf::{self, AckMode, Config, ExchangeKind, Limit, Report};

#[derive(Parser)]
#[command(
    name = "warren-perf",
    version,
    about = "A lean PerfTest-like AMQP 0-9-1 load generator"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// A null AMQP server: handshakes, discards publishes and confirms them at once
    Sink {
        #[arg(long, default_value = "127.0.0.1:5690")]
        listen: SocketAddr,
    },
}

#[derive(Parser)]
struct RunArgs {
    /// Broker URI
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    uri: String,
    /// Producers
    #[arg(short = 'x', long, default_value_t = 1)]
    producers: usize,
    /// Consumers
    #[arg(short = 'y', long, default_value_t = 1)]
    consumers: usize,
    /// Channels per connection (producers and consumers are grouped separately)
    #[arg(long = "channels-per-connection", visible_alias = "channels", default_value_t = 1)]
    channels_per_connection: usize,
    /// Body size in bytes (the first 16 carry the send time, producer and sequence number)
    #[arg(short = 's', long, default_value_t = 16)]
    size: usize,
    /// Persistent messages (delivery mode 2)
    #[arg(short = 'f', long)]
    persistent: bool,
    /// Confirm window per producer (unconfirmed messages in flight); 0 = no confirms
    #[arg(short = 'c', long, default_value_t = 0)]
    confirm: usize,
    /// Consumer prefetch (basic.qos); 0 = unlimited
    #[arg(short = 'q', long, default_value_t = 0)]
    prefetch: u16,
    /// Ack every message on its own
    #[arg(long, conflicts_with_all = ["multiple_ack", "auto_ack"])]
    ack_each: bool,
    /// Ack with multiple=true every N messages (capped at half the prefetch)
    #[arg(long, value_name = "N", default_value_t = 100)]
    multiple_ack: u32,
    /// Consume without acks (no_ack)
    #[arg(short = 'a', long, visible_alias = "no-ack")]
    auto_ack: bool,
    /// Fixed publish rate per producer, msg/s (open loop; latency counted from each message's due time)
    #[arg(short = 'r', long)]
    rate: Option<f64>,
    /// Run for this many seconds
    #[arg(short = 'z', long = "time", default_value_t = 10.0, conflicts_with = "count")]
    seconds: f64,
    /// Each producer publishes this many messages, then the consumers drain
    #[arg(short = 'C', long = "pmessages")]
    count: Option<u64>,
    /// Number of queues, named QUEUE-0, QUEUE-1, ... when more than one
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Queue name (or prefix with --queues)
    #[arg(short = 'u', long, default_value = "perf-test")]
    queue: String,
    /// Publish through an exchange of this type (default: the default exchange)
    #[arg(short = 't', long, value_enum)]
    exchange_type: Option<ExchangeTypeArg>,
    /// Exchange name with --exchange-type [default: perf-test-TYPE]
    #[arg(short = 'e', long)]
    exchange: Option<String>,
    /// Declare the queues with this `x-queue-type` (`quorum` for RabbitMQ's replicated queues) [default: the
    /// broker's default type]
    #[arg(long, value_name = "TYPE")]
    queue_type: Option<String>,
    /// Check for loss, duplicates and per-producer order (one consumer per queue); exit 1 if any
    #[arg(long)]
    integrity: bool,
    /// Print only the final JSON line on stdout
    #[arg(long)]
    json: bool,
    /// Declare the exchange, queues and bindings a run would use, then exit (to prepare for another client)
    #[arg(long)]
    declare_only: bool,
    /// No progress lines
    #[arg(long)]
    quiet: bool,
    /// Runtime worker threads; 0 = one per core
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExchangeTypeArg {
    Direct,
    Topic,
    Fanout,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.run.threads;
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren-perf: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Sink { listen }) => rt.block_on(sink(listen)),
        None => rt.block_on(load(cli.run)),
    }
}

async fn sink(listen: SocketAddr) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warren-perf sink: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().map_or(listen, |a| a);
    eprintln!("warren-perf sink: listening on {addr}");
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    match perf::sink::serve(listener, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren-perf sink: {e}");
            ExitCode::from(2)
        }
    }
}

async fn load(a: RunArgs) -> ExitCode {
    let ack = if a.auto_ack {
        AckMode::Auto
    } else if a.ack_each {
        AckMode::Each
    } else {
        AckMode::Multiple(a.multiple_ack)
    };
    let limit = match a.count {
        Some(n) => Limit::Count(n),
        None if a.seconds > 0.0 && a.seconds.is_finite() => Limit::Time(Duration::from_secs_f64(a.seconds)),
        None => {
            eprintln!("warren-perf: -z must be a positive number of seconds");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        uri: a.uri,
        producers: a.producers,
        consumers: a.consumers,
        channels_per_connection: a.channels_per_connection,
        size: a.size,
        persistent: a.persistent,
        confirm: a.confirm,
        prefetch: a.prefetch,
        ack,
        rate: a.rate,
        limit,
        queues: a.queues,
        queue: a.queue,
        exchange_type: a.exchange_type.map(|t| match t {
            ExchangeTypeArg::Direct => ExchangeKind::Direct,
            ExchangeTypeArg::Topic => ExchangeKind::Topic,
            ExchangeTypeArg::Fanout => ExchangeKind::Fanout,
        }),
        exchange: a.exchange,
        queue_type: a.queue_type,
        integrity: a.integrity,
        progress: !a.quiet,
        ..Config::default()
    };
    if a.declare_only {
        return match perf::declare(&config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warren-perf: {e}");
                ExitCode::from(2)
            }
        };
    }
    let report = match perf::run(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-perf: {e}");
            return ExitCode::from(2);
        }
    };
    if a.json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("warren-perf: cannot print the report: {e}"),
        }
    } else {
        print_summary(&report);
    }
    match &report.integrity {
        Some(i) if !i.ok => {
            for e in &i.errors {
                eprintln!("warren-perf: integrity: {e}");
            }
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn print_summary(r: &Report) {
    println!(
        "sent {} ({:.0} msg/s), received {} ({:.0} msg/s), confirmed {} ({:.0} msg/s), nacked {} in {:.2} s",
        r.sent, r.send_rate, r.received, r.recv_rate, r.confirmed, r.confirm_rate, r.nacked, r.duration_s
    );
    let l = &r.latency_us;
    if l.count > 0 {
        println!(
            "latency µs: p50 {}, p99 {}, p99.9 {}, max {} ({} samples)",
            l.p50, l.p99, l.p999, l.max, l.count
        );
    }
    println!(
        "client CPU: {:.2} s, {:.3} µs per message",
        r.client_cpu_s, r.client_cpu_us_per_msg
    );
    if let Some(i) = &r.integrity {
        println!("integrity: {}", if i.ok { "ok" } else { "FAILED" });
    }
}
