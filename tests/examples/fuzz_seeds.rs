//! Writes the seed corpora of the codec fuzz targets (`frame_decoder`, `content_header`, `field_table`) into
//! `fuzz/corpus/<target>/seed-*`, from real frames, property lists and tables made with the broker's own encoders.
//! Each seed is decoded again here before it is written, so a seed that stops decoding after a codec change fails
//! this generator instead of silently starving a fuzzer.
//!
//! `cargo run -p warren-tests --example fuzz_seeds` (rerun after changing the seeds; the files are committed)

use std::path::{Path, PathBuf};

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, channel, connection, exchange, queue, AMQPClass};
use amq_protocol::types::generation::gen_field_table;
use amq_protocol::types::{AMQPValue, DecimalValue, FieldArray, FieldTable};
use bytes::BytesMut;
use warren_broker::amqp::codec::{decode_frame, encode_content, encode_heartbeat, encode_method, Frame};
use warren_broker::amqp::nesting::{parse_properties_bounded, parse_table_bounded};
use warren_broker::amqp::properties::encode_properties;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let path = dir.join(format!("seed-{name}"));
    std::fs::write(&path, bytes).expect("seed file");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

/// Client properties as a real client sends them, with the nested `capabilities` table.
fn client_properties() -> FieldTable {
    let capabilities = table(vec![
        ("publisher_confirms", AMQPValue::Boolean(true)),
        ("consumer_cancel_notify", AMQPValue::Boolean(true)),
        ("basic.nack", AMQPValue::Boolean(true)),
        ("connection.blocked", AMQPValue::Boolean(true)),
    ]);
    table(vec![
        ("product", AMQPValue::LongString("lapin".into())),
        ("version", AMQPValue::LongString("4.0.0".into())),
        ("capabilities", AMQPValue::FieldTable(capabilities)),
    ])
}

/// An `x-death` header as RabbitMQ writes it: an array of tables, each with an array of routing keys (depth 3).
fn x_death() -> FieldTable {
    let death = table(vec![
        ("count", AMQPValue::LongLongInt(2)),
        ("reason", AMQPValue::LongString("rejected".into())),
        ("queue", AMQPValue::LongString("work".into())),
        ("time", AMQPValue::Timestamp(1_764_000_000)),
        ("exchange", AMQPValue::LongString("".into())),
        (
            "routing-keys",
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString("work".into())])),
        ),
    ]);
    table(vec![
        (
            "x-death",
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        ),
        ("x-first-death-reason", AMQPValue::LongString("rejected".into())),
        ("x-first-death-queue", AMQPValue::LongString("work".into())),
    ])
}

/// Queue arguments of the kinds Warren reads.
fn queue_arguments() -> FieldTable {
    table(vec![
        ("x-max-priority", AMQPValue::ShortShortUInt(9)),
        ("x-message-ttl", AMQPValue::LongInt(60_000)),
        ("x-max-length", AMQPValue::LongLongInt(1000)),
        ("x-dead-letter-exchange", AMQPValue::LongString("dlx".into())),
        ("x-overflow", AMQPValue::LongString("reject-publish".into())),
    ])
}

/// One value of every type the codec knows.
fn every_type() -> FieldTable {
    table(vec![
        ("t", AMQPValue::Boolean(true)),
        ("b", AMQPValue::ShortShortInt(-1)),
        ("B", AMQPValue::ShortShortUInt(255)),
        ("s", AMQPValue::ShortInt(-2)),
        ("u", AMQPValue::ShortUInt(2)),
        ("I", AMQPValue::LongInt(-3)),
        ("i", AMQPValue::LongUInt(3)),
        ("l", AMQPValue::LongLongInt(-4)),
        ("f", AMQPValue::Float(1.5)),
        ("d", AMQPValue::Double(f64::NAN)),
        ("D", AMQPValue::DecimalValue(DecimalValue { scale: 2, value: 12345 })),
        ("S", AMQPValue::LongString("long string".into())),
        (
            "A",
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Void, AMQPValue::LongInt(1)])),
        ),
        ("T", AMQPValue::Timestamp(1)),
        (
            "F",
            AMQPValue::FieldTable(table(vec![("inner", AMQPValue::Boolean(false))])),
        ),
        ("x", AMQPValue::ByteArray(vec![0u8, 1, 2, 0xFF].into())),
        ("V", AMQPValue::Void),
    ])
}

fn encode_table(t: &FieldTable) -> Vec<u8> {
    gen_field_table(t)(amq_protocol::frame::WriteContext::from(Vec::new()))
        .expect("encode table")
        .write
}

fn full_properties() -> AMQPProperties {
    AMQPProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(x_death())
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("c-1".into())
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_expiration("60000".into())
        .with_message_id("m-1".into())
        .with_timestamp(1_764_000_000)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren".into())
        .with_cluster_id("c".into())
}

/// A `frame_decoder` input: the read size, `frame_max` (as its two picking bytes), then the stream.
fn stream_seed(read: u8, frame_max_pick: u16, build: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut stream = BytesMut::new();
    build(&mut stream);
    // Every frame must decode, and the stream end on a frame boundary.
    let frame_max = (4096 + u64::from(frame_max_pick) * (131_072 - 4096) / 65_535) as u32;
    let mut check = stream.clone();
    while !check.is_empty() {
        match decode_frame(&mut check, frame_max) {
            Ok(Some(
                Frame::Method(..) | Frame::Publish(..) | Frame::Header(..) | Frame::Body(..) | Frame::Heartbeat(_),
            )) => {}
            other => panic!("a seed frame does not decode: {other:?}"),
        }
    }
    let mut seed = vec![read];
    seed.extend_from_slice(&frame_max_pick.to_be_bytes());
    seed.extend_from_slice(&stream);
    seed
}

fn main() {
    // frame_decoder
    let handshake = stream_seed(0, 0xFFFF, |out| {
        let start_ok = connection::StartOk {
            client_properties: client_properties(),
            mechanism: "PLAIN".into(),
            response: "\0guest\0guest".into(),
            locale: "en_US".into(),
        };
        encode_method(out, 0, AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)));
        let tune_ok = connection::TuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        };
        encode_method(out, 0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)));
        let open = connection::Open {
            virtual_host: "/".into(),
        };
        encode_method(out, 0, AMQPClass::Connection(connection::AMQPMethod::Open(open)));
        encode_method(out, 1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    });
    write("frame_decoder", "handshake", &handshake);

    let topology = stream_seed(7, 0x8000, |out| {
        let x = exchange::Declare {
            exchange: "orders".into(),
            kind: "topic".into(),
            durable: true,
            arguments: table(vec![("alternate-exchange", AMQPValue::LongString("ae".into()))]),
            ..Default::default()
        };
        encode_method(out, 1, AMQPClass::Exchange(exchange::AMQPMethod::Declare(x)));
        let q = queue::Declare {
            queue: "work".into(),
            durable: true,
            arguments: queue_arguments(),
            ..Default::default()
        };
        encode_method(out, 1, AMQPClass::Queue(queue::AMQPMethod::Declare(q)));
        let b = queue::Bind {
            queue: "work".into(),
            exchange: "orders".into(),
            routing_key: "order.*".into(),
            nowait: false,
            arguments: table(vec![("x-match", AMQPValue::LongString("all".into()))]),
        };
        encode_method(out, 1, AMQPClass::Queue(queue::AMQPMethod::Bind(b)));
        let qos = basic::Qos {
            prefetch_count: 10,
            global: false,
        };
        encode_method(out, 1, AMQPClass::Basic(basic::AMQPMethod::Qos(qos)));
        let c = basic::Consume {
            queue: "work".into(),
            consumer_tag: "ctag-1".into(),
            no_ack: false,
            exclusive: false,
            nowait: false,
            no_local: false,
            arguments: table(vec![("x-priority", AMQPValue::LongInt(5))]),
        };
        encode_method(out, 1, AMQPClass::Basic(basic::AMQPMethod::Consume(c)));
    });
    write("frame_decoder", "topology", &topology);

    let publish = stream_seed(1, 0, |out| {
        let p = basic::Publish {
            exchange: "orders".into(),
            routing_key: "order.created".into(),
            mandatory: true,
            immediate: false,
        };
        encode_method(out, 1, AMQPClass::Basic(basic::AMQPMethod::Publish(p)));
        let raw = encode_properties(&full_properties());
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        encode_content(out, 1, &raw, &body, 4096);
        encode_heartbeat(out);
        let ack = basic::Ack {
            delivery_tag: 1,
            multiple: true,
        };
        encode_method(out, 1, AMQPClass::Basic(basic::AMQPMethod::Ack(ack)));
        let close = connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        };
        encode_method(out, 0, AMQPClass::Connection(connection::AMQPMethod::Close(close)));
    });
    write("frame_decoder", "publish", &publish);

    // content_header
    let properties = [
        ("full", full_properties()),
        ("persistent", AMQPProperties::default().with_delivery_mode(2)),
        (
            "headers",
            AMQPProperties::default()
                .with_content_type("text/plain".into())
                .with_headers(every_type()),
        ),
        ("empty", AMQPProperties::default()),
    ];
    for (name, p) in properties {
        let raw = encode_properties(&p);
        let back = parse_properties_bounded(&raw).expect("seed properties parse");
        assert_eq!(encode_properties(&back), raw, "seed properties round trip");
        write("content_header", name, &raw);
    }

    // field_table: mode byte 0 (raw), then the table; or a program for a built table.
    let tables = [
        ("x-death", x_death()),
        ("queue-arguments", queue_arguments()),
        ("every-type", every_type()),
        ("client-properties", client_properties()),
    ];
    for (name, t) in tables {
        let bytes = encode_table(&t);
        parse_table_bounded(&bytes).expect("seed table parses");
        let mut seed = vec![0u8];
        seed.extend_from_slice(&bytes);
        write("field_table", name, &seed);
    }
    // Built tables: exactly at the bound (depth 100) and one over, with siblings and arrays mixed in; and 3000 deep.
    let mixed: Vec<u8> = (0..120u8).map(|i| i.wrapping_mul(37)).collect();
    for (name, depth_pick) in [("built-at-limit", 10u8), ("built-over-limit", 11)] {
        let mut seed = vec![0xC0, depth_pick];
        seed.extend_from_slice(&mixed);
        write("field_table", name, &seed);
    }
    write("field_table", "built-3000-deep", &[0xC0, 0xE0, 0x0B, 0xB7]);
}
