//! A published message as queues hold it.
//!
//! One `Arc<Message>` is shared by every queue a publish routes to; its body is a `bytes::Bytes` cut from the
//! connection's read buffer (or copied once, when small), so fan-out and delivery never copy the payload. The
//! encoded property bytes are kept as received, so a delivery writes them out without re-encoding.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::ShortString;
use bytes::Bytes;

use crate::amqp::codec::encode_properties;

#[derive(Debug)]
pub struct Message {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    pub properties: AMQPProperties,
    /// `properties` as encoded on the wire (flags + fields).
    pub raw_properties: Bytes,
    pub body: Bytes,
}

impl Message {
    pub fn new(
        exchange: ShortString,
        routing_key: ShortString,
        properties: AMQPProperties,
        raw_properties: Bytes,
        body: Bytes,
    ) -> Self {
        Message {
            exchange,
            routing_key,
            properties,
            raw_properties,
            body,
        }
    }

    /// Builds a message whose properties are not yet encoded (for messages the broker makes or rewrites).
    pub fn with_properties(
        exchange: ShortString,
        routing_key: ShortString,
        properties: AMQPProperties,
        body: Bytes,
    ) -> Self {
        let raw_properties = encode_properties(&properties);
        Message {
            exchange,
            routing_key,
            properties,
            raw_properties,
            body,
        }
    }

    /// delivery_mode 2 asks for the message to be written to disk on durable queues.
    pub fn is_persistent(&self) -> bool {
        self.properties.delivery_mode() == &Some(2)
    }

    pub fn size(&self) -> usize {
        self.body.len()
    }
}
