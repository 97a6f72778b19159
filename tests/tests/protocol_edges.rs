//! Protocol behaviour real clients depend on (issue 10, items 9, 10 and 12): the close handshake with input still in
//! flight, crossed channel.close, consume-ok ordering, heartbeats on the wrong channel, update-secret.

use std::io::Write;

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass, BasicProperties};
use warren_tests::raw::{Closed, RawClient};
use warren_tests::TestBroker;

fn encode(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new())).expect("encode").write
}

fn declare(c: &mut RawClient, name: &str) {
    c.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            ..Default::default()
        })),
    );
    match c.recv_method() {
        Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

#[test]
fn close_followed_by_thousands_of_buffered_frames_still_gets_close_ok() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    // connection.close, then 20,000 publishes (header and body included) that were already in the client's socket
    // buffer: about 1.3 MB, far more than one read of the broker's.
    let mut bytes = encode(&AMQPFrame::Method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    ));
    let publish = encode(&AMQPFrame::Method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            routing_key: "nowhere".into(),
            ..Default::default()
        })),
    ));
    let header = encode(&AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 16,
            properties: BasicProperties::default(),
        },
    ));
    let body = encode(&AMQPFrame::Body(1, vec![7u8; 16]));
    for _ in 0..20_000 {
        bytes.extend_from_slice(&publish);
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&body);
    }
    // Keep writing well past the close (about 33 MB in all, more than the kernel buffers on both sides), from
    // another thread, as a client does whose publishes were queued behind its connection.close. Before the fix the
    // broker hung up with unread input: the kernel reset the connection, and these writes failed with EPIPE or
    // ECONNRESET (the Node client's close callback never fired).
    let mut writer = c.stream.try_clone().expect("clone the socket");
    let sent = std::thread::spawn(move || {
        for _ in 0..25 {
            writer.write_all(&bytes)?;
        }
        writer.shutdown(std::net::Shutdown::Write)
    });
    match c.recv_method() {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
    let sent = sent.join().expect("writer thread");
    assert!(sent.is_ok(), "every buffered frame was taken, nothing reset: {sent:?}");
    assert_eq!(c.recv(), None, "then the broker closes its side");
}

#[test]
fn crossed_channel_close_keeps_the_connection() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    // The broker closes channel 1 (404: no such exchange) while the client, not having read that, closes it too.
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "missing".into(),
            routing_key: "k".into(),
            ..Default::default()
        })),
    );
    c.send(AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 0,
            properties: BasicProperties::default(),
        },
    ));
    c.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "client closing".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    let mut saw_close = false;
    let mut saw_close_ok = false;
    while !(saw_close && saw_close_ok) {
        match c.recv_method() {
            Some((1, AMQPClass::Channel(channel::AMQPMethod::Close(cl)))) => {
                assert_eq!(cl.reply_code, 404);
                saw_close = true;
            }
            Some((1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))) => saw_close_ok = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The client answers the broker's close; before the fix this close-ok killed the connection with 504.
    c.send_method(1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
    c.send_method(2, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    match c.recv_method() {
        Some((2, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) => {}
        other => panic!("the connection should live on, got {other:?}"),
    }
    // And channel 1 can be opened again.
    c.send_method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    match c.recv_method() {
        Some((1, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) => {}
        other => panic!("channel 1 should reopen, got {other:?}"),
    }
}

#[test]
fn exclusive_consumer_refusal_comes_without_a_consume_ok() {
    let broker = TestBroker::start();
    let mut owner = RawClient::handshake(broker.addr, 0);
    declare(&mut owner, "solo");
    owner.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "solo".into(),
            consumer_tag: "first".into(),
            exclusive: true,
            ..Default::default()
        })),
    );
    assert!(matches!(
        owner.recv_method(),
        Some((1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))))
    ));
    let mut other = RawClient::handshake(broker.addr, 0);
    other.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "solo".into(),
            consumer_tag: "second".into(),
            ..Default::default()
        })),
    );
    // Before the fix: consume-ok first, then channel.close 403 for the same consumer.
    match other.recv_method() {
        Some((1, AMQPClass::Channel(channel::AMQPMethod::Close(c)))) => assert_eq!(c.reply_code, 403),
        got => panic!("expected channel.close 403 and no consume-ok, got {got:?}"),
    }
}

#[test]
fn heartbeat_on_a_channel_is_a_frame_error_501() {
    let broker = TestBroker::start();
    // On an open channel (1) and on one never opened (5: before the fix, 504 "expected 'channel.open'").
    for channel in [1u8, 5] {
        let mut c = RawClient::handshake(broker.addr, 0);
        c.send_raw(&[8, 0, channel, 0, 0, 0, 0, 0xCE]);
        match c.expect_close() {
            Closed::Connection(501, text) => assert!(text.contains("heartbeat"), "{text}"),
            other => panic!("expected 501, got {other:?}"),
        }
    }
}

#[test]
fn update_secret_checks_the_new_secret() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    let update = |secret: &str| {
        AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(connection::UpdateSecret {
            new_secret: secret.into(),
            reason: "rotation".into(),
        }))
    };
    c.send_method(0, update("guest"));
    assert!(matches!(
        c.recv_method(),
        Some((0, AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(_))))
    ));
    // Before: acknowledged and ignored, whatever the secret.
    c.send_method(0, update("not-the-password"));
    match c.expect_close() {
        Closed::Connection(403, text) => assert!(text.contains("new secret"), "{text}"),
        other => panic!("expected 403, got {other:?}"),
    }
}

/// Acks are settled together at the end of a read batch, but a later method in the same batch still sees them: acks
/// of two deliveries and a channel.close in one write requeue only the third delivery.
#[test]
fn acks_batched_with_a_close_in_one_write_are_settled_before_the_close() {
    let broker = TestBroker::start();
    let mut c = RawClient::handshake(broker.addr, 0);
    declare(&mut c, "batched-acks");
    for i in 0..3u8 {
        c.publish("batched-acks", &[i]);
    }
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "batched-acks".into(),
            consumer_tag: "c".into(),
            ..Default::default()
        })),
    );
    let mut tags = Vec::new();
    while tags.len() < 3 {
        match c.recv_method() {
            Some((1, AMQPClass::Basic(basic::AMQPMethod::Deliver(d)))) => tags.push(d.delivery_tag),
            Some(_) => {}
            None => panic!("the connection closed before three deliveries"),
        }
    }
    let mut bytes = Vec::new();
    for tag in &tags[..2] {
        bytes.extend(encode(&AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: *tag,
                multiple: false,
            })),
        )));
    }
    bytes.extend(encode(&AMQPFrame::Method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )));
    c.send_raw(&bytes);
    loop {
        match c.recv_method() {
            Some((1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))) => break,
            Some(_) => {}
            None => panic!("no close-ok"),
        }
    }
    c.send_method(2, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    c.send_method(
        2,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "batched-acks".into(),
            passive: true,
            ..Default::default()
        })),
    );
    loop {
        match c.recv_method() {
            Some((2, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)))) => {
                assert_eq!(ok.message_count, 1, "only the unacked delivery went back");
                break;
            }
            Some(_) => {}
            None => panic!("no declare-ok"),
        }
    }
}
