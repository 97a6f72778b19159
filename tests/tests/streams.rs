//! Streams (`x-queue-type: stream`) over AMQP 0-9-1 with lapin: RabbitMQ's declare rules and refusal codes (taken
//! from RabbitMQ 3.10.8 itself, see docs/streams.md), consumers at `first`, `last`, `next`, an offset and a
//! timestamp, acks that remove nothing, named consumers' stored offsets across reconnects, restarts and `kill -9`,
//! retention by size and age, and filtering that skips whole segments.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use warren_tests::client::*;
use warren_tests::TestBroker;

const IDLE: Duration = Duration::from_millis(400);

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = table(extra);
    t.insert("x-queue-type".into(), s("stream"));
    t
}

async fn declare_stream(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) -> Result<u32, lapin::Error> {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        stream_args(extra),
    )
    .await
    .map(|q| q.message_count())
}

/// A channel in confirm mode.
async fn confirming(conn: &Connection) -> Channel {
    let ch = channel(conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch
}

async fn publish(ch: &Channel, queue: &str, body: &str, filter: Option<&str>) {
    let mut props = BasicProperties::default().with_delivery_mode(2);
    if let Some(f) = filter {
        props = props.with_headers(table(&[("x-stream-filter-value", s(f))]));
    }
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack(), "{body} was nacked");
}

async fn consume(ch: &Channel, queue: &str, prefetch: u16, args: FieldTable) -> Result<Consumer, lapin::Error> {
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.expect("qos");
    ch.basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), args)
        .await
}

fn offset_of(d: &lapin::message::Delivery) -> i64 {
    let headers = d.properties.headers().as_ref().expect("headers");
    match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset is {other:?}"),
    }
}

/// (offset, body) of everything a consumer gets until it goes quiet, acking each.
async fn take_all(ch: &Channel, c: &mut Consumer) -> Vec<(i64, String)> {
    drain(ch, c, IDLE, true)
        .await
        .iter()
        .map(|d| (offset_of(d), String::from_utf8_lossy(&d.data).into_owned()))
        .collect()
}

fn bodies(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("m{i}")).collect()
}

fn just_bodies(got: &[(i64, String)]) -> Vec<String> {
    got.iter().map(|(_, b)| b.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declares_follow_rabbitmqs_rules() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let refused = |opts: QueueDeclareOptions, args: FieldTable, name: &'static str| {
        let conn = &conn;
        async move {
            let ch = channel(conn).await;
            let e = ch.queue_declare(name.into(), opts, args).await.expect_err("refused");
            (reply_code(&e), reply_text(&e).unwrap_or_default())
        }
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    assert_eq!(
        refused(QueueDeclareOptions::default(), stream_args(&[]), "s-nd").await,
        (
            Some(406),
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 's-nd' in vhost '/'".into()
        )
    );
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..durable
    };
    assert_eq!(
        refused(exclusive, stream_args(&[]), "s-ex").await,
        (
            Some(406),
            "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 's-ex' in vhost '/'".into()
        )
    );
    let auto_delete = QueueDeclareOptions {
        auto_delete: true,
        ..durable
    };
    assert_eq!(
        refused(auto_delete, stream_args(&[]), "s-ad").await.1,
        "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 's-ad' in vhost '/'"
    );
    assert_eq!(
        refused(durable, stream_args(&[("x-max-age", s("7X"))]), "s-ba").await.1,
        "PRECONDITION_FAILED - invalid arg 'x-max-age' for queue 's-ba' in vhost '/': invalid_max_age"
    );
    assert_eq!(
        refused(durable, stream_args(&[("x-max-length", AMQPValue::LongInt(10))]), "s-bl").await.1,
        "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 's-bl' in vhost '/' of queue type rabbit_stream_queue"
    );
    let ch = channel(&conn).await;
    let args = [
        ("x-max-age", s("7D")),
        ("x-max-length-bytes", AMQPValue::LongLongInt(1 << 30)),
        ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1_000_000)),
    ];
    assert_eq!(declare_stream(&ch, "s", &args).await.expect("declare"), 0);
    assert_eq!(declare_stream(&ch, "s", &args).await.expect("the same again"), 0);
    let e = refused(durable, FieldTable::default(), "s").await;
    assert_eq!(e.0, Some(406), "{}", e.1);
    assert!(e.1.contains("inequivalent arg 'x-queue-type'"), "{}", e.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_purge_no_ack_nack_and_no_prefetch_are_refused_as_rabbitmq_does() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    declare_stream(&ch, "s", &[]).await.expect("declare");
    publish(&ch, "s", "m0", None).await;

    let conn = connect(&broker.url()).await;
    let e = channel(&conn)
        .await
        .basic_get("s".into(), BasicGetOptions::default())
        .await
        .expect_err("get");
    assert_eq!(reply_code(&e), Some(540));
    assert_eq!(
        reply_text(&e).as_deref(),
        Some("NOT_IMPLEMENTED - basic.get not supported by stream queues queue 's' in vhost '/'")
    );

    let conn = connect(&broker.url()).await;
    let e = channel(&conn)
        .await
        .queue_purge("s".into(), QueuePurgeOptions::default())
        .await
        .expect_err("purge");
    assert_eq!(reply_code(&e), Some(540));
    assert_eq!(
        reply_text(&e).as_deref(),
        Some("NOT_IMPLEMENTED - queue.purge not supported by stream queues queue 's' in vhost '/'")
    );

    let conn = connect(&broker.url()).await;
    let e = channel(&conn)
        .await
        .basic_consume(
            "s".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("no prefetch");
    assert_eq!(reply_code(&e), Some(406));
    assert_eq!(
        reply_text(&e).as_deref(),
        Some("PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''")
    );

    let ch = channel(&conn).await;
    ch.basic_qos(10, BasicQosOptions::default()).await.expect("qos");
    let e = ch
        .basic_consume(
            "s".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("no-ack");
    assert_eq!(reply_code(&e), Some(540));
    assert_eq!(
        reply_text(&e).as_deref(),
        Some("NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 's' in vhost '/'")
    );

    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let e = consume(&ch, "s", 10, table(&[("x-stream-offset", s("bogus"))]))
        .await
        .expect_err("a bad offset");
    assert_eq!(reply_code(&e), Some(406), "{e}");

    let ch = channel(&conn).await;
    let mut c = consume(&ch, "s", 10, table(&[("x-stream-offset", s("first"))]))
        .await
        .expect("consume");
    let d = next(&mut c, Duration::from_secs(5)).await.expect("a delivery");
    ch.basic_nack(d.delivery_tag, BasicNackOptions::default())
        .await
        .expect("nack sent");
    let e = ch
        .queue_declare(
            "s".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("the connection is closed");
    let _ = e;
    assert!(
        !conn.status().connected(),
        "a nack on a stream closes the connection (540)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_at_first_last_next_an_offset_and_a_timestamp_get_exactly_their_messages() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    declare_stream(&ch, "events", &[]).await.expect("declare");
    for b in bodies(0, 5) {
        publish(&ch, "events", &b, None).await;
    }
    // Five messages an hour later than the first five.
    broker.advance(Duration::from_secs(3600));
    let half_an_hour_ago_secs = {
        let now = broker.broker.as_ref().expect("broker").clock.now_ms();
        now / 1000 - 1800
    };
    for b in bodies(5, 10) {
        publish(&ch, "events", &b, None).await;
    }

    let cases: Vec<(&str, AMQPValue, Vec<String>)> = vec![
        ("first", s("first"), bodies(0, 10)),
        ("last", s("last"), bodies(9, 10)),
        ("offset 7", AMQPValue::LongLongInt(7), bodies(7, 10)),
        ("timestamp", AMQPValue::Timestamp(half_an_hour_ago_secs), bodies(5, 10)),
        ("interval 30m", s("30m"), bodies(5, 10)),
    ];
    for (what, offset, want) in cases {
        let ch = channel(&conn).await;
        let mut c = consume(&ch, "events", 3, table(&[("x-stream-offset", offset)]))
            .await
            .expect("consume");
        let got = take_all(&ch, &mut c).await;
        assert_eq!(just_bodies(&got), want, "{what}");
        for (offset, body) in &got {
            assert_eq!(format!("m{offset}"), *body, "{what}: every delivery carries its offset");
        }
    }

    // `next` (the default) gets only what is published after it subscribed.
    let ch2 = channel(&conn).await;
    let mut c = consume(&ch2, "events", 3, FieldTable::default())
        .await
        .expect("consume");
    assert!(next(&mut c, IDLE).await.is_none(), "nothing old for next");
    publish(&ch, "events", "m10", None).await;
    assert_eq!(just_bodies(&take_all(&ch2, &mut c).await), vec!["m10".to_string()]);

    // Acks removed nothing.
    assert_eq!(depth(&ch, "events").await, 11);
    let ch3 = channel(&conn).await;
    let mut c = consume(&ch3, "events", 100, table(&[("x-stream-offset", s("first"))]))
        .await
        .expect("consume");
    assert_eq!(just_bodies(&take_all(&ch3, &mut c).await), bodies(0, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_consumer_resumes_from_its_stored_offset_after_reconnects_and_restarts() {
    let mut broker = TestBroker::start();
    let named = |offset: Option<AMQPValue>| {
        let mut t = table(&[("x-stream-consumer-name", s("billing"))]);
        if let Some(o) = offset {
            t.insert("x-stream-offset".into(), o);
        }
        t
    };
    {
        let conn = connect(&broker.url()).await;
        let ch = confirming(&conn).await;
        declare_stream(&ch, "orders", &[]).await.expect("declare");
        for b in bodies(0, 10) {
            publish(&ch, "orders", &b, None).await;
        }
        let ch = channel(&conn).await;
        let mut c = consume(&ch, "orders", 4, named(Some(s("first"))))
            .await
            .expect("consume");
        // Take four, ack them, and go away with the rest unacked.
        for _ in 0..4 {
            let d = next(&mut c, Duration::from_secs(5)).await.expect("delivery");
            ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .expect("ack");
        }
        sync(&ch).await;
        conn.close(200, "bye".into()).await.expect("close");
    }
    {
        let conn = connect(&broker.url()).await;
        let ch = channel(&conn).await;
        let mut c = consume(&ch, "orders", 3, named(None)).await.expect("consume");
        let got = take_all(&ch, &mut c).await;
        assert_eq!(just_bodies(&got), bodies(4, 10), "resumes after its last ack");
        sync(&ch).await;
        // Another consumer name keeps its own place: none yet, so `next`.
        let ch = channel(&conn).await;
        let mut other = consume(&ch, "orders", 3, table(&[("x-stream-consumer-name", s("audit"))]))
            .await
            .expect("consume");
        assert!(next(&mut other, IDLE).await.is_none());
        conn.close(200, "bye".into()).await.expect("close");
    }
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    publish(&ch, "orders", "m10", None).await;
    let ch = channel(&conn).await;
    let mut c = consume(&ch, "orders", 3, named(Some(s("next"))))
        .await
        .expect("consume");
    assert_eq!(
        just_bodies(&take_all(&ch, &mut c).await),
        vec!["m10".to_string()],
        "after a restart, `next` resumes from the stored offset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_only_whole_old_segments_by_size_and_by_age() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    // Segments of about ten messages; at most about three segments kept.
    let small = [
        ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1_000)),
        ("x-max-length-bytes", AMQPValue::LongInt(3_000)),
    ];
    declare_stream(&ch, "sized", &small).await.expect("declare");
    for b in bodies(0, 200) {
        publish(&ch, "sized", &b, None).await;
    }
    let kept = depth(&ch, "sized").await as usize;
    assert!((10..60).contains(&kept), "kept {kept}");
    let ch2 = channel(&conn).await;
    let mut c = consume(&ch2, "sized", 500, table(&[("x-stream-offset", s("first"))]))
        .await
        .expect("consume");
    let got = take_all(&ch2, &mut c).await;
    let first = got.first().expect("something kept").0 as usize;
    assert_eq!(
        just_bodies(&got),
        bodies(first, 200),
        "what is kept is the newest, whole and in order"
    );
    assert_eq!(got.len(), kept);

    let aged = [
        ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1_000)),
        ("x-max-age", s("60s")),
    ];
    declare_stream(&ch, "aged", &aged).await.expect("declare");
    for b in bodies(0, 50) {
        publish(&ch, "aged", &b, None).await;
    }
    assert_eq!(depth(&ch, "aged").await, 50);
    sync(&ch).await;
    broker.advance(Duration::from_secs(120));
    // Everything sealed is past its age; the active segment (the newest messages) is never removed.
    let left = depth(&ch, "aged").await as usize;
    assert!(left > 0 && left < 15, "left {left}");
    let ch3 = channel(&conn).await;
    let mut c = consume(&ch3, "aged", 100, table(&[("x-stream-offset", s("first"))]))
        .await
        .expect("consume");
    assert_eq!(just_bodies(&take_all(&ch3, &mut c).await), bodies(50 - left, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_consumer_gets_only_its_values_and_skips_segments_that_cannot_match() {
    let mut broker = TestBroker::start();
    {
        let conn = connect(&broker.url()).await;
        let ch = confirming(&conn).await;
        declare_stream(
            &ch,
            "f",
            &[("x-stream-max-segment-size-bytes", AMQPValue::LongInt(2_000))],
        )
        .await
        .expect("declare");
        // Runs of 40 per value (several segments each), and a few unfiltered messages at the end.
        for i in 0..200 {
            let value = ["red", "blue", "red", "green", "red"][i / 40];
            publish(&ch, "f", &format!("{value}-{i}"), Some(value)).await;
        }
        for i in 200..203 {
            publish(&ch, "f", &format!("plain-{i}"), None).await;
        }
    }
    // After a restart every message is read from the files, where the segments' filter summaries apply.
    broker.restart();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    let blue_or_green = AMQPValue::FieldArray(FieldArray::from(vec![s("blue"), s("green")]));
    let mut c = consume(
        &ch,
        "f",
        50,
        table(&[("x-stream-offset", s("first")), ("x-stream-filter", blue_or_green)]),
    )
    .await
    .expect("consume");
    let got = just_bodies(&take_all(&ch, &mut c).await);
    let want: Vec<String> = (40..80)
        .map(|i| format!("blue-{i}"))
        .chain((120..160).map(|i| format!("green-{i}")))
        .collect();
    assert_eq!(got, want);
    let q = broker
        .broker
        .as_ref()
        .expect("broker")
        .vhost("/")
        .expect("vhost")
        .queue("f")
        .expect("queue");
    let info = q.stream_info().expect("a stream");
    assert!(
        info.segments_skipped >= 4,
        "the red segments were skipped unread: {}",
        info.segments_skipped
    );

    let ch = channel(&conn).await;
    let mut c = consume(
        &ch,
        "f",
        50,
        table(&[
            ("x-stream-offset", s("first")),
            ("x-stream-filter", s("green")),
            ("x-stream-match-unfiltered", AMQPValue::Boolean(true)),
        ]),
    )
    .await
    .expect("consume");
    let got = just_bodies(&take_all(&ch, &mut c).await);
    let want: Vec<String> = (120..160)
        .map(|i| format!("green-{i}"))
        .chain((200..203).map(|i| format!("plain-{i}")))
        .collect();
    assert_eq!(got, want, "match-unfiltered adds the messages without a value");
}

/// A broker child process, SIGKILLed when dropped.
struct BrokerProcess(Child);

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_broker(port: u16, data: &Path) -> BrokerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--prometheus-listen", "none", "--log", "warn"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the broker");
    let child = BrokerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_confirmed_message_and_every_stored_offset() {
    let data = tempfile::tempdir().expect("data dir");
    let port = free_port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut confirmed = 0usize;
    for round in 0..3 {
        let broker = spawn_broker(port, data.path());
        let conn = connect(&url).await;
        let ch = confirming(&conn).await;
        // Small segments, so the kill lands on sealed and active ones alike.
        declare_stream(
            &ch,
            "crash",
            &[("x-stream-max-segment-size-bytes", AMQPValue::LongInt(4_000))],
        )
        .await
        .expect("declare");
        // Everything confirmed before is there, in order, each once.
        let reader = channel(&conn).await;
        let mut c = consume(&reader, "crash", 1000, table(&[("x-stream-offset", s("first"))]))
            .await
            .expect("consume");
        let got = take_all(&reader, &mut c).await;
        assert_eq!(just_bodies(&got), bodies(0, confirmed), "round {round}");
        // The named consumer resumes exactly after what it acked before the kill.
        let named = channel(&conn).await;
        let mut c = consume(
            &named,
            "crash",
            10,
            table(&[("x-stream-consumer-name", s("worker")), ("x-stream-offset", s("next"))]),
        )
        .await
        .expect("consume");
        let acked_before = round * 20;
        if round > 0 {
            let d = next(&mut c, Duration::from_secs(5)).await.expect("delivery");
            assert_eq!(offset_of(&d) as usize, acked_before, "round {round}");
        }
        drop(c);
        named.close(200, "done".into()).await.expect("close");
        let named = channel(&conn).await;
        let mut c = consume(
            &named,
            "crash",
            10,
            table(&[
                ("x-stream-consumer-name", s("worker")),
                ("x-stream-offset", AMQPValue::LongLongInt(acked_before as i64)),
            ]),
        )
        .await
        .expect("consume");
        // Publish more, with confirms, and ack 20 more by name; then kill the broker mid-publish.
        for b in bodies(confirmed, confirmed + 300) {
            publish(&ch, "crash", &b, None).await;
        }
        confirmed += 300;
        for _ in 0..20 {
            let d = next(&mut c, Duration::from_secs(5)).await.expect("delivery");
            named
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .expect("ack");
        }
        sync(&named).await;
        // One more, unconfirmed when the broker dies: it may or may not have made it, but never in the middle.
        let maybe = format!("m{confirmed}");
        let unconfirmed = ch
            .basic_publish(
                "".into(),
                "crash".into(),
                BasicPublishOptions::default(),
                maybe.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await;
        drop(broker);
        drop(unconfirmed);
        let broker = spawn_broker(port, data.path());
        let conn = connect(&url).await;
        let ch = channel(&conn).await;
        let mut c = consume(&ch, "crash", 1000, table(&[("x-stream-offset", s("first"))]))
            .await
            .expect("consume");
        let got = just_bodies(&take_all(&ch, &mut c).await);
        assert!(
            got.len() == confirmed || got.len() == confirmed + 1,
            "round {round}: {}",
            got.len()
        );
        confirmed = got.len();
        assert_eq!(got, bodies(0, confirmed), "round {round}");
        drop(broker);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_shows_a_stream_replays_a_named_consumer_and_truncates() {
    use warren_tests::http::request;
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    declare_stream(
        &ch,
        "log",
        &[("x-stream-max-segment-size-bytes", AMQPValue::LongInt(500))],
    )
    .await
    .expect("declare");
    for b in bodies(0, 50) {
        publish(&ch, "log", &b, None).await;
    }
    let named = table(&[("x-stream-consumer-name", s("etl")), ("x-stream-offset", s("first"))]);
    let reader = channel(&conn).await;
    let mut c = consume(&reader, "log", 5, named).await.expect("consume");
    assert_eq!(take_all(&reader, &mut c).await.len(), 50);
    sync(&reader).await;

    let (status, q) = request(broker.admin_addr, "GET", "/api/queues/%2F/log", "guest:guest", "");
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["type"], "stream");
    assert_eq!(q["messages"], 50);
    let st = &q["stream"];
    assert_eq!(
        (st["first_offset"].clone(), st["next_offset"].clone()),
        (0.into(), 50.into())
    );
    assert!(st["segments"].as_u64().expect("segments") > 1, "{st}");
    assert_eq!(st["stored_offsets"]["etl"], 50);
    assert_eq!(st["consumers"][0]["name"], "etl");
    assert_eq!(st["consumers"][0]["lag"], 0);

    // Purge is refused; "replay from" offset 40 moves the connected named consumer there at once.
    let (status, body) = request(
        broker.admin_addr,
        "DELETE",
        "/api/queues/%2F/log/contents",
        "guest:guest",
        "",
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = request(
        broker.admin_addr,
        "POST",
        "/api/queues/%2F/log/stream/offsets/etl",
        "guest:guest",
        r#"{"offset": 40}"#,
    );
    assert_eq!((status, body["offset"].clone()), (200, 40.into()), "{body}");
    assert_eq!(just_bodies(&take_all(&reader, &mut c).await), bodies(40, 50));
    let (status, body) = request(
        broker.admin_addr,
        "POST",
        "/api/queues/%2F/log/stream/offsets/etl",
        "guest:guest",
        r#"{"offset": "sideways"}"#,
    );
    assert_eq!(status, 400, "{body}");

    // Truncate before 30: whole segments only, so the first offset kept is at or before 30.
    let (status, body) = request(
        broker.admin_addr,
        "POST",
        "/api/queues/%2F/log/stream/truncate",
        "guest:guest",
        r#"{"before": 30}"#,
    );
    assert_eq!(status, 200, "{body}");
    let first = body["first_offset"].as_u64().expect("first offset");
    assert!(first > 0 && first <= 30, "{body}");
    assert_eq!(depth(&ch, "log").await as u64, 50 - first);
}

/// Peek on a stream starts at an offset or a time and consumes nothing; dead letters and redrives land in a stream
/// like in any queue; and what takes messages out of a queue (moves, deletes, get) is refused on a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_reads_a_stream_by_offset_and_time_and_dead_letters_and_redrives_land_in_it() {
    use warren_tests::http::request;
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    declare_stream(
        &ch,
        "log",
        &[("x-stream-max-segment-size-bytes", AMQPValue::LongInt(400))],
    )
    .await
    .expect("declare");
    let post = |path: &str, body: &str| request(broker.admin_addr, "POST", path, "guest:guest", body);
    for b in bodies(0, 10) {
        publish(&ch, "log", &b, None).await;
    }
    let (_, q) = request(broker.admin_addr, "GET", "/api/queues/%2F/log", "guest:guest", "");
    let t0 = q["stream"]["last_timestamp_ms"].as_u64().expect("a timestamp");
    broker.advance(Duration::from_secs(3600));
    for b in bodies(10, 20) {
        publish(&ch, "log", &b, None).await;
    }
    let page = |v: &serde_json::Value| -> Vec<(u64, String)> {
        v.as_array()
            .unwrap_or_else(|| panic!("a page: {v}"))
            .iter()
            .map(|m| {
                (
                    m["id"].as_u64().expect("id"),
                    m["body"].as_str().expect("body").to_string(),
                )
            })
            .collect()
    };
    let (status, all) = post("/api/queues/%2F/log/peek", "{}");
    assert_eq!(status, 200, "{all}");
    assert_eq!(page(&all), (0..20).map(|i| (i, format!("m{i}"))).collect::<Vec<_>>());
    let (_, at) = post("/api/queues/%2F/log/peek", r#"{"offset": 5, "count": 3}"#);
    assert_eq!(page(&at), vec![(5, "m5".into()), (6, "m6".into()), (7, "m7".into())]);
    let (_, since) = post(
        "/api/queues/%2F/log/peek",
        &format!(r#"{{"timestamp_ms": {}, "count": 2}}"#, t0 + 1),
    );
    assert_eq!(page(&since), vec![(10, "m10".into()), (11, "m11".into())]);
    let (_, filtered) = post("/api/queues/%2F/log/peek", r#"{"offset": 2, "body_contains": "m1"}"#);
    assert_eq!(
        page(&filtered).len(),
        10,
        "m10..m19 (m1 is before offset 2): {filtered}"
    );
    let (status, body) = post("/api/queues/%2F/log/peek", r#"{"offset": 1, "timestamp_ms": 1}"#);
    assert_eq!(status, 400, "{body}");
    assert_eq!(depth(&ch, "log").await, 20, "peek consumed nothing");

    // A classic queue dead-letters into the stream.
    let work_args = table(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("log")),
    ]);
    ch.queue_declare("work".into(), QueueDeclareOptions::default(), work_args)
        .await
        .expect("declare work");
    let (status, body) = post("/api/queues/%2F/work/peek", r#"{"offset": 1}"#);
    assert_eq!(status, 400, "offset is for streams: {body}");
    publish(&ch, "work", "dead", None).await;
    let got = ch
        .basic_get("work".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    ch.basic_reject(got.delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    sync(&ch).await;
    let (_, dead) = post("/api/queues/%2F/log/peek", r#"{"offset": 20}"#);
    assert_eq!(page(&dead), vec![(20, "dead".into())]);
    assert!(dead[0]["properties"]["headers"]["x-death"].is_array(), "{dead}");

    // A redrive from a classic queue into the stream appends to it.
    ch.queue_declare("dlq".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare dlq");
    for b in ["r0", "r1", "r2"] {
        publish(&ch, "dlq", b, None).await;
    }
    let (status, task) = post(
        "/api/queues/%2F/dlq/move",
        r#"{"to": "queue", "queue": "log", "wait": true}"#,
    );
    assert_eq!((status, task["moved"].clone()), (200, 3.into()), "{task}");
    let (_, redriven) = post("/api/queues/%2F/log/peek", r#"{"offset": 21}"#);
    assert_eq!(
        page(&redriven),
        vec![(21, "r0".into()), (22, "r1".into()), (23, "r2".into())]
    );
    assert_eq!(redriven[0]["properties"]["headers"]["x-redriven"], 1, "{redriven}");
    assert_eq!(depth(&ch, "dlq").await, 0);

    // Nothing takes messages out of a stream.
    for (path, body) in [
        ("/api/queues/%2F/log/move", r#"{"to": "queue", "queue": "dlq"}"#),
        ("/api/queues/%2F/log/delete", r#"{"ids": [0]}"#),
        (
            "/api/queues/%2F/log/get",
            r#"{"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}"#,
        ),
    ] {
        let (status, answer) = post(path, body);
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["reason"].as_str().is_some_and(|r| r.contains("append-only")),
            "{path}: {answer}"
        );
    }
    assert_eq!(depth(&ch, "log").await, 24);
}

/// A policy's `max-length-bytes` and `max-age` lower a live stream's retention at once (RabbitMQ's precedence: the
/// lower wins), what it newly allows to go goes, and a `max-age` that does not read is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_set_a_streams_retention() {
    use warren_tests::http::request;
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = confirming(&conn).await;
    for name in ["capped", "aged"] {
        declare_stream(
            &ch,
            name,
            &[("x-stream-max-segment-size-bytes", AMQPValue::LongInt(300))],
        )
        .await
        .expect("declare");
        for b in bodies(0, 40) {
            publish(&ch, name, &b, None).await;
        }
    }
    let put = |path: &str, body: &str| request(broker.admin_addr, "PUT", path, "guest:guest", body);
    let stream_of = |name: &str| {
        let (_, q) = request(
            broker.admin_addr,
            "GET",
            &format!("/api/queues/%2F/{name}"),
            "guest:guest",
            "",
        );
        q
    };
    let before = stream_of("capped");
    assert_eq!(before["stream"]["first_offset"], 0);
    let (status, body) = put(
        "/api/policies/%2F/cap",
        r#"{"pattern": "^capped$", "definition": {"max-length-bytes": 1000}}"#,
    );
    assert!(status == 201 || status == 204, "{status} {body}");
    let after = stream_of("capped");
    assert_eq!(after["policy"], "cap", "{after}");
    assert_eq!(after["stream"]["max_bytes"], 1000, "{after}");
    let first = after["stream"]["first_offset"].as_u64().expect("first offset");
    assert!(first > 0, "old segments went at once: {after}");
    assert!(
        after["stream"]["bytes"].as_u64().expect("bytes") <= 1000 + 300,
        "{after}"
    );
    assert_eq!(depth(&ch, "capped").await as u64, 40 - first);

    let (status, body) = put(
        "/api/policies/%2F/bad-age",
        r#"{"pattern": "^aged$", "definition": {"max-age": "7X"}}"#,
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = put(
        "/api/policies/%2F/age",
        r#"{"pattern": "^aged$", "definition": {"max-age": "1h"}}"#,
    );
    assert!(status == 201 || status == 204, "{status} {body}");
    assert_eq!(stream_of("aged")["stream"]["max_age_ms"], 3_600_000);
    assert_eq!(
        stream_of("aged")["stream"]["first_offset"],
        0,
        "nothing is an hour old yet"
    );
    broker.advance(Duration::from_secs(2 * 3600));
    publish(&ch, "aged", "fresh", None).await;
    broker.advance(Duration::ZERO);
    let aged = stream_of("aged");
    assert!(
        aged["stream"]["first_offset"].as_u64().expect("first") >= 30,
        "only the active segment's messages and the fresh one stay: {aged}"
    );
}
