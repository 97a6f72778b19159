//! STOMP (issue 16) from Rust: messages a RECEIPT confirmed survive a `kill -9`; malformed, oversized and refused
//! frames get an ERROR frame and close only their connection; a STOMP connection shows in the admin API and in
//! Prometheus with its protocol; STOMP and AMQP (lapin) meet on the same queues with properties intact. The
//! stomp.py suite (`tests/python/test_stomp.py`) covers the client's view: ack modes, transactions, heart-beats.
//!
//! The client here is a few lines over the broker's own frame codec, so a test can also send what no client would.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_broker::stomp::codec::{decode, encode, Decoded, Frame, Limits};
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::process::{free_port, spawn_with_listener, BrokerProcess};
use warren_tests::TestBroker;

const WAIT: Duration = Duration::from_secs(10);

struct Stomp {
    stream: TcpStream,
    buf: BytesMut,
}

impl Stomp {
    async fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        Stomp {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects as guest with STOMP 1.2 and returns the CONNECTED frame.
    async fn connect(port: u16) -> (Self, Frame) {
        let mut s = Self::open(port).await;
        s.write(
            Frame::new("CONNECT")
                .header("accept-version", "1.2")
                .header("host", "/")
                .header("login", "guest")
                .header("passcode", "guest"),
        )
        .await;
        let connected = s.recv().await.expect("CONNECTED");
        assert_eq!(connected.command, "CONNECTED", "{connected:?}");
        (s, connected)
    }

    async fn write(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        encode(&f, &mut out);
        self.raw(&out).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame (heart-beats skipped); `None` once the broker closed the connection.
    async fn recv(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match decode(&mut self.buf, &Limits::default()).expect("the broker sends valid frames") {
                Some(Decoded::Frame(f)) => return Some(f),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("no frame from the broker in {WAIT:?}"),
            }
        }
    }

    /// An ERROR frame's `message`, then the connection's end.
    async fn expect_error(&mut self) -> String {
        let f = self.recv().await.expect("an ERROR frame");
        assert_eq!(f.command, "ERROR", "{f:?}");
        assert!(self.recv().await.is_none(), "the connection closes after an ERROR");
        f.get("message").unwrap_or_default().to_string()
    }
}

fn send(destination: &str, body: &str) -> Frame {
    let mut f = Frame::new("SEND").header("destination", destination);
    f.body = Bytes::copy_from_slice(body.as_bytes());
    f
}

fn spawn_broker(amqp: u16, stomp: u16, data: &Path) -> BrokerProcess {
    spawn_with_listener(
        env!("CARGO_BIN_EXE_warren-test-broker"),
        amqp,
        "--stomp-listen",
        stomp,
        data,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipted_persistent_sends_survive_a_kill_9_and_unacked_deliveries_come_back() {
    let data = tempfile::tempdir().expect("tempdir");
    let (amqp, port) = (free_port(), free_port());
    let mut broker = spawn_broker(amqp, port, data.path());
    let (mut c, _) = Stomp::connect(port).await;
    for i in 0..50 {
        c.write(
            send("/queue/orders", &format!("o{i}"))
                .header("persistent", "true")
                .header("receipt", &format!("r{i}")),
        )
        .await;
    }
    for i in 0..50 {
        let r = c.recv().await.expect("a RECEIPT");
        assert_eq!(
            (r.command.as_str(), r.get("receipt-id")),
            ("RECEIPT", Some(format!("r{i}").as_str()))
        );
    }
    // A RECEIPT means stored: the broker dies at once.
    broker.kill();
    broker = spawn_broker(amqp, port, data.path());
    let (mut c, _) = Stomp::connect(port).await;
    c.write(
        Frame::new("SUBSCRIBE")
            .header("id", "s1")
            .header("destination", "/queue/orders")
            .header("ack", "client-individual"),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..50 {
        let m = c.recv().await.expect("a MESSAGE");
        assert_eq!(m.command, "MESSAGE");
        assert_eq!(m.get("persistent"), Some("true"));
        got.push(String::from_utf8_lossy(&m.body).into_owned());
        if got.len() <= 10 {
            let id = m.get("ack").expect("an ack header in 1.2").to_string();
            c.write(Frame::new("ACK").header("id", &id)).await;
        }
    }
    assert_eq!(got, (0..50).map(|i| format!("o{i}")).collect::<Vec<_>>());
    // The 40 not acked go back when the connection ends, and survive another kill.
    c.write(Frame::new("DISCONNECT").header("receipt", "bye")).await;
    assert_eq!(
        c.recv()
            .await
            .and_then(|f| f.get("receipt-id").map(str::to_string))
            .as_deref(),
        Some("bye")
    );
    drop(c);
    let conn = connect(&format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f")).await;
    let ch = channel(&conn).await;
    // The connection lets go of them just after its last RECEIPT: wait (bounded) until they are back.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let q = ch
            .queue_declare(
                "orders".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue is there");
        if q.message_count() == 40 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} ready, not 40",
            q.message_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_an_error_frame_and_close_only_their_connection() {
    let broker = TestBroker::start();
    let port = broker.stomp_addr.expect("a STOMP listener").port();

    let mut c = Stomp::open(port).await;
    c.write(send("/queue/q", "before CONNECT")).await;
    assert_eq!(c.expect_error().await, "Bad CONNECT");

    let mut c = Stomp::open(port).await;
    c.write(
        Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("login", "guest")
            .header("passcode", "wrong"),
    )
    .await;
    assert_eq!(c.expect_error().await, "Bad CONNECT");

    let mut c = Stomp::open(port).await;
    c.write(Frame::new("CONNECT").header("accept-version", "2.0")).await;
    assert_eq!(c.expect_error().await, "Version mismatch");

    let (mut c, _) = Stomp::connect(port).await;
    c.raw(b"SEND\ndestination:/queue/q\nno colon here\n\n\0").await;
    assert_eq!(c.expect_error().await, "Malformed frame");

    let (mut c, _) = Stomp::connect(port).await;
    c.raw(b"SEND\ndestination:/queue/q\ncontent-length:99999999999\n\n")
        .await;
    assert_eq!(c.expect_error().await, "Malformed frame");

    let (mut c, _) = Stomp::connect(port).await;
    c.write(send("/bogus/x", "?").header("receipt", "r1")).await;
    let e = c.recv().await.expect("ERROR");
    assert_eq!(
        (e.command.as_str(), e.get("message"), e.get("receipt-id")),
        ("ERROR", Some("Unknown destination"), Some("r1"))
    );
    assert!(String::from_utf8_lossy(&e.body).contains("/bogus/x"), "{e:?}");

    let (mut c, _) = Stomp::connect(port).await;
    c.write(
        Frame::new("SUBSCRIBE")
            .header("id", "1")
            .header("destination", "/amq/queue/missing"),
    )
    .await;
    assert_eq!(c.expect_error().await, "not_found");

    let (mut c, _) = Stomp::connect(port).await;
    c.write(Frame::new("COMMIT").header("transaction", "never-begun")).await;
    assert_eq!(c.expect_error().await, "Bad transaction");

    // Through all of it the broker carried on.
    let (mut c, _) = Stomp::connect(port).await;
    c.write(send("/queue/fine", "ok").header("receipt", "r")).await;
    assert_eq!(c.recv().await.map(|f| f.command), Some("RECEIPT".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_and_amqp_meet_on_the_same_queues_and_the_admin_api_shows_the_protocol() {
    let broker = TestBroker::start();
    let port = broker.stomp_addr.expect("a STOMP listener").port();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare("jobs".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");

    // AMQP → STOMP: body, content type, persistence and headers.
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("t1".into()));
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    ch.basic_publish(
        "".into(),
        "jobs".into(),
        BasicPublishOptions::default(),
        b"{\"job\":1}",
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_correlation_id("c-9".into())
            .with_headers(headers),
    )
    .await
    .expect("publish");
    let (mut c, connected) = Stomp::connect(port).await;
    assert_eq!(connected.get("version"), Some("1.2"));
    c.write(
        Frame::new("SUBSCRIBE")
            .header("id", "a")
            .header("destination", "/amq/queue/jobs"),
    )
    .await;
    let m = c.recv().await.expect("MESSAGE");
    assert_eq!(&m.body[..], b"{\"job\":1}");
    for (h, v) in [
        ("subscription", "a"),
        ("destination", "/queue/jobs"),
        ("content-type", "application/json"),
        ("persistent", "true"),
        ("correlation-id", "c-9"),
        ("tenant", "t1"),
        ("attempt", "3"),
    ] {
        assert_eq!(m.get(h), Some(v), "header {h}: {m:?}");
    }

    // STOMP → AMQP, through amq.topic.
    ch.queue_declare("alerts".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    ch.queue_bind(
        "alerts".into(),
        "amq.topic".into(),
        "alerts.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let mut bin = send("/topic/alerts.disk", "").header("content-type", "application/octet-stream");
    bin.body = Bytes::from_static(b"bin\0ary");
    c.write(
        bin.header("priority", "5")
            .header("x-origin", "stomp")
            .header("receipt", "r"),
    )
    .await;
    assert_eq!(c.recv().await.map(|f| f.command), Some("RECEIPT".to_string()));
    let got = ch
        .basic_get("alerts".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(&got.delivery.data[..], b"bin\0ary");
    let p = &got.delivery.properties;
    assert_eq!(p.priority(), &Some(5));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/octet-stream")
    );
    assert_eq!(
        p.headers().as_ref().and_then(|h| h.inner().get("x-origin").cloned()),
        Some(AMQPValue::LongString("stomp".into()))
    );

    let (_, conns) = request(broker.admin_addr, "GET", "/api/connections", "guest:guest", "");
    assert!(
        conns
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["protocol"] == "STOMP 1.2")),
        "the STOMP connection is listed: {conns}"
    );
    let metrics = warren_tests::http::get_text(broker.admin_addr, "/metrics", Some("guest:guest"), None);
    assert!(
        metrics
            .body
            .contains("warren_protocol_connections{protocol=\"STOMP 1.2\"} 1"),
        "per-protocol connections: {}",
        metrics.body
    );
    for line in [
        "warren_protocol_messages_published_total{protocol=\"STOMP 1.2\"} 1",
        "warren_protocol_messages_delivered_total{protocol=\"STOMP 1.2\"} 1",
        "warren_protocol_messages_published_total{protocol=\"AMQP 0-9-1\"} 1",
    ] {
        assert!(metrics.body.contains(line), "{line}: {}", metrics.body);
    }
}
