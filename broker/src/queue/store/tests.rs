//! The message store's unit tests: order, priorities, expiry, recovery from disk and the unreadable-record rule.

use super::*;
use crate::store::DiskBudget;
use amq_protocol::protocol::basic::AMQPProperties;

fn msg(b: &'static [u8], props: AMQPProperties) -> Arc<Message> {
    Arc::new(Message::with_properties(
        "".into(),
        "k".into(),
        props,
        bytes::Bytes::from_static(b),
    ))
}

fn drain(s: &mut MessageStore) -> Vec<(u64, bool)> {
    let mut expired = Vec::new();
    std::iter::from_fn(|| s.pop(&mut expired))
        .map(|e| (e.seq, e.redelivered))
        .collect()
}

fn push(s: &mut MessageStore, m: Arc<Message>) {
    s.push(m).expect("push");
}

#[test]
fn requeue_restores_order() {
    let mut s = MessageStore::default();
    for b in [&b"a"[..], b"b", b"c"] {
        push(&mut s, msg(b, AMQPProperties::default()));
    }
    let mut expired = Vec::new();
    let a = s.pop(&mut expired).expect("a");
    let b = s.pop(&mut expired).expect("b");
    s.requeue(b);
    s.requeue(a);
    assert_eq!(drain(&mut s), vec![(1, true), (2, true), (3, false)]);
    assert_eq!(s.bytes(), 0);
    assert_eq!(s.len(), 0);
}

#[test]
fn priorities_then_fifo() {
    let mut s = MessageStore::new(10, None);
    for p in [3u8, 6, 3, 200] {
        push(&mut s, msg(b"x", AMQPProperties::default().with_priority(p)));
    }
    push(&mut s, msg(b"x", AMQPProperties::default()));
    // 200 is capped to the max (10); no priority means 0.
    assert_eq!(
        drain(&mut s).iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![4, 2, 1, 3, 5]
    );
}

#[test]
fn expired_messages_are_skipped() {
    let mut s = MessageStore::new(0, None);
    push(
        &mut s,
        msg(b"old", AMQPProperties::default().with_expiration("0".into())),
    );
    push(&mut s, msg(b"new", AMQPProperties::default()));
    let mut expired = Vec::new();
    assert_eq!(s.pop(&mut expired).map(|e| e.seq), Some(2));
    assert_eq!(expired.len(), 1);
    let mut s = MessageStore::new(0, Some(0));
    push(&mut s, msg(b"x", AMQPProperties::default()));
    assert!(s.pop(&mut expired).is_none());
}

fn open(dir: &std::path::Path) -> MessageStore {
    MessageStore::open_on_disk(
        dir,
        DiskBudget::default(),
        &crate::store::txlog::TxView(None),
        5,
        None,
        None,
    )
    .expect("open log")
    .0
}

#[test]
fn disk_store_survives_reopen_with_flags_and_priorities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let persistent = |p: u8| AMQPProperties::default().with_delivery_mode(2).with_priority(p);
    {
        let mut s = open(dir.path());
        push(&mut s, msg(b"low", persistent(1)));
        push(&mut s, msg(b"high", persistent(4)));
        push(&mut s, msg(b"transient", AMQPProperties::default()));
        push(&mut s, msg(b"acked", persistent(0)));
        let mut expired = Vec::new();
        let high = s.pop(&mut expired).expect("high first");
        assert_eq!(&high.message.body[..], b"high");
        // "high" was delivered and not acked; "low" is next; ack "acked" only.
        let low = s.pop(&mut expired).expect("low");
        s.requeue(low);
        let t = s.pop(&mut expired).expect("low again");
        assert!(t.redelivered);
        s.requeue(t);
        let _ = s.pop(&mut expired); // low
        let tr = s.pop(&mut expired).expect("transient");
        assert_eq!(&tr.message.body[..], b"transient");
        let acked = s.pop(&mut expired).expect("acked");
        s.settle(&acked);
        s.flush();
    }
    let mut s = open(dir.path());
    let got: Vec<(Vec<u8>, bool, u64)> = {
        let mut expired = Vec::new();
        std::iter::from_fn(|| s.pop(&mut expired))
            .map(|e| (e.message.body.to_vec(), e.redelivered, e.seq))
            .collect()
    };
    assert_eq!(
        got,
        vec![(b"high".to_vec(), true, 2), (b"low".to_vec(), true, 1)],
        "transient and acked are gone"
    );
    // Seqs continue after the highest seen.
    assert_eq!(s.push(msg(b"next", persistent(0))).expect("push").seq, 5);
}

/// Flips one byte of the record whose body is `body` in the queue's only segment; returns the segment and the
/// byte's offset so it can be flipped back.
fn damage_body(dir: &std::path::Path, body: &[u8]) -> (std::path::PathBuf, usize) {
    let seg = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("segment");
    let at = bytes.windows(body.len()).position(|w| w == body).expect("body on disk");
    bytes[at] ^= 0xFF;
    std::fs::write(&seg, &bytes).expect("write");
    (seg, at)
}

#[test]
fn a_record_that_cannot_be_read_back_is_not_acked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let persistent = AMQPProperties::default().with_delivery_mode(2);
    let mut expired = Vec::new();
    {
        let mut s = open(dir.path());
        push(&mut s, msg(b"first", persistent.clone()));
        push(&mut s, msg(b"second", persistent.clone()));
        // A read error at delivery time (here: the record fails its checksum when read back).
        let (seg, at) = damage_body(dir.path(), b"first");
        let got = s.pop(&mut expired).map(|e| e.message.body.to_vec());
        assert_eq!(got, Some(b"second".to_vec()), "the queue goes on past it");
        s.flush();
        // The damage was transient: the bytes are whole again.
        let mut bytes = std::fs::read(&seg).expect("segment");
        bytes[at] ^= 0xFF;
        std::fs::write(&seg, &bytes).expect("write");
    }
    let mut s = open(dir.path());
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| s.pop(&mut expired))
        .map(|e| e.message.body.to_vec())
        .collect();
    assert!(
        got.contains(&b"first".to_vec()),
        "the unreadable message stayed stored: {got:?}"
    );
}

#[test]
fn an_unreadable_record_is_read_again_after_its_retry_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let persistent = AMQPProperties::default().with_delivery_mode(2);
    let mut expired = Vec::new();
    let mut s = open(dir.path());
    for b in [&b"first"[..], b"second", b"third"] {
        push(&mut s, msg(b, persistent.clone()));
    }
    let (seg, at) = damage_body(dir.path(), b"second");
    assert_eq!(
        s.pop(&mut expired).map(|e| e.message.body.to_vec()),
        Some(b"first".to_vec())
    );
    assert_eq!(
        s.pop(&mut expired).map(|e| e.message.body.to_vec()),
        Some(b"third".to_vec())
    );
    assert!(s.pop(&mut expired).is_none(), "nothing readable is left");
    assert_eq!(
        (s.len(), s.unreadable()),
        (1, 1),
        "the unreadable message is still counted"
    );
    let mut bytes = std::fs::read(&seg).expect("segment");
    bytes[at] ^= 0xFF;
    std::fs::write(&seg, &bytes).expect("write");
    // Not before its retry time (a second after the failure)...
    assert!(!s.retry_unreadable());
    s.retry_at_ms = 0;
    // ...and then it is offered again.
    assert!(s.retry_unreadable());
    assert_eq!(
        s.pop(&mut expired).map(|e| e.message.body.to_vec()),
        Some(b"second".to_vec())
    );
    assert_eq!((s.len(), s.unreadable()), (0, 0));
}

#[test]
fn an_emptied_disk_store_lets_go_of_its_files_and_starts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = || std::fs::read_dir(dir.path()).expect("dir").count();
    let persistent = AMQPProperties::default().with_delivery_mode(2);
    let mut s = open(dir.path());
    assert_eq!(files(), 0, "no message yet, no segment file");
    push(&mut s, msg(b"a", persistent.clone()));
    let mut expired = Vec::new();
    let a = s.pop(&mut expired).expect("a");
    s.release_idle_files(std::time::Duration::ZERO);
    assert_eq!(files(), 2, "a delivered, unacked message keeps its segment");
    s.settle(&a);
    s.flush();
    s.release_idle_files(std::time::Duration::from_secs(3600));
    assert_eq!(files(), 2, "not idle long enough");
    s.release_idle_files(std::time::Duration::ZERO);
    assert_eq!(files(), 0, "emptied and idle: the files are gone");
    push(&mut s, msg(b"b", persistent));
    s.flush();
    drop(s);
    let mut s = open(dir.path());
    assert_eq!(
        s.pop(&mut expired).map(|e| e.message.body.to_vec()),
        Some(b"b".to_vec())
    );
}

/// Catches a store's read-aheads, for the test to install (the store is not shared, so the test holds it).
struct Catch(std::sync::Mutex<std::sync::mpsc::Sender<ReadAhead>>);

impl ReadTarget for Catch {
    fn read_done(&self, done: ReadAhead) {
        let _ = self.0.lock().expect("sender").send(done);
    }
}

struct Reading {
    store: MessageStore,
    rx: std::sync::mpsc::Receiver<ReadAhead>,
    target: Arc<Catch>,
    budget: DiskBudget,
}

/// A disk-backed store with read threads, keeping persistent messages only on disk (no spill, no memory budget).
fn reading_store(dir: &std::path::Path) -> Reading {
    let budget = DiskBudget::default();
    let reader = crate::store::io_pool::Reader::start(budget.clone());
    assert!(reader.is_some(), "read threads");
    let store = open(dir).with_reader(reader);
    let (tx, rx) = std::sync::mpsc::channel();
    Reading {
        store,
        rx,
        target: Arc::new(Catch(std::sync::Mutex::new(tx))),
        budget,
    }
}

impl Reading {
    fn start_read(&mut self) {
        let target = Arc::downgrade(&self.target);
        self.store.start_read(|| {
            let t: std::sync::Weak<dyn ReadTarget> = target.clone();
            t
        });
    }

    fn next_read(&self) -> ReadAhead {
        self.rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the read thread answers")
    }

    /// Pops as dispatch does, asking for and installing read-aheads as the queue would, until nothing is left.
    fn drain(&mut self) -> Vec<u64> {
        let mut got = Vec::new();
        let mut expired = Vec::new();
        loop {
            if let Some(e) = self.store.pop_or_wait(&mut expired) {
                got.push(e.seq);
                continue;
            }
            self.start_read();
            if self.store.levels.iter().all(|l| l.reading.is_none()) {
                return got;
            }
            let done = self.next_read();
            self.store.install_read(done);
        }
    }
}

fn persistent() -> AMQPProperties {
    AMQPProperties::default().with_delivery_mode(2)
}

#[test]
fn dispatch_waits_for_a_read_ahead_and_then_delivers_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = reading_store(dir.path());
    for _ in 0..100 {
        push(&mut r.store, msg(b"on disk", persistent()));
    }
    let mut expired = Vec::new();
    r.budget.hold_reads(true);
    assert!(
        r.store.pop_or_wait(&mut expired).is_none(),
        "the head is only on disk: no read in place"
    );
    r.start_read();
    let waited = std::time::Instant::now();
    while r.budget.held_reads() < 1 {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(20),
            "the read never started"
        );
        std::thread::yield_now();
    }
    // While the read is held, dispatch still stops at that head, and asks for nothing more.
    assert!(r.store.pop_or_wait(&mut expired).is_none());
    r.start_read();
    assert_eq!((r.store.len(), r.store.unreadable()), (100, 0));
    r.budget.hold_reads(false);
    let done = r.next_read();
    assert!(r.store.install_read(done));
    assert_eq!(
        r.drain(),
        (1..=100).collect::<Vec<u64>>(),
        "FIFO across several read-aheads"
    );
    assert!(r.store.is_empty());
}

#[test]
fn a_read_ahead_racing_a_take_a_pop_in_place_or_a_purge_delivers_nothing_removed_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = reading_store(dir.path());
    for _ in 0..5 {
        push(&mut r.store, msg(b"m", persistent()));
    }
    let mut expired = Vec::new();
    assert!(r.store.pop_or_wait(&mut expired).is_none());
    r.start_read();
    let done = r.next_read();
    // Meanwhile: basic.get reads the head in place, and an operator takes message 3 out.
    assert_eq!(r.store.pop(&mut expired).map(|e| e.seq), Some(1));
    let taken: Vec<u64> = r.store.take(Some(&[3].into())).iter().map(|e| e.seq).collect();
    assert_eq!(taken, [3]);
    assert!(r.store.install_read(done));
    assert_eq!(r.drain(), [2, 4, 5]);
    assert!(r.store.is_empty());

    // A purge while a read is in flight: its result is stale, even where a new record reuses nothing of it.
    for _ in 0..3 {
        push(&mut r.store, msg(b"m", persistent()));
    }
    assert!(r.store.pop_or_wait(&mut expired).is_none());
    r.start_read();
    let stale = r.next_read();
    assert_eq!(r.store.purge(), 3);
    for _ in 0..2 {
        push(&mut r.store, msg(b"m", persistent()));
    }
    assert!(!r.store.install_read(stale), "a purged read installs nothing");
    assert_eq!(r.drain(), [9, 10]);
    assert_eq!(r.store.len(), 0);
}

#[test]
fn a_read_ahead_that_fails_sets_the_record_aside_still_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = reading_store(dir.path());
    for b in [&b"first"[..], b"second", b"third"] {
        push(&mut r.store, msg(b, persistent()));
    }
    damage_body(dir.path(), b"second");
    assert_eq!(r.drain(), [1, 3]);
    assert_eq!((r.store.len(), r.store.unreadable()), (1, 1));
}

#[test]
fn records_whose_write_failed_leave_the_queue_and_later_ones_of_their_segment_with_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path());
    s.set_writer(Some(crate::store::queue_log::Writer {
        syncer: crate::store::Syncer::idle(),
        failed: Arc::new(|_, _| {}),
    }));
    push(&mut s, msg(b"kept", persistent()));
    let mut locs = Vec::new();
    for b in [&b"lost"[..], b"lost too"] {
        s.push_deferred(msg(b, persistent())).expect("push");
        locs.push(s.levels[0].order.back().copied().map(Loc::unpack).expect("a location"));
    }
    s.hand_over().expect("hand over");
    s.push_deferred(msg(b"pending", persistent())).expect("push");
    assert_eq!((s.len(), s.bytes()), (4, 4 + 4 + 8 + 7));
    // The writer could not write the handed-over buffer (it starts at the first "lost" record).
    let dropped = s.drop_unwritten(locs[0].segment, locs[0].offset as u64);
    assert_eq!(dropped, 3, "that buffer and what came after it in the segment");
    assert_eq!((s.len(), s.bytes()), (1, 4));
    assert_eq!(
        s.drop_unwritten(locs[0].segment, locs[0].offset as u64),
        0,
        "handled once"
    );
    let mut expired = Vec::new();
    assert_eq!(
        s.pop(&mut expired).map(|e| e.message.body.to_vec()),
        Some(b"kept".to_vec())
    );
    assert!(s.pop(&mut expired).is_none());
    push(&mut s, msg(b"next", persistent()));
    drop(s);
    let mut s = open(dir.path());
    let bodies: Vec<Vec<u8>> = std::iter::from_fn(|| s.pop(&mut expired))
        .map(|e| e.message.body.to_vec())
        .collect();
    assert_eq!(bodies, [b"kept".to_vec(), b"next".to_vec()], "recovery agrees");
}
