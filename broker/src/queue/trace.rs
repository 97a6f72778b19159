//! A queue's side of message journeys (`crate::trace`): whether it is traced (switched on through the admin API,
//! or by a policy with `trace: true`), and the events it records for traced messages.
//!
//! Invariant: every recording path first reads the vhost's one flag (`VhostTrace::any`) and does nothing more when
//! it is false, so a queue in a vhost with nothing traced pays one relaxed load per batch (per dispatch, per ack
//! batch, per expiry sweep), never an allocation or a lock.

use std::sync::atomic::Ordering;

use super::Queue;
use crate::message::Message;
use crate::trace::TraceEvent;

impl Queue {
    /// Traced, through the API or a policy.
    pub fn is_traced(&self) -> bool {
        self.traced_api.load(Ordering::Relaxed) || self.traced_policy.load(Ordering::Relaxed)
    }

    /// Traced through the API, and through a policy.
    pub fn trace_switches(&self) -> (bool, bool) {
        (
            self.traced_api.load(Ordering::Relaxed),
            self.traced_policy.load(Ordering::Relaxed),
        )
    }

    /// Whether anything in this queue's vhost is traced: the first (and, when off, only) check of every path.
    #[inline]
    pub fn trace_any(&self) -> bool {
        self.trace.any()
    }

    /// Whether an event about `m` here is recorded (call after `trace_any`).
    pub fn traces(&self, m: &Message) -> bool {
        self.is_traced() || m.is_traced()
    }

    /// Switches tracing through the API; returns whether that changed it. The vhost recomputes its flag when
    /// something was switched off (`VHost::refresh_trace`).
    pub fn set_traced(&self, on: bool) -> bool {
        let changed = self.traced_api.swap(on, Ordering::Relaxed) != on;
        if self.is_traced() {
            self.trace.note_on();
        }
        changed
    }

    /// A policy with (or without) `trace: true` now applies.
    pub(super) fn set_traced_by_policy(&self, on: bool) {
        self.traced_policy.store(on, Ordering::Relaxed);
        if on {
            self.trace.note_on();
        }
    }

    /// Records `event` about `m` in this queue's vhost (the caller checked `trace_any` and `traces`).
    pub fn record_trace(&self, m: &Message, event: TraceEvent) {
        self.trace.journal.record_message(&self.spec.vhost, m, event);
    }

    /// An operator's purge or delete took these out (through the admin API, which keeps them for undo).
    pub fn record_purged(&self, entries: &[super::Entry]) {
        if !self.trace_any() {
            return;
        }
        for e in entries.iter().filter(|e| self.traces(&e.message)) {
            let queue = self.spec.name.clone();
            self.record_trace(&e.message, TraceEvent::Purged { queue });
        }
    }

    /// A message enters this queue: a traced queue marks it, so what happens to it later is recorded anywhere.
    pub(super) fn trace_enter(&self, m: &Message) {
        if self.trace_any() && self.is_traced() && !m.is_traced() {
            self.trace.journal.mark(m);
        }
    }

    /// The journal this queue records to.
    pub fn journal(&self) -> &std::sync::Arc<crate::trace::Journal> {
        &self.trace.journal
    }
}
