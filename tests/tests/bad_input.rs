//! Hostile and broken peers: each case checks the reply code the broker answers with, and that the broker keeps
//! serving other connections afterwards.

use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, queue, AMQPClass, BasicProperties};
use warren_tests::raw::{Closed, RawClient};
use warren_tests::TestBroker;

/// After each bad peer, a well-behaved one must still get through the handshake and declare a queue.
fn still_serving(broker: &TestBroker) {
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "alive".into(),
            ..Default::default()
        })),
    );
    match c.recv_method() {
        Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("broker stopped serving: {other:?}"),
    }
}

#[test]
fn wrong_protocol_header_gets_ours_back() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(broker.addr);
    c.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_raw(8), b"AMQP\x00\x00\x09\x01");
    assert!(c.read_raw(1).is_empty(), "and the socket is closed");
    let mut c = RawClient::connect(broker.addr);
    c.send_raw(b"AMQP\x00\x00\x08\x00"); // 0-8
    assert_eq!(c.read_raw(8), b"AMQP\x00\x00\x09\x01");
    still_serving(&broker);
}

#[test]
fn oversized_frame_is_501() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    // A body frame of 200 000 bytes, above the negotiated 131 072.
    let mut frame = vec![3u8, 0, 1];
    frame.extend_from_slice(&200_000u32.to_be_bytes());
    frame.extend(std::iter::repeat_n(0u8, 200_000));
    frame.push(0xCE);
    c.send_raw(&frame);
    assert!(matches!(c.expect_close(), Closed::Connection(501, _)));
    still_serving(&broker);
}

#[test]
fn frame_declaring_4_gib_is_refused_from_its_header() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    // Only the 7-byte header: the broker must not wait for (or buffer) 4 GiB.
    c.send_raw(&[1, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(matches!(c.expect_close(), Closed::Connection(501, _)));
    still_serving(&broker);
}

#[test]
fn garbage_frame_is_a_frame_error() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_raw(&[0x41, 0x42, 0x43, 0, 0, 0, 2, 1, 2, 0xCE]);
    assert!(matches!(c.expect_close(), Closed::Connection(501, _)));
    // A well-typed method frame whose arguments do not parse.
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_raw(&[1, 0, 1, 0, 0, 0, 5, 0, 50, 0, 10, 0xFF, 0xCE]);
    assert!(matches!(c.expect_close(), Closed::Connection(502, _)));
    // A bad frame-end octet.
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_raw(&[8, 0, 0, 0, 0, 0, 0, 0x00]);
    assert!(matches!(c.expect_close(), Closed::Connection(501, _)));
    // An unknown class.
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_raw(&[1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 10, 0xCE]);
    assert!(matches!(c.expect_close(), Closed::Connection(540, _)));
    still_serving(&broker);
}

#[test]
fn method_on_a_closed_channel_is_504() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        7,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            ..Default::default()
        })),
    );
    assert!(matches!(c.expect_close(), Closed::Connection(504, _)));
    still_serving(&broker);
}

#[test]
fn content_body_without_header_is_505() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send(AMQPFrame::Body(1, b"orphan body".to_vec()));
    assert!(matches!(c.expect_close(), Closed::Connection(505, _)));
    // And a header that follows no publish.
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send(AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 3,
            properties: BasicProperties::default(),
        },
    ));
    assert!(matches!(c.expect_close(), Closed::Connection(505, _)));
    // And a method where the body should be.
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            routing_key: "q".into(),
            ..Default::default()
        })),
    );
    c.send(AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 3,
            properties: BasicProperties::default(),
        },
    ));
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    );
    assert!(matches!(c.expect_close(), Closed::Connection(505, _)));
    still_serving(&broker);
}

#[test]
fn ack_of_unknown_tag_is_406_on_the_channel() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 42,
            multiple: false,
        })),
    );
    match c.expect_close() {
        Closed::Channel(1, 406, text) => {
            assert!(text.contains("unknown delivery tag 42"), "{text}")
        }
        other => panic!("expected channel close 406, got {other:?}"),
    }
    still_serving(&broker);
}

#[test]
fn unsupported_options_are_540() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    // basic.qos with prefetch_size = 1 (written by hand: amq-protocol has no field for it).
    c.send_raw(&[1, 0, 1, 0, 0, 0, 11, 0, 60, 0, 10, 0, 0, 0, 1, 0, 0, 0, 0xCE]);
    assert!(matches!(c.expect_close(), Closed::Connection(540, _)));
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            immediate: true,
            ..Default::default()
        })),
    );
    assert!(matches!(c.expect_close(), Closed::Connection(540, _)));
    still_serving(&broker);
}

#[test]
fn bad_login_is_403_when_the_client_asks_for_it() {
    use amq_protocol::protocol::connection;
    use amq_protocol::types::{AMQPValue, FieldTable};
    let broker = TestBroker::start();
    let mut c = RawClient::connect(broker.addr);
    c.send_raw(b"AMQP\x00\x00\x09\x01");
    c.recv_method().expect("start");
    let mut caps = FieldTable::default();
    caps.insert("authentication_failure_close".into(), AMQPValue::Boolean(true));
    let mut props = FieldTable::default();
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    c.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: "\0guest\0wrong".into(),
            locale: "en_US".into(),
        })),
    );
    assert!(matches!(c.expect_close(), Closed::Connection(403, _)));
    still_serving(&broker);
}

#[test]
fn silent_peer_is_dropped_after_two_heartbeat_intervals() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 1);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let started = std::time::Instant::now();
    // Read (heartbeats from the broker) but never write: the broker must hang up.
    let mut heartbeats = 0;
    loop {
        match c.recv() {
            Some(AMQPFrame::Heartbeat) => heartbeats += 1,
            Some(_) => {}
            None => break,
        }
    }
    let elapsed = started.elapsed();
    assert!(heartbeats >= 1, "the broker sends heartbeats");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(7),
        "dropped after {elapsed:?}"
    );
    still_serving(&broker);
}
