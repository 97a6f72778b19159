//! MQTT (issue 16) with a real Rust client, rumqttc: QoS 1 messages survive a `kill -9` of the broker between their
//! publish and their delivery to a persistent session; retained messages survive a restart; an MQTT session shows
//! in the admin API with its protocol and client id, and its queue like any other; AMQP and MQTT meet on amq.topic.

use std::path::Path;
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::process::{free_port, spawn_with_listener, BrokerProcess};
use warren_tests::TestBroker;

const WAIT: Duration = Duration::from_secs(10);

fn client(id: &str, port: u16, clean: bool) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(clean);
    o.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(o, 100)
}

/// Drives `events` until `want` publishes arrived (their payloads), or fails after `WAIT`.
async fn receive(events: &mut EventLoop, want: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < want {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.push(p.payload.to_vec()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT connection failed: {e}"),
            Err(_) => panic!("only {} of {want} messages arrived", got.len()),
        }
    }
    got
}

/// Drives `events` until `n` PUBACKs (or SUBACKs, with `suback`) came back.
async fn acks(events: &mut EventLoop, n: usize, suback: bool) {
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen < n {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) if !suback => seen += 1,
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if suback => seen += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("MQTT connection failed: {e}"),
            Err(_) => panic!("only {seen} of {n} acks arrived"),
        }
    }
}

fn spawn_broker(amqp: u16, mqtt: u16, data: &Path) -> BrokerProcess {
    spawn_with_listener(
        env!("CARGO_BIN_EXE_warren-test-broker"),
        amqp,
        "--mqtt-listen",
        mqtt,
        data,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_survive_a_kill_9_between_publish_and_delivery() {
    let data = tempfile::tempdir().expect("tempdir");
    let (amqp, mqtt) = (free_port(), free_port());
    let mut broker = spawn_broker(amqp, mqtt, data.path());
    // A persistent session subscribes, then goes away.
    let (sub, mut sub_events) = client("alarm-panel", mqtt, false);
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await.expect("subscribe");
    acks(&mut sub_events, 1, true).await;
    sub.disconnect().await.expect("disconnect");
    while sub_events.poll().await.is_ok() {}
    // Another client publishes at QoS 1: each PUBACK means stored.
    let (publisher, mut pub_events) = client("sensor", mqtt, true);
    for i in 0..50 {
        publisher
            .publish(
                format!("alerts/zone{}", i % 5),
                QoS::AtLeastOnce,
                false,
                format!("a{i}"),
            )
            .await
            .expect("publish");
    }
    acks(&mut pub_events, 50, false).await;
    drop(broker);
    broker = spawn_broker(amqp, mqtt, data.path());
    let (_sub, mut sub_events) = client("alarm-panel", mqtt, false);
    let mut got: Vec<String> = receive(&mut sub_events, 50)
        .await
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .collect();
    got.sort_by_key(|s| s[1..].parse::<u32>().unwrap_or(0));
    assert_eq!(got, (0..50).map(|i| format!("a{i}")).collect::<Vec<_>>());
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_survive_a_restart_and_amqp_meets_mqtt_on_amq_topic() {
    let mut broker = TestBroker::start();
    let port = broker.mqtt_addr.expect("an MQTT listener").port();
    let (c, mut events) = client("thermostat", port, true);
    c.publish("home/kitchen/temp", QoS::AtLeastOnce, true, "21.5")
        .await
        .expect("publish");
    acks(&mut events, 1, false).await;
    c.disconnect().await.ok();
    broker.restart();
    let port = broker.mqtt_addr.expect("an MQTT listener").port();
    let (s, mut events) = client("display", port, true);
    s.subscribe("home/+/temp", QoS::AtLeastOnce).await.expect("subscribe");
    assert_eq!(receive(&mut events, 1).await, vec![b"21.5".to_vec()]);

    // An AMQP publish to amq.topic reaches the MQTT subscriber; an MQTT publish reaches an AMQP queue.
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "from-mqtt".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.queue_bind(
        "from-mqtt".into(),
        "amq.topic".into(),
        "home.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.basic_publish(
        "amq.topic".into(),
        "home.hall.temp".into(),
        BasicPublishOptions::default(),
        b"19.0",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert_eq!(receive(&mut events, 1).await, vec![b"19.0".to_vec()]);
    s.publish("home/attic/temp", QoS::AtLeastOnce, false, "30.1")
        .await
        .expect("publish");
    acks(&mut events, 1, false).await;
    let mut keys = Vec::new();
    while let Some(m) = ch
        .basic_get("from-mqtt".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        keys.push((
            m.delivery.routing_key.to_string(),
            m.delivery.properties.delivery_mode().unwrap_or(1),
        ));
    }
    assert_eq!(
        keys,
        vec![("home.hall.temp".to_string(), 1), ("home.attic.temp".to_string(), 2)],
        "the AMQP publish, then the MQTT QoS 1 publish (persistent)"
    );

    // The admin API shows the MQTT connection with its protocol and client id, and its session queue.
    let (_, conns) = request(broker.admin_addr, "GET", "/api/connections", "guest:guest", "");
    let mqtt = conns
        .as_array()
        .and_then(|a| a.iter().find(|c| c["user_provided_name"] == "display"))
        .unwrap_or_else(|| panic!("the MQTT connection is listed: {conns}"));
    assert_eq!(mqtt["protocol"], "MQTT 3.1.1");
    let (status, q) = request(
        broker.admin_addr,
        "GET",
        "/api/queues/%2F/mqtt-subscription-displayqos1",
        "guest:guest",
        "",
    );
    assert_eq!(status, 200, "{q}");
    let metrics = warren_tests::http::get_text(broker.admin_addr, "/metrics", Some("guest:guest"), None);
    assert!(
        metrics
            .body
            .contains("warren_protocol_connections{protocol=\"MQTT 3.1.1\"} 1"),
        "per-protocol connections: {}",
        metrics.body
    );
}
