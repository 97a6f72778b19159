//! The messages (peek) view's state: one page of a queue's ready messages as peek returned them, the selection, the
//! marked message ids, and the server-side filter; plus the pure helpers that read a peeked message (its `x-death`
//! reason and source queue, its age, a body preview, pretty JSON or hex).
//!
//! Invariants: `marked` holds ids, not positions, so marks survive refreshes; a mark whose message has left the
//! queue is dropped when a fresh page no longer shows it only if it was on that page. Only the answer to the latest
//! peek (`peek_seq`) is loaded: a slow answer to an older one must not overwrite a newer page.

use std::collections::BTreeSet;

use warren_shared::{MessageFilter, PeekedMessage};

use super::stream::Position;
use crate::event::{Command, QueueKey};

/// Messages per page.
pub const PAGE: u64 = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct MessagesState {
    pub queue: QueueKey,
    /// The page starts this many (matching) messages from the head.
    pub from: u64,
    pub items: Vec<PeekedMessage>,
    pub selected: usize,
    pub marked: BTreeSet<u64>,
    /// The filter as typed, and as sent.
    pub filter_text: String,
    pub filter: MessageFilter,
    pub loading: bool,
    pub loaded_ms: Option<u64>,
    /// Whether the detail pane (headers and body of the selected message) is open.
    pub show_detail: bool,
    /// The sequence number of the latest peek sent; answers to any other are stale.
    pub peek_seq: u64,
    /// Streams only: where the pages start (an offset or a time; `None`: the oldest offset kept).
    pub start: Option<Position>,
}

impl MessagesState {
    pub fn new(queue: QueueKey) -> Self {
        MessagesState {
            queue,
            from: 0,
            items: Vec::new(),
            selected: 0,
            marked: BTreeSet::new(),
            filter_text: String::new(),
            filter: MessageFilter::default(),
            loading: false,
            loaded_ms: None,
            show_detail: false,
            peek_seq: 0,
            start: None,
        }
    }

    /// The peek that reads the page at `from` with the current filter, as request `seq` (unique across the app):
    /// the page is loading until its answer arrives, and answers to earlier peeks are dropped from now on.
    pub fn peek(&mut self, from: u64, seq: u64) -> Command {
        self.loading = true;
        self.peek_seq = seq;
        Command::Peek {
            seq,
            queue: self.queue.clone(),
            from,
            count: PAGE,
            filter: self.filter.clone(),
            offset: match self.start {
                Some(Position::Offset(n)) => Some(n),
                _ => None,
            },
            timestamp_ms: match self.start {
                Some(Position::Time(t)) => Some(t),
                _ => None,
            },
        }
    }

    /// Whether an answer to peek `seq` of `queue` is the one this page waits for.
    pub fn awaits(&self, queue: &QueueKey, seq: u64) -> bool {
        &self.queue == queue && self.peek_seq == seq
    }

    pub fn selected_message(&self) -> Option<&PeekedMessage> {
        self.items.get(self.selected)
    }

    /// A fresh page arrived: keep the selection on the same message id when it is still there.
    pub fn load(&mut self, from: u64, items: Vec<PeekedMessage>, now_ms: u64) {
        let selected_id = self.selected_message().map(|m| m.id);
        let page_ids: BTreeSet<u64> = self.items.iter().map(|m| m.id).collect();
        let new_ids: BTreeSet<u64> = items.iter().map(|m| m.id).collect();
        // A marked message that was on the page we had and is gone from the same page has left the queue.
        if from == self.from {
            self.marked.retain(|id| !page_ids.contains(id) || new_ids.contains(id));
        }
        self.from = from;
        self.items = items;
        self.selected = selected_id
            .and_then(|id| self.items.iter().position(|m| m.id == id))
            .unwrap_or(self.selected)
            .min(self.items.len().saturating_sub(1));
        self.loading = false;
        self.loaded_ms = Some(now_ms);
    }
}

/// Parses the filter line: `h:NAME=VALUE` (or `h:NAME`) for a header, `p:NAME=VALUE` for a property, anything else
/// is text the body must contain.
pub fn parse_filter(text: &str) -> MessageFilter {
    let mut f = MessageFilter::default();
    let mut body: Vec<&str> = Vec::new();
    for word in text.split_whitespace() {
        if let Some(h) = word.strip_prefix("h:") {
            let (name, value) = h.split_once('=').map_or((h, None), |(n, v)| (n, Some(v)));
            f.header = Some(name.to_string());
            f.header_value = value.map(str::to_string);
        } else if let Some(p) = word.strip_prefix("p:") {
            if let Some((name, value)) = p.split_once('=') {
                f.property = Some(name.to_string());
                f.property_value = Some(value.to_string());
            }
        } else {
            body.push(word);
        }
    }
    if !body.is_empty() {
        f.body_contains = Some(body.join(" "));
    }
    f
}

/// The newest `x-death` entry: (reason, source queue).
pub fn death(m: &PeekedMessage) -> Option<(String, String)> {
    let headers = m.properties.get("headers")?.as_object()?;
    if let Some(first) = headers
        .get("x-death")
        .and_then(|d| d.as_array())
        .and_then(|a| a.first())
    {
        let reason = first.get("reason").and_then(|v| v.as_str()).unwrap_or("?");
        let queue = first.get("queue").and_then(|v| v.as_str()).unwrap_or("?");
        return Some((reason.to_string(), queue.to_string()));
    }
    let reason = headers.get("x-first-death-reason")?.as_str()?;
    let queue = headers
        .get("x-first-death-queue")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    Some((reason.to_string(), queue.to_string()))
}

/// One `x-death` entry, readable: count, reason, queue, exchange, routing keys, and the time (local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathRow {
    pub count: String,
    pub reason: String,
    pub queue: String,
    pub exchange: String,
    pub routing_keys: String,
    pub time: String,
}

/// The message's `x-death` history as rows (newest first, as the broker keeps it). Its `time` is an AMQP timestamp:
/// seconds since the epoch, shown as a local date and time.
pub fn death_rows(m: &PeekedMessage, utc_offset_s: i32) -> Vec<DeathRow> {
    let Some(deaths) = m
        .properties
        .get("headers")
        .and_then(|h| h.get("x-death"))
        .and_then(|d| d.as_array())
    else {
        return Vec::new();
    };
    let text = |d: &serde_json::Value, k: &str| match d.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    deaths
        .iter()
        .map(|d| {
            let exchange = text(d, "exchange");
            let keys = match d.get("routing-keys").and_then(|k| k.as_array()) {
                Some(keys) => keys.iter().filter_map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
                None => String::new(),
            };
            let time = d
                .get("time")
                .and_then(|t| t.as_u64())
                .map(|secs| crate::format::date_time(secs.saturating_mul(1000), utc_offset_s))
                .unwrap_or_default();
            DeathRow {
                count: text(d, "count"),
                reason: text(d, "reason"),
                queue: text(d, "queue"),
                exchange: if exchange.is_empty() {
                    "(default)".into()
                } else {
                    exchange
                },
                routing_keys: keys,
                time,
            }
        })
        .collect()
}

/// The body as bytes (decoding base64 bodies).
pub fn body_bytes(m: &PeekedMessage) -> Vec<u8> {
    if m.body_encoding == "base64" {
        decode_base64(&m.body).unwrap_or_else(|| m.body.clone().into_bytes())
    } else {
        m.body.clone().into_bytes()
    }
}

/// A one-line preview: text with control characters shown as spaces, binary as `<binary N bytes>`.
pub fn preview(m: &PeekedMessage) -> String {
    if m.body_encoding == "base64" {
        return format!("<binary {} bytes>", body_bytes(m).len());
    }
    m.body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The body for the detail pane: JSON pretty-printed, other text as it is, binary as a hex dump.
pub fn body_lines(m: &PeekedMessage) -> Vec<String> {
    if m.body_encoding == "base64" {
        return hex_dump(&body_bytes(m));
    }
    match serde_json::from_str::<serde_json::Value>(&m.body) {
        Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => serde_json::to_string_pretty(&v)
            .unwrap_or_else(|_| m.body.clone())
            .lines()
            .map(str::to_string)
            .collect(),
        _ => m.body.lines().map(str::to_string).collect(),
    }
}

/// 16 bytes a line: offset, hex, ASCII.
pub fn hex_dump(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, chunk)| {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            let ascii: String = chunk
                .iter()
                .map(|b| {
                    if b.is_ascii_graphic() || *b == b' ' {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:08x}  {:<47}  {}", i * 16, hex.join(" "), ascii)
        })
        .collect()
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(id: u64) -> PeekedMessage {
        PeekedMessage {
            id,
            ..PeekedMessage::default()
        }
    }

    /// Issue 15: "the x-death JSON in the message view is one cut-off line with epoch seconds". Each entry is a row
    /// with its time as a local date and time.
    #[test]
    fn x_death_is_rows_with_local_times() {
        let mut m = message(1);
        m.properties = json!({"headers": {"x-death": [
            {"count": 2, "reason": "expired", "queue": "orders", "exchange": "",
             "routing-keys": ["orders", "eu.orders"], "time": 1_700_000_000u64},
            {"count": 1, "reason": "rejected", "queue": "payments", "exchange": "billing"}
        ]}})
        .as_object()
        .cloned()
        .unwrap_or_default();
        let rows = death_rows(&m, 3600);
        assert_eq!(
            rows[0],
            DeathRow {
                count: "2".into(),
                reason: "expired".into(),
                queue: "orders".into(),
                exchange: "(default)".into(),
                routing_keys: "orders, eu.orders".into(),
                time: "2023-11-14 23:13:20".into(),
            }
        );
        assert_eq!((rows[1].exchange.as_str(), rows[1].time.as_str()), ("billing", ""));
        assert!(death_rows(&message(2), 0).is_empty());
    }

    #[test]
    fn filter_syntax() {
        let f = parse_filter("h:x-first-death-reason=rejected p:priority=5 order 42");
        assert_eq!(f.header.as_deref(), Some("x-first-death-reason"));
        assert_eq!(f.header_value.as_deref(), Some("rejected"));
        assert_eq!(f.property.as_deref(), Some("priority"));
        assert_eq!(f.property_value.as_deref(), Some("5"));
        assert_eq!(f.body_contains.as_deref(), Some("order 42"));
        assert!(parse_filter("  ").is_empty());
        assert_eq!(parse_filter("h:trace").header.as_deref(), Some("trace"));
    }

    #[test]
    fn death_body_and_hex() {
        let mut m = message(1);
        m.properties = json!({"headers": {"x-death": [{"queue": "orders", "reason": "rejected", "count": 1}]}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(death(&m), Some(("rejected".into(), "orders".into())));
        m.body = r#"{"a":1}"#.into();
        m.body_encoding = "utf8".into();
        assert_eq!(body_lines(&m), vec!["{", "  \"a\": 1", "}"]);
        m.body = "AAEC/w==".into();
        m.body_encoding = "base64".into();
        assert_eq!(body_bytes(&m), vec![0, 1, 2, 255]);
        assert_eq!(preview(&m), "<binary 4 bytes>");
        assert!(body_lines(&m)[0].starts_with("00000000  00 01 02 ff"));
    }

    #[test]
    fn load_keeps_selection_and_drops_marks_of_gone_messages() {
        let mut s = MessagesState::new(QueueKey::new("/", "q"));
        s.load(0, (1..=5).map(message).collect(), 1);
        s.selected = 3; // id 4
        s.marked.extend([2, 4, 99]);
        s.load(0, vec![message(1), message(3), message(4), message(5)], 2);
        assert_eq!(s.selected_message().map(|m| m.id), Some(4));
        assert_eq!(s.marked.iter().copied().collect::<Vec<_>>(), vec![4, 99]);
    }
}
