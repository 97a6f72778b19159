//! The stream log on real files in a temporary directory: appends across segment rolls, reads and seeks, reopening
//! (from index files, and rebuilding them), a torn tail, retention and filtered reads.

use std::io::Write;

use super::log::{Filter, Message, OffsetSpec, StreamLog};

/// Small segments (about ten 100-byte messages each), so tests roll often.
const SEGMENT: u64 = 1_000;

fn body(i: u64) -> Vec<u8> {
    format!("message {i:05} {}", "x".repeat(40)).into_bytes()
}

/// Appends messages `from..to`, one per call, stamped `ts(i)`.
fn fill(log: &mut StreamLog, from: u64, to: u64, ts: impl Fn(u64) -> u64) {
    for i in from..to {
        let b = body(i);
        let first = log
            .append(
                &[Message {
                    routing_key: b"key",
                    body: &b,
                    ..Message::default()
                }],
                ts(i),
            )
            .expect("append");
        assert_eq!(first, i, "offsets are dense");
    }
}

fn bodies(log: &StreamLog, from: u64, n: usize) -> Vec<Vec<u8>> {
    log.read(from, n, usize::MAX, None)
        .expect("read")
        .records
        .into_iter()
        .map(|r| r.body.to_vec())
        .collect()
}

#[test]
fn appends_roll_segments_and_read_back_from_any_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    assert_eq!((log.first_offset(), log.next_offset()), (0, 0));
    fill(&mut log, 0, 100, |i| 1_000 + i);
    assert!(log.segment_count() >= 8, "{} segments", log.segment_count());
    assert_eq!((log.first_offset(), log.next_offset()), (0, 100));
    assert_eq!(bodies(&log, 0, 100), (0..100).map(body).collect::<Vec<_>>());
    assert_eq!(bodies(&log, 57, 3), (57..60).map(body).collect::<Vec<_>>());
    let batch = log.read(95, 100, usize::MAX, None).expect("read");
    assert_eq!((batch.records.len(), batch.next), (5, 100));
    let batch = log.read(100, 100, usize::MAX, None).expect("read at the tail");
    assert_eq!((batch.records.len(), batch.next), (0, 100));
    // A byte budget stops a read early (after the record that passes it).
    let batch = log.read(0, 100, 150, None).expect("read");
    assert_eq!((batch.records.len(), batch.next), (3, 3));
    // Several messages in one append get consecutive offsets.
    let m = |body: &'static [u8]| Message {
        body,
        ..Message::default()
    };
    assert_eq!(log.append(&[m(b"a"), m(b"b")], 5_000).expect("append"), 100);
    assert_eq!(bodies(&log, 100, 10), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn reopening_reads_sealed_indexes_and_keeps_appending() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    fill(&mut log, 0, 55, |i| 1_000 + i);
    let segments = log.segment_count();
    drop(log);
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("reopen");
    assert_eq!(
        log.stats().indexes_rebuilt,
        0,
        "sealed segments come from their index files"
    );
    assert_eq!(
        (log.first_offset(), log.next_offset(), log.segment_count()),
        (0, 55, segments)
    );
    fill(&mut log, 55, 70, |i| 1_000 + i);
    assert_eq!(bodies(&log, 0, 100), (0..70).map(body).collect::<Vec<_>>());
    assert_eq!(log.last_timestamp_ms(), 1_069);
}

#[test]
fn a_torn_tail_is_cut_off_and_a_lost_index_is_rebuilt() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    fill(&mut log, 0, 25, |i| 1_000 + i);
    drop(log);
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    // Half a record at the end of the active segment (a crash mid-write), and a sealed segment's index lost.
    let active = files
        .iter()
        .rfind(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("active");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(active)
        .expect("open active");
    f.write_all(&[0, 0, 0, 90, 1, 2, 3]).expect("tear");
    drop(f);
    let idx = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("an index");
    std::fs::remove_file(idx).expect("lose it");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("reopen");
    assert_eq!(log.stats().indexes_rebuilt, 1);
    assert_eq!(log.stats().damaged_bytes, 7, "the torn tail");
    assert_eq!(log.next_offset(), 25);
    fill(&mut log, 25, 30, |i| 1_000 + i);
    assert_eq!(bodies(&log, 0, 100), (0..30).map(body).collect::<Vec<_>>());
}

#[test]
fn seeks_by_position_word_offset_and_time() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    assert_eq!(log.seek(OffsetSpec::Last).expect("seek"), 0, "an empty stream");
    // Ten messages per millisecond-second: offsets 0..10 at t=10_000, 10..20 at t=11_000, ...
    fill(&mut log, 0, 100, |i| 10_000 + (i / 10) * 1_000);
    let seek = |s| log.seek(s).expect("seek");
    assert_eq!(seek(OffsetSpec::First), 0);
    assert_eq!(seek(OffsetSpec::Last), 99);
    assert_eq!(seek(OffsetSpec::Next), 100);
    assert_eq!(seek(OffsetSpec::Offset(42)), 42);
    assert_eq!(seek(OffsetSpec::Offset(1_000)), 100, "past the end: the next");
    assert_eq!(seek(OffsetSpec::Timestamp(0)), 0);
    assert_eq!(seek(OffsetSpec::Timestamp(13_000)), 30);
    assert_eq!(seek(OffsetSpec::Timestamp(13_001)), 40, "the first stamped at or after");
    assert_eq!(seek(OffsetSpec::Timestamp(99_000)), 100, "after the newest: the next");
    // The clock going back does not make timestamps go back.
    fill(&mut log, 100, 101, |_| 1);
    let r = log.read(100, 1, usize::MAX, None).expect("read").records;
    assert_eq!(r[0].enqueued_ms, 19_000);
}

#[test]
fn retention_drops_whole_old_segments_and_readers_go_on_from_the_oldest_kept() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    fill(&mut log, 0, 100, |i| 10_000 + i * 100);
    let before = log.bytes();
    assert!(
        log.retain(Some(before), None, 0).expect("retain") == 0,
        "within the limit"
    );
    let removed = log.retain(Some(before / 2), None, 0).expect("retain by size");
    assert!(removed > 0);
    assert!(log.bytes() <= before / 2, "{} > {}", log.bytes(), before / 2);
    let first = log.first_offset();
    assert!(first > 0);
    // Whole segments: everything from the first kept offset on is still there, in order.
    assert_eq!(bodies(&log, first, 1_000), (first..100).map(body).collect::<Vec<_>>());
    // A reader left behind retention continues from the oldest offset kept.
    let batch = log.read(0, 1, usize::MAX, None).expect("read");
    assert_eq!(batch.records[0].seq, first);
    assert_eq!(log.stats().segments_removed as usize, removed);

    // By age: messages stamped 10_000 + i*100; at now = 19_000 with a 2 s max age, segments whose newest message is
    // older than 17_000 go. The active segment always stays.
    log.retain(None, Some(2_000), 19_000).expect("retain by age");
    let first = log.first_offset();
    let r = log.read(first, 1, usize::MAX, None).expect("read").records;
    assert!(r[0].enqueued_ms >= 16_000, "{}", r[0].enqueued_ms);
    log.retain(None, Some(1), u64::MAX / 2).expect("everything is old");
    assert_eq!(log.segment_count(), 1, "the active segment stays");
    assert_eq!(log.next_offset(), 100);

    // Reopened, the stream starts where retention left it.
    let kept = log.first_offset();
    drop(log);
    let log = StreamLog::open(dir.path(), SEGMENT).expect("reopen");
    assert_eq!((log.first_offset(), log.next_offset()), (kept, 100));
}

#[test]
fn truncate_before_removes_only_segments_entirely_before_the_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    fill(&mut log, 0, 100, |i| i);
    log.truncate_before(35).expect("truncate");
    let first = log.first_offset();
    assert!(first <= 35 && first > 0, "{first}");
    assert_eq!(bodies(&log, 35, 1), vec![body(35)]);
}

#[test]
fn a_filtered_read_skips_segments_that_cannot_match() {
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    // 50 messages filtered "eu" (several segments), then 50 "us".
    for i in 0..100u64 {
        let b = body(i);
        let value: &[u8] = if i < 50 { b"eu" } else { b"us" };
        log.append(
            &[Message {
                body: &b,
                filter: Some(value),
                ..Message::default()
            }],
            i,
        )
        .expect("append");
    }
    let us = Filter {
        values: vec![b"us".to_vec()],
        match_unfiltered: false,
    };
    let batch = log.read(0, 1_000, usize::MAX, Some(&us)).expect("read");
    assert!(batch.segments_skipped >= 3, "skipped {}", batch.segments_skipped);
    // What comes back starts at the first segment that may hold "us" (the caller matches each message).
    assert!(
        batch.records.iter().all(|r| r.seq >= 40),
        "{:?}",
        batch.records.first().map(|r| r.seq)
    );
    assert_eq!(batch.next, 100);
    let none = Filter {
        values: vec![b"asia".to_vec()],
        match_unfiltered: false,
    };
    let batch = log.read(0, 1_000, usize::MAX, Some(&none)).expect("read");
    assert!(batch.records.is_empty());
    assert_eq!(batch.next, 100, "skipping moves the reader on");
}

/// An index rebuilt from its segment (lost or damaged) has an exact filter summary again, read from each record's
/// `x-stream-filter-value` header, so a filtered reader still skips what cannot match.
#[test]
fn a_rebuilt_index_keeps_skipping_for_filtered_readers() {
    use amq_protocol::protocol::basic::AMQPProperties;
    use amq_protocol::types::{AMQPValue, FieldTable, LongString};
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    for i in 0..100u64 {
        let b = body(i);
        let value: &str = if i < 50 { "eu" } else { "us" };
        let mut headers = FieldTable::default();
        headers.insert(
            "x-stream-filter-value".into(),
            AMQPValue::LongString(LongString::from(value)),
        );
        let props = crate::amqp::properties::encode_properties(&AMQPProperties::default().with_headers(headers));
        log.append(
            &[Message {
                body: &b,
                properties: &props,
                filter: Some(value.as_bytes()),
                ..Message::default()
            }],
            i,
        )
        .expect("append");
    }
    drop(log);
    for e in std::fs::read_dir(dir.path()).expect("list") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "idx") {
            std::fs::remove_file(path).expect("remove an index");
        }
    }
    let log = StreamLog::open(dir.path(), SEGMENT).expect("reopen");
    assert!(log.stats().indexes_rebuilt >= 3, "{:?}", log.stats());
    let us = Filter {
        values: vec![b"us".to_vec()],
        match_unfiltered: false,
    };
    let batch = log.read(0, 1_000, usize::MAX, Some(&us)).expect("read");
    assert!(batch.segments_skipped >= 3, "skipped {}", batch.segments_skipped);
    assert!(batch.records.iter().all(|r| r.seq >= 40));
    assert_eq!(
        batch.records.last().map(|r| r.seq),
        Some(99),
        "nothing that matches is skipped"
    );
}

/// Writes real index files as fuzz seeds when WARREN_WRITE_FUZZ_SEEDS names a directory (`fuzz/corpus/stream_index`).
#[test]
fn index_files_as_fuzz_seeds() {
    let Some(out) = std::env::var_os("WARREN_WRITE_FUZZ_SEEDS") else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut log = StreamLog::open(dir.path(), SEGMENT).expect("open");
    for i in 0..30u64 {
        let b = body(i);
        let value: &[u8] = if i % 2 == 0 { b"eu" } else { b"us" };
        let filter = (i % 3 != 0).then_some(value);
        log.append(
            &[Message {
                body: &b,
                filter,
                ..Message::default()
            }],
            i,
        )
        .expect("append");
    }
    for (n, e) in std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .enumerate()
    {
        if e.path().extension().is_some_and(|x| x == "idx") {
            std::fs::copy(e.path(), std::path::Path::new(&out).join(format!("seed-{n}"))).expect("copy");
        }
    }
}
