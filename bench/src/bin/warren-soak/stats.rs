//! Running counters of the soak, shared by every task and read by the progress line and the summary.
//!
//! Plain relaxed atomics: each counter is only ever added to, and a progress line that is a few messages out of
//! step with another counter is fine. Exact accounting is the ledger's job, not these.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Default)]
pub struct Stats {
    pub published: Counter,
    pub confirmed: Counter,
    pub nacked: Counter,
    pub delivered: Counter,
    pub redelivered: Counter,
    pub acked: Counter,
    /// Rejected by a consumer with requeue=false: dead-lettered into the queue's DLQ.
    pub rejected: Counter,
    /// Bodies that name no message of this soak (damaged, or left over from an earlier run).
    pub unknown: Counter,
    /// AMQP connections open now (gauge: `sub` on close).
    pub open: Counter,
    /// A publisher, consumer or idle connection failed (and reconnected).
    pub connection_failures: Counter,
    pub redrives: Counter,
    pub redriven: Counter,
    /// Moves that ended `failed` or could not be started or followed.
    pub redrive_failures: Counter,
    pub admin_requests: Counter,
    pub admin_errors: Counter,
    /// Slowest admin request so far, in ms.
    pub admin_slowest_ms: Counter,
    pub stream_events: Counter,
    /// The SSE stream ended, failed or went quiet for too long, and was opened again.
    pub stream_reconnects: Counter,
    /// The last error of each kind, for the progress line and the summary.
    pub last_error: Mutex<Option<String>>,
}

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn max(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }
}

/// The counters at one moment, as the summary JSON carries them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
    pub unknown_bodies: u64,
    pub connection_failures: u64,
    pub redrives: u64,
    pub redriven: u64,
    pub redrive_failures: u64,
    pub admin_requests: u64,
    pub admin_errors: u64,
    pub admin_slowest_ms: u64,
    pub stream_events: u64,
    pub stream_reconnects: u64,
}

impl Stats {
    /// Records an error (printed with the next progress line, and kept for the summary).
    pub fn error(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("warren-soak: {what}");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn totals(&self) -> Totals {
        Totals {
            published: self.published.get(),
            confirmed: self.confirmed.get(),
            nacked: self.nacked.get(),
            delivered: self.delivered.get(),
            redelivered: self.redelivered.get(),
            acked: self.acked.get(),
            dead_lettered: self.rejected.get(),
            unknown_bodies: self.unknown.get(),
            connection_failures: self.connection_failures.get(),
            redrives: self.redrives.get(),
            redriven: self.redriven.get(),
            redrive_failures: self.redrive_failures.get(),
            admin_requests: self.admin_requests.get(),
            admin_errors: self.admin_errors.get(),
            admin_slowest_ms: self.admin_slowest_ms.get(),
            stream_events: self.stream_events.get(),
            stream_reconnects: self.stream_reconnects.get(),
        }
    }
}
