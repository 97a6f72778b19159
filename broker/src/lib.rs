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
pub mod store;
pub mod vhost;

use std::sync::Arc;

pub use broker::Broker;
pub use config::Config;
use tokio::net::TcpListener;
pub use tokio_util::sync::CancellationToken;

/// Why the broker could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the data directory, recovers, and serves AMQP on an already-bound listener until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let broker = Broker::new(config)?;
    serve(listener, broker, shutdown).await
}

/// Serves an already-built broker (tests keep a handle on it).
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) -> Result<(), RunError> {
    Ok(server::run(listener, broker, shutdown).await?)
}
