//! `warren-demo`: live traffic for a newcomer to watch in `warren-console` (`warren_bench::demo`). It runs until
//! Ctrl-C, and reconnects by itself when the broker restarts.
//!
//! Usage: `cargo run -p warren-bench --bin warren-demo [-- --url amqp://guest:guest@127.0.0.1:5672/%2f --rate 20]`

use clap::Parser;
use warren_bench::demo::{self, Demo};

#[derive(Parser)]
#[command(about = "Fills a few queues with live traffic for warren-console to show")]
struct Args {
    /// The broker to talk to.
    #[arg(
        long,
        env = "WARREN_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    url: String,
    /// Average orders published per second (the other queues get a share of it).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Share of orders the order worker rejects (they dead-letter into orders.dlq).
    #[arg(long, default_value_t = 0.1)]
    reject: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "warren-demo: publishing to orders, payments, emails and events (fan-out to audit and analytics) at ~{}/s;",
        args.rate
    );
    println!(
        "             rejecting {:.0}% of orders into orders.dlq. Ctrl-C stops; a broker restart is ridden out.",
        args.reject * 100.0
    );
    println!("             watch it with: cargo run -p warren-console");
    let _tasks = demo::start(&Demo {
        url: args.url,
        rate: args.rate,
        reject: args.reject,
    });
    let _ = tokio::signal::ctrl_c().await;
    println!("warren-demo: stopped");
}
