//! The console's whole state and the one function that changes it.
//!
//! [`update`] takes an [`Event`] and returns the [`Command`]s for the client to run; it never does I/O and never
//! reads a clock (time comes in with `Event::Tick`), so every state change is a plain function call in the tests.
//! Views only read an `App`.
//!
//! Invariants: `views` is never empty and starts with `View::Queues`; at most one dialog is open; the app never
//! issues a second fetch of a listing while one is in flight, and none while the broker is unreachable; an action's
//! answer reaches only the dialog that sent it (by request id), anything else goes to the flash line; queue marks
//! only name queues the last snapshot had.

mod api;
pub mod audit;
pub mod contexts;
pub mod dialog;
pub mod edit;
pub mod history;
pub mod keys;
pub mod listings;
pub mod messages;
pub mod queues;
pub mod scheduled;
pub mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_contexts;
#[cfg(test)]
mod tests_edit;
#[cfg(test)]
mod tests_late;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_scheduled;
#[cfg(test)]
mod tests_stream;
#[cfg(test)]
mod tests_trace;
pub mod trace;

use std::collections::HashSet;

use warren_shared::{BindingInfo, ConnectionInfo, ConsumerInfo, ExchangeInfo, Overview, QueueInfo};

use crate::event::{ApiEvent, Command, ContextInfo, Event, QueueKey, RequestId, Resource};
use audit::AuditTrail;
use dialog::{Dialog, Phase};
use history::History;
pub use listings::Listing;
use messages::MessagesState;
use queues::QueueTable;

/// How long a flash message stays.
pub const FLASH_MS: u64 = 6_000;
/// Zoom levels of the detail view's rate charts, in seconds.
pub const WINDOWS_S: [u64; 5] = [30, 60, 120, 300, 600];

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub read_only: bool,
    /// The local clock's offset from UTC, for "stale since HH:MM:SS".
    pub utc_offset_s: i32,
    /// How often listings and message pages are re-read while shown.
    pub refresh_ms: u64,
    /// The context (named broker of the config file) the console is on; none without a config file.
    pub context: Option<ContextInfo>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            url: "http://127.0.0.1:15672".into(),
            read_only: false,
            utc_offset_s: 0,
            refresh_ms: 2_000,
            context: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Queues,
    Detail(QueueKey),
    Messages(QueueKey),
    Exchanges,
    Bindings,
    Connections,
    Consumers,
    Audit,
    /// A message's journey (`t` on a message, `:trace ID`).
    Trace {
        vhost: String,
        id: String,
    },
    Scheduled,
    /// The cluster's nodes (`:nodes`).
    Nodes,
}

impl View {
    pub fn name(&self) -> &'static str {
        match self {
            View::Queues => "queues",
            View::Detail(_) => "queue",
            View::Messages(_) => "messages",
            View::Exchanges => "exchanges",
            View::Bindings => "bindings",
            View::Connections => "connections",
            View::Consumers => "consumers",
            View::Audit => "audit",
            View::Trace { .. } => "journey",
            View::Scheduled => "scheduled",
            View::Nodes => "nodes",
        }
    }
}

/// The state of the live feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Live,
    /// No data since `since_ms` (the last good snapshot, or when we first failed); retrying at `retry_at_ms`.
    Stale {
        since_ms: u64,
        retry_at_ms: u64,
        error: String,
    },
    /// The broker refused the credentials: nothing more is asked of it (the console must be started again).
    Refused {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub text: String,
    pub level: Level,
    pub at_ms: u64,
}

/// A line of text being typed at the bottom of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// `:` — a view to go to.
    Command,
    /// `/` — filter the current table (live as you type).
    Filter,
    /// `/` in the messages view — a server-side message filter, applied on enter.
    MessageFilter,
    /// `o` in a stream's messages view — where the pages start: first, an offset or a time.
    StreamStart,
}

/// The detail view's chart settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetailState {
    /// Index into [`WINDOWS_S`].
    pub zoom: usize,
    /// The charts stop at this instant while frozen.
    pub frozen_at: Option<u64>,
    /// Streams: the selected row of the consumer panel.
    pub stream_row: usize,
}

impl Default for DetailState {
    fn default() -> Self {
        DetailState {
            zoom: 1,
            frozen_at: None,
            stream_row: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub settings: Settings,
    pub now_ms: u64,
    pub link: Link,
    /// When the last snapshot arrived.
    pub last_data_ms: Option<u64>,
    pub overview: Option<Overview>,
    pub queues: Vec<QueueInfo>,
    pub history: History,
    pub views: Vec<View>,
    pub queue_table: QueueTable,
    pub detail: DetailState,
    pub messages: Option<MessagesState>,
    pub exchanges: Listing<ExchangeInfo>,
    pub bindings: Listing<BindingInfo>,
    pub connections: Listing<ConnectionInfo>,
    pub consumers: Listing<ConsumerInfo>,
    /// The cluster's nodes, and this node's view of the cluster (for the header), from `/api/cluster`.
    pub nodes: Listing<warren_shared::cluster::ClusterNode>,
    pub cluster: Option<warren_shared::cluster::ClusterSummary>,
    pub audit: AuditTrail,
    pub scheduled: scheduled::ScheduledState,
    pub prompt: Option<Prompt>,
    pub dialog: Option<Dialog>,
    pub flash: Option<Flash>,
    pub help: bool,
    /// How many lines the help overlay is scrolled down.
    pub help_scroll: u16,
    /// The terminal's size, as last reported.
    pub size: (u16, u16),
    pub quit: bool,
    /// Why the console quit, when it was not the operator's choice (reported after the terminal is restored).
    pub fatal: Option<String>,
    /// The last request id (and peek sequence number) handed out; see [`next_id`].
    pub last_id: RequestId,
    /// The last purge or delete made from this console that the broker keeps for undo (`u`, `:undo`).
    pub last_undo: Option<UndoRef>,
    /// Every context of the config file, for `:ctx` (empty without one).
    pub contexts: Vec<ContextInfo>,
    /// The `:ctx` picker, when open: the selected row of `contexts`.
    pub picker: Option<usize>,
    /// The journey shown by the trace view.
    pub trace: Option<trace::TraceState>,
}

/// A removal that can be undone: what the broker's ticket says, and what it was, for the undo dialog.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoRef {
    pub id: u64,
    pub queue: QueueKey,
    /// "purged" or "deleted".
    pub action: String,
    pub count: u64,
    pub until_ms: u64,
}

impl App {
    pub fn new(settings: Settings, now_ms: u64) -> Self {
        App {
            settings,
            now_ms,
            link: Link::Connecting,
            last_data_ms: None,
            overview: None,
            queues: Vec::new(),
            history: History::default(),
            views: vec![View::Queues],
            queue_table: QueueTable::default(),
            detail: DetailState::default(),
            messages: None,
            exchanges: Listing::default(),
            bindings: Listing::default(),
            connections: Listing::default(),
            consumers: Listing::default(),
            nodes: Listing::default(),
            cluster: None,
            audit: AuditTrail::default(),
            scheduled: scheduled::ScheduledState::default(),
            prompt: None,
            dialog: None,
            flash: None,
            help: false,
            help_scroll: 0,
            size: (80, 24),
            quit: false,
            fatal: None,
            last_id: 0,
            last_undo: None,
            contexts: Vec::new(),
            picker: None,
            trace: None,
        }
    }

    pub fn view(&self) -> &View {
        self.views.last().unwrap_or(&View::Queues)
    }

    pub fn is_stale(&self) -> bool {
        matches!(self.link, Link::Stale { .. } | Link::Refused { .. })
    }

    pub fn queue(&self, key: &QueueKey) -> Option<&QueueInfo> {
        self.queues.iter().find(|q| q.vhost == key.vhost && q.name == key.name)
    }

    /// The queue the cursor is on in the queue table.
    pub fn selected_queue(&self) -> Option<&QueueInfo> {
        let rows = queues::rows(&self.queues, &self.queue_table, &self.history);
        queues::selected_index(&rows, &self.queue_table).map(|i| rows[i])
    }

    /// The queue the current view is about (detail and messages), or the selected one in the table.
    pub fn current_queue(&self) -> Option<QueueKey> {
        match self.view() {
            View::Detail(k) | View::Messages(k) => Some(k.clone()),
            View::Queues => self.selected_queue().map(queues::key),
            _ => None,
        }
    }

    pub fn flash(&mut self, level: Level, text: impl Into<String>) {
        self.flash = Some(Flash {
            text: text.into(),
            level,
            at_ms: self.now_ms,
        });
    }

    /// Opens a view on top of the current one, with the reads it needs.
    pub fn push(&mut self, view: View) -> Vec<Command> {
        let mut commands = Vec::new();
        match &view {
            View::Messages(q) => {
                let mut state = MessagesState::new(q.clone());
                commands.push(state.peek(0, next_id(&mut self.last_id)));
                self.messages = Some(state);
            }
            View::Detail(_) => {
                self.detail.frozen_at = None;
                self.detail.stream_row = 0;
                commands.extend(self.fetch(Resource::Consumers));
            }
            View::Exchanges => commands.extend(self.fetch(Resource::Exchanges)),
            View::Bindings => commands.extend(self.fetch(Resource::Bindings)),
            View::Connections => commands.extend(self.fetch(Resource::Connections)),
            View::Consumers => commands.extend(self.fetch(Resource::Consumers)),
            View::Nodes => commands.extend(self.fetch(Resource::Nodes)),
            View::Audit => {
                self.audit.open();
                commands.extend(self.read_audit(false));
            }
            View::Trace { vhost, id } => {
                return trace::open(self, vhost.clone(), id.clone());
            }
            View::Scheduled => commands.extend(self.read_scheduled()),
            View::Queues => {}
        }
        if self.views.last() != Some(&view) {
            self.views.push(view);
        }
        commands
    }

    /// Goes to a top-level view: the queue table stays at the bottom of the stack so `esc` returns to it.
    pub fn goto(&mut self, view: View) -> Vec<Command> {
        self.views.truncate(1);
        if view == View::Queues {
            return Vec::new();
        }
        self.push(view)
    }

    pub fn back(&mut self) {
        if self.views.len() > 1 {
            self.views.pop();
        }
    }

    fn listing_state(&mut self, r: Resource) -> (&mut bool, Option<u64>) {
        match r {
            Resource::Exchanges => (&mut self.exchanges.pending, self.exchanges.fetched_ms),
            Resource::Bindings => (&mut self.bindings.pending, self.bindings.fetched_ms),
            Resource::Connections => (&mut self.connections.pending, self.connections.fetched_ms),
            Resource::Consumers => (&mut self.consumers.pending, self.consumers.fetched_ms),
            Resource::Nodes => (&mut self.nodes.pending, self.nodes.fetched_ms),
        }
    }

    /// A read of `r`, unless one is in flight or the broker is unreachable.
    pub fn fetch(&mut self, r: Resource) -> Option<Command> {
        if self.is_stale() {
            return None;
        }
        let (pending, _) = self.listing_state(r);
        if *pending {
            return None;
        }
        *pending = true;
        Some(Command::Fetch(r))
    }

    /// A read of the audit trail's newest page (or, with `older`, the page after the last entry held), unless the
    /// broker is unreachable.
    pub fn read_audit(&mut self, older: bool) -> Option<Command> {
        if self.is_stale() {
            return None;
        }
        if older {
            self.audit.read_older()
        } else {
            self.audit.read_newest()
        }
    }

    /// A read of the held messages, unless one is in flight or the broker is unreachable.
    pub fn read_scheduled(&mut self) -> Option<Command> {
        if self.is_stale() || self.scheduled.pending {
            return None;
        }
        self.scheduled.pending = true;
        Some(Command::ReadScheduled)
    }

    /// Re-reads what the current view shows when it is older than the refresh interval.
    fn refresh(&mut self) -> Vec<Command> {
        let now = self.now_ms;
        let every = self.settings.refresh_ms;
        let due = |fetched: Option<u64>| fetched.is_none_or(|t| now.saturating_sub(t) >= every);
        let resource = match self.view() {
            View::Exchanges => Some(Resource::Exchanges),
            View::Bindings => Some(Resource::Bindings),
            View::Connections => Some(Resource::Connections),
            View::Consumers | View::Detail(_) => Some(Resource::Consumers),
            View::Nodes => Some(Resource::Nodes),
            View::Messages(_) => {
                let stale = self.is_stale();
                return match &mut self.messages {
                    Some(m) if !m.loading && !stale && due(m.loaded_ms) && self.dialog.is_none() => {
                        vec![m.peek(m.from, next_id(&mut self.last_id))]
                    }
                    _ => Vec::new(),
                };
            }
            View::Audit if due(self.audit.list.fetched_ms) => return self.read_audit(false).into_iter().collect(),
            View::Scheduled if due(self.scheduled.fetched_ms) && self.dialog.is_none() => {
                return self.read_scheduled().into_iter().collect()
            }
            View::Audit | View::Scheduled | View::Queues | View::Trace { .. } => None,
        };
        match resource {
            Some(r) if due(self.listing_state(r).1) => self.fetch(r).into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// The next request id from `last` (the app's `last_id`; a free function so it can be borrowed next to a dialog or
/// the messages state).
pub fn next_id(last: &mut RequestId) -> RequestId {
    *last += 1;
    *last
}

/// The one way state changes.
pub fn update(app: &mut App, event: Event) -> Vec<Command> {
    match event {
        Event::Tick { now_ms } => {
            app.now_ms = now_ms;
            if app
                .flash
                .as_ref()
                .is_some_and(|f| now_ms.saturating_sub(f.at_ms) > FLASH_MS)
            {
                app.flash = None;
            }
            app.refresh()
        }
        Event::Resize(w, h) => {
            app.size = (w, h);
            Vec::new()
        }
        Event::Key(key) => keys::on_key(app, key),
        Event::Api(api) => api::on_api(app, api),
        Event::Edited {
            queue,
            id,
            before,
            after,
        } => {
            edit::on_edited(app, queue, id, &before, after);
            Vec::new()
        }
        Event::InputFailed(error) => {
            app.quit = true;
            app.fatal = Some(format!("cannot read the terminal any more: {error}"));
            vec![Command::Quit]
        }
        Event::ContextSwitched(info) => {
            contexts::switched(app, info);
            Vec::new()
        }
        Event::ContextFailed { name, error } => {
            app.flash(Level::Error, format!("cannot switch to context {name}: {error}"));
            Vec::new()
        }
    }
}
