//! A published message as queues hold it.
//!
//! One `Arc<Message>` is shared by every queue a publish routes to; its body is a `bytes::Bytes` cut from the
//! connection's read buffer (or copied once, when small), so fan-out and delivery never copy the payload. The
//! properties are kept only in their encoded form, exactly as received, so a delivery writes them out without
//! re-encoding and a queued message costs its bytes plus a small fixed header; the few fields the broker acts on
//! (priority, expiration, delivery mode) are extracted once at publish.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::ShortString;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::amqp::properties::encode_properties;
use crate::amqp::properties::PropertySummary;

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    /// The property flags and list as encoded on the wire.
    pub raw_properties: Bytes,
    pub body: Bytes,
    /// `priority`, 0 when absent.
    pub priority: u8,
    /// `expiration` in milliseconds, when present and a valid number.
    pub expiration_ms: Option<u64>,
    /// `delivery_mode` 2: written to disk on durable queues.
    pub persistent: bool,
    /// The journal's mark on a traced message (0: not traced), set once when it is first traced; copies the broker
    /// makes of it carry it on (`inherit_trace`). See `crate::trace`.
    pub trace: AtomicU64,
}

impl Message {
    /// A message whose properties arrived encoded as `raw_properties` (and were decoded into `properties`).
    pub fn new(
        exchange: ShortString,
        routing_key: ShortString,
        properties: &AMQPProperties,
        raw_properties: Bytes,
        body: Bytes,
    ) -> Self {
        let summary = PropertySummary::of(properties);
        Self::from_summary(exchange, routing_key, &summary, raw_properties, body)
    }

    /// A message whose properties arrived encoded as `raw_properties` and were scanned into `summary` (the publish
    /// path: the properties are never decoded in full).
    pub fn from_summary(
        exchange: ShortString,
        routing_key: ShortString,
        summary: &PropertySummary,
        raw_properties: Bytes,
        body: Bytes,
    ) -> Self {
        Message {
            exchange,
            routing_key,
            raw_properties,
            body,
            priority: summary.priority,
            expiration_ms: summary.expiration_ms,
            persistent: summary.persistent,
            trace: AtomicU64::new(0),
        }
    }

    /// A message whose properties the broker made or rewrote.
    pub fn with_properties(
        exchange: ShortString,
        routing_key: ShortString,
        properties: AMQPProperties,
        body: Bytes,
    ) -> Self {
        let raw = encode_properties(&properties);
        Self::new(exchange, routing_key, &properties, raw, body)
    }

    /// Decodes the properties (for the rare paths that need more than the extracted fields).
    pub fn properties(&self) -> AMQPProperties {
        // The bytes were checked and parsed at publish (or read back from a record whose checksum held), or encoded
        // by us; the bounded parse keeps even a record from an older version from recursing without limit.
        crate::amqp::nesting::parse_properties_bounded(&self.raw_properties[..]).unwrap_or_default()
    }

    /// A copy sharing the body and encoded properties (both reference-counted).
    pub fn clone_shallow(&self) -> Message {
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            raw_properties: self.raw_properties.clone(),
            body: self.body.clone(),
            priority: self.priority,
            expiration_ms: self.expiration_ms,
            persistent: self.persistent,
            trace: AtomicU64::new(self.trace.load(Ordering::Relaxed)),
        }
    }

    /// Whether the journal traces this message (one relaxed load).
    #[inline]
    pub fn is_traced(&self) -> bool {
        self.trace.load(Ordering::Relaxed) != 0
    }

    /// A copy made from `from` (a dead letter, a redrive, a changed priority) continues its journey.
    pub fn inherit_trace(self, from: &Message) -> Self {
        self.trace.store(from.trace.load(Ordering::Relaxed), Ordering::Relaxed);
        self
    }

    pub fn size(&self) -> usize {
        self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_extracted_and_properties_kept() {
        let props = AMQPProperties::default()
            .with_priority(7)
            .with_expiration("1500".into())
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let m = Message::with_properties("x".into(), "k".into(), props.clone(), Bytes::from_static(b"{}"));
        assert_eq!((m.priority, m.expiration_ms, m.persistent), (7, Some(1500), true));
        assert_eq!(m.properties(), props);
    }
}
