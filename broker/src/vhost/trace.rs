//! Switching message journeys on and off for a vhost or one of its queues (`crate::trace`), and keeping the
//! vhost's one flag (`VhostTrace::any`) true exactly while something here is traced (it may stay true a little
//! longer than needed after a traced queue is deleted: that costs a check, never a wrong record).
//!
//! Switches set through the admin API live in memory: a restart forgets them. A policy with `trace: true` is the
//! durable way (policies are saved in `definitions.log`).

use std::sync::Arc;

use super::VHost;
use crate::message::Message;
use crate::queue::Queue;
use crate::trace::{Journal, TraceEvent, VhostTrace};

impl VHost {
    /// Records journeys to `journal` (the broker's), instead of the in-memory one a vhost starts with. Called
    /// before any queue is made here, since queues take the switches at their start.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.trace = VhostTrace::new(journal);
        self
    }

    /// Switches tracing of the whole vhost; returns whether that changed it.
    pub fn set_trace_vhost(&self, on: bool) -> bool {
        let queues = self.any_queue_traced();
        self.trace.set_vhost_on(on, queues)
    }

    /// Switches tracing of queue `name` through the API: `None` when there is no such queue, else (on now through
    /// the API, on by a policy, changed).
    pub fn set_trace_queue(&self, name: &str, on: bool) -> Option<(bool, bool, bool)> {
        let q = self.queue(name)?;
        let changed = q.set_traced(on);
        if !on {
            self.refresh_trace();
        }
        let (api, policy) = q.trace_switches();
        Some((api, policy, changed))
    }

    /// Recomputes the vhost's flag (after something was switched off, or a policy changed).
    pub fn refresh_trace(&self) {
        self.trace.refresh(self.any_queue_traced());
    }

    /// A publish here while something is traced (the caller read `trace.any()`): when the vhost is traced, or a
    /// queue it reaches is, the message is marked and its `published` and `routed` events are recorded (before any
    /// queue can deliver it). Returns whether it is traced.
    pub fn trace_publish(&self, connection: u64, user: &str, message: &Message, queues: &[Arc<Queue>]) -> bool {
        let trace = &self.trace;
        if !(trace.vhost_on() || message.is_traced() || queues.iter().any(|q| q.is_traced())) {
            return false;
        }
        let published = TraceEvent::Published {
            connection,
            user: user.to_string(),
            exchange: message.exchange.to_string(),
            routing_key: message.routing_key.to_string(),
        };
        trace.journal.record_message(&self.name, message, published);
        if !queues.is_empty() {
            let queues = queues.iter().map(|q| q.name().to_string()).collect();
            trace
                .journal
                .record_message(&self.name, message, TraceEvent::Routed { queues });
        }
        true
    }

    fn any_queue_traced(&self) -> bool {
        self.read().queues.values().any(|q| q.is_traced())
    }
}
