//! The journey view's state: one traced message's events (`GET /api/trace/{vhost}/{id}`), opened with `t` on a
//! message in the messages view or with `:trace ID`, drawn as a timeline with the time between steps.
//!
//! Invariants: only the answer to the latest read (`seq`) is taken; a journey the broker does not hold is an error
//! line in the view, not a flash that vanishes; no clock is read here (the view computes durations from the
//! events' own times).

use warren_shared::trace::Journey;

use super::{next_id, App, Level, View};
use crate::event::Command;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceState {
    pub vhost: String,
    pub id: String,
    /// The read whose answer is awaited or shown.
    pub seq: u64,
    pub loading: bool,
    pub journey: Option<Journey>,
    pub error: Option<String>,
    /// The selected step.
    pub selected: usize,
}

impl TraceState {
    /// The read of this journey, as request `seq`.
    pub fn read(&mut self, seq: u64) -> Command {
        self.seq = seq;
        self.loading = true;
        Command::Trace {
            seq,
            vhost: self.vhost.clone(),
            id: self.id.clone(),
        }
    }
}

/// Opens the journey of `id` in `vhost` (on top of the current view) and reads it.
pub fn open(app: &mut App, vhost: String, id: String) -> Vec<Command> {
    let mut state = TraceState {
        vhost: vhost.clone(),
        id: id.clone(),
        seq: 0,
        loading: true,
        journey: None,
        error: None,
        selected: 0,
    };
    let read = state.read(next_id(&mut app.last_id));
    app.trace = Some(state);
    let view = View::Trace { vhost, id };
    if app.views.last() != Some(&view) {
        app.views.push(view);
    }
    vec![read]
}

/// `t` in the messages view: the selected message's journey, by the id peek gave it (its `message_id`, or the
/// broker's id for a traced message).
pub fn from_selected_message(app: &mut App) -> Vec<Command> {
    let Some(m) = app.messages.as_ref() else {
        return Vec::new();
    };
    let vhost = m.queue.vhost.clone();
    let Some(message) = m.selected_message() else {
        app.flash(Level::Warn, "no message selected");
        return Vec::new();
    };
    let id = message.trace_id.clone().or_else(|| {
        message
            .properties
            .get("message_id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    match id {
        Some(id) => open(app, vhost, id),
        None => {
            app.flash(
                Level::Warn,
                "this message has no journey: it has no message_id and was not traced (switch tracing on for its \
                 queue or vhost)",
            );
            Vec::new()
        }
    }
}

/// `:trace ID`: the journey of `ID` in the vhost in view (a queue's, or the journey's shown), else `/`.
pub fn command(app: &mut App, id: Option<&str>) -> Vec<Command> {
    let Some(id) = id else {
        app.flash(Level::Warn, "usage: :trace <message id>");
        return Vec::new();
    };
    let vhost = match app.view() {
        View::Trace { vhost, .. } => vhost.clone(),
        _ => app.current_queue().map_or_else(|| "/".to_string(), |q| q.vhost),
    };
    open(app, vhost, id.to_string())
}

/// The answer to read `seq`.
pub fn loaded(app: &mut App, seq: u64, result: Result<Journey, String>) {
    let Some(t) = app.trace.as_mut().filter(|t| t.seq == seq) else {
        return;
    };
    t.loading = false;
    match result {
        Ok(j) => {
            t.selected = t.selected.min(j.events.len().saturating_sub(1));
            t.journey = Some(j);
            t.error = None;
        }
        Err(e) => {
            t.journey = None;
            t.error = Some(e);
        }
    }
}
