//! Warren: a lightweight, persistent AMQP 0-9-1 message broker.
//!
//! The binary (`main.rs`) only parses configuration and calls [`run`]; tests and benchmarks call [`run`] on a
//! listener bound to port 0. See `ARCHITECTURE.md` for the path of a message through these modules.

pub mod amqp;
pub mod args;
pub mod auth;
pub mod broker;
pub mod config;
pub mod message;
pub mod outbox;
pub mod queue;
pub mod routing;
pub mod server;
pub mod vhost;

use std::sync::Arc;

pub use broker::Broker;
pub use config::Config;
use tokio::net::TcpListener;
pub use tokio_util::sync::CancellationToken;

/// Runs the broker on an already-bound AMQP listener until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> std::io::Result<()> {
    let broker = Broker::new(config);
    server::run(listener, broker, shutdown).await
}

/// Builds the broker state without serving, for callers that need a handle on it.
pub fn broker(config: Config) -> Arc<Broker> {
    Broker::new(config)
}
