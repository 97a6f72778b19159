//! The journal alone: its bounds in memory and on disk, recovery, and how messages are keyed.

use std::io::Write;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;

use super::*;

fn acked(q: &str) -> TraceEvent {
    TraceEvent::Acked { queue: q.into() }
}

fn settings(journeys: usize, events: usize, max_bytes: u64) -> TraceSettings {
    TraceSettings {
        journeys,
        events,
        max_bytes,
        otlp_endpoint: None,
    }
}

fn message(props: AMQPProperties) -> Message {
    Message::with_properties("x".into(), "k".into(), props, Bytes::from_static(b"body"))
}

#[test]
fn the_ring_drops_the_oldest_journey_and_keeps_a_journeys_first_event() {
    let j = Journal::with_ring(Ring::new(3, 4), None, None, 1, Clock::system());
    for id in ["a", "b", "c", "d"] {
        j.record("/", id, acked(id));
    }
    assert_eq!(j.len(), 3);
    assert!(j.journey("/", "a").is_none(), "the oldest journey went");
    assert!(j.journey("/", "d").is_some());
    assert!(j.journey("other", "d").is_none(), "journeys are per vhost");
    j.record(
        "/",
        "b",
        TraceEvent::Routed {
            queues: vec!["q0".into()],
        },
    );
    for i in 1..=5 {
        j.record("/", "b", acked(&format!("q{i}")));
    }
    let b = j.journey("/", "b").expect("b");
    assert!(b.truncated);
    let queues: Vec<String> = b
        .events
        .iter()
        .map(|s| match &s.event {
            TraceEvent::Acked { queue } => queue.clone(),
            other => other.kind().to_string(),
        })
        .collect();
    assert_eq!(queues, ["b", "q3", "q4", "q5"], "the first event and the latest three");
    assert!(!j.journey("/", "c").expect("c").truncated);
}

#[test]
fn messages_are_keyed_by_message_id_or_a_broker_id_that_copies_keep() {
    let j = Journal::in_memory(Clock::system());
    let with_id = message(AMQPProperties::default().with_message_id("order-7".into()));
    assert!(!with_id.is_traced());
    assert_eq!(j.mark(&with_id), "order-7");
    assert!(with_id.is_traced(), "marked once traced");
    let plain = message(AMQPProperties::default());
    let key = j.mark(&plain);
    assert!(key.starts_with("w-"), "{key}");
    assert_eq!(j.mark(&plain), key, "the mark is given once");
    let copy = message(AMQPProperties::default()).inherit_trace(&plain);
    assert_eq!(j.mark(&copy), key, "a copy goes on in the same journey");
    assert_eq!(peek_id(&copy, &copy.properties()), Some(key));
    let untraced = message(AMQPProperties::default());
    assert_eq!(peek_id(&untraced, &untraced.properties()), None);
}

#[test]
fn the_traceparent_is_kept_with_the_journey() {
    let j = Journal::in_memory(Clock::system());
    let mut h = FieldTable::default();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    h.insert("traceparent".into(), AMQPValue::LongString(tp.into()));
    let m = message(AMQPProperties::default().with_message_id("m1".into()).with_headers(h));
    j.record_message("/", &m, acked("q"));
    assert_eq!(j.journey("/", "m1").expect("journey").traceparent.as_deref(), Some(tp));
    let sc = otlp::parse_traceparent(tp, Some("vendor=1")).expect("valid");
    assert_eq!(format!("{:x}", sc.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(sc.is_remote() && sc.is_sampled());
    assert!(otlp::parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
    assert!(otlp::parse_traceparent("garbage", None).is_none());
    assert_eq!(otlp::traces_url("http://c:4318/"), "http://c:4318/v1/traces");
    assert_eq!(otlp::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    assert_eq!(otlp::derived_trace_id("/", "a"), otlp::derived_trace_id("/", "a"));
    assert_ne!(otlp::derived_trace_id("/", "a"), otlp::derived_trace_id("/", "b"));
}

#[test]
fn journeys_survive_a_restart_and_new_ids_stay_above_old_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(100, 10, 1 << 20);
    let first = {
        let j = Journal::open(&s, dir.path(), Clock::system()).expect("open");
        let m = message(AMQPProperties::default());
        j.record_message(
            "/",
            &m,
            TraceEvent::Routed {
                queues: vec!["q".into()],
            },
        );
        j.record_message("/", &m, acked("q"));
        j.mark(&m)
    }; // dropped: its writer thread finishes
    let j = Journal::open(&s, dir.path(), Clock::system()).expect("reopen");
    let journey = j.journey("/", &first).expect("recovered");
    let kinds: Vec<&str> = journey.events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["routed", "acked"]);
    let next = j.mark(&message(AMQPProperties::default()));
    assert_ne!(next, first, "a new message never takes a recovered id");
}

#[test]
fn a_damaged_tail_is_skipped_and_appending_goes_on_after_it() {
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(100, 10, 1 << 20);
    {
        let j = Journal::open(&s, dir.path(), Clock::system()).expect("open");
        j.record("/", "a", acked("q1"));
        j.record("/", "a", acked("q2"));
    }
    // A crash in the middle of a line, and a damaged line before it.
    let path = dir.path().join(disk::CURRENT);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("file");
    f.write_all(b"{\"v\":\"/\",\"k\":\"a\",\"s\":{\"at_ms\":1,\"kind\":\"ack\n")
        .expect("write");
    f.write_all(b"{\"v\":\"/\",\"k\":\"a\",\"s\":{\"at_").expect("write");
    drop(f);
    {
        let j = Journal::open(&s, dir.path(), Clock::system()).expect("reopen");
        assert_eq!(
            j.journey("/", "a").expect("kept").events.len(),
            2,
            "the whole lines before the damage"
        );
        j.record("/", "a", acked("q3"));
    }
    let j = Journal::open(&s, dir.path(), Clock::system()).expect("reopen again");
    assert_eq!(
        j.journey("/", "a").expect("kept").events.len(),
        3,
        "the line after the torn tail was not glued to it"
    );
}

#[test]
fn the_disk_log_stays_within_its_cap() {
    let dir = tempfile::tempdir().expect("dir");
    let cap = 8 * 1024;
    {
        let j = Journal::open(&settings(10_000, 4, cap), dir.path(), Clock::system()).expect("open");
        for i in 0..2_000 {
            j.record("/", &format!("m{i}"), acked("a-queue-with-a-longish-name"));
        }
    }
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).map(|m| m.len()).unwrap_or(0);
    let total = size(disk::CURRENT) + size(disk::ROTATED);
    assert!(total <= cap, "{total} bytes on disk, cap {cap}");
    assert!(size(disk::ROTATED) > 0, "it rotated");
    let j = Journal::open(&settings(10_000, 4, cap), dir.path(), Clock::system()).expect("reopen");
    assert!(j.journey("/", "m1999").is_some(), "the newest are kept");
    assert!(j.journey("/", "m0").is_none(), "the oldest gave way");
}

#[test]
fn no_disk_means_memory_only() {
    let dir = tempfile::tempdir().expect("dir");
    let j = Journal::open(&settings(10, 10, 0), &dir.path().join("trace"), Clock::system()).expect("open");
    j.record("/", "a", acked("q"));
    assert!(j.journey("/", "a").is_some());
    assert!(!dir.path().join("trace").exists(), "nothing written");
}
