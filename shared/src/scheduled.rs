//! Scheduled messages: what `x-delayed-message` exchanges hold until their `x-delay` has passed, as the admin API
//! lists them and acts on them (`/api/scheduled`, `/api/exchanges/{vhost}/{name}/scheduled/...`).

use serde::{Deserialize, Serialize};

use crate::MessageFilter;

/// `GET /api/scheduled`: one delayed exchange and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduledSummary {
    pub vhost: String,
    pub exchange: String,
    pub messages: u64,
    /// Body bytes held.
    pub bytes: u64,
    /// When the first is due (unix ms).
    pub next_due_ms: Option<u64>,
}

/// `POST /api/scheduled/{vhost}`: which held messages to list, in due order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduledRequest {
    /// Only this exchange's; default: every delayed exchange of the vhost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// Skip this many (matching) messages from the first due.
    #[serde(default)]
    pub from: u64,
    /// At most this many (default 50, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(flatten)]
    pub filter: MessageFilter,
}

/// A page of held messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduledPage {
    /// Messages held by the exchanges listed.
    pub total: u64,
    /// Of those, how many the filter matches.
    pub matching: u64,
    pub messages: Vec<ScheduledMessage>,
}

/// One held message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduledMessage {
    /// Its id within its exchange (stable while it is held).
    pub id: u64,
    pub vhost: String,
    pub exchange: String,
    pub routing_key: String,
    /// When it is due (unix ms).
    pub due_ms: u64,
    /// When the exchange took it (unix ms).
    pub held_ms: u64,
    pub size: u64,
    pub persistent: bool,
    /// Properties and headers as JSON.
    pub properties: serde_json::Map<String, serde_json::Value>,
    /// "utf8" or "base64".
    pub body_encoding: String,
    pub body: String,
}

/// `POST /api/exchanges/{vhost}/{name}/scheduled/{cancel|deliver|reschedule}`: which held messages, and for a
/// reschedule, when they are due. `ids`, a filter, or `all: true` must say which.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduledAction {
    /// These ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<u64>>,
    #[serde(flatten)]
    pub filter: MessageFilter,
    /// Every held message (of those the filter matches, if one is given).
    #[serde(default, deserialize_with = "crate::loose::bool")]
    pub all: bool,
    /// Reschedule: due at this time (unix ms)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// ...or this long from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// What a scheduled-message action did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ScheduledActionResult {
    /// "cancel", "deliver" or "reschedule".
    pub action: String,
    /// Messages it applied to.
    pub affected: u64,
}
