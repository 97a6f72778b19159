//! The clock for fixed-rate (`--rate`) runs: a thread that wakes the producers every tick.
//!
//! tokio's timer has a 1 ms resolution, so a producer that slept on it would send its messages in 1 ms bursts and
//! every message would wait up to 1 ms on the client before it left. A plain thread sleeping for `tick` (100 µs to
//! 1 ms) and waking the waiting producers keeps that client-side delay below one tick. Producers stamp each message
//! with the time it was due, not the time it left, so the latency they report includes any such delay (no
//! coordinated omission).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub struct Pacer {
    notify: Notify,
    stop: AtomicBool,
    pub tick: Duration,
}

impl Pacer {
    /// Starts the ticking thread for producers that each send `rate` messages per second: a tick of one message
    /// interval, kept between 100 µs and 1 ms.
    pub fn start(rate: f64) -> Arc<Pacer> {
        let interval = if rate > 0.0 { 1.0 / rate } else { 1e-3 };
        let tick = Duration::from_secs_f64(interval.clamp(100e-6, 1e-3));
        let pacer = Arc::new(Pacer {
            notify: Notify::new(),
            stop: AtomicBool::new(false),
            tick,
        });
        let p = pacer.clone();
        // Detached: it ends within a tick of `stop`.
        std::thread::spawn(move || {
            while !p.stop.load(Ordering::Relaxed) {
                std::thread::sleep(p.tick);
                p.notify.notify_waiters();
            }
        });
        pacer
    }

    /// Waits for the next tick. A producer that checks its schedule and then waits may miss one tick in between,
    /// which delays it by one more tick at most.
    pub async fn tick(&self) {
        self.notify.notified().await;
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
