//! Deadlines through a whole broker on tokio's paused time: queues and delayed exchanges arm the broker's timer and
//! are woken at their deadlines, and nothing is woken when nothing is due. No sweep is run by hand here (that is
//! `Broker::advance_time`'s job in the end-to-end tests): only the timer task acts.

use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Broker;
use crate::config::Config;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::queue::{ConsumerCredit, Credit, Queue, QueueConsumer};
use crate::timer::TimerStats;
use crate::vhost::{ExchangeDeclare, QueueDeclare, VHost};

/// A broker on a temporary data directory whose timer runs on the (paused) test runtime; only the timer, no
/// listener and no metrics tick.
struct Running {
    broker: Arc<Broker>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, stop) = open(dir.path());
    Running {
        broker,
        stop,
        _dir: dir,
    }
}

/// A broker on `dir` (recovering what it holds) with its timer running.
fn open(dir: &std::path::Path) -> (Arc<Broker>, CancellationToken) {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let broker = Broker::new(config).expect("broker");
    let stop = CancellationToken::new();
    tokio::spawn(broker.timer.clone().run(stop.clone()));
    (broker, stop)
}

impl Running {
    fn vhost(&self) -> Arc<VHost> {
        self.broker.vhost("/").expect("vhost /")
    }

    fn declare(&self, name: &str, durable: bool, arguments: &[(&str, AMQPValue)]) -> Arc<Queue> {
        let mut table = FieldTable::default();
        for (k, v) in arguments {
            table.insert((*k).into(), v.clone());
        }
        self.vhost()
            .declare_queue(&QueueDeclare {
                name,
                passive: false,
                durable,
                exclusive: false,
                auto_delete: false,
                arguments: &table,
                connection_id: 1,
            })
            .expect("declare")
    }

    fn stats(&self) -> TimerStats {
        self.broker.timer.stats()
    }
}

fn message(routing_key: &str, props: AMQPProperties) -> Arc<Message> {
    Arc::new(Message::with_properties(
        "".into(),
        routing_key.into(),
        props,
        Bytes::from_static(b"m"),
    ))
}

fn consumer(tag: &str) -> QueueConsumer {
    QueueConsumer {
        tag: tag.into(),
        channel: 1,
        connection_id: 1,
        outbox: Arc::new(Outbox::default()),
        credit: Arc::new(ConsumerCredit::new(0, Arc::new(Credit::new(0)))),
        exclusive: false,
        priority: 0,
        ack_required: true,
    }
}

/// Lets paused time pass; the runtime runs every task that is ready on the way (the timer among them).
async fn pass(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_broker_with_a_thousand_queues_never_wakes() {
    let b = start();
    for i in 0..1_000 {
        b.declare(&format!("q{i}"), i % 2 == 0, &[]);
    }
    pass(10_000).await;
    assert_eq!(
        b.stats(),
        TimerStats::default(),
        "no deadline, no wake: no queue was swept"
    );
    assert_eq!(b.vhost().queues().len(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn a_message_ttl_expires_at_its_deadline_with_one_wake_for_many_messages() {
    let b = start();
    let q = b.declare("ttl", false, &[("x-message-ttl", AMQPValue::LongInt(50))]);
    for _ in 0..1_000 {
        q.publish(message("ttl", AMQPProperties::default()));
    }
    pass(49).await;
    assert_eq!(q.message_count(), 1_000, "not before the deadline");
    pass(2).await;
    assert_eq!(q.message_count(), 0, "expired with no consumer and no sweep");
    assert_eq!(
        b.stats(),
        TimerStats { wakes: 1, fired: 1 },
        "a FIFO TTL queue arms once for all its messages"
    );
    pass(10_000).await;
    assert_eq!(b.stats().fired, 1, "nothing left to expire: no more wakes");
}

#[tokio::test(start_paused = true)]
async fn a_per_message_expiration_behind_a_head_counts_once_it_is_the_head() {
    let b = start();
    let q = b.declare("mixed", false, &[]);
    q.publish(message("mixed", AMQPProperties::default()));
    q.publish(message(
        "mixed",
        AMQPProperties::default().with_expiration("100".into()),
    ));
    pass(200).await;
    assert_eq!(q.message_count(), 2, "expiry applies at the head only, as in RabbitMQ");
    // The head goes to a consumer that then has no credit left: the expired message is the head now.
    let (first, _) = q.get().expect("the first message");
    q.settle([&first]);
    pass(1).await;
    assert_eq!(q.message_count(), 0, "dropped as soon as it became the head");
}

#[tokio::test(start_paused = true)]
async fn a_durable_ttl_queue_expires_and_a_recovered_one_is_armed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let persistent = || AMQPProperties::default().with_delivery_mode(2);
    {
        let (broker, stop) = open(dir.path());
        let declare = |name| {
            let mut ttl = FieldTable::default();
            ttl.insert("x-message-ttl".into(), AMQPValue::LongInt(1_000));
            broker
                .vhost("/")
                .expect("vhost")
                .declare_queue(&QueueDeclare {
                    name,
                    passive: false,
                    durable: true,
                    exclusive: false,
                    auto_delete: false,
                    arguments: &ttl,
                    connection_id: 1,
                })
                .expect("declare")
        };
        let q = declare("durable-ttl");
        q.publish(message("durable-ttl", persistent()));
        pass(1_001).await;
        assert_eq!(q.message_count(), 0, "expired at its deadline");
        q.publish(message("durable-ttl", persistent()));
        stop.cancel();
    }
    // After a restart the message is recovered from disk: the queue arms the timer for it at once, with nothing else
    // going on (the new broker's clock starts from the wall clock again, so its deadline is at most a TTL away).
    let (broker, stop) = open(dir.path());
    let q = broker
        .vhost("/")
        .and_then(|v| v.queue("durable-ttl"))
        .expect("recovered");
    assert_eq!(q.message_count(), 1, "recovered");
    pass(2_500).await;
    assert_eq!(q.message_count(), 0, "expired with no consumer and no sweep");
    assert!(broker.timer.stats().fired >= 1);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn x_expires_is_armed_at_declare_and_when_the_last_consumer_leaves() {
    let b = start();
    b.declare("idle", false, &[("x-expires", AMQPValue::LongInt(1_000))]);
    let used = b.declare("used", false, &[("x-expires", AMQPValue::LongInt(1_000))]);
    used.add_consumer(consumer("c")).expect("consume");
    pass(999).await;
    assert!(b.vhost().queue("idle").is_some());
    pass(2).await;
    assert!(b.vhost().queue("idle").is_none(), "unused for its x-expires: gone");
    pass(5_000).await;
    assert!(b.vhost().queue("used").is_some(), "a queue with a consumer stays");
    used.remove_consumer(1, 1, "c");
    pass(1).await;
    assert!(
        b.vhost().queue("used").is_none(),
        "unused since its consume, long ago: gone once its consumer left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delayed_exchange_releases_each_message_at_its_due_time() {
    let b = start();
    let vhost = b.vhost();
    let mut arguments = FieldTable::default();
    arguments.insert("x-delayed-type".into(), AMQPValue::LongString("direct".into()));
    vhost
        .declare_exchange(&ExchangeDeclare {
            name: "later",
            kind: crate::routing::DELAYED_TYPE,
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: &arguments,
        })
        .expect("exchange");
    let q = b.declare("target", false, &[]);
    vhost
        .bind(
            "later",
            crate::routing::Binding {
                destination: crate::routing::Destination::Queue("target".into()),
                routing_key: "k".into(),
                arguments: FieldTable::default(),
            },
        )
        .expect("bind");
    let delayed = |ms: i64| {
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), AMQPValue::LongLongInt(ms));
        let props = AMQPProperties::default().with_headers(headers);
        Message::with_properties("later".into(), "k".into(), props, Bytes::from_static(b"d"))
    };
    for ms in [300, 100, 200] {
        let mut out = Vec::new();
        let routed = vhost
            .route("later", "k", None, Some(&delayed(ms)), &mut out)
            .expect("route");
        assert!(routed.duplicate && out.is_empty(), "held by the exchange");
    }
    pass(99).await;
    assert_eq!(q.message_count(), 0);
    pass(2).await;
    assert_eq!(q.message_count(), 1, "the earliest one, armed last, came first");
    pass(100).await;
    assert_eq!(q.message_count(), 2);
    pass(100).await;
    assert_eq!(q.message_count(), 3);
    assert_eq!(b.stats().fired, 3, "one wake per due time, none in between");
}
