//! AMQP field tables and properties as JSON, for the admin API.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use base64::Engine;
use serde_json::{Map, Value};

pub fn value(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::Float(f) => serde_json::Number::from_f64(*f as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AMQPValue::DecimalValue(d) => Value::String(format!("{}e-{}", d.value, d.scale)),
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => Value::String(t.to_string()),
            Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(s.as_bytes())),
        },
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value).collect()),
        AMQPValue::FieldTable(t) => Value::Object(table(t)),
        AMQPValue::ByteArray(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

pub fn table(t: &FieldTable) -> Map<String, Value> {
    t.inner().iter().map(|(k, v)| (k.to_string(), value(v))).collect()
}

/// Properties as a JSON object of the ones present (headers decoded, x-death included).
pub fn properties(p: &AMQPProperties) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("content_type", p.content_type().as_ref().map(|v| v.to_string().into()));
    put(
        "content_encoding",
        p.content_encoding().as_ref().map(|v| v.to_string().into()),
    );
    put("headers", p.headers().as_ref().map(|h| Value::Object(table(h))));
    put("delivery_mode", p.delivery_mode().map(Value::from));
    put("priority", p.priority().map(Value::from));
    put(
        "correlation_id",
        p.correlation_id().as_ref().map(|v| v.to_string().into()),
    );
    put("reply_to", p.reply_to().as_ref().map(|v| v.to_string().into()));
    put("expiration", p.expiration().as_ref().map(|v| v.to_string().into()));
    put("message_id", p.message_id().as_ref().map(|v| v.to_string().into()));
    put("timestamp", p.timestamp().map(Value::from));
    put("type", p.kind().as_ref().map(|v| v.to_string().into()));
    put("user_id", p.user_id().as_ref().map(|v| v.to_string().into()));
    put("app_id", p.app_id().as_ref().map(|v| v.to_string().into()));
    m
}

/// A body as the API shows it: `("utf8", text)` when it is UTF-8, else `("base64", encoded)`.
pub fn body(body: &[u8]) -> (&'static str, String) {
    match std::str::from_utf8(body) {
        Ok(t) => ("utf8", t.to_string()),
        Err(_) => ("base64", base64::engine::general_purpose::STANDARD.encode(body)),
    }
}
