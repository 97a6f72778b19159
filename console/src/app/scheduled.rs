//! `:scheduled` — the messages that delayed exchanges hold until their `x-delay` has passed, in due order, across
//! every vhost the user may see: cancel them, deliver them now, or reschedule them, one by one (marked or selected)
//! or every row the `/` filter shows, each behind a confirmation.
//!
//! Invariants: `selected` indexes the filtered rows ([`ScheduledState::rows`]); marks name (vhost, exchange, id)
//! and only rows the last read returned; at most one read is in flight.

use std::collections::BTreeSet;

use warren_shared::scheduled::{ScheduledAction, ScheduledMessage};

use super::listings::matches;
use crate::event::{Command, RequestId};
use crate::format::count;

/// At most this many held messages are read per vhost (the API's page limit).
pub const PAGE: u64 = 1000;

/// A held message's identity: (vhost, exchange, id).
pub type Key = (String, String, u64);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduledState {
    /// What the last read returned, in due order.
    pub items: Vec<ScheduledMessage>,
    /// How many messages the delayed exchanges hold in all (may be more than were read).
    pub total: u64,
    pub selected: usize,
    pub marked: BTreeSet<Key>,
    pub filter: String,
    pub fetched_ms: Option<u64>,
    pub pending: bool,
}

pub fn key(m: &ScheduledMessage) -> Key {
    (m.vhost.clone(), m.exchange.clone(), m.id)
}

/// A message's `message_id`, if it has one.
pub fn message_id(m: &ScheduledMessage) -> &str {
    m.properties.get("message_id").and_then(|v| v.as_str()).unwrap_or("")
}

impl ScheduledState {
    /// The rows shown: the items that match the filter (exchange, routing key, message id or body).
    pub fn rows(&self) -> Vec<&ScheduledMessage> {
        let needle = self.filter.to_lowercase();
        self.items
            .iter()
            .filter(|m| {
                matches(
                    &needle,
                    &[&m.exchange, &m.routing_key, message_id(m), &m.body, &m.vhost],
                )
            })
            .collect()
    }

    pub fn selected_row(&self) -> Option<&ScheduledMessage> {
        self.rows().get(self.selected).copied()
    }

    /// A read answered: the cursor keeps its index as far as the rows reach; marks on messages gone are dropped.
    pub fn load(&mut self, total: u64, items: Vec<ScheduledMessage>, now_ms: u64) {
        let present: BTreeSet<Key> = items.iter().map(key).collect();
        self.marked.retain(|k| present.contains(k));
        self.items = items;
        self.total = total;
        self.fetched_ms = Some(now_ms);
        self.pending = false;
        self.selected = self.selected.min(self.rows().len().saturating_sub(1));
    }

    pub fn set_filter(&mut self, text: String) {
        self.filter = text;
        self.selected = 0;
    }

    pub fn toggle_mark(&mut self) {
        if let Some(k) = self.selected_row().map(key) {
            if !self.marked.remove(&k) {
                self.marked.insert(k);
            }
        }
    }

    /// What an action on "these" applies to: the marked messages, else the selected one.
    pub fn chosen(&self) -> Vec<Key> {
        if self.marked.is_empty() {
            self.selected_row().map(key).into_iter().collect()
        } else {
            self.marked.iter().cloned().collect()
        }
    }

    /// Every row the filter shows.
    pub fn shown(&self) -> Vec<Key> {
        self.rows().into_iter().map(key).collect()
    }
}

/// What to do with held messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Cancel,
    Deliver,
    Reschedule,
}

impl Op {
    /// The API's word for it.
    pub fn word(self) -> &'static str {
        match self {
            Op::Cancel => "cancel",
            Op::Deliver => "deliver",
            Op::Reschedule => "reschedule",
        }
    }
}

/// One API call of an action: the ids it names in one exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub vhost: String,
    pub exchange: String,
    pub ids: Vec<u64>,
}

/// Groups keys by (vhost, exchange), one call each.
pub fn targets(keys: &[Key]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (vhost, exchange, id) in keys {
        match out.iter_mut().find(|t| &t.vhost == vhost && &t.exchange == exchange) {
            Some(t) => t.ids.push(*id),
            None => out.push(Target {
                vhost: vhost.clone(),
                exchange: exchange.clone(),
                ids: vec![*id],
            }),
        }
    }
    out
}

/// The dialog's lines for `op` on `n` messages in `targets`.
pub fn describe(op: Op, targets: &[Target]) -> Vec<String> {
    let n: usize = targets.iter().map(|t| t.ids.len()).sum();
    let what = format!("{} held message{}", count(n as u64), if n == 1 { "" } else { "s" });
    let place = match targets {
        [t] => format!("of {} on {}", t.exchange, t.vhost),
        _ => format!("of {} delayed exchanges", targets.len()),
    };
    match op {
        Op::Cancel => vec![
            format!("Cancel {what} {place}: they are dropped, never delivered."),
            "This cannot be undone.".into(),
        ],
        Op::Deliver => vec![format!("Deliver {what} {place} now, as if their delay had passed.")],
        Op::Reschedule => vec![
            format!("Reschedule {what} {place}."),
            "Due: in +10m, 90s, 2h, or at a time (2026-12-01T09:30:00Z):".into(),
        ],
    }
}

/// Parses when a rescheduled message is due: `+10m`, `10m`, `90s`, `2h`, `1d` from now, or an RFC 3339 time.
pub fn parse_due(text: &str, now_ms: u64) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("“{t}” is not a delay like +10m, 90s, 2h or 1d, nor a time like 2026-12-01T09:30:00Z");
    if t.is_empty() {
        return Err("type when: +10m, 90s, 2h, 1d, or a time (2026-12-01T09:30:00Z)".into());
    }
    let ahead = t.strip_prefix('+').unwrap_or(t);
    let split = ahead.find(|c: char| !c.is_ascii_digit()).unwrap_or(ahead.len());
    let (n, unit) = ahead.split_at(split);
    let unit_ms: Option<u64> = match unit {
        "ms" => Some(1),
        "s" | "" => Some(1_000),
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        _ => None,
    };
    if let (false, Some(unit_ms)) = (n.is_empty(), unit_ms) {
        let n: u64 = n.parse().map_err(|_| bad())?;
        return Ok(now_ms.saturating_add(n.saturating_mul(unit_ms)));
    }
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) if d.timestamp_millis() >= 0 => Ok(d.timestamp_millis() as u64),
        _ => Err(bad()),
    }
}

/// The command that carries out a confirmed action (`input`: the reschedule's due time as typed).
pub fn command(op: Op, targets: &[Target], input: &str, request_id: RequestId, now_ms: u64) -> Result<Command, String> {
    let due_ms = match op {
        Op::Reschedule => Some(parse_due(input, now_ms)?),
        _ => None,
    };
    Ok(Command::ScheduledAct {
        request_id,
        op: op.word().to_string(),
        calls: targets
            .iter()
            .map(|t| {
                (
                    t.vhost.clone(),
                    t.exchange.clone(),
                    ScheduledAction {
                        ids: Some(t.ids.clone()),
                        due_ms,
                        ..ScheduledAction::default()
                    },
                )
            })
            .collect(),
    })
}

/// "in 4m12s" (or "due" when it is past).
pub fn due_in(due_ms: u64, now_ms: u64) -> String {
    if due_ms <= now_ms {
        return "due".into();
    }
    format!("in {}", crate::format::duration_ms(due_ms - now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_parse_from_delays_and_times() {
        let now = 1_000_000;
        assert_eq!(parse_due("+10m", now), Ok(now + 600_000));
        assert_eq!(parse_due("90s", now), Ok(now + 90_000));
        assert_eq!(parse_due("2h", now), Ok(now + 7_200_000));
        assert_eq!(parse_due("30", now), Ok(now + 30_000));
        assert_eq!(parse_due("2026-12-01T09:30:00Z", now), Ok(1_796_117_400_000));
        assert!(parse_due("", now).is_err());
        assert!(parse_due("soon", now).is_err());
        assert!(parse_due("+5y", now).is_err());
    }

    #[test]
    fn keys_group_into_one_call_per_exchange() {
        let keys = vec![
            ("/".to_string(), "later".to_string(), 3),
            ("/".to_string(), "other".to_string(), 1),
            ("/".to_string(), "later".to_string(), 5),
        ];
        let t = targets(&keys);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].exchange.as_str(), t[0].ids.clone()), ("later", vec![3, 5]));
    }
}
