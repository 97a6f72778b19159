//! Paging transient messages to disk, as LavinMQ (which keeps every message in mapped segment files) and RabbitMQ's
//! classic queues v2 do.
//!
//! A queue writes each new transient message to its spill log instead of keeping it in memory once its messages in
//! memory take `PagePolicy::ram_per_queue` (`--queue-ram`, counting `ENTRY_OVERHEAD` per message), once those of all
//! queues together take `PagePolicy::ram_total` (`--total-queue-ram`; each queue's [`MemUse`] keeps its share of
//! that sum, and gives it back when the queue goes), or whenever the broker's resident memory is past `alarm::PAGING_SHARE` of the memory high watermark (`Alarms` sets
//! the shared pressure flag). The spill log is a segment log like a durable queue's (`store::queue_log`), under
//! `<data-dir>/paging/<n>/`, written behind (appends gather in a buffer and reach the file in large writes; records
//! still in the buffer are read from it), never synced, and wiped when the broker starts (transient messages do not
//! survive a restart). The queue's store keeps only the record's
//! 8-byte location, in arrival order beside the messages it holds in memory (see `queue::store`), so a deep
//! transient queue costs a few bytes per message in RAM, as a durable one does.
//!
//! Invariants:
//! - A spilled record is read back exactly once, when its message leaves the ready list (delivered, moved, expired,
//!   dropped); it is acked in the spill log at that moment and travels on in memory like any transient message
//!   (an unacked delivery is in memory anyway).
//! - Nothing here is synced: a crash loses only transient messages, which a restart discards anyway.
//! - The log is opened on first use, so a queue that never spills has no directory and no open file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::io;

use crate::message::Message;
use crate::store::queue_log::{Loc, Located, QueueLog};
use crate::store::record::{Meta, Record};
use crate::store::txlog::TxView;
use crate::store::{DiskBudget, PagePolicy};

/// What one message held in memory costs beyond its body and properties: its `Entry`, the `Message` and its
/// reference counts, allocator rounding. Measured: about 250 bytes.
pub const ENTRY_OVERHEAD: usize = 256;

/// What one queue's messages in memory take (bytes), kept in step with the sum over every queue that
/// `--total-queue-ram` caps once the queue has a spill log to page to. Dropping it (the queue is gone) takes its share
/// back out of the sum.
#[derive(Debug, Default)]
pub struct MemUse {
    bytes: usize,
    total: Option<Arc<AtomicUsize>>,
}

impl MemUse {
    pub fn get(&self) -> usize {
        self.bytes
    }

    pub fn add(&mut self, n: usize) {
        self.bytes += n;
        if let Some(t) = &self.total {
            t.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Takes `n` off, never below zero.
    pub fn sub(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        if let Some(t) = &self.total {
            t.fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub fn set(&mut self, n: usize) {
        match n.checked_sub(self.bytes) {
            Some(more) => self.add(more),
            None => self.sub(self.bytes - n),
        }
    }

    /// From now on this queue's bytes count in `total` (what it holds already too).
    pub fn share(&mut self, total: Arc<AtomicUsize>) {
        let held = self.bytes;
        self.set(0);
        self.total = Some(total);
        self.add(held);
    }
}

impl Drop for MemUse {
    fn drop(&mut self) {
        self.set(0);
    }
}

pub struct Spill {
    dir: PathBuf,
    budget: DiskBudget,
    policy: PagePolicy,
    log: Option<QueueLog>,
    /// Records written and not yet taken back.
    held: usize,
}

impl Spill {
    pub fn new(dir: PathBuf, budget: DiskBudget, policy: PagePolicy) -> Self {
        Spill {
            dir,
            budget,
            policy,
            log: None,
            held: 0,
        }
    }

    /// New transient messages go to disk now, the queue's messages in memory taking `in_memory` bytes.
    pub fn should_page(&self, in_memory: usize) -> bool {
        in_memory >= self.policy.ram_per_queue
            || self.policy.in_memory.load(Ordering::Relaxed) >= self.policy.ram_total
            || self.policy.pressure.load(Ordering::Relaxed)
    }

    /// The sum over all queues that a queue's [`MemUse`] adds to.
    pub fn total(&self) -> Arc<AtomicUsize> {
        self.policy.in_memory.clone()
    }

    /// How many records are on disk now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Its log is open (files on disk, descriptors held), whether or not it holds a record now.
    pub fn has_files(&self) -> bool {
        self.log.is_some()
    }

    fn log(&mut self) -> io::Result<&mut QueueLog> {
        if self.log.is_none() {
            // A directory left by an earlier life of this broker holds nothing anyone may read.
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir)?;
            }
            let (mut log, _) = QueueLog::open(&self.dir, self.budget.clone(), &TxView(None), |_| None, |_, _| {})?;
            log.write_behind();
            self.log = Some(log);
        }
        self.log
            .as_mut()
            .ok_or_else(|| io::Error::other("the spill log could not be opened"))
    }

    /// Writes a message; returns where it is.
    pub fn write(&mut self, seq: u64, enqueued_ms: u64, m: &Message) -> io::Result<Loc> {
        let loc = self.log()?.append(
            Meta {
                seq,
                enqueued_ms,
                tx: 0,
            },
            m.exchange.as_str().as_bytes(),
            m.routing_key.as_str().as_bytes(),
            &m.raw_properties,
            &m.body,
        )?;
        self.held += 1;
        Ok(loc)
    }

    /// Reads a record without taking it (peek, selection by id).
    pub fn read(&self, loc: Loc) -> io::Result<Record> {
        match &self.log {
            Some(log) => log.read(loc),
            None => Err(io::Error::other("nothing was spilled")),
        }
    }

    /// Where a record can be read (see `QueueLog::locate`), without taking it.
    pub fn locate(&self, loc: Loc) -> io::Result<Located> {
        match &self.log {
            Some(log) => log.locate(loc),
            None => Err(io::Error::other("nothing was spilled")),
        }
    }

    /// Reads a record back and lets go of it: its message leaves the ready list.
    pub fn take(&mut self, loc: Loc) -> io::Result<Record> {
        let r = self.read(loc)?;
        self.forget(loc);
        Ok(r)
    }

    /// Lets go of a record without reading it (purge).
    pub fn forget(&mut self, loc: Loc) {
        if let Some(log) = &mut self.log {
            log.ack(loc);
            self.held = self.held.saturating_sub(1);
        }
    }

    /// Writes the buffered acks, so emptied segments are deleted.
    pub fn flush(&mut self) {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.flush_acks() {
                tracing::debug!(dir = %self.dir.display(), error = %e, "could not record spill acks");
            }
        }
    }

    /// The queue is gone (or purged whole): its spill files go.
    pub fn destroy(&mut self) {
        if let Some(log) = self.log.take() {
            log.destroy();
        }
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::store::MessageStore;
    use amq_protocol::protocol::basic::AMQPProperties;
    use bytes::Bytes;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn msg(body: &str, priority: u8) -> Arc<Message> {
        Arc::new(Message::with_properties(
            "".into(),
            "k".into(),
            AMQPProperties::default().with_priority(priority),
            Bytes::from(body.to_string()),
        ))
    }

    fn bodies(s: &mut MessageStore) -> Vec<String> {
        let mut expired = Vec::new();
        std::iter::from_fn(|| s.pop(&mut expired))
            .map(|e| String::from_utf8_lossy(&e.message.body).into_owned())
            .collect()
    }

    fn spilling(dir: &std::path::Path, max_priority: u8) -> (MessageStore, Arc<AtomicBool>) {
        let pressure = Arc::new(AtomicBool::new(false));
        let store = MessageStore::new(max_priority, None).with_spill(Spill::new(
            dir.join("paging").join("0"),
            DiskBudget::default(),
            PagePolicy {
                pressure: pressure.clone(),
                ram_per_queue: usize::MAX,
                ..PagePolicy::new(usize::MAX, usize::MAX)
            },
        ));
        (store, pressure)
    }

    #[test]
    fn under_pressure_transient_messages_go_to_disk_and_come_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, pressure) = spilling(dir.path(), 0);
        for i in 0..3 {
            s.push(msg(&format!("m{i}"), 0)).expect("push");
        }
        pressure.store(true, Ordering::Relaxed);
        for i in 3..1000 {
            s.push(msg(&format!("m{i}"), 0)).expect("push");
        }
        pressure.store(false, Ordering::Relaxed);
        s.push(msg("m1000", 0)).expect("push");
        assert_eq!(s.spilled(), 997, "only what arrived under pressure went to disk");
        assert_eq!(s.len(), 1001);
        assert!(dir.path().join("paging").join("0").is_dir());
        let peeked: Vec<u64> = s.peek(0, 5, &|_| true).iter().map(|e| e.seq).collect();
        assert_eq!(
            peeked,
            vec![1, 2, 3, 4, 5],
            "peek reads paged messages without taking them"
        );
        let got = bodies(&mut s);
        let want: Vec<String> = (0..=1000).map(|i| format!("m{i}")).collect();
        assert_eq!(got, want, "FIFO across memory and disk");
        assert_eq!(s.spilled(), 0);
        s.flush();
    }

    #[test]
    fn past_its_ram_budget_a_queue_pages_new_transient_messages_and_reads_them_back_from_the_buffer_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let budget = 10 * (ENTRY_OVERHEAD + 6);
        let mut s = MessageStore::new(0, None).with_spill(Spill::new(
            dir.path().join("paging").join("0"),
            DiskBudget::default(),
            PagePolicy {
                pressure: Arc::new(AtomicBool::new(false)),
                ram_per_queue: budget,
                ..PagePolicy::new(usize::MAX, usize::MAX)
            },
        ));
        // 6-byte bodies and no properties beyond the two flag bytes: the first ten fill the budget.
        let n = 60_000;
        for i in 0..n {
            s.push(msg(&format!("{i:06}"), 0)).expect("push");
        }
        assert_eq!(s.spilled(), n - 10, "everything past the budget went to the spill log");
        // Records are written behind in large writes, so some are on file and the newest still in the buffer.
        let on_file: u64 = std::fs::read_dir(dir.path().join("paging").join("0"))
            .expect("spill dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        assert!(on_file > 0, "full buffers reached the file");
        let got = bodies(&mut s);
        let want: Vec<String> = (0..n).map(|i| format!("{i:06}")).collect();
        assert_eq!(got, want, "FIFO across memory, the file and the write-behind buffer");
        assert_eq!(s.spilled(), 0);
        // Drained: memory is free again, so new messages stay in memory.
        s.push(msg("again", 0)).expect("push");
        assert_eq!(s.spilled(), 0);
    }

    #[test]
    fn past_the_total_budget_every_queue_pages_and_a_dropped_queue_gives_its_share_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A 6-byte body and 3 bytes of properties (the flags and a priority).
        let one = ENTRY_OVERHEAD + 6 + 3;
        let policy = PagePolicy::new(usize::MAX, 10 * one);
        let open = |n: usize| {
            MessageStore::new(0, None).with_spill(Spill::new(
                dir.path().join("paging").join(n.to_string()),
                DiskBudget::default(),
                policy.clone(),
            ))
        };
        let (mut a, mut b) = (open(0), open(1));
        for i in 0..10 {
            a.push(msg(&format!("a{i:05}"), 0)).expect("push");
        }
        assert_eq!((a.spilled(), policy.in_memory.load(Ordering::Relaxed)), (0, 10 * one));
        // B holds nothing, but the queues together are at the budget: B pages from its first message.
        for i in 0..5 {
            b.push(msg(&format!("b{i:05}"), 0)).expect("push");
        }
        assert_eq!(b.spilled(), 5, "B paged: the sum over all queues is at the budget");
        // A drains: the sum falls, and B keeps its next messages in memory again.
        let got = bodies(&mut a);
        assert_eq!(got.len(), 10);
        assert_eq!(
            policy.in_memory.load(Ordering::Relaxed),
            0,
            "a drained queue holds nothing"
        );
        b.push(msg("b00005", 0)).expect("push");
        assert_eq!(b.spilled(), 5, "the new one stayed in memory");
        assert_eq!(policy.in_memory.load(Ordering::Relaxed), one);
        // A fills up again and is dropped (the queue was deleted): its share leaves the sum with it.
        for i in 0..9 {
            a.push(msg(&format!("a{i:05}"), 0)).expect("push");
        }
        assert_eq!(policy.in_memory.load(Ordering::Relaxed), 10 * one);
        drop(a);
        assert_eq!(policy.in_memory.load(Ordering::Relaxed), one);
        let got = bodies(&mut b);
        let want: Vec<String> = (0..6).map(|i| format!("b{i:05}")).collect();
        assert_eq!(got, want, "FIFO across the paged messages and the one in memory");
        assert_eq!(policy.in_memory.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn mem_use_keeps_the_sum_in_step_and_never_goes_below_zero() {
        let total = Arc::new(AtomicUsize::new(7));
        let mut m = MemUse::default();
        m.add(100);
        m.share(total.clone());
        assert_eq!(
            total.load(Ordering::Relaxed),
            107,
            "what it held before counts once shared"
        );
        m.sub(30);
        m.set(200);
        assert_eq!((m.get(), total.load(Ordering::Relaxed)), (200, 207));
        m.sub(1_000);
        assert_eq!(
            (m.get(), total.load(Ordering::Relaxed)),
            (0, 7),
            "clamped at zero, the others' share intact"
        );
        m.add(5);
        drop(m);
        assert_eq!(total.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn priorities_ids_and_purge_work_on_paged_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s, pressure) = spilling(dir.path(), 5);
        pressure.store(true, Ordering::Relaxed);
        for (i, p) in [(1, 0u8), (2, 5), (3, 0), (4, 5)] {
            s.push(msg(&format!("m{i}"), p)).expect("push");
        }
        // Take one by id (a move), then the rest in priority order.
        let ids: std::collections::HashSet<u64> = [3].into_iter().collect();
        let taken = s.take(Some(&ids));
        assert_eq!(taken.len(), 1);
        assert_eq!(&taken[0].message.body[..], b"m3");
        assert_eq!(s.spilled(), 3);
        assert_eq!(bodies(&mut s), vec!["m2", "m4", "m1"]);
        for i in 0..50 {
            s.push(msg(&format!("p{i}"), 0)).expect("push");
        }
        assert_eq!(s.purge(), 50);
        assert_eq!(s.spilled(), 0);
        assert!(
            !dir.path().join("paging").join("0").exists(),
            "a purge removes the spill files"
        );
        s.push(msg("after", 0)).expect("push");
        assert_eq!(bodies(&mut s), vec!["after"], "and spilling starts afresh");
    }

    #[test]
    fn within_its_budget_a_durable_queue_keeps_persistent_messages_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qdir = dir.path().join("queues").join("q");
        let txlog = crate::store::txlog::TxLog::open(dir.path()).expect("txlog");
        let open = |ram: usize| {
            let s = MessageStore::open_on_disk(&qdir, DiskBudget::default(), &TxView(Some(&txlog)), 0, None, None)
                .expect("open")
                .0;
            s.with_spill(Spill::new(
                dir.path().join("paging").join("0"),
                DiskBudget::default(),
                PagePolicy {
                    pressure: Arc::new(AtomicBool::new(false)),
                    ram_per_queue: ram,
                    ..PagePolicy::new(usize::MAX, usize::MAX)
                },
            ))
        };
        let persistent = |i: u32| {
            let props = AMQPProperties::default().with_delivery_mode(2);
            Arc::new(Message::with_properties(
                "".into(),
                "k".into(),
                props,
                Bytes::from(format!("m{i}")),
            ))
        };
        let mut s = open(usize::MAX);
        for i in 0..5 {
            let p = s.push_deferred(persistent(i)).expect("push");
            assert!(p.deferred);
        }
        s.hand_over().expect("flush");
        // Delivered from memory: the records need not be read back.
        std::fs::remove_dir_all(&qdir).ok();
        assert_eq!(bodies(&mut s), vec!["m0", "m1", "m2", "m3", "m4"]);
        drop(s);

        let mut s = open(usize::MAX);
        for i in 0..4 {
            s.push(persistent(i)).expect("push");
        }
        assert_eq!(s.purge(), 4);
        s.flush();
        drop(s);
        let mut again = open(usize::MAX);
        assert!(
            bodies(&mut again).is_empty(),
            "a purge acks the records of messages kept in memory"
        );
        for i in 0..3 {
            again.push(persistent(i)).expect("push");
        }
        again.flush();
        drop(again);
        let mut after_restart = open(0);
        assert_eq!(
            bodies(&mut after_restart),
            vec!["m0", "m1", "m2"],
            "and their records survive a restart"
        );
    }

    #[test]
    fn a_durable_queue_pages_its_transient_messages_and_keeps_only_persistent_ones_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qdir = dir.path().join("queues").join("q");
        let txlog = crate::store::txlog::TxLog::open(dir.path()).expect("txlog");
        let open = || {
            MessageStore::open_on_disk(&qdir, DiskBudget::default(), &TxView(Some(&txlog)), 0, None, None)
                .expect("open")
                .0
        };
        let pressure = Arc::new(AtomicBool::new(true));
        let mut s = open().with_spill(Spill::new(
            dir.path().join("paging").join("0"),
            DiskBudget::default(),
            PagePolicy {
                pressure,
                ram_per_queue: usize::MAX,
                ..PagePolicy::new(usize::MAX, usize::MAX)
            },
        ));
        for i in 0..10u8 {
            let props = AMQPProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 });
            let m = Message::with_properties("".into(), "k".into(), props, Bytes::from(format!("m{i}")));
            s.push(Arc::new(m)).expect("push");
        }
        assert_eq!(
            s.spilled(),
            5,
            "the transient half is paged out, the persistent half is in the queue's log"
        );
        s.flush();
        drop(s);
        let mut again = open();
        assert_eq!(bodies(&mut again), vec!["m0", "m2", "m4", "m6", "m8"]);
    }
}
