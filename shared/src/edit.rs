//! Edit and redrive: `POST /api/queues/{vhost}/{name}/messages/{id}/edit` publishes an edited copy of a ready
//! message (typically a dead letter) and removes the original once the copy is stored.

use serde::{Deserialize, Serialize};

/// The edited message and where it goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EditRequest {
    /// The new body.
    pub body: String,
    /// "utf8" (default) or "base64".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
    /// The new properties, in peek's form (headers included); default: the original's. A header whose value is
    /// unchanged keeps its exact AMQP type (x-death's timestamps stay timestamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
    /// "source" (the queue of its newest x-death), "queue" (with `queue`) or "exchange" (with `exchange`).
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// With `to = "exchange"`; default: the original's routing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

/// What an edit did: the copy was stored at `routed_to` (queue names), then the original was removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct EditResult {
    /// The original's id in its queue (removed).
    pub original: u64,
    /// Where the copy went, in words ("queue orders", "exchange billing, key invoice").
    pub destination: String,
    pub routed_to: Vec<String>,
}
