//! STOMP 1.2 (and 1.0 and 1.1) on `--stomp-listen`, onto the same exchanges and queues as AMQP, as RabbitMQ's STOMP
//! plugin does it (see `docs/protocols.md`): `/queue/NAME`, `/amq/queue/NAME`, `/topic/KEY` (on `amq.topic`) and
//! `/exchange/NAME/KEY` destinations ([`destination`]); headers as AMQP properties and headers ([`mapping`]).
//!
//! - [`codec`]: frames, pure, bounded.
//! - [`destination`]: destinations and what they lead to, pure.
//! - [`mapping`]: headers ↔ AMQP properties, pure.
//! - `session`: one connection's task (login, heart-beats, deliveries); `commands`: the frames it handles.
//!
//! Connections share nothing but the broker: the admin layer and the domain know nothing of STOMP; it uses the
//! domain as an AMQP connection does.

pub mod codec;
mod commands;
pub mod destination;
pub mod mapping;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::broker::Broker;

/// Serves STOMP on every listener, at most `max_connections` at once, until `shutdown` is cancelled.
pub async fn run(
    listeners: Vec<TcpListener>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(max_connections));
    for listener in listeners {
        let addr: SocketAddr = listener.local_addr()?;
        info!(%addr, "STOMP listener ready");
        let (broker, shutdown, connections) = (broker.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(crate::server::accept_loop(
            listener,
            limit.clone(),
            shutdown.clone(),
            move |stream, peer, permit| {
                let (broker, shutdown) = (broker.clone(), shutdown.clone());
                connections.spawn(async move {
                    session::serve(stream, peer, broker, shutdown).await;
                    drop(permit);
                });
            },
        ));
    }
    shutdown.cancelled().await;
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
    Ok(())
}
