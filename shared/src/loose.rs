//! Lenient field types for request bodies, because RabbitMQ's own tools send loose JSON: `rabbitmqadmin` sends
//! booleans as `"true"`/`"false"` and numbers as strings (`"count": "5"`). Use with
//! `#[serde(deserialize_with = "crate::loose::bool")]` and friends.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `true`, `false`, `"true"` or `"false"`.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!("expected a boolean, not {other}"))),
    }
}

/// A whole number, or a string holding one.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, not {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, not \"{s}\""))),
        other => Err(serde::de::Error::custom(format!(
            "expected a whole number, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::bool")]
        b: bool,
        #[serde(deserialize_with = "super::u64")]
        n: u64,
    }

    #[test]
    fn strings_and_natives_alike() {
        for text in [r#"{"b": true, "n": 5}"#, r#"{"b": "true", "n": "5"}"#] {
            let t: T = serde_json::from_str(text).expect(text);
            assert!(t.b && t.n == 5);
        }
        assert!(serde_json::from_str::<T>(r#"{"b": "yes", "n": 5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"b": true, "n": "-1"}"#).is_err());
    }
}
