//! Message journeys (issue 15, item 1) against a live broker: a traced message followed through delivery, a
//! reject, dead-lettering, a redrive through the admin API and its final ack, read back over
//! `GET /api/trace/{vhost}/{id}` (and again after a restart); an untraced queue records nothing; a policy with
//! `trace: true` switches a queue on; W3C `traceparent` / `tracestate` headers come through routing, dead-lettering
//! and moves intact; journeys are exported as OTLP spans to a collector stand-in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn trace_headers() -> FieldTable {
    let mut h = FieldTable::default();
    h.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from(TRACEPARENT)),
    );
    h.insert("tracestate".into(), AMQPValue::LongString(LongString::from(TRACESTATE)));
    h
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a [u8]> {
    let h = props.headers().as_ref()?;
    match h.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn assert_trace_context(props: &BasicProperties, where_: &str) {
    assert_eq!(header(props, "traceparent"), Some(TRACEPARENT.as_bytes()), "{where_}");
    assert_eq!(header(props, "tracestate"), Some(TRACESTATE.as_bytes()), "{where_}");
}

async fn declare(ch: &lapin::Channel, name: &str, args: FieldTable) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare");
}

/// `orders` dead-letters to `orders.dlq` through a fanout exchange `dlx`.
async fn orders_with_dlq(ch: &lapin::Channel) {
    ch.exchange_declare(
        "dlx".into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    declare(ch, "orders.dlq", FieldTable::default()).await;
    ch.queue_bind(
        "orders.dlq".into(),
        "dlx".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("dlx")),
    );
    declare(ch, "orders", args).await;
}

async fn publish(ch: &lapin::Channel, queue: &str, props: BasicProperties) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        b"{\"n\":1}",
        props,
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

fn kinds(journey: &serde_json::Value) -> Vec<String> {
    journey["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_message_is_followed_through_a_reject_a_dead_letter_a_redrive_and_its_ack() {
    let mut broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    orders_with_dlq(&ch).await;
    let (status, on) = request(admin, "PUT", "/api/queues/%2F/orders/trace", "guest:guest", "");
    assert_eq!((status, on["on"].clone()), (200, true.into()), "{on}");

    let props = BasicProperties::default()
        .with_message_id(ShortString::from("o-1"))
        .with_delivery_mode(2)
        .with_headers(trace_headers());
    publish(&ch, "orders", props).await;
    let mut consumer = ch
        .basic_consume(
            "orders".into(),
            "billing".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = next(&mut consumer, Duration::from_secs(5)).await.expect("a delivery");
    ch.basic_reject(first.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    sync(&ch).await;
    ch.basic_cancel("billing".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");

    // Dead-lettered: peek shows the id to follow and the trace context, intact.
    let (_, peeked) = request(admin, "POST", "/api/queues/%2F/orders.dlq/peek", "guest:guest", "{}");
    assert_eq!(peeked[0]["trace_id"], "o-1", "{peeked}");
    assert_eq!(peeked[0]["properties"]["headers"]["traceparent"], TRACEPARENT);
    let (status, task) = request(
        admin,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        "guest:guest",
        r#"{"to":"source","wait":true}"#,
    );
    assert_eq!((status, task["moved"].clone()), (200, 1.into()), "{task}");

    let mut consumer = ch
        .basic_consume(
            "orders".into(),
            "billing-2".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let second = next(&mut consumer, Duration::from_secs(5))
        .await
        .expect("the redriven message");
    assert_trace_context(&second.properties, "after dead-lettering and a redrive");
    ch.basic_ack(second.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    sync(&ch).await;

    let (status, journey) = request(admin, "GET", "/api/trace/%2F/o-1", "guest:guest", "");
    assert_eq!(status, 200, "{journey}");
    assert_eq!(
        kinds(&journey),
        [
            "published",
            "routed",
            "delivered",
            "rejected",
            "dead_lettered",
            "redriven",
            "delivered",
            "acked"
        ],
        "{journey}"
    );
    let e = &journey["events"];
    assert_eq!(
        (e[0]["user"].clone(), e[0]["routing_key"].clone()),
        ("guest".into(), "orders".into())
    );
    assert_eq!(e[2]["consumer_tag"], "billing");
    assert_eq!(
        (e[3]["requeue"].clone(), e[3]["nack"].clone()),
        (false.into(), false.into())
    );
    assert_eq!(e[4]["reason"], "rejected");
    assert_eq!(e[4]["to"], serde_json::json!(["orders.dlq"]));
    assert_eq!(e[5]["from"], "orders.dlq");
    assert_eq!(e[6]["consumer_tag"], "billing-2");
    assert_eq!(journey["traceparent"], TRACEPARENT);
    let times: Vec<u64> = e
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["at_ms"].as_u64())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order: {times:?}");
    let (status, missing) = request(admin, "GET", "/api/trace/%2F/o-404", "guest:guest", "");
    assert_eq!((status, missing["error"].as_str()), (404, Some("not_found")));

    drop(conn);
    broker.restart();
    let (status, again) = request(broker.admin_addr, "GET", "/api/trace/%2F/o-1", "guest:guest", "");
    assert_eq!(
        (status, kinds(&again)),
        (200, kinds(&journey)),
        "the journal survives a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untraced_queue_records_nothing_and_a_trace_policy_switches_a_queue_on() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let b = broker.broker.clone().expect("broker");
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    declare(&ch, "plain", FieldTable::default()).await;
    let props = BasicProperties::default().with_message_id(ShortString::from("p-1"));
    publish(&ch, "plain", props.clone()).await;
    let got = ch
        .basic_get("plain".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("a message");
    ch.basic_ack(got.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .expect("ack");
    sync(&ch).await;
    let (status, _) = request(admin, "GET", "/api/trace/%2F/p-1", "guest:guest", "");
    assert_eq!(status, 404);
    assert!(b.journal.is_empty(), "nothing recorded");
    assert!(
        !b.vhost("/").expect("vhost").trace.any(),
        "nothing traced: the hot paths' one flag is down"
    );

    let (status, _) = request(
        admin,
        "PUT",
        "/api/policies/%2F/audit",
        "guest:guest",
        r#"{"pattern":"^audited","definition":{"trace":true}}"#,
    );
    assert!((200..300).contains(&status), "{status}");
    declare(&ch, "audited.payments", FieldTable::default()).await;
    let props = BasicProperties::default().with_message_id(ShortString::from("a-1"));
    publish(&ch, "audited.payments", props).await;
    publish(
        &ch,
        "plain",
        BasicProperties::default().with_message_id(ShortString::from("p-2")),
    )
    .await;
    let (status, journey) = request(admin, "GET", "/api/trace/%2F/a-1", "guest:guest", "");
    assert_eq!(
        (status, kinds(&journey)),
        (200, vec!["published".to_string(), "routed".into()])
    );
    let (status, _) = request(admin, "GET", "/api/trace/%2F/p-2", "guest:guest", "");
    assert_eq!(status, 404, "the policy does not reach other queues");
    let (status, _) = request(admin, "DELETE", "/api/policies/%2F/audit", "guest:guest", "");
    assert!((200..300).contains(&status), "{status}");
    assert!(
        !b.vhost("/").expect("vhost").trace.any(),
        "the policy gone, nothing is traced"
    );
}

/// Tracing or not, the broker never touches a message's W3C trace context: it comes through an exchange, a dead
/// letter and a move to another queue byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_and_tracestate_are_kept_through_routing_dead_lettering_and_moves() {
    let broker = TestBroker::start();
    let admin = broker.admin_addr;
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    orders_with_dlq(&ch).await;
    declare(&ch, "archive", FieldTable::default()).await;
    ch.queue_bind(
        "orders".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.basic_publish(
        "amq.direct".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_headers(trace_headers()),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let got = ch
        .basic_get("orders".into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("routed through amq.direct");
    assert_trace_context(&got.delivery.properties, "after routing");
    ch.basic_reject(got.delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    sync(&ch).await;
    let (status, task) = request(
        admin,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        "guest:guest",
        r#"{"to":"queue","queue":"archive","wait":true}"#,
    );
    assert_eq!((status, task["moved"].clone()), (200, 1.into()), "{task}");
    let got = ch
        .basic_get("archive".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("moved to archive");
    assert_trace_context(&got.delivery.properties, "after dead-lettering and a move");
}

/// A collector stand-in: answers every OTLP/HTTP request with 200 and hands each body over.
fn collector() -> (String, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut out = stream.try_clone().expect("clone");
                let mut r = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(body);
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if out.write_all(ok).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_are_exported_as_spans_to_an_otlp_collector() {
    let (url, bodies) = collector();
    let broker = TestBroker::start_with(move |c| c.trace.otlp_endpoint = Some(url.clone()));
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    declare(&ch, "exported", FieldTable::default()).await;
    let (status, _) = request(
        broker.admin_addr,
        "PUT",
        "/api/queues/%2F/exported/trace",
        "guest:guest",
        "",
    );
    assert_eq!(status, 200);
    let props = BasicProperties::default()
        .with_message_id(ShortString::from("otlp-journey-1"))
        .with_headers(trace_headers());
    publish(&ch, "exported", props).await;
    // The spans' trace id is the traceparent's, as 16 raw bytes in the protobuf body.
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACEPARENT[3 + 2 * i..5 + 2 * i], 16).expect("hex"))
        .collect();
    let found = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(body) = bodies.recv_timeout(left) else { break };
            seen.extend_from_slice(&body);
            let has = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
            if has(b"otlp-journey-1") && has(b"warren published") && has(b"warren routed") && has(&trace_id) {
                return true;
            }
        }
        false
    })
    .await
    .expect("join");
    assert!(
        found,
        "the collector received spans for the journey, in the message's trace"
    );
}

/// A persistent message published in a transaction is traced when the commit routes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_in_a_transaction_is_traced_at_commit() {
    let broker = TestBroker::start();
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    declare(&ch, "ledger", FieldTable::default()).await;
    let (status, _) = request(
        broker.admin_addr,
        "PUT",
        "/api/queues/%2F/ledger/trace",
        "guest:guest",
        "",
    );
    assert_eq!(status, 200);
    ch.tx_select().await.expect("tx.select");
    let props = BasicProperties::default()
        .with_message_id(ShortString::from("tx-1"))
        .with_delivery_mode(2);
    ch.basic_publish("".into(), "ledger".into(), BasicPublishOptions::default(), b"x", props)
        .await
        .expect("publish");
    let (status, _) = request(broker.admin_addr, "GET", "/api/trace/%2F/tx-1", "guest:guest", "");
    assert_eq!(status, 404, "nothing before the commit");
    ch.tx_commit().await.expect("tx.commit");
    let (status, journey) = request(broker.admin_addr, "GET", "/api/trace/%2F/tx-1", "guest:guest", "");
    assert_eq!(
        (status, kinds(&journey)),
        (200, vec!["published".to_string(), "routed".into()])
    );
}
