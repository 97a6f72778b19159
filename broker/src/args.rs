//! Helpers for AMQP argument tables: reading typed values and comparing declarations for equivalence.
//!
//! Clients encode the same number with different field types (pika sends `x-max-priority` as a long, Java as an
//! int, some as a byte), so equivalence compares integers by value, and short and long strings by their bytes.

use amq_protocol::types::{AMQPValue, FieldTable};

/// An integer argument, whatever integer type the client chose.
pub fn as_i64(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => *n as i64,
        AMQPValue::ShortShortUInt(n) => *n as i64,
        AMQPValue::ShortInt(n) => *n as i64,
        AMQPValue::ShortUInt(n) => *n as i64,
        AMQPValue::LongInt(n) => *n as i64,
        AMQPValue::LongUInt(n) => *n as i64,
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(n) => *n as i64,
        _ => return None,
    })
}

pub fn as_str(v: &AMQPValue) -> Option<&str> {
    match v {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

pub fn get_i64(t: &FieldTable, key: &str) -> Option<i64> {
    t.inner().get(key).and_then(as_i64)
}

pub fn get_str<'a>(t: &'a FieldTable, key: &str) -> Option<&'a str> {
    t.inner().get(key).and_then(as_str)
}

fn same(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_i64(a), as_i64(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (as_str(a), as_str(b)) {
        return x == y;
    }
    a == b
}

/// Describes a value the way RabbitMQ's inequivalence messages do.
pub fn describe(v: Option<&AMQPValue>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) => match (as_i64(v), as_str(v)) {
            (Some(n), _) => format!("'{n}'"),
            (_, Some(s)) => format!("'{s}'"),
            _ => format!("'{v:?}'"),
        },
    }
}

/// The first argument whose value differs between two declarations, if any: `x-queue-type` first (as RabbitMQ
/// reports a stream redeclared as a classic queue), then by name.
pub fn first_difference<'a>(current: &'a FieldTable, received: &'a FieldTable) -> Option<&'a str> {
    let queue_type = current
        .inner()
        .keys()
        .chain(received.inner().keys())
        .filter(|k| k.as_str() == "x-queue-type");
    let keys = queue_type.chain(current.inner().keys()).chain(received.inner().keys());
    for k in keys {
        let a = current.inner().get(k.as_str());
        let b = received.inner().get(k.as_str());
        let equal = match (a, b) {
            (Some(a), Some(b)) => same(a, b),
            (None, None) => true,
            _ => false,
        };
        if !equal {
            return Some(k.as_str());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_compare_by_value() {
        let mut a = FieldTable::default();
        a.insert("x-max-priority".into(), AMQPValue::LongInt(10));
        let mut b = FieldTable::default();
        b.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(10));
        assert_eq!(first_difference(&a, &b), None);
        b.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(9));
        assert_eq!(first_difference(&a, &b), Some("x-max-priority"));
        assert_eq!(first_difference(&FieldTable::default(), &b), Some("x-max-priority"));
    }
}
