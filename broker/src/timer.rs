//! The broker's one timer: wakes a queue or a delayed exchange at its next deadline, so nothing polls every queue
//! on a fixed tick.
//!
//! Whatever has a deadline (a queue: message TTL at its heads, `x-expires`, unreadable records to retry, files to
//! let go of; a delayed exchange: its next held message) implements [`Due`] and arms the timer with a unix-ms
//! deadline from the broker's [`Clock`]. One task ([`Timer::run`], started with the server) keeps a min-heap of
//! deadlines, sleeps until the earliest (converted to a tokio `Instant` by [`Clock::instant_at`]) or until an arm
//! arrives over its channel, then calls [`Due::due`] on every target whose deadline has passed; `due` does the
//! target's upkeep and answers its next deadline, which the timer keeps. Upkeep may touch the disk (a head read
//! back, acks, dead letters, a queue's removal saved), so the due targets of one wake run together through
//! `store::blocking`, off the async worker.
//!
//! Invariants:
//! - At most one live deadline per target: the timer keeps each target's earliest deadline in a map and the heap
//!   entries that no longer match it are skipped when popped ("earlier arm wins, later arm is ignored until fire").
//!   So a target that re-arms often never grows the heap, and a fire runs a target once.
//! - The timer holds only a `Weak` to each target: a dropped queue or exchange is skipped (and forgotten) when its
//!   deadline comes, and never kept alive by the timer.
//! - A missed deadline is a bug, a spurious early wake is not: a target fired before anything is due recomputes and
//!   answers its real next deadline. Arming is cheap for the caller (a non-blocking send on an unbounded channel,
//!   which a target does only when its deadline moves earlier; see `Queue::arm`).
//! - Arms sent before the task runs (recovery at start) wait in the channel and are kept on its first turn.
//! - The task ends when the shutdown token is cancelled. `Broker::advance_time` (tests) moves the clock, makes every
//!   due thing happen at once with a full sweep, and then nudges the task to recompute its sleep.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// Something the timer wakes at a deadline.
pub trait Due: Send + Sync {
    /// The deadline passed (or a spurious early wake): do what is due now and answer when to be woken next (unix
    /// ms), or None when nothing is pending. Runs on the timer task, through `store::blocking`: no `.await`, and
    /// no lock held that an async task could wait for.
    fn due(&self) -> Option<u64>;
}

/// What the timer task is told.
enum Message {
    /// Wake `target` at `at` (unix ms), unless it is already to be woken earlier.
    Arm { at: u64, target: Weak<dyn Due> },
    /// The clock moved (`Clock::advance`): recompute the sleep.
    Nudge,
}

/// A cheap handle (one `Arc`) to the broker's timer: clones share it. A detached timer (unit tests of a queue on
/// its own) drops every arm.
#[derive(Clone, Default)]
pub struct Timer {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    tx: mpsc::UnboundedSender<Message>,
    /// Taken by the task when it starts (a broker runs one).
    rx: Mutex<Option<mpsc::UnboundedReceiver<Message>>>,
    clock: Clock,
    /// Times the task woke because a deadline passed (not for an arm or a nudge).
    wakes: AtomicU64,
    /// Targets whose `due` ran.
    fired: AtomicU64,
}

/// What the timer has done so far (for tests and the curious).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Wakes because a deadline passed.
    pub wakes: u64,
    /// Targets fired (their `due` ran).
    pub fired: u64,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("attached", &self.shared.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The earliest deadline of each target, and a min-heap over them (with stale entries skipped when popped).
#[derive(Default)]
struct Schedule {
    /// By the target's address (stable while the timer holds a `Weak` to it, which keeps the allocation).
    armed: HashMap<usize, (u64, Weak<dyn Due>)>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
}

/// Stale heap entries tolerated beyond one per armed target before the heap is rebuilt from the map.
const STALE_SLACK: usize = 1_024;

fn key_of(target: &Weak<dyn Due>) -> usize {
    target.as_ptr() as *const () as usize
}

impl Schedule {
    fn arm(&mut self, at: u64, target: Weak<dyn Due>) {
        let key = key_of(&target);
        match self.armed.get_mut(&key) {
            Some((current, _)) if *current <= at => {}
            Some(slot) => {
                *slot = (at, target);
                self.heap.push(Reverse((at, key)));
            }
            None => {
                self.armed.insert(key, (at, target));
                self.heap.push(Reverse((at, key)));
            }
        }
        // Entries an earlier arm made stale stay in the heap until their time; a target re-armed earlier again and
        // again (a deep durable queue whose head is read at each stall) must not grow it without bound.
        if self.heap.len() > 2 * self.armed.len() + STALE_SLACK {
            self.heap = self.armed.iter().map(|(key, (at, _))| Reverse((*at, *key))).collect();
        }
    }

    /// The earliest live deadline (stale heap entries are dropped on the way).
    fn next(&mut self) -> Option<u64> {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if self.armed.get(&key).is_some_and(|(current, _)| *current == at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes out a target whose deadline is at or before `now`.
    fn pop_due(&mut self, now: u64) -> Option<Weak<dyn Due>> {
        let at = self.next().filter(|at| *at <= now)?;
        let Reverse((_, key)) = self.heap.pop()?;
        debug_assert!(self.armed.get(&key).is_some_and(|(a, _)| *a == at));
        self.armed.remove(&key).map(|(_, target)| target)
    }
}

impl Timer {
    /// A timer on `clock`; nothing fires until [`Timer::run`] runs.
    pub fn new(clock: Clock) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Timer {
            shared: Some(Arc::new(Shared {
                tx,
                rx: Mutex::new(Some(rx)),
                clock,
                wakes: AtomicU64::new(0),
                fired: AtomicU64::new(0),
            })),
        }
    }

    /// A timer that drops every arm (for a queue or vhost made on its own in unit tests).
    pub fn detached() -> Self {
        Timer { shared: None }
    }

    /// Asks for `target` to be woken at `at` (unix ms on the broker's clock). The caller keeps this rare: only when
    /// its deadline moved earlier than what it armed before.
    pub fn arm(&self, at: u64, target: Weak<dyn Due>) {
        if let Some(s) = &self.shared {
            // Fails only once the task has ended (shutdown): nothing is woken then anyway.
            let _ = s.tx.send(Message::Arm { at, target });
        }
    }

    /// Makes the task recompute its sleep (the clock was moved by a test).
    pub fn nudge(&self) {
        if let Some(s) = &self.shared {
            let _ = s.tx.send(Message::Nudge);
        }
    }

    pub fn stats(&self) -> TimerStats {
        self.shared.as_ref().map_or_else(TimerStats::default, |s| TimerStats {
            wakes: s.wakes.load(Ordering::Relaxed),
            fired: s.fired.load(Ordering::Relaxed),
        })
    }

    /// The timer task: fires targets at their deadlines until `shutdown` is cancelled. Returns at once on a detached
    /// timer, or when another task already runs this timer.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(shared) = self.shared else { return };
        let Some(mut rx) = shared.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let clock = shared.clock.clone();
        let mut schedule = Schedule::default();
        loop {
            // Fire whatever is due. A target answering a deadline that has passed already is woken again a
            // millisecond later, after the task has yielded, so a confused target cannot spin the loop.
            let now = clock.now_ms();
            let mut due = Vec::new();
            while let Some(target) = schedule.pop_due(now) {
                due.push(target);
            }
            if !due.is_empty() {
                // Upkeep may read heads from disk, write acks and dead letters, or save a queue's removal: like
                // other blocking disk work from async code, off the async worker (`store::blocking`).
                let again = crate::store::blocking(|| fire(&shared, due, now));
                for (at, target) in again {
                    schedule.arm(at, target);
                }
            }
            let wake_at = schedule.next().map(|at| clock.instant_at(at));
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                m = rx.recv() => {
                    let Some(m) = m else { return };
                    take(&mut schedule, m);
                    // Everything else that is waiting, in one turn.
                    while let Ok(m) = rx.try_recv() {
                        take(&mut schedule, m);
                    }
                }
                () = sleep => {
                    shared.wakes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Runs `due` on every target still alive; returns their next deadlines (never before `now + 1`).
fn fire(shared: &Shared, due: Vec<Weak<dyn Due>>, now: u64) -> Vec<(u64, Weak<dyn Due>)> {
    let mut again = Vec::new();
    for target in due {
        let Some(live) = target.upgrade() else { continue };
        shared.fired.fetch_add(1, Ordering::Relaxed);
        if let Some(next) = live.due() {
            again.push((next.max(now + 1), target));
        }
    }
    again
}

fn take(schedule: &mut Schedule, m: Message) {
    match m {
        Message::Arm { at, target } => schedule.arm(at, target),
        Message::Nudge => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A target that counts its wakes and answers what the test set.
    #[derive(Default)]
    struct Probe {
        fired: AtomicU64,
        next: Mutex<Option<u64>>,
    }

    impl Due for Probe {
        fn due(&self) -> Option<u64> {
            self.fired.fetch_add(1, Ordering::Relaxed);
            self.next.lock().expect("lock").take()
        }
    }

    impl Probe {
        fn fired(&self) -> u64 {
            self.fired.load(Ordering::Relaxed)
        }
    }

    fn weak(p: &Arc<Probe>) -> Weak<dyn Due> {
        let w: Weak<Probe> = Arc::downgrade(p);
        w
    }

    /// A timer running on the (paused) test runtime, and its clock.
    fn start() -> (Timer, Clock, CancellationToken) {
        let clock = Clock::new();
        let timer = Timer::new(clock.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(timer.clone().run(shutdown.clone()));
        (timer, clock, shutdown)
    }

    /// Lets paused time pass (the runtime runs every task that is ready on the way).
    async fn pass(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_and_not_before() {
        let (timer, clock, _stop) = start();
        let p = Arc::new(Probe::default());
        timer.arm(clock.now_ms() + 50, weak(&p));
        pass(49).await;
        assert_eq!(p.fired(), 0, "not before its deadline");
        pass(2).await;
        assert_eq!(p.fired(), 1);
        pass(10_000).await;
        assert_eq!(p.fired(), 1, "it answered no next deadline: never again");
        assert_eq!(timer.stats(), TimerStats { wakes: 1, fired: 1 });
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_arm_wins_and_a_later_one_waits_for_the_fire() {
        let (timer, clock, _stop) = start();
        let p = Arc::new(Probe::default());
        let t0 = clock.now_ms();
        timer.arm(t0 + 100, weak(&p));
        timer.arm(t0 + 20, weak(&p));
        timer.arm(t0 + 60, weak(&p));
        pass(21).await;
        assert_eq!(p.fired(), 1, "the earliest arm fired");
        pass(200).await;
        assert_eq!(p.fired(), 1, "the later arms were folded into the earlier one");
        // A target re-arms by answering its next deadline.
        *p.next.lock().expect("lock") = Some(clock.now_ms() + 30);
        timer.arm(clock.now_ms() + 10, weak(&p));
        pass(11).await;
        assert_eq!(p.fired(), 2);
        pass(30).await;
        assert_eq!(p.fired(), 3, "woken again at the deadline it answered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_target_is_skipped() {
        let (timer, clock, _stop) = start();
        let gone = Arc::new(Probe::default());
        let kept = Arc::new(Probe::default());
        timer.arm(clock.now_ms() + 10, weak(&gone));
        timer.arm(clock.now_ms() + 20, weak(&kept));
        let watch = Arc::downgrade(&gone);
        drop(gone);
        pass(25).await;
        assert!(watch.upgrade().is_none(), "the timer did not keep it alive");
        assert_eq!(kept.fired(), 1);
        assert_eq!(timer.stats().fired, 1, "only the live target fired");
    }

    #[tokio::test(start_paused = true)]
    async fn many_targets_and_no_wake_before_the_first_deadline() {
        let (timer, clock, _stop) = start();
        let probes: Vec<Arc<Probe>> = (0..100).map(|_| Arc::new(Probe::default())).collect();
        let t0 = clock.now_ms();
        for (i, p) in probes.iter().enumerate() {
            timer.arm(t0 + 1_000 + i as u64, weak(p));
        }
        pass(999).await;
        assert_eq!(timer.stats(), TimerStats::default(), "nothing is due: no wake at all");
        pass(101).await;
        assert!(probes.iter().all(|p| p.fired() == 1));
    }

    #[test]
    fn stale_entries_do_not_grow_the_heap() {
        let mut schedule = Schedule::default();
        let p = Arc::new(Probe::default());
        let others: Vec<Arc<Probe>> = (0..10).map(|_| Arc::new(Probe::default())).collect();
        for o in &others {
            schedule.arm(1_000_000, weak(o));
        }
        for at in (0..100_000u64).rev() {
            schedule.arm(at + 1_000, weak(&p));
        }
        assert!(schedule.heap.len() <= 2 * 11 + STALE_SLACK, "{}", schedule.heap.len());
        assert_eq!(schedule.next(), Some(1_000));
        assert!(schedule.pop_due(999).is_none());
        assert!(schedule.pop_due(1_000).is_some());
        assert_eq!(
            schedule.next(),
            Some(1_000_000),
            "the stale entries of the fired target are gone"
        );
        let mut fired = 0;
        while schedule.pop_due(1_000_000).is_some() {
            fired += 1;
        }
        assert_eq!(fired, 10);
        assert_eq!(schedule.next(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn ends_on_shutdown() {
        let clock = Clock::new();
        let timer = Timer::new(clock.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(timer.clone().run(shutdown.clone()));
        let p = Arc::new(Probe::default());
        timer.arm(clock.now_ms() + 1_000, weak(&p));
        shutdown.cancel();
        task.await.expect("the task ended");
        pass(2_000).await;
        assert_eq!(p.fired(), 0);
        // Arming a stopped timer is harmless.
        timer.arm(clock.now_ms(), weak(&p));
    }

    #[tokio::test(start_paused = true)]
    async fn a_nudge_after_the_clock_moved_fires_what_became_due() {
        let (timer, clock, _stop) = start();
        let p = Arc::new(Probe::default());
        timer.arm(clock.now_ms() + 60_000, weak(&p));
        pass(1).await;
        clock.advance(Duration::from_secs(60));
        timer.nudge();
        pass(1).await;
        assert_eq!(p.fired(), 1);
    }
}
