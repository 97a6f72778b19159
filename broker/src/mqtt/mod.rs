//! MQTT 3.1.1 and 5.0 on `--mqtt-listen`, onto the same exchanges and queues as AMQP, as RabbitMQ's MQTT plugin does
//! it (see `docs/protocols.md`): publishes go to the topic exchange `amq.topic` (`--mqtt-exchange`) with `/` and `.`
//! swapped in the routing key ([`mapping`]); each session's subscriptions are bindings of its queue
//! `mqtt-subscription-<client id>qos1`, which a consumer of the connection drains; shared subscriptions
//! (`$share/<group>/<filter>`) are competing consumers of one queue per group and filter.
//!
//! - [`codec`]: packets of both versions (the `mqttbytes` crate), pure.
//! - [`mapping`]: topics, filters and properties between MQTT and AMQP, pure.
//! - [`retained`]: retained messages, durable.
//! - [`session`]: one connection's task.
//!
//! [`Mqtt`] is what the connections share: the session registry (which connection holds which client id, so a new
//! connection with the same id takes the session over) and the retained messages. The admin layer and the domain
//! know nothing of it; it uses the domain as an AMQP connection does.

pub mod codec;
pub mod mapping;
pub mod retained;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// A live session's connection: cancelled to take the session over.
struct Holder {
    connection: u64,
    close: CancellationToken,
    /// Cancelled when the connection has let go of the session (its consumers removed, its messages requeued).
    gone: CancellationToken,
}

/// What every MQTT connection of a broker shares.
pub struct Mqtt {
    /// (vhost, client id) → the connection that holds the session.
    sessions: Mutex<HashMap<(String, String), Holder>>,
    pub retained: retained::Retained,
    /// The exchange publishes go to.
    pub exchange: String,
}

impl Mqtt {
    /// The shared state for `broker`: retained messages under its data directory.
    pub fn open(broker: &Broker) -> std::io::Result<Arc<Self>> {
        let dir = broker.store.root.join("mqtt").join("retained");
        Ok(Arc::new(Mqtt {
            sessions: Mutex::new(HashMap::new()),
            retained: retained::Retained::open(dir)?,
            exchange: broker.config.mqtt_exchange.clone(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Holder>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves MQTT on every listener, at most `max_connections` at once, until `shutdown` is cancelled.
pub async fn run(
    listeners: Vec<TcpListener>,
    broker: Arc<Broker>,
    mqtt: Arc<Mqtt>,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let stop = shutdown.clone();
    crate::server::serve_protocol("MQTT", listeners, max_connections, shutdown, move |stream, peer| {
        session::serve(stream, peer, broker.clone(), mqtt.clone(), stop.clone())
    })
    .await
}
