//! The journal's memory: at most `max_journeys` journeys of at most `max_events` events each.
//!
//! Invariants: `order` holds every key of `journeys` once, oldest journey first, so eviction is a pop; a full ring
//! drops its oldest journey to make room for a new one; a full journey keeps its first event (where the message
//! came from) and drops its second-oldest, marking itself truncated.

use std::collections::{HashMap, VecDeque};

use warren_shared::trace::{Journey, JourneyStep};

/// The W3C trace context a message carried: `traceparent`, and `tracestate` if any.
pub type Parent = Option<(String, Option<String>)>;

struct Buf {
    events: VecDeque<JourneyStep>,
    truncated: bool,
    parent: Parent,
}

pub struct Ring {
    journeys: HashMap<String, Buf>,
    order: VecDeque<String>,
    max_journeys: usize,
    max_events: usize,
}

/// One map key for (vhost, id): vhost names cannot hold a NUL.
fn key(vhost: &str, id: &str) -> String {
    let mut k = String::with_capacity(vhost.len() + 1 + id.len());
    k.push_str(vhost);
    k.push('\0');
    k.push_str(id);
    k
}

impl Ring {
    pub fn new(max_journeys: usize, max_events: usize) -> Self {
        Ring {
            journeys: HashMap::new(),
            order: VecDeque::new(),
            max_journeys: max_journeys.max(1),
            max_events: max_events.max(2),
        }
    }

    /// Appends `step` to the journey of `id` in `vhost` (made if new, evicting the oldest when full). Returns the
    /// journey's trace context (the first one it was given) and the time of the step before this one.
    pub fn push(&mut self, vhost: &str, id: &str, parent: Parent, step: JourneyStep) -> (Parent, Option<u64>) {
        let k = key(vhost, id);
        if !self.journeys.contains_key(&k) {
            while self.journeys.len() >= self.max_journeys {
                match self.order.pop_front() {
                    Some(old) => {
                        self.journeys.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(k.clone());
            self.journeys.insert(
                k.clone(),
                Buf {
                    events: VecDeque::new(),
                    truncated: false,
                    parent: None,
                },
            );
        }
        let Some(buf) = self.journeys.get_mut(&k) else {
            return (None, None);
        };
        if buf.parent.is_none() {
            buf.parent = parent;
        }
        let previous = buf.events.back().map(|s| s.at_ms);
        if buf.events.len() >= self.max_events {
            // Keep the first (its origin); drop the oldest after it.
            buf.events.remove(1);
            buf.truncated = true;
        }
        buf.events.push_back(step);
        (buf.parent.clone(), previous)
    }

    pub fn get(&self, vhost: &str, id: &str) -> Option<Journey> {
        let buf = self.journeys.get(&key(vhost, id))?;
        let mut events: Vec<JourneyStep> = buf.events.iter().cloned().collect();
        // Recorded in order by one thread per message, but steps from two threads may interleave by a millisecond.
        events.sort_by_key(|s| s.at_ms);
        Some(Journey {
            vhost: vhost.to_string(),
            id: id.to_string(),
            traceparent: buf.parent.as_ref().map(|(tp, _)| tp.clone()),
            truncated: buf.truncated,
            events,
        })
    }

    pub fn len(&self) -> usize {
        self.journeys.len()
    }
}
