//! The events that drive the console and the commands it sends back out.
//!
//! Data flows one way: an [`Event`] (a tick of the frame clock, a key, a resize, or an answer from the broker) goes
//! into [`crate::app::update`], which changes the `App` and returns [`Command`]s; the client executes those in the
//! background and reports back with more events. Nothing here does I/O.
//!
//! Answers can arrive late and out of order (each command runs in a task of its own), so every action carries a
//! [`RequestId`] and every peek a sequence number, and the answer carries it back: the app matches an answer to the
//! dialog or page that asked for it and drops (or flashes) the rest.

use ratatui::crossterm::event::KeyEvent;
use warren_shared::edit::{EditRequest, EditResult};
use warren_shared::scheduled::{ScheduledAction, ScheduledMessage};
use warren_shared::{
    AuditEntry, BindingInfo, ConnectionInfo, ConsumerInfo, ExchangeInfo, MessageFilter, MoveRequest, MoveTask,
    PeekedMessage, PriorityRequest, PublishRequest, StreamActionResult, StreamOffsetReset, StreamSnapshot, UndoResult,
    UndoTicket,
};

/// A queue, by vhost and name (the key of everything per-queue in the console).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    pub vhost: String,
    pub name: String,
}

impl QueueKey {
    pub fn new(vhost: impl Into<String>, name: impl Into<String>) -> Self {
        QueueKey {
            vhost: vhost.into(),
            name: name.into(),
        }
    }
}

/// Tags an action command and its answer, so a late answer cannot finish a newer dialog. Handed out by the app,
/// increasing, never reused (peeks draw their sequence numbers from the same counter).
pub type RequestId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The frame clock: wall-clock Unix milliseconds (the only source of "now" for the app).
    Tick {
        now_ms: u64,
    },
    Key(KeyEvent),
    Resize(u16, u16),
    Api(ApiEvent),
    /// The terminal can no longer be read (the input thread stopped): the app quits with this error rather than
    /// leave the operator in raw mode with a dead keyboard.
    InputFailed(String),
    /// The operator's editor closed on message `id` of `queue`: the document before, and what was saved (or why
    /// nothing could be).
    Edited {
        queue: QueueKey,
        id: u64,
        before: String,
        after: Result<String, String>,
    },
    /// The console now talks to another broker (`:ctx`): the live feed was restarted against it; everything the app
    /// knew of the old one must go.
    ContextSwitched(ContextInfo),
    /// A switch to the context `name` could not be made (its password command failed, its CA file is unreadable,
    /// ...): the console stays on the broker it was on.
    ContextFailed {
        name: String,
        error: String,
    },
}

/// A named broker from the config file, as the app shows and picks it (no secrets).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextInfo {
    pub name: String,
    pub url: String,
    /// The header's colour for this context (e.g. red for production).
    pub color: Option<ratatui::style::Color>,
    pub read_only: bool,
}

/// Everything the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiEvent {
    /// The live stream (`GET /api/stream`) is open.
    StreamUp,
    Snapshot(Box<StreamSnapshot>),
    /// The broker refused the credentials (401): the feed has stopped, retrying cannot help.
    CredentialsRefused {
        error: String,
    },
    /// The stream failed or went quiet; the client retries after `retry_in_ms`.
    StreamDown {
        error: String,
        retry_in_ms: u64,
    },
    Exchanges(Vec<ExchangeInfo>),
    Bindings(Vec<BindingInfo>),
    Connections(Vec<ConnectionInfo>),
    Consumers(Vec<ConsumerInfo>),
    /// This node's view of its cluster (`enabled: false` on a single node).
    Cluster(Box<warren_shared::cluster::ClusterSummary>),
    /// The node the console talked to does not lead (any more): it follows the leader at `url` now, whose view of
    /// the cluster is `cluster`.
    LeaderMoved {
        url: String,
        cluster: Box<warren_shared::cluster::ClusterSummary>,
    },
    /// The answer to the peek `seq` (only the latest peek's answer is shown).
    Peeked {
        seq: u64,
        queue: QueueKey,
        from: u64,
        messages: Vec<PeekedMessage>,
    },
    /// The peek `seq` failed.
    PeekFailed {
        seq: u64,
        queue: QueueKey,
        error: String,
    },
    Purged {
        request_id: RequestId,
        queue: QueueKey,
        purged: u64,
    },
    /// A move (redrive) was accepted or progressed; `state` says which. `request_id` is that of the `Move` (or the
    /// `CancelMove`) this answers; the polls that follow a running move carry the `Move`'s.
    Move {
        request_id: RequestId,
        task: MoveTask,
    },
    Deleted {
        request_id: RequestId,
        queue: QueueKey,
        deleted: u64,
    },
    PriorityChanged {
        request_id: RequestId,
        queue: QueueKey,
        changed: u64,
    },
    Published {
        request_id: RequestId,
        queue: QueueKey,
        routed: bool,
    },
    ConnectionClosed {
        request_id: RequestId,
        connection: u64,
    },
    /// The purge or delete `request_id` can be undone with `ticket` (sent right after its `Purged` / `Deleted`).
    Undoable {
        request_id: RequestId,
        queue: QueueKey,
        /// "purged" or "deleted".
        action: String,
        count: u64,
        ticket: UndoTicket,
    },
    /// An undo put messages back.
    Undone {
        request_id: RequestId,
        result: UndoResult,
    },
    /// A queue was paused or resumed (`changed`: it was not already).
    Paused {
        request_id: RequestId,
        queue: QueueKey,
        paused: bool,
        changed: bool,
    },
    /// A stream replay or truncate was done.
    StreamActed {
        request_id: RequestId,
        queue: QueueKey,
        result: StreamActionResult,
    },
    /// An action the operator asked for failed (shown in its dialog, or the flash line if that dialog is gone).
    /// An edited copy was stored and the original removed.
    Edited {
        request_id: RequestId,
        queue: QueueKey,
        result: EditResult,
    },
    /// The held messages of every delayed exchange (`total` held in all), in due order.
    Scheduled {
        total: u64,
        messages: Vec<ScheduledMessage>,
    },
    ScheduledFailed {
        error: String,
    },
    /// A cancel, delivery or reschedule of held messages answered: how many it applied to.
    ScheduledActed {
        request_id: RequestId,
        op: String,
        affected: u64,
    },
    ActionFailed {
        request_id: RequestId,
        error: String,
    },
    /// A background read of a listing failed (shown in the flash line).
    FetchFailed {
        resource: Resource,
        error: String,
    },
    /// A page of the audit trail, newest first: the newest entries (`before: None`) or those older than `before`.
    Audit {
        before: Option<u64>,
        entries: Vec<AuditEntry>,
    },
    /// A read of the audit trail failed; `denied` when the broker refused it to this user (403).
    AuditFailed {
        before: Option<u64>,
        denied: bool,
        error: String,
    },
    /// The answer to the journey read `seq` (`Command::Trace`).
    Traced {
        seq: u64,
        result: Result<warren_shared::trace::Journey, String>,
    },
}

/// A listing the console reads on demand (the stream covers only overview and queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Exchanges,
    Bindings,
    Connections,
    Consumers,
    /// `GET /api/cluster`: the header's cluster badge and `:nodes`.
    Nodes,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Exchanges => "exchanges",
            Resource::Bindings => "bindings",
            Resource::Connections => "connections",
            Resource::Consumers => "consumers",
            Resource::Nodes => "nodes",
        }
    }
}

/// What `update` asks the client to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Fetch(Resource),
    Peek {
        /// Echoed in the answer, so an answer to an older peek is dropped.
        seq: u64,
        queue: QueueKey,
        from: u64,
        count: u64,
        filter: MessageFilter,
        /// Streams only: start at this offset, or at this time (unix ms), instead of the oldest.
        offset: Option<u64>,
        timestamp_ms: Option<u64>,
    },
    Purge {
        request_id: RequestId,
        queue: QueueKey,
    },
    Move {
        request_id: RequestId,
        queue: QueueKey,
        request: MoveRequest,
    },
    /// Cancels the broker's move task `task`.
    CancelMove {
        request_id: RequestId,
        task: u64,
    },
    Delete {
        request_id: RequestId,
        queue: QueueKey,
        ids: Vec<u64>,
    },
    Priority {
        request_id: RequestId,
        queue: QueueKey,
        request: PriorityRequest,
    },
    Publish {
        request_id: RequestId,
        queue: QueueKey,
        exchange: String,
        request: PublishRequest,
    },
    CloseConnection {
        request_id: RequestId,
        connection: u64,
        reason: String,
    },
    /// Puts back what purge or delete `id` removed.
    Undo {
        request_id: RequestId,
        id: u64,
    },
    /// Pauses (`paused`) or resumes a queue.
    Pause {
        request_id: RequestId,
        queue: QueueKey,
        paused: bool,
    },
    /// Sets where the named stream consumer `consumer` reads next ("replay from").
    StreamReplay {
        request_id: RequestId,
        queue: QueueKey,
        consumer: String,
        reset: StreamOffsetReset,
    },
    /// Removes the stream's segments wholly before offset `before`.
    StreamTruncate {
        request_id: RequestId,
        queue: QueueKey,
        before: u64,
    },
    /// Reads `page_size` entries of the audit trail: the newest, or those older than the entry `before`.
    ReadAudit {
        before: Option<u64>,
        page_size: usize,
    },
    /// Reads a message's journey (`GET /api/trace/{vhost}/{id}`); `seq` is echoed in the answer.
    Trace {
        seq: u64,
        vhost: String,
        id: String,
    },
    /// Suspend the screen and open `text` (message `id` of `queue` as a document) in the operator's editor; the
    /// main loop runs it, not the client, and answers with `Event::Edited`.
    OpenEditor {
        queue: QueueKey,
        id: u64,
        text: String,
    },
    /// Publish an edited copy of message `id`, then remove the original.
    Edit {
        request_id: RequestId,
        queue: QueueKey,
        id: u64,
        request: EditRequest,
    },
    /// Read what delayed exchanges hold, in every vhost.
    ReadScheduled,
    /// `op` (cancel, deliver, reschedule) on held messages: one call per (vhost, exchange, body).
    ScheduledAct {
        request_id: RequestId,
        op: String,
        calls: Vec<(String, String, ScheduledAction)>,
    },
    /// Switch to the named context (done by the run loop, which owns the client and the feed).
    SwitchContext(String),
    Quit,
}

impl Command {
    /// The request id of an action (its answer carries it back); `None` for reads and quit.
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Command::Purge { request_id, .. }
            | Command::Move { request_id, .. }
            | Command::CancelMove { request_id, .. }
            | Command::Delete { request_id, .. }
            | Command::Priority { request_id, .. }
            | Command::Publish { request_id, .. }
            | Command::CloseConnection { request_id, .. }
            | Command::Pause { request_id, .. }
            | Command::Undo { request_id, .. }
            | Command::StreamReplay { request_id, .. }
            | Command::StreamTruncate { request_id, .. }
            | Command::ScheduledAct { request_id, .. }
            | Command::Edit { request_id, .. } => Some(*request_id),
            Command::Fetch(_)
            | Command::OpenEditor { .. }
            | Command::Peek { .. }
            | Command::ReadAudit { .. }
            | Command::ReadScheduled
            | Command::SwitchContext(_)
            | Command::Trace { .. }
            | Command::Quit => None,
        }
    }
}
