//! Memory and disk alarms (issue 10, item 3): past a limit, publishing connections get `connection.blocked` and are
//! no longer read, consumers keep draining, and `connection.unblocked` follows when the pressure passes. The limits
//! are moved at run time (the process's real memory is shared by every test in this binary).

use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, connection, queue, AMQPClass};
use warren_broker::alarm::Watermark;
use warren_tests::http::request;
use warren_tests::raw::RawClient;
use warren_tests::TestBroker;

/// Waits (bounded) for a condition the broker's 100 ms monitor makes true.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn declare(c: &mut RawClient, name: &str) -> u32 {
    c.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            ..Default::default()
        })),
    );
    match c.recv_method() {
        Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))) => ok.message_count,
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

fn get(c: &mut RawClient, name: &str) -> bool {
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: name.into(),
            no_ack: true,
        })),
    );
    loop {
        match c.recv_method() {
            Some((1, AMQPClass::Basic(basic::AMQPMethod::GetOk(_)))) => return true,
            Some((1, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)))) => return false,
            Some(_) => continue,
            None => panic!("consumer connection closed"),
        }
    }
}

#[test]
fn memory_alarm_blocks_publishers_and_lets_consumers_drain() {
    let broker = TestBroker::start_with(|c| c.memory_high_watermark = Watermark::Bytes(0));
    let alarms = broker.broker.as_ref().expect("broker").alarms.clone();
    let mut publisher = RawClient::handshake_with_caps(broker.addr, 0, &["connection.blocked"]);
    let mut consumer = RawClient::handshake(broker.addr, 0);
    declare(&mut consumer, "flood");
    publisher.publish("flood", b"before");
    wait_for("the first message", || declare(&mut consumer, "flood") == 1);

    alarms.set_memory_limit(1);
    wait_for("the memory alarm", || alarms.state().memory);
    match publisher.recv_method() {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b)))) => {
            assert_eq!(b.reason.as_str(), "low on memory")
        }
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    // Operators see it: the overview, /metrics.
    let (status, overview) = request(broker.admin_addr, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(status, 200);
    assert_eq!(overview["resources"]["memory_alarm"], true, "{overview}");
    assert_eq!(overview["resources"]["memory_limit"], 1);
    assert!(overview["resources"]["memory_used"].as_u64().is_some_and(|m| m > 1));
    let (_, metrics) = request(broker.admin_addr, "GET", "/metrics", "guest:guest", "");
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains("warren_alarm{resource=\"memory\"} 1"), "{metrics}");
    assert!(metrics.contains("warren_alarm{resource=\"disk\"} 0"), "{metrics}");
    publisher.publish("flood", b"during");
    // The consumer is not blocked: it drains, and the blocked publisher's message is not read meanwhile.
    assert!(get(&mut consumer, "flood"), "a consumer takes what was queued");
    assert_eq!(declare(&mut consumer, "flood"), 0, "the blocked publisher is not read");

    alarms.set_memory_limit(0);
    match publisher.recv_method() {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))) => {}
        other => panic!("expected connection.unblocked, got {other:?}"),
    }
    wait_for("the publish held back by the alarm", || {
        declare(&mut consumer, "flood") == 1
    });
}

#[test]
fn disk_alarm_blocks_publishers_that_were_not_told() {
    // Free space can never reach u64::MAX bytes: the alarm is on from the first sample.
    let broker = TestBroker::start_with(|c| c.disk_free_limit = u64::MAX);
    let alarms = broker.broker.as_ref().expect("broker").alarms.clone();
    wait_for("the disk alarm", || alarms.state().disk);
    let mut publisher = RawClient::handshake(broker.addr, 0);
    let mut consumer = RawClient::handshake(broker.addr, 0);
    declare(&mut consumer, "q");
    publisher.publish("q", b"held");
    publisher.publish("q", b"held too");
    assert!(!get(&mut consumer, "q"), "nothing from the blocked publisher");
    alarms.set_disk_free_limit(0);
    wait_for("the publishes", || declare(&mut consumer, "q") == 2);
}
