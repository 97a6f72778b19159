//! The AMQP arguments of streams, with RabbitMQ's names and rules: the declare's (`x-queue-type: stream`,
//! `x-max-length-bytes`, `x-max-age`, `x-stream-max-segment-size-bytes`) and basic.consume's (`x-stream-offset`,
//! `x-stream-filter`, `x-stream-match-unfiltered`, and Warren's `x-stream-consumer-name`). Pure: no I/O.
//!
//! A refused argument is an `Err` carrying the text of the 406 the caller sends.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::log::{Filter, OffsetSpec, DEFAULT_MAX_SEGMENT_BYTES};
use super::offsets::MAX_NAME;
use crate::args;

/// The queue type argument and its value for streams.
pub const QUEUE_TYPE: &str = "x-queue-type";
pub const STREAM: &str = "stream";

/// Whether declare arguments ask for a stream.
pub fn is_stream(arguments: &FieldTable) -> bool {
    args::get_str(arguments, QUEUE_TYPE) == Some(STREAM)
}

/// Classic-queue arguments a stream refuses, as RabbitMQ does ("invalid arg ... of queue type rabbit_stream_queue").
const REFUSED: &[&str] = &[
    "x-max-length",
    "x-message-ttl",
    "x-expires",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-priority",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-mode",
    "x-queue-master-locator",
    "x-delivery-limit",
    "x-message-deduplication",
    "x-cache-size",
    "x-cache-ttl",
];

/// A stream's retention and segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub segment_bytes: u64,
}

/// `x-max-age`'s form: a number and a unit, `Y`, `M`, `D`, `h`, `m` or `s` (RabbitMQ's units: a year is 365 days, a
/// month 30). None when it is not that.
pub fn parse_age(s: &str) -> Option<u64> {
    let unit = *s.as_bytes().last()?;
    // An ASCII last byte is a whole character, so the slice below is on a boundary.
    if !unit.is_ascii() {
        return None;
    }
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let secs: u64 = match unit {
        b'Y' => 365 * 86_400,
        b'M' => 30 * 86_400,
        b'D' => 86_400,
        b'h' => 3_600,
        b'm' => 60,
        b's' => 1,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1000)
}

/// A stream's settings from its effective arguments (`crate::policy::effective_arguments`: the declared ones with
/// the policy's `max-length-bytes`, `max-age` and `stream-max-segment-size-bytes` applied, the lower winning). Keys
/// a stream does not use (a policy's `message-ttl` or dead-lettering) are ignored, and a value that does not read
/// leaves the default (the declare checked the queue's own).
pub fn effective_settings(effective: &FieldTable) -> StreamSettings {
    let positive = |k: &str| args::get_i64(effective, k).filter(|n| *n > 0).map(|n| n as u64);
    StreamSettings {
        max_bytes: positive("x-max-length-bytes"),
        max_age_ms: args::get_str(effective, "x-max-age").and_then(parse_age),
        segment_bytes: positive("x-stream-max-segment-size-bytes").unwrap_or(DEFAULT_MAX_SEGMENT_BYTES),
    }
}

/// Checks a stream declare's arguments and reads its settings; `Err` is the 406's text.
pub fn settings(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<StreamSettings, String> {
    let invalid = |k: &str, why: &str| format!("invalid arg '{k}' for queue '{queue}' in vhost '{vhost}': {why}");
    for k in arguments.inner().keys() {
        if REFUSED.contains(&k.as_str()) {
            return Err(format!(
                "invalid arg '{k}' for queue '{queue}' in vhost '{vhost}' of queue type rabbit_stream_queue"
            ));
        }
    }
    let positive = |k: &str| -> Result<Option<u64>, String> {
        match arguments.inner().get(k) {
            None => Ok(None),
            Some(v) => match args::as_i64(v) {
                Some(n) if n > 0 => Ok(Some(n as u64)),
                _ => Err(invalid(
                    k,
                    &format!("expected a positive integer, got {}", args::describe(Some(v))),
                )),
            },
        }
    };
    let max_bytes = positive("x-max-length-bytes")?;
    let segment_bytes = positive("x-stream-max-segment-size-bytes")?.unwrap_or(DEFAULT_MAX_SEGMENT_BYTES);
    let max_age_ms = match arguments.inner().get("x-max-age") {
        None => None,
        Some(v) => Some(
            args::as_str(v)
                .and_then(parse_age)
                .ok_or_else(|| invalid("x-max-age", "invalid_max_age"))?,
        ),
    };
    Ok(StreamSettings {
        max_bytes,
        max_age_ms,
        segment_bytes,
    })
}

/// What basic.consume asked of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerArgs {
    /// `x-stream-offset`; None when absent (`next`, or the stored offset of a named consumer).
    pub offset: Option<OffsetSpec>,
    pub filter: Option<Filter>,
    /// `x-stream-consumer-name`: its offset is stored by the broker.
    pub name: Option<String>,
}

fn string_of(v: &AMQPValue) -> Option<Vec<u8>> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
        _ => None,
    }
}

/// Reads basic.consume's stream arguments at `now_ms` (for relative offsets such as `1h`); `Err` is the 406's text.
pub fn consumer(arguments: &FieldTable, now_ms: u64) -> Result<ConsumerArgs, String> {
    let t = arguments.inner();
    let offset = match t.get("x-stream-offset") {
        None => None,
        Some(v) => Some(offset_spec(v, now_ms).ok_or_else(|| {
            format!(
                "invalid x-stream-offset {}: expected first, last, next, an offset, a timestamp or an interval such as 1h",
                args::describe(Some(v))
            )
        })?),
    };
    let values = match t.get("x-stream-filter") {
        None => None,
        Some(AMQPValue::FieldArray(a)) => Some(
            a.as_slice()
                .iter()
                .map(string_of)
                .collect::<Option<Vec<_>>>()
                .ok_or("invalid x-stream-filter: expected strings")?,
        ),
        Some(v) => {
            Some(vec![string_of(v).ok_or(
                "invalid x-stream-filter: expected a string or an array of strings",
            )?])
        }
    };
    let match_unfiltered = match t.get("x-stream-match-unfiltered") {
        None => false,
        Some(AMQPValue::Boolean(b)) => *b,
        Some(v) => {
            return Err(format!(
                "invalid x-stream-match-unfiltered {}: expected a boolean",
                args::describe(Some(v))
            ))
        }
    };
    let filter = values.map(|values| Filter {
        values,
        match_unfiltered,
    });
    let name = match t.get("x-stream-consumer-name") {
        None => None,
        Some(v) => {
            let s = args::as_str(v).ok_or("invalid x-stream-consumer-name: expected a string")?;
            if s.is_empty() || s.len() > MAX_NAME {
                return Err(format!(
                    "invalid x-stream-consumer-name: 1 to {MAX_NAME} bytes expected, got {}",
                    s.len()
                ));
            }
            Some(s.to_string())
        }
    };
    Ok(ConsumerArgs { offset, filter, name })
}

fn offset_spec(v: &AMQPValue, now_ms: u64) -> Option<OffsetSpec> {
    if let AMQPValue::Timestamp(secs) = v {
        return Some(OffsetSpec::Timestamp(secs.saturating_mul(1000)));
    }
    if let Some(n) = args::as_i64(v) {
        // RabbitMQ reads a negative offset as the start of the stream.
        return Some(OffsetSpec::Offset(n.max(0) as u64));
    }
    let s = args::as_str(v)?;
    Some(match s {
        "first" => OffsetSpec::First,
        "last" => OffsetSpec::Last,
        "next" => OffsetSpec::Next,
        interval => OffsetSpec::Timestamp(now_ms.saturating_sub(parse_age(interval)?)),
    })
}

/// Whether a message with filter value `value` goes to a consumer with `filter`.
pub fn matches(filter: Option<&Filter>, value: Option<&[u8]>) -> bool {
    match (filter, value) {
        (None, _) => true,
        (Some(f), None) => f.match_unfiltered,
        (Some(f), Some(v)) => f.values.iter().any(|w| w.as_slice() == v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{FieldArray, LongString};

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    #[test]
    fn ages_follow_rabbitmq_units() {
        assert_eq!(parse_age("7D"), Some(7 * 86_400_000));
        assert_eq!(parse_age("12h"), Some(12 * 3_600_000));
        assert_eq!(parse_age("30s"), Some(30_000));
        assert_eq!(parse_age("1Y"), Some(365 * 86_400_000));
        for bad in [
            "",
            "7",
            "D",
            "7X",
            "-1D",
            "+1D",
            "1.5h",
            "7 D",
            "99999999999999999999D",
            "1é",
        ] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn declare_arguments_are_checked_with_rabbitmqs_texts() {
        let ok = table(&[
            ("x-queue-type", s("stream")),
            ("x-max-age", s("7D")),
            ("x-max-length-bytes", AMQPValue::LongLongInt(1 << 30)),
            ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1_000_000)),
        ]);
        assert_eq!(
            settings(&ok, "s", "/"),
            Ok(StreamSettings {
                max_bytes: Some(1 << 30),
                max_age_ms: Some(7 * 86_400_000),
                segment_bytes: 1_000_000
            })
        );
        let e = settings(&table(&[("x-max-age", s("7X"))]), "s-ba", "/").expect_err("bad age");
        assert_eq!(
            e,
            "invalid arg 'x-max-age' for queue 's-ba' in vhost '/': invalid_max_age"
        );
        let e = settings(&table(&[("x-max-length", AMQPValue::LongInt(10))]), "s-bl", "/").expect_err("refused");
        assert_eq!(
            e,
            "invalid arg 'x-max-length' for queue 's-bl' in vhost '/' of queue type rabbit_stream_queue"
        );
        assert!(settings(&table(&[("x-max-length-bytes", AMQPValue::LongInt(0))]), "s", "/").is_err());
    }

    #[test]
    fn consumer_arguments() {
        let now = 10_000_000;
        let c = |pairs: &[(&str, AMQPValue)]| consumer(&table(pairs), now);
        assert_eq!(c(&[]).expect("none").offset, None);
        for (v, want) in [
            (s("first"), OffsetSpec::First),
            (s("last"), OffsetSpec::Last),
            (s("next"), OffsetSpec::Next),
            (AMQPValue::LongLongInt(42), OffsetSpec::Offset(42)),
            (AMQPValue::ShortShortInt(-1), OffsetSpec::Offset(0)),
            (
                AMQPValue::Timestamp(1_700_000_000),
                OffsetSpec::Timestamp(1_700_000_000_000),
            ),
            (s("1h"), OffsetSpec::Timestamp(now - 3_600_000)),
        ] {
            assert_eq!(c(&[("x-stream-offset", v)]).expect("offset").offset, Some(want));
        }
        assert!(c(&[("x-stream-offset", s("bogus"))]).is_err());
        assert!(c(&[("x-stream-offset", AMQPValue::Boolean(true))]).is_err());
        let f = c(&[
            (
                "x-stream-filter",
                AMQPValue::FieldArray(FieldArray::from(vec![s("a"), s("b")])),
            ),
            ("x-stream-match-unfiltered", AMQPValue::Boolean(true)),
            ("x-stream-consumer-name", s("billing")),
        ])
        .expect("filter");
        assert_eq!(
            f.filter,
            Some(Filter {
                values: vec![b"a".to_vec(), b"b".to_vec()],
                match_unfiltered: true
            })
        );
        assert_eq!(f.name.as_deref(), Some("billing"));
        assert_eq!(
            c(&[("x-stream-filter", s("a"))]).expect("one").filter.map(|f| f.values),
            Some(vec![b"a".to_vec()])
        );
        assert!(c(&[("x-stream-consumer-name", s(&"n".repeat(256)))]).is_err());
        assert!(c(&[("x-stream-filter", AMQPValue::LongInt(1))]).is_err());
    }

    #[test]
    fn filter_matching() {
        let f = Filter {
            values: vec![b"a".to_vec()],
            match_unfiltered: false,
        };
        assert!(matches(None, Some(b"z")));
        assert!(matches(Some(&f), Some(b"a")));
        assert!(!matches(Some(&f), Some(b"b")));
        assert!(!matches(Some(&f), None));
        let g = Filter {
            match_unfiltered: true,
            ..f
        };
        assert!(matches(Some(&g), None));
    }
}
