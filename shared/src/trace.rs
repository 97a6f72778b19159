//! Message journeys (issue 15): what the broker records about a traced message, as the admin API serves it
//! (`GET /api/trace/{vhost}/{id}`) and as the broker's journal stores it on disk (one JSON line per event). The
//! console reads the same types, so the timeline it draws and what the broker recorded cannot disagree.
//!
//! A journey is keyed by the message's `message_id` property when it has one, and otherwise by the id the broker
//! gave it when it was first traced (`w-<number>`, shown by peek as `trace_id`).

use serde::{Deserialize, Serialize};

/// One thing that happened to a traced message. The `kind` tag names it; the other fields say where and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    /// Published over AMQP (or through the admin API: connection 0).
    Published {
        connection: u64,
        user: String,
        exchange: String,
        routing_key: String,
    },
    /// Routed to these queues (in routing order).
    Routed {
        queues: Vec<String>,
    },
    /// Routed to no queue: returned to a mandatory publisher, or dropped.
    Unroutable {
        returned: bool,
    },
    /// Handed to a consumer (`consumer_tag`) or to `basic.get` (no tag). `delivery_count`: times it had come back
    /// before this delivery.
    Delivered {
        queue: String,
        consumer_tag: Option<String>,
        connection: u64,
        delivery_count: u32,
        redelivered: bool,
    },
    Acked {
        queue: String,
    },
    /// `basic.reject` (`nack: false`) or `basic.nack`, with or without requeue.
    Rejected {
        queue: String,
        requeue: bool,
        nack: bool,
    },
    /// Its TTL ran out in `queue`.
    Expired {
        queue: String,
    },
    /// Republished through `queue`'s dead-letter exchange; `to`: the queues it reached.
    DeadLettered {
        queue: String,
        reason: String,
        exchange: String,
        to: Vec<String>,
    },
    /// An operator sent it back to its source queue (redrive) ...
    Redriven {
        from: String,
        to: Vec<String>,
    },
    /// ... or to another queue or exchange (move).
    Moved {
        from: String,
        to: Vec<String>,
    },
    /// An operator changed its priority.
    Reprioritised {
        queue: String,
        from: u8,
        to: u8,
    },
    /// An operator edited it; `new_id` is the copy's journey id when it has another.
    Edited {
        queue: String,
        by: String,
        new_id: Option<String>,
    },
    /// Removed by a purge (or an operator's delete) of `queue`.
    Purged {
        queue: String,
    },
}

impl TraceEvent {
    /// The `kind` tag, as serialised.
    pub fn kind(&self) -> &'static str {
        match self {
            TraceEvent::Published { .. } => "published",
            TraceEvent::Routed { .. } => "routed",
            TraceEvent::Unroutable { .. } => "unroutable",
            TraceEvent::Delivered { .. } => "delivered",
            TraceEvent::Acked { .. } => "acked",
            TraceEvent::Rejected { .. } => "rejected",
            TraceEvent::Expired { .. } => "expired",
            TraceEvent::DeadLettered { .. } => "dead_lettered",
            TraceEvent::Redriven { .. } => "redriven",
            TraceEvent::Moved { .. } => "moved",
            TraceEvent::Reprioritised { .. } => "reprioritised",
            TraceEvent::Edited { .. } => "edited",
            TraceEvent::Purged { .. } => "purged",
        }
    }

    /// One line on what happened, for timelines and logs.
    pub fn summary(&self) -> String {
        match self {
            TraceEvent::Published {
                connection,
                user,
                exchange,
                routing_key,
            } => {
                let x = if exchange.is_empty() { "(default)" } else { exchange };
                format!("by {user} on connection {connection} to {x} with key '{routing_key}'")
            }
            TraceEvent::Routed { queues } => format!("to {}", queues.join(", ")),
            TraceEvent::Unroutable { returned: true } => "returned to the publisher (mandatory)".into(),
            TraceEvent::Unroutable { returned: false } => "no queue: dropped".into(),
            TraceEvent::Delivered {
                queue,
                consumer_tag,
                connection,
                delivery_count,
                redelivered,
            } => {
                let to = match consumer_tag {
                    Some(t) => format!("consumer {t}"),
                    None => "basic.get".into(),
                };
                let again = if *redelivered { ", redelivered" } else { "" };
                format!(
                    "from {queue} to {to} on connection {connection} (attempt {}{again})",
                    delivery_count + 1
                )
            }
            TraceEvent::Acked { queue } => format!("in {queue}"),
            TraceEvent::Rejected { queue, requeue, nack } => {
                let how = if *nack { "nack" } else { "reject" };
                let back = if *requeue { "requeued" } else { "not requeued" };
                format!("{how} in {queue}, {back}")
            }
            TraceEvent::Expired { queue } => format!("TTL ran out in {queue}"),
            TraceEvent::DeadLettered {
                queue,
                reason,
                exchange,
                to,
            } => {
                let to = if to.is_empty() {
                    "nowhere".to_string()
                } else {
                    to.join(", ")
                };
                let through = if exchange.is_empty() {
                    "the default exchange".to_string()
                } else {
                    format!("'{exchange}'")
                };
                format!("from {queue} ({reason}) through {through} to {to}")
            }
            TraceEvent::Redriven { from, to } | TraceEvent::Moved { from, to } => {
                format!("from {from} to {}", to.join(", "))
            }
            TraceEvent::Reprioritised { queue, from, to } => format!("in {queue}: {from} -> {to}"),
            TraceEvent::Edited { queue, by, new_id } => match new_id {
                Some(n) => format!("in {queue} by {by}, copy {n}"),
                None => format!("in {queue} by {by}"),
            },
            TraceEvent::Purged { queue } => format!("from {queue}"),
        }
    }
}

/// An event and when it happened (unix ms, the broker's clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct JourneyStep {
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: TraceEvent,
}

/// `GET /api/trace/{vhost}/{id}`: a message's journey, its events in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Journey {
    pub vhost: String,
    pub id: String,
    /// The W3C `traceparent` the message carried, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Older events were dropped to keep the journey within the broker's bound.
    #[serde(default)]
    pub truncated: bool,
    pub events: Vec<JourneyStep>,
}

/// `PUT`/`DELETE /api/queues/{vhost}/{name}/trace` and `/api/vhosts/{vhost}/trace`: whether tracing is on now
/// (switched on by the API, or by a policy with `trace: true`), and whether this call changed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TraceSwitch {
    /// Switched on through the API.
    pub on: bool,
    /// A policy with `trace: true` applies (queues only): tracing stays on until that policy goes.
    #[serde(default)]
    pub by_policy: bool,
    pub changed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_flat_json_tagged_by_kind() {
        let s = JourneyStep {
            at_ms: 5,
            event: TraceEvent::Rejected {
                queue: "q".into(),
                requeue: false,
                nack: true,
            },
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"at_ms": 5, "kind": "rejected", "queue": "q", "requeue": false, "nack": true})
        );
        assert_eq!(serde_json::from_value::<JourneyStep>(v).expect("back"), s);
        assert_eq!(s.event.kind(), "rejected");
    }
}
