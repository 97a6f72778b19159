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

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Serves STOMP on every listener, at most `max_connections` at once, until `shutdown` is cancelled.
pub async fn run(
    listeners: Vec<TcpListener>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let stop = shutdown.clone();
    crate::server::serve_protocol("STOMP", listeners, max_connections, shutdown, move |stream, peer| {
        session::serve(stream, peer, broker.clone(), stop.clone())
    })
    .await
}
