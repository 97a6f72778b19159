//! STOMP headers ↔ AMQP properties and headers, as RabbitMQ's STOMP plugin maps them. Pure, round-trip tested.
//!
//! - SEND: `content-type`, `content-encoding`, `persistent` (`true` → delivery mode 2), `priority`,
//!   `correlation-id`, `reply-to`, `expiration`, `amqp-message-id` (the AMQP `message_id`), `timestamp`, `type`,
//!   `user-id` and `app-id` become the AMQP properties of those names; every other header that is not STOMP's own
//!   (`destination`, `receipt`, `transaction`, `content-length`) becomes a string header.
//! - MESSAGE: the same properties back under the same names, and the message's headers as strings (numbers and
//!   booleans written out; tables and arrays, such as `x-death`, are left out).

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::codec::Frame;

/// Headers of SEND that are STOMP's own and are not carried into the message.
const STOMP_OWN: &[&str] = &["destination", "receipt", "transaction", "content-length"];

/// Headers that are AMQP properties (a MESSAGE never carries a message header of the same name twice).
const PROPERTY_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "persistent",
    "priority",
    "correlation-id",
    "reply-to",
    "expiration",
    "amqp-message-id",
    "timestamp",
    "type",
    "user-id",
    "app-id",
];

/// Headers a MESSAGE frame sets itself.
const MESSAGE_OWN: &[&str] = &[
    "destination",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "content-length",
];

/// Why a SEND's headers cannot make a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid header '{name}': {why}")]
pub struct HeaderError {
    pub name: String,
    pub why: &'static str,
}

fn short(name: &str, v: &str) -> Result<amq_protocol::types::ShortString, HeaderError> {
    if v.len() > 255 {
        return Err(HeaderError {
            name: name.to_string(),
            why: "longer than 255 bytes",
        });
    }
    Ok(v.into())
}

/// The AMQP properties of a SEND frame.
pub fn properties(frame: &Frame) -> Result<AMQPProperties, HeaderError> {
    let mut p = AMQPProperties::default();
    let mut headers = FieldTable::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &frame.headers {
        // The first of a repeated header counts (STOMP 1.2).
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let v = value.as_str();
        p = match name.as_str() {
            n if STOMP_OWN.contains(&n) => p,
            "content-type" => p.with_content_type(short(name, v)?),
            "content-encoding" => p.with_content_encoding(short(name, v)?),
            "persistent" => p.with_delivery_mode(if v.eq_ignore_ascii_case("true") { 2 } else { 1 }),
            "priority" => p.with_priority(v.trim().parse().map_err(|_| HeaderError {
                name: name.clone(),
                why: "not a number from 0 to 255",
            })?),
            "correlation-id" => p.with_correlation_id(short(name, v)?),
            "reply-to" => p.with_reply_to(short(name, v)?),
            "expiration" => {
                if v.trim().parse::<u64>().is_err() {
                    return Err(HeaderError {
                        name: name.clone(),
                        why: "not a number of milliseconds",
                    });
                }
                p.with_expiration(short(name, v.trim())?)
            }
            "amqp-message-id" => p.with_message_id(short(name, v)?),
            "timestamp" => p.with_timestamp(v.trim().parse().map_err(|_| HeaderError {
                name: name.clone(),
                why: "not a number of seconds",
            })?),
            "type" => p.with_type(short(name, v)?),
            "user-id" => p.with_user_id(short(name, v)?),
            "app-id" => p.with_app_id(short(name, v)?),
            _ => {
                if name.len() > 255 {
                    return Err(HeaderError {
                        name: name.chars().take(40).collect(),
                        why: "a name longer than 255 bytes",
                    });
                }
                headers.insert(name.as_str().into(), AMQPValue::LongString(LongString::from(v)));
                p
            }
        };
    }
    if !headers.inner().is_empty() {
        p = p.with_headers(headers);
    }
    Ok(p)
}

/// A header value as STOMP text; `None` for tables, arrays and other values with no plain text form.
fn text(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        _ => return None,
    })
}

/// Appends the STOMP headers of a message's AMQP properties and headers to `out`.
pub fn message_headers(p: &AMQPProperties, out: &mut Vec<(String, String)>) {
    let mut put = |n: &str, v: String| out.push((n.to_string(), v));
    if let Some(v) = p.content_type() {
        put("content-type", v.to_string());
    }
    if let Some(v) = p.content_encoding() {
        put("content-encoding", v.to_string());
    }
    if let Some(v) = p.delivery_mode() {
        put("persistent", (*v == 2).to_string());
    }
    if let Some(v) = p.priority() {
        put("priority", v.to_string());
    }
    if let Some(v) = p.correlation_id() {
        put("correlation-id", v.to_string());
    }
    if let Some(v) = p.reply_to() {
        // An AMQP reply queue is a destination to send to (RabbitMQ's form); a destination stays as it is.
        let v = v.as_str();
        put(
            "reply-to",
            if v.starts_with('/') {
                v.to_string()
            } else {
                format!("/reply-queue/{v}")
            },
        );
    }
    if let Some(v) = p.expiration() {
        put("expiration", v.to_string());
    }
    if let Some(v) = p.message_id() {
        put("amqp-message-id", v.to_string());
    }
    if let Some(v) = p.timestamp() {
        put("timestamp", v.to_string());
    }
    if let Some(v) = p.kind() {
        put("type", v.to_string());
    }
    if let Some(v) = p.user_id() {
        put("user-id", v.to_string());
    }
    if let Some(v) = p.app_id() {
        put("app-id", v.to_string());
    }
    if let Some(h) = p.headers() {
        for (k, v) in h.inner() {
            let k = k.as_str();
            if MESSAGE_OWN.contains(&k) || PROPERTY_HEADERS.contains(&k) {
                continue;
            }
            if let Some(t) = text(v) {
                put(k, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn send(headers: &[(&str, &str)]) -> Frame {
        Frame {
            command: "SEND".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn send_headers_become_properties_and_come_back_as_the_same_headers() {
        let f = send(&[
            ("destination", "/queue/q"),
            ("receipt", "r1"),
            ("content-type", "application/json"),
            ("persistent", "true"),
            ("priority", "7"),
            ("correlation-id", "c-1"),
            ("reply-to", "/queue/replies"),
            ("expiration", "60000"),
            ("amqp-message-id", "m-1"),
            ("timestamp", "1700000000"),
            ("type", "order.created"),
            ("app-id", "shop"),
            ("tenant", "t1"),
            ("tenant", "ignored: the first counts"),
        ]);
        let p = properties(&f).expect("valid");
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.priority(), &Some(7));
        assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
        let h = p.headers().clone().expect("headers");
        assert!(h.inner().get("destination").is_none() && h.inner().get("receipt").is_none());
        let mut back = Vec::new();
        message_headers(&p, &mut back);
        let mut want: Vec<(String, String)> = f
            .headers
            .iter()
            .filter(|(n, v)| !STOMP_OWN.contains(&n.as_str()) && !v.starts_with("ignored"))
            .cloned()
            .collect();
        want.sort();
        back.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn amqp_headers_of_every_simple_type_are_written_as_text_and_tables_are_left_out() {
        let mut h = FieldTable::default();
        h.insert("n".into(), AMQPValue::LongLongInt(-5));
        h.insert("b".into(), AMQPValue::Boolean(true));
        h.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        h.insert("message-id".into(), AMQPValue::LongString("spoofed".into()));
        let p = AMQPProperties::default().with_headers(h).with_delivery_mode(1);
        let mut out = Vec::new();
        message_headers(&p, &mut out);
        out.sort();
        assert_eq!(
            out,
            vec![
                ("b".to_string(), "true".to_string()),
                ("n".into(), "-5".into()),
                ("persistent".into(), "false".into())
            ]
        );
    }

    #[test]
    fn bad_property_headers_are_refused_with_their_name() {
        for (n, v) in [("priority", "high"), ("expiration", "soon"), ("timestamp", "now")] {
            let e = properties(&send(&[(n, v)])).expect_err("invalid");
            assert_eq!(e.name, n);
        }
        let long = "x".repeat(256);
        assert!(properties(&send(&[("correlation-id", &long)])).is_err());
        assert!(properties(&send(&[(&long, "v")])).is_err());
    }
}
