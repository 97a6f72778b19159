//! The events that drive the console and the commands it sends back out.
//!
//! Data flows one way: an [`Event`] (a tick of the frame clock, a key, a resize, or an answer from the broker) goes
//! into [`crate::app::update`], which changes the `App` and returns [`Command`]s; the client executes those in the
//! background and reports back with more events. Nothing here does I/O.

use ratatui::crossterm::event::KeyEvent;
use warren_shared::{
    BindingInfo, ConnectionInfo, ConsumerInfo, ExchangeInfo, MessageFilter, MoveRequest, MoveTask, PeekedMessage,
    PriorityRequest, PublishRequest, StreamSnapshot,
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

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The frame clock: wall-clock Unix milliseconds (the only source of "now" for the app).
    Tick {
        now_ms: u64,
    },
    Key(KeyEvent),
    Resize(u16, u16),
    Api(ApiEvent),
}

/// Everything the client reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiEvent {
    /// The live stream (`GET /api/stream`) is open.
    StreamUp,
    Snapshot(Box<StreamSnapshot>),
    /// The stream failed or went quiet; the client retries after `retry_in_ms`.
    StreamDown {
        error: String,
        retry_in_ms: u64,
    },
    Exchanges(Vec<ExchangeInfo>),
    Bindings(Vec<BindingInfo>),
    Connections(Vec<ConnectionInfo>),
    Consumers(Vec<ConsumerInfo>),
    Peeked {
        queue: QueueKey,
        from: u64,
        messages: Vec<PeekedMessage>,
    },
    Purged {
        queue: QueueKey,
        purged: u64,
    },
    /// A move (redrive) was accepted or progressed; `state` says which.
    Move(MoveTask),
    Deleted {
        queue: QueueKey,
        deleted: u64,
    },
    PriorityChanged {
        queue: QueueKey,
        changed: u64,
    },
    Published {
        queue: QueueKey,
        routed: bool,
    },
    ConnectionClosed {
        id: u64,
    },
    /// An action the operator asked for failed (shown in its dialog).
    ActionFailed {
        error: String,
    },
    /// A background read failed (shown in the flash line).
    FetchFailed {
        what: String,
        error: String,
    },
}

/// A listing the console reads on demand (the stream covers only overview and queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Exchanges,
    Bindings,
    Connections,
    Consumers,
}

/// What `update` asks the client to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Fetch(Resource),
    Peek {
        queue: QueueKey,
        from: u64,
        count: u64,
        filter: MessageFilter,
    },
    Purge(QueueKey),
    Move {
        queue: QueueKey,
        request: MoveRequest,
    },
    CancelMove {
        id: u64,
    },
    Delete {
        queue: QueueKey,
        ids: Vec<u64>,
    },
    Priority {
        queue: QueueKey,
        request: PriorityRequest,
    },
    Publish {
        queue: QueueKey,
        exchange: String,
        request: PublishRequest,
    },
    CloseConnection {
        id: u64,
        reason: String,
    },
    Quit,
}
