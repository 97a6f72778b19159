//! Exchanges and routing: one file per exchange type, each owning its bindings and answering "where does a
//! message with this routing key (and headers) go?".
//!
//! An exchange's bindings only name destinations (queues or other exchanges); resolving names to queues, and
//! following exchange-to-exchange bindings and alternate exchanges, is the vhost topology's job
//! (`crate::vhost::Topology::route`).

pub mod delayed;
mod direct;
mod fanout;
pub mod headers;
mod topic;

use amq_protocol::types::{AMQPValue, FieldTable};

pub use direct::DirectBindings;
pub use fanout::FanoutBindings;
pub use headers::HeadersBindings;
pub use topic::TopicBindings;

/// Where a binding points.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

/// A binding from an exchange to a destination. Two bindings are the same when destination, key and arguments
/// are equal, as in RabbitMQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// The exchange types Warren knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// The delayed-message exchange type's name.
pub const DELAYED_TYPE: &str = "x-delayed-message";

/// What every exchange type does with its bindings.
pub trait Router: Send + Sync {
    /// Adds a binding; false when an identical one exists.
    fn bind(&mut self, binding: Binding) -> bool;
    /// Removes a binding; false when there was none.
    fn unbind(&mut self, binding: &Binding) -> bool;
    /// Pushes the destinations matching a message onto `out` (duplicates allowed; the caller dedupes).
    fn route<'a>(&'a self, routing_key: &str, headers: Option<&FieldTable>, out: &mut Vec<&'a Destination>);
    /// Every binding, for listing.
    fn bindings(&self) -> Vec<&Binding>;
    /// Drops every binding to `destination` (when it is deleted).
    fn remove_destination(&mut self, destination: &Destination);
    fn is_empty(&self) -> bool;
}

/// A declared exchange.
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub router: Box<dyn Router>,
    /// `x-message-deduplication` on the exchange: duplicates are dropped before routing.
    pub dedup: Option<std::sync::Mutex<crate::queue::dedup::DedupCache>>,
    /// An `x-delayed-message` exchange holds messages with `x-delay`; `kind` is then its `x-delayed-type`.
    pub delayed: Option<std::sync::Arc<delayed::DelayedHold>>,
}

impl Exchange {
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
        clock: &crate::clock::Clock,
    ) -> Self {
        let router: Box<dyn Router> = match kind {
            ExchangeKind::Direct => Box::<DirectBindings>::default(),
            ExchangeKind::Fanout => Box::<FanoutBindings>::default(),
            ExchangeKind::Topic => Box::<TopicBindings>::default(),
            ExchangeKind::Headers => Box::<HeadersBindings>::default(),
        };
        let dedup = crate::queue::dedup::DedupSettings::from_arguments(&arguments)
            .map(|s| std::sync::Mutex::new(crate::queue::dedup::DedupCache::new(s, clock.clone())));
        Exchange {
            name: name.to_string(),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            router,
            dedup,
            delayed: None,
        }
    }

    /// The type as declared: `x-delayed-message` for delayed exchanges.
    pub fn type_name(&self) -> &'static str {
        if self.delayed.is_some() {
            DELAYED_TYPE
        } else {
            self.kind.as_str()
        }
    }

    /// The `alternate-exchange` argument, where unroutable messages go.
    pub fn alternate_exchange(&self) -> Option<&str> {
        match self.arguments.inner().get("alternate-exchange") {
            Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
            Some(AMQPValue::ShortString(s)) => Some(s.as_str()),
            _ => None,
        }
    }
}
