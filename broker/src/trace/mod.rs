//! Message journeys (issue 15, item 1): for traced messages the broker records each thing that happens to them
//! (published, routed, delivered, acked, rejected, expired, dead-lettered, redriven, moved, reprioritised, edited,
//! purged) with its time, in a bounded journal that the admin API serves (`GET /api/trace/{vhost}/{id}`).
//!
//! Who is traced: a message published to a vhost whose tracing is on, or routed into a queue whose tracing is on
//! (the admin API, or a policy with `trace: true`). Such a message is marked (`Message::trace`, a number the broker
//! gives it) so that what happens to it later is recorded in any queue; copies the broker makes of it (dead
//! letters, redrives, moves, priority changes) carry the mark on. A journey is keyed by the `message_id` property
//! when there is one, and by `w-<mark>` otherwise (peek shows it as `trace_id`).
//!
//! Invariants:
//! - Off costs nil: every recording site first reads its vhost's [`VhostTrace::any`] (one relaxed load of a flag
//!   that is true only while the vhost or one of its queues is traced), and records nothing, allocates nothing and
//!   takes no lock when it is false.
//! - Bounded: the memory ring keeps at most `journeys` journeys (the oldest go first) of at most `events` events
//!   each (a journey keeps its first event and its latest ones); the disk log keeps at most `max_bytes` in two
//!   files (`journal.log` and, after a rotation, `journal.1.log`).
//! - Recording never blocks on I/O: the journal's lock is a leaf (taken under a queue's lock, never the other way)
//!   held for a ring update; lines for disk and spans for OTLP go to their own threads over bounded channels, and
//!   are dropped (and counted) when those fall behind.
//! - What survives a restart: the disk log is replayed into the ring at start; a damaged line (a torn tail after a
//!   crash) is skipped. A message recovered from disk (or paged out and read back) loses its mark: with a
//!   `message_id` its journey goes on under that id once it is in a traced queue; without one it starts a new
//!   journey under a new id.

mod disk;
mod otlp;
mod ring;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use warren_shared::trace::{Journey, JourneyStep, TraceEvent};

use crate::clock::Clock;
use crate::message::Message;
use ring::Ring;

/// Bounds and outputs of the journal (`--trace-journeys`, `--trace-events`, `--trace-max-bytes`,
/// `--otlp-endpoint`).
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// Journeys kept in memory.
    pub journeys: usize,
    /// Events kept per journey.
    pub events: usize,
    /// Bytes the journal may take on disk (0: nothing on disk).
    pub max_bytes: u64,
    /// Where finished steps are exported as OTLP spans (HTTP/protobuf), if anywhere.
    pub otlp_endpoint: Option<String>,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            journeys: 10_000,
            events: 64,
            max_bytes: 64 << 20,
            otlp_endpoint: None,
        }
    }
}

/// The broker's journal of message journeys (one per broker, shared by every vhost).
pub struct Journal {
    ring: Mutex<Ring>,
    disk: Option<disk::DiskLog>,
    otlp: Option<otlp::Exporter>,
    /// The next broker id for a message without `message_id` (above every id found on disk at start).
    next_id: AtomicU64,
    clock: Clock,
    /// Lines or spans dropped because their thread fell behind.
    pub dropped: AtomicU64,
}

impl Journal {
    /// A journal in memory only (tests, and vhosts made without a broker).
    pub fn in_memory(clock: Clock) -> Arc<Self> {
        Self::with_ring(
            Ring::new(TraceSettings::default().journeys, TraceSettings::default().events),
            None,
            None,
            1,
            clock,
        )
    }

    fn with_ring(
        ring: Ring,
        disk: Option<disk::DiskLog>,
        otlp: Option<otlp::Exporter>,
        next_id: u64,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Journal {
            ring: Mutex::new(ring),
            disk,
            otlp,
            next_id: AtomicU64::new(next_id.max(1)),
            clock,
            dropped: AtomicU64::new(0),
        })
    }

    /// Opens the journal under `dir` (created if need be): replays what the disk log holds into the ring, then
    /// appends to it from its writer thread; starts the OTLP exporter when an endpoint is set.
    pub fn open(settings: &TraceSettings, dir: &Path, clock: Clock) -> std::io::Result<Arc<Self>> {
        let mut ring = Ring::new(settings.journeys, settings.events);
        let mut max_id = 0;
        let disk = if settings.max_bytes > 0 {
            std::fs::create_dir_all(dir)?;
            for line in disk::recover(dir)? {
                if let Some(n) = line.key.strip_prefix("w-").and_then(|n| n.parse::<u64>().ok()) {
                    max_id = max_id.max(n);
                }
                ring.push(&line.vhost, &line.key, line.traceparent, line.step);
            }
            Some(disk::DiskLog::start(dir, settings.max_bytes)?)
        } else {
            None
        };
        let otlp = settings.otlp_endpoint.as_deref().map(otlp::Exporter::start);
        Ok(Self::with_ring(ring, disk, otlp, max_id + 1, clock))
    }

    /// Records `event` in the journey of `key` in `vhost`, now: the API for other features (it does not check
    /// whether tracing is on; `record_message` keys a message itself, as edit and redrive does for `edited`).
    pub fn record(&self, vhost: &str, key: &str, event: TraceEvent) {
        self.record_at(vhost, key, None, self.clock.now_ms(), event);
    }

    fn record_at(
        &self,
        vhost: &str,
        key: &str,
        traceparent: Option<(String, Option<String>)>,
        at_ms: u64,
        event: TraceEvent,
    ) {
        let step = JourneyStep { at_ms, event };
        let (tp, previous) = {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            ring.push(vhost, key, traceparent.clone(), step.clone())
        };
        if let Some(d) = &self.disk {
            if !d.send(disk::Line {
                vhost: vhost.to_string(),
                key: key.to_string(),
                traceparent: traceparent.clone(),
                step: step.clone(),
            }) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(o) = &self.otlp {
            let span = otlp::SpanJob {
                vhost: vhost.to_string(),
                key: key.to_string(),
                traceparent: tp,
                started_ms: previous.unwrap_or(at_ms),
                step,
            };
            if !o.send(span) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records `event` for a traced message: under its `message_id`, or its broker id (marking it if it has none
    /// yet), noting its `traceparent` and `tracestate` with its journey's first event.
    pub fn record_message(&self, vhost: &str, message: &Message, event: TraceEvent) {
        let (key, parent) = self.key_and_parent(message);
        self.record_at(vhost, &key, parent, self.clock.now_ms(), event);
    }

    /// The journey id of `message`, marking it traced (a new broker id) if it is not yet.
    pub fn mark(&self, message: &Message) -> String {
        self.key_and_parent(message).0
    }

    fn key_and_parent(&self, message: &Message) -> (String, Option<(String, Option<String>)>) {
        if message.trace.load(Ordering::Relaxed) == 0 {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let _ = message
                .trace
                .compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed);
        }
        let props = message.properties();
        let parent = props.headers().as_ref().and_then(|h| {
            let tp = crate::args::get_str(h, "traceparent")?.to_string();
            let ts = crate::args::get_str(h, "tracestate").map(str::to_string);
            Some((tp, ts))
        });
        let key = match props.message_id() {
            Some(id) if !id.as_str().is_empty() => id.to_string(),
            _ => broker_id(message.trace.load(Ordering::Relaxed)),
        };
        (key, parent)
    }

    /// The journey of `key` in `vhost`, if the ring holds one.
    pub fn journey(&self, vhost: &str, key: &str) -> Option<Journey> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).get(vhost, key)
    }

    /// Journeys held in memory now.
    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The journey id of a message without `message_id` marked `n`.
pub fn broker_id(n: u64) -> String {
    format!("w-{n}")
}

/// The journey id peek shows for `message`: its `message_id`, or its broker id if it is traced; none otherwise.
pub fn peek_id(message: &Message, props: &amq_protocol::protocol::basic::AMQPProperties) -> Option<String> {
    match props.message_id() {
        Some(id) if !id.as_str().is_empty() => Some(id.to_string()),
        _ => match message.trace.load(Ordering::Relaxed) {
            0 => None,
            n => Some(broker_id(n)),
        },
    }
}

/// A vhost's tracing switches, shared with its queues.
pub struct VhostTrace {
    /// The vhost or one of its queues is traced: the one flag every recording site reads first.
    any: AtomicBool,
    /// Switched on for the whole vhost through the admin API.
    vhost_on: AtomicBool,
    pub journal: Arc<Journal>,
}

impl VhostTrace {
    pub fn new(journal: Arc<Journal>) -> Arc<Self> {
        Arc::new(VhostTrace {
            any: AtomicBool::new(false),
            vhost_on: AtomicBool::new(false),
            journal,
        })
    }

    /// Whether anything in this vhost may be traced (one relaxed load: the hot paths' only cost).
    #[inline]
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Whether the whole vhost is traced.
    pub fn vhost_on(&self) -> bool {
        self.vhost_on.load(Ordering::Relaxed)
    }

    /// Switches whole-vhost tracing; returns whether that changed it. `queues_traced`: some queue is traced.
    pub fn set_vhost_on(&self, on: bool, queues_traced: bool) -> bool {
        let changed = self.vhost_on.swap(on, Ordering::Relaxed) != on;
        self.any.store(on || queues_traced, Ordering::Relaxed);
        changed
    }

    /// A queue was switched on: something is traced.
    pub fn note_on(&self) {
        self.any.store(true, Ordering::Relaxed);
    }

    /// Recomputed after something was switched off.
    pub fn refresh(&self, queues_traced: bool) {
        self.any.store(self.vhost_on() || queues_traced, Ordering::Relaxed);
    }
}
