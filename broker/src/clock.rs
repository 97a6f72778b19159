//! The broker's one clock: unix milliseconds for message TTL, queue `x-expires`, delayed messages, de-duplication
//! windows, `x-death` times and the timestamps the admin API shows.
//!
//! A [`Clock`] reads `base_unix_ms + (tokio::time::Instant::now() - base) + offset`: the wall clock is read once,
//! when the clock is made, and time then moves with tokio's monotonic clock. So:
//! - timestamps are real unix milliseconds, which is what the store writes to disk (enqueue times, delayed release
//!   times, de-duplication expiries) and compares again after a restart, when a new clock is made;
//! - a wall-clock step (NTP, an operator) does not expire or revive messages while the broker runs;
//! - on a runtime whose time is paused (`tokio::time::pause`), broker time moves only as tokio's clock does;
//! - a deadline in unix ms maps back to the tokio instant at which this clock will read it ([`Clock::instant_at`]),
//!   which is what the broker's timer (`crate::timer`) sleeps until.
//!
//! The broker's end-to-end tests run the broker on its own real-time runtime and talk to it over real sockets,
//! where paused time would fire handshake and heartbeat timeouts whenever the runtime waits on I/O. They move a
//! broker's time with [`Clock::advance`] instead (through `Broker::advance_time`, which also runs the expiry
//! sweep), so no test sleeps to let a TTL pass.
//!
//! Invariants: `now_ms` never goes backwards for one clock (monotonic base, offset only grows) as long as it is read
//! from runtimes that keep real time, or from one paused runtime (a paused runtime's `Instant` stands still, so a
//! reading there may be earlier than one taken on a real-time thread just before); every broker reads the clock it
//! was built with, so advancing one test's broker leaves the others alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A cheap handle (one `Arc`) to a broker's time source; clones share it, `advance` included.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The wall clock when the clock was made, in unix ms: what keeps timestamps meaningful across restarts.
    base_unix_ms: u64,
    /// The monotonic instant taken at the same moment; elapsed time is measured from it.
    base: Instant,
    /// Time added by [`Clock::advance`] (tests only), in ms.
    offset_ms: AtomicU64,
}

impl Clock {
    /// A new clock starting at the current wall-clock time, with an offset of its own.
    pub fn new() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            inner: Arc::new(Inner {
                base_unix_ms,
                base: Instant::now(),
                offset_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The process-wide clock, for code that runs outside any broker (unit tests, tools). Never advanced.
    pub fn system() -> Self {
        static SYSTEM: OnceLock<Clock> = OnceLock::new();
        SYSTEM.get_or_init(Clock::new).clone()
    }

    /// Milliseconds since the Unix epoch, as this clock sees them.
    pub fn now_ms(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.inner.base);
        self.inner
            .base_unix_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .saturating_add(self.inner.offset_ms.load(Ordering::Relaxed))
    }

    /// The tokio instant at which this clock reads `unix_ms` (now, for a time already passed), for the timer to sleep
    /// until a deadline. Exact for the offset as it is now: after an `advance` the timer is nudged to ask again.
    pub fn instant_at(&self, unix_ms: u64) -> Instant {
        let now = Instant::now();
        let since_base = unix_ms
            .saturating_sub(self.inner.base_unix_ms)
            .saturating_sub(self.inner.offset_ms.load(Ordering::Relaxed));
        let at = self.inner.base + Duration::from_millis(since_base);
        at.max(now)
    }

    /// Moves this clock (and every clone of it) forward by `by`: time passes for TTLs, expiries and delays at once.
    /// For tests; `Broker::advance_time` also runs what became due at once and nudges the broker's timer.
    #[doc(hidden)]
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.inner.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Default for Clock {
    /// The shared [`Clock::system`].
    fn default() -> Self {
        Clock::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_the_wall_clock_and_advances() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let c = Clock::new();
        let t0 = c.now_ms();
        assert!(t0.abs_diff(wall) < 1_000, "{t0} vs {wall}");
        let shared = c.clone();
        shared.advance(Duration::from_secs(10));
        let t1 = c.now_ms();
        assert!(t1 >= t0 + 10_000, "a clone's advance moves the clock");
        assert!(Clock::new().now_ms() < t1, "other clocks are not moved");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_becomes_the_instant_the_clock_reads_it() {
        let c = Clock::new();
        let t0 = c.now_ms();
        let at = c.instant_at(t0 + 250);
        tokio::time::sleep_until(at).await;
        assert!(c.now_ms() >= t0 + 250, "{} < {}", c.now_ms(), t0 + 250);
        assert!(c.now_ms() <= t0 + 251);
        c.advance(Duration::from_millis(1_000));
        assert_eq!(c.instant_at(t0 + 1_000), Instant::now(), "passed already: now");
        let later = c.instant_at(c.now_ms() + 100);
        assert_eq!(later - Instant::now(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn follows_tokio_paused_time() {
        tokio::time::pause();
        let c = Clock::new();
        let t0 = c.now_ms();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        let t1 = c.now_ms();
        assert!((1_500..1_600).contains(&(t1 - t0)), "{t0} -> {t1}");
    }
}
