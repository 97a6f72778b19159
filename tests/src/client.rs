//! Small helpers over lapin for the end-to-end tests.

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ErrorKind};

pub async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect to the test broker")
}

pub async fn channel(conn: &Connection) -> Channel {
    conn.create_channel().await.expect("open a channel")
}

/// The AMQP reply code in a lapin error, if the broker closed something.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

/// The AMQP reply text in a lapin error, if the broker closed something.
pub fn reply_text(e: &lapin::Error) -> Option<String> {
    match e.kind() {
        ErrorKind::ProtocolError(a) => Some(a.get_message().to_string()),
        _ => None,
    }
}

/// The next delivery, or None after `wait`.
pub async fn next(consumer: &mut Consumer, wait: Duration) -> Option<Delivery> {
    match tokio::time::timeout(wait, consumer.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        _ => None,
    }
}

/// Collects deliveries until none arrives for `idle`, acking each through the channel (see README: lapin's
/// `Delivery::acker` can reorder acks).
pub async fn drain(channel: &Channel, consumer: &mut Consumer, idle: Duration, ack: bool) -> Vec<Delivery> {
    let mut got = Vec::new();
    while let Some(d) = next(consumer, idle).await {
        if ack {
            channel
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .expect("ack");
        }
        got.push(d);
    }
    got
}

/// A fresh name for a test's queue or exchange.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A passive declare of `queue`: the number of ready messages, and a round trip on `channel`, so that everything
/// published on it before has been handled by the broker.
pub async fn depth(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("passive declare")
        .message_count()
}

/// One round trip on `channel` (a passive declare of `amq.direct`): when it returns, the broker has handled
/// everything sent on the channel before it, publishes included, since a connection handles its frames in order.
/// What a test awaits before it moves the broker's clock (`TestBroker::advance`).
pub async fn sync(channel: &Channel) {
    channel
        .exchange_declare(
            "amq.direct".into(),
            lapin::ExchangeKind::Direct,
            lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("a round trip to the broker");
}
