//! Field tables nested past the bound (issue 10, item 1). Each of these overflowed a worker's stack and aborted the
//! whole broker process before the bound existed; now each gets connection.close 502 and the broker keeps serving.

use warren_tests::raw::{Closed, RawClient};
use warren_tests::TestBroker;

/// A field table nested `depth` levels deep, encoded by hand (building it with amq-protocol would recurse). With
/// `arrays`, each level is a table holding an array holding the next table.
fn nested_table(depth: usize, arrays: bool) -> Vec<u8> {
    let mut inner = 0u32.to_be_bytes().to_vec();
    let mut level = 1;
    while level < depth {
        let mut v = Vec::with_capacity(inner.len() + 9);
        if arrays {
            v.extend_from_slice(&(inner.len() as u32 + 8).to_be_bytes());
            v.extend_from_slice(&[1, b'n', b'A']);
            v.extend_from_slice(&(inner.len() as u32 + 1).to_be_bytes());
            v.push(b'F');
            level += 2;
        } else {
            // An empty key: 6 bytes a level, so 1,200 levels fit a pre-tune 8 KiB frame.
            v.extend_from_slice(&(inner.len() as u32 + 2).to_be_bytes());
            v.extend_from_slice(&[0, b'F']);
            level += 1;
        }
        v.extend_from_slice(&inner);
        inner = v;
    }
    inner
}

fn short_str(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

fn still_serving(broker: &TestBroker) {
    let mut c = RawClient::handshake(broker.addr, 0);
    c.send_method(
        1,
        amq_protocol::protocol::AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "alive".into(),
                ..Default::default()
            },
        )),
    );
    assert!(c.recv_method().is_some(), "broker stopped serving");
}

fn expect_502(c: &mut RawClient) {
    match c.expect_close() {
        Closed::Connection(502, text) => assert!(text.contains("nested deeper than 100"), "{text}"),
        other => panic!("expected connection.close 502, got {other:?}"),
    }
}

#[test]
fn start_ok_nested_1200_deep_before_login_is_502() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(broker.addr);
    c.send_raw(b"AMQP\x00\x00\x09\x01");
    c.recv_method().expect("connection.start");
    let mut payload = vec![0, 10, 0, 11];
    payload.extend_from_slice(&nested_table(1200, false));
    short_str(&mut payload, "PLAIN");
    let response = b"\0nobody\0wrong";
    payload.extend_from_slice(&(response.len() as u32).to_be_bytes());
    payload.extend_from_slice(response);
    short_str(&mut payload, "en_US");
    assert!(payload.len() < 8192, "fits the pre-tune frame_max");
    c.send_raw(&frame(1, 0, &payload));
    expect_502(&mut c);
    still_serving(&broker);
}

#[test]
fn queue_declare_arguments_nested_10000_deep_are_502() {
    let broker = TestBroker::start();
    for arrays in [false, true] {
        let mut c = RawClient::handshake(broker.addr, 0);
        let mut payload = vec![0, 50, 0, 10, 0, 0];
        short_str(&mut payload, "deep");
        payload.push(0);
        payload.extend_from_slice(&nested_table(if arrays { 20_000 } else { 10_000 }, arrays));
        c.send_raw(&frame(1, 1, &payload));
        expect_502(&mut c);
    }
    still_serving(&broker);
}

#[test]
fn message_headers_nested_1180_deep_are_refused_not_stored() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    // basic.publish to the default exchange, routing key "alive" (declared below, so it would route).
    let mut publish = vec![0, 60, 0, 40, 0, 0];
    short_str(&mut publish, "");
    short_str(&mut publish, "alive");
    publish.push(0);
    c.send_raw(&frame(1, 1, &publish));
    // Content header: class 60, weight 0, body size 1, flags = headers only, then the table.
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&1u64.to_be_bytes());
    header.extend_from_slice(&(1u16 << 13).to_be_bytes());
    header.extend_from_slice(&nested_table(1180, false));
    c.send_raw(&frame(2, 1, &header));
    c.send_raw(&frame(3, 1, b"x"));
    expect_502(&mut c);
    still_serving(&broker);
    let depth = broker
        .broker
        .as_ref()
        .and_then(|b| b.vhost("/"))
        .and_then(|v| v.queue("alive"))
        .map(|q| q.message_count());
    assert_eq!(depth, Some(0), "nothing was queued");
}
