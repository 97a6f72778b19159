//! MQTT ↔ AMQP, as RabbitMQ's MQTT plugin maps them: topics are routing keys of the topic exchange with `/` and `.`
//! swapped, subscription wildcards `+` and `#` are the topic exchange's `*` and `#`, and a message's MQTT 5
//! properties travel as AMQP properties and headers. Pure functions, round-trip tested.
//!
//! - Topic `sensors/kitchen/temp` is routing key `sensors.kitchen.temp`; a `.` in a topic is a `/` in the key.
//! - QoS 1 and 2 publishes are persistent (`delivery_mode` 2), QoS 0 ones transient; the publish QoS is the header
//!   `x-mqtt-publish-qos`.
//! - MQTT 5: content type ↔ `content_type`; correlation data ↔ `correlation_id` (when it is UTF-8 of at most 255
//!   bytes, else the header `x-correlation-id`); response topic ↔ `reply_to` (in routing-key form, so an AMQP
//!   service replies through the same exchange with `reply_to` as the key); message expiry ↔ `expiration`; user
//!   properties ↔ string headers.

use std::sync::Arc;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::Bytes;

use super::codec::{PubProps, Publish};
use crate::message::Message;

/// The longest topic (it becomes a routing key, which AMQP caps at 255 bytes).
pub const MAX_TOPIC: usize = 255;

fn swap(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// `a/b.c` → `a.b/c`.
pub fn topic_to_key(topic: &str) -> String {
    swap(topic)
}

/// `a.b/c` → `a/b.c`.
pub fn key_to_topic(key: &str) -> String {
    swap(key)
}

/// A subscription filter as a topic-exchange binding key: `+` → `*`, `#` → `#`, `/` ↔ `.`.
pub fn filter_to_key(filter: &str) -> String {
    filter
        .split('/')
        .map(|level| match level {
            "+" => "*".to_string(),
            l => l.replace('.', "/"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A topic a client may publish to: not empty, no wildcards, no NUL, at most [`MAX_TOPIC`] bytes.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC && !topic.contains(['+', '#', '\0'])
}

/// A valid filter: `#` only as the whole last level, `+` only as a whole level, at most [`MAX_TOPIC`] bytes.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// `$share/group/filter` → (group, filter).
pub fn shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, f) = rest.split_once('/')?;
    (!group.is_empty() && !group.contains(['+', '#']) && !f.is_empty()).then_some((group, f))
}

/// Whether `topic` matches `filter` (MQTT's rules: `+` one level, `#` this level and all below, and a topic that
/// starts with `$` is not matched by a wildcard in the first level).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The AMQP message of an MQTT publish to `exchange`.
pub fn to_message(p: &Publish, exchange: &str) -> Message {
    let mut headers = FieldTable::default();
    headers.insert("x-mqtt-publish-qos".into(), AMQPValue::ShortShortUInt(p.qos.min(2)));
    let pp = &p.props;
    for (k, v) in &pp.user_properties {
        headers.insert(k.as_str().into(), AMQPValue::LongString(LongString::from(v.as_str())));
    }
    let mut props = AMQPProperties::default().with_delivery_mode(if p.qos >= 1 { 2 } else { 1 });
    if let Some(ct) = &pp.content_type {
        props = props.with_content_type(ct.as_str().into());
    }
    if let Some(cd) = &pp.correlation_data {
        match std::str::from_utf8(cd) {
            Ok(s) if s.len() <= 255 => props = props.with_correlation_id(s.into()),
            _ => {
                headers.insert("x-correlation-id".into(), AMQPValue::ByteArray(cd.to_vec().into()));
            }
        }
    }
    if let Some(rt) = &pp.response_topic {
        props = props.with_reply_to(topic_to_key(rt).as_str().into());
    }
    if let Some(s) = pp.message_expiry_s {
        props = props.with_expiration((u64::from(s) * 1000).to_string().as_str().into());
    }
    props = props.with_headers(headers);
    Message::with_properties(
        exchange.into(),
        topic_to_key(&p.topic).as_str().into(),
        props,
        p.payload.clone(),
    )
}

/// The MQTT publish (QoS `qos`, packet id to be set) of an AMQP message; the MQTT 5 properties are filled in when
/// `v5`.
pub fn to_publish(m: &Arc<Message>, qos: u8, retain: bool, v5: bool) -> Publish {
    let mut props = PubProps::default();
    if v5 {
        let p = m.properties();
        props.content_type = p.content_type().as_ref().map(|c| c.to_string());
        props.response_topic = p.reply_to().as_ref().map(|r| key_to_topic(r.as_str()));
        props.correlation_data = p
            .correlation_id()
            .as_ref()
            .map(|c| Bytes::copy_from_slice(c.as_str().as_bytes()));
        props.message_expiry_s = m
            .expiration_ms
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX));
        if let Some(h) = p.headers() {
            for (k, v) in h.inner() {
                match (k.as_str(), v) {
                    ("x-correlation-id", AMQPValue::ByteArray(b)) if props.correlation_data.is_none() => {
                        props.correlation_data = Some(Bytes::copy_from_slice(b.as_slice()));
                    }
                    (k, _) if k.starts_with("x-mqtt-") => {}
                    (k, AMQPValue::LongString(s)) => props
                        .user_properties
                        .push((k.to_string(), String::from_utf8_lossy(s.as_bytes()).into_owned())),
                    (k, AMQPValue::ShortString(s)) => props.user_properties.push((k.to_string(), s.to_string())),
                    _ => {}
                }
            }
        }
    }
    Publish {
        topic: key_to_topic(m.routing_key.as_str()),
        qos,
        retain,
        dup: false,
        pkid: 0,
        payload: m.body.clone(),
        props,
    }
}

/// The QoS a publish of `qos` had, from the header an MQTT publisher set (AMQP publishes count as QoS 1 when
/// persistent, else 0).
pub fn published_qos(m: &Message) -> u8 {
    m.properties()
        .headers()
        .as_ref()
        .and_then(|h| crate::args::get_i64(h, "x-mqtt-publish-qos"))
        .map(|q| q.clamp(0, 1) as u8)
        .unwrap_or(if m.persistent { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_filters_map_to_keys_as_rabbitmq_maps_them() {
        assert_eq!(topic_to_key("sensors/kitchen/temp"), "sensors.kitchen.temp");
        assert_eq!(topic_to_key("a.b/c"), "a/b.c");
        assert_eq!(key_to_topic(&topic_to_key("x/y.z/w")), "x/y.z/w");
        assert_eq!(filter_to_key("sensors/+/temp"), "sensors.*.temp");
        assert_eq!(filter_to_key("sensors/#"), "sensors.#");
        assert_eq!(filter_to_key("v1.0/+"), "v1/0.*");
    }

    #[test]
    fn filters_match_topics_by_mqtt_rules() {
        assert!(matches("sensors/+/temp", "sensors/kitchen/temp"));
        assert!(!matches("sensors/+/temp", "sensors/kitchen/humidity"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/#", "sensors/a/b"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(valid_filter("a/+/#") && !valid_filter("a/#/b") && !valid_filter("a+/b") && !valid_filter(""));
        assert!(valid_topic("a/b") && !valid_topic("a/+") && !valid_topic(""));
        assert_eq!(shared("$share/g1/sensors/#"), Some(("g1", "sensors/#")));
        assert_eq!(shared("$share//x"), None);
    }

    #[test]
    fn an_mqtt5_publish_round_trips_through_amqp_properties() {
        let p = Publish {
            topic: "rpc/req".into(),
            qos: 1,
            retain: false,
            dup: false,
            pkid: 7,
            payload: Bytes::from_static(b"{}"),
            props: PubProps {
                content_type: Some("application/json".into()),
                response_topic: Some("rpc/replies/c1".into()),
                correlation_data: Some(Bytes::from_static(b"abc-1")),
                user_properties: vec![("tenant".into(), "t1".into())],
                ..PubProps::default()
            },
        };
        let m = to_message(&p, "amq.topic");
        assert_eq!(m.routing_key.as_str(), "rpc.req");
        assert!(m.persistent);
        let props = m.properties();
        assert_eq!(
            props.reply_to().as_ref().map(|r| r.to_string()),
            Some("rpc.replies.c1".into())
        );
        assert_eq!(
            props.correlation_id().as_ref().map(|r| r.to_string()),
            Some("abc-1".into())
        );
        let back = to_publish(&Arc::new(m), 1, false, true);
        assert_eq!(back.topic, "rpc/req");
        assert_eq!(back.props.content_type, p.props.content_type);
        assert_eq!(back.props.response_topic, p.props.response_topic);
        assert_eq!(back.props.correlation_data, p.props.correlation_data);
        assert_eq!(back.props.user_properties, p.props.user_properties);
        let plain = to_publish(&Arc::new(to_message(&p, "amq.topic")), 0, false, false);
        assert_eq!(plain.props, PubProps::default(), "3.1.1 has no properties");
    }
}
