//! Streams in the console: the rows of a stream's consumer panel (connected consumers, then named consumers that
//! only have a stored offset), and the positions an operator types to replay a consumer or peek from: `first`,
//! `last`, `next`, an offset, a time (RFC 3339, or `-90s`, `-15m`, `-2h`, `-1d` back from now).
//!
//! Pure: "now" comes in as an argument.

use warren_shared::{QueueInfo, StreamOffsetReset, StreamSummary};

/// One line of a stream's consumer panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    /// `x-stream-consumer-name`: only named consumers have a stored offset, so only they can be replayed.
    pub name: Option<String>,
    /// The consumer tag, when connected.
    pub tag: Option<String>,
    /// The next offset it reads.
    pub offset: u64,
    /// Messages between it and the head, and how far behind the head's time (connected consumers only).
    pub lag: u64,
    pub lag_ms: Option<u64>,
}

/// The panel's rows: connected consumers in the broker's order, then stored offsets no connected consumer holds.
pub fn rows(s: &StreamSummary) -> Vec<StreamRow> {
    let mut out: Vec<StreamRow> = s
        .consumers
        .iter()
        .map(|c| StreamRow {
            name: c.name.clone(),
            tag: Some(c.consumer_tag.clone()),
            offset: c.offset,
            lag: c.lag,
            lag_ms: Some(c.lag_ms),
        })
        .collect();
    for (name, &offset) in &s.stored_offsets {
        if out.iter().any(|r| r.name.as_deref() == Some(name)) {
            continue;
        }
        out.push(StreamRow {
            name: Some(name.clone()),
            tag: None,
            offset,
            lag: s.next_offset.saturating_sub(offset.max(s.first_offset)),
            lag_ms: None,
        });
    }
    out
}

/// The rows of `q`'s panel (none when it is not a stream).
pub fn rows_of(q: &QueueInfo) -> Vec<StreamRow> {
    q.stream.as_ref().map(rows).unwrap_or_default()
}

/// Where a replay or a peek starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    First,
    Last,
    Next,
    Offset(u64),
    /// Unix ms.
    Time(u64),
}

impl Position {
    /// Parses what the operator typed (see the module's comment).
    pub fn parse(text: &str, now_ms: u64) -> Result<Position, String> {
        let t = text.trim();
        match t {
            "" => return Err("type first, last, next, an offset, a time (RFC 3339) or -15m".into()),
            "first" => return Ok(Position::First),
            "last" => return Ok(Position::Last),
            "next" => return Ok(Position::Next),
            _ => {}
        }
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Position::Offset(n));
        }
        if let Some(ago) = t.strip_prefix('-') {
            let split = ago.find(|c: char| !c.is_ascii_digit()).unwrap_or(ago.len());
            let (n, unit) = ago.split_at(split);
            let unit_ms: u64 = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("“{t}”: a time back from now is like -90s, -15m, -2h or -1d")),
            };
            let n: u64 = n
                .parse()
                .map_err(|_| format!("“{t}”: a time back from now is like -90s, -15m, -2h or -1d"))?;
            return Ok(Position::Time(now_ms.saturating_sub(n.saturating_mul(unit_ms))));
        }
        match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(d) if d.timestamp_millis() >= 0 => Ok(Position::Time(d.timestamp_millis() as u64)),
            _ => Err(format!(
                "“{t}” is not first, last, next, an offset, an RFC 3339 time (2026-12-01T09:30:00Z) or -15m"
            )),
        }
    }

    /// The admin API's body for "replay from" this position.
    pub fn reset(self) -> StreamOffsetReset {
        let word = |w: &str| StreamOffsetReset {
            offset: Some(serde_json::Value::String(w.into())),
            timestamp_ms: None,
        };
        match self {
            Position::First => word("first"),
            Position::Last => word("last"),
            Position::Next => word("next"),
            Position::Offset(n) => StreamOffsetReset {
                offset: Some(serde_json::Value::from(n)),
                timestamp_ms: None,
            },
            Position::Time(t) => StreamOffsetReset {
                offset: None,
                timestamp_ms: Some(t),
            },
        }
    }

    /// In words, for dialogs and titles.
    pub fn describe(self, utc_offset_s: i32) -> String {
        match self {
            Position::First => "the first offset kept".into(),
            Position::Last => "the last message".into(),
            Position::Next => "the next message published".into(),
            Position::Offset(n) => format!("offset {}", crate::format::count(n)),
            Position::Time(t) => format!(
                "the first message at or after {}",
                crate::format::date_time(t, utc_offset_s)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_shared::StreamConsumerSummary;

    #[test]
    fn positions_parse_words_offsets_rfc3339_and_times_back_from_now() {
        let now = 1_800_000_000_000;
        assert_eq!(Position::parse(" first ", now), Ok(Position::First));
        assert_eq!(Position::parse("next", now), Ok(Position::Next));
        assert_eq!(Position::parse("1200", now), Ok(Position::Offset(1200)));
        assert_eq!(Position::parse("-15m", now), Ok(Position::Time(now - 900_000)));
        assert_eq!(Position::parse("-2d", now), Ok(Position::Time(now - 2 * 86_400_000)));
        assert_eq!(
            Position::parse("2026-12-01T09:30:00Z", now),
            Ok(Position::Time(1_796_117_400_000))
        );
        for bad in ["", "-15x", "-m", "yesterday", "12.5", "-99999999999999999999d"] {
            assert!(Position::parse(bad, now).is_err(), "{bad:?} parsed");
        }
        // A huge count back from now saturates at the epoch rather than wrapping.
        assert_eq!(Position::parse("-999999999999d", now), Ok(Position::Time(0)));
    }

    #[test]
    fn reset_bodies_are_what_the_admin_api_takes() {
        let json = |p: Position| serde_json::to_value(p.reset()).expect("json");
        assert_eq!(json(Position::First), serde_json::json!({"offset": "first"}));
        assert_eq!(json(Position::Offset(7)), serde_json::json!({"offset": 7}));
        assert_eq!(json(Position::Time(5)), serde_json::json!({"timestamp_ms": 5}));
    }

    #[test]
    fn rows_list_connected_consumers_then_stored_offsets_nobody_holds() {
        let s = StreamSummary {
            first_offset: 100,
            next_offset: 1000,
            consumers: vec![StreamConsumerSummary {
                consumer_tag: "ctag-1".into(),
                name: Some("etl".into()),
                offset: 900,
                lag: 100,
                lag_ms: 2000,
                ..StreamConsumerSummary::default()
            }],
            stored_offsets: [("etl".to_string(), 900), ("audit".to_string(), 40)]
                .into_iter()
                .collect(),
            ..StreamSummary::default()
        };
        let r = rows(&s);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].name.as_deref(), r[0].lag, r[0].lag_ms),
            (Some("etl"), 100, Some(2000))
        );
        // Behind retention: it resumes from the first offset kept, so that is where its lag counts from.
        assert_eq!(
            (r[1].name.as_deref(), r[1].tag.as_deref(), r[1].lag),
            (Some("audit"), None, 900)
        );
    }
}
