//! The queue table's state: which queue is selected (by key, so it survives re-sorting and new snapshots), the sort
//! column and direction, the `/` filter and the marked rows; and the pure functions that turn the latest snapshot
//! into the rows the view shows.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use warren_shared::QueueInfo;

use super::history::{History, Trend};
use crate::event::QueueKey;

/// The queue table's columns, in display order (the digit keys 1..9, 0 sort by the first ten in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    Type,
    Ready,
    Unacked,
    Consumers,
    In,
    Out,
    Behind,
    Drain,
    Trend,
    P99,
    Errors,
}

impl Column {
    pub const ALL: [Column; 12] = [
        Column::Name,
        Column::Type,
        Column::Ready,
        Column::Unacked,
        Column::Consumers,
        Column::In,
        Column::Out,
        Column::Behind,
        Column::Drain,
        Column::Trend,
        Column::P99,
        Column::Errors,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Type => "TYPE",
            Column::Ready => "READY",
            Column::Unacked => "UNACKED",
            Column::Consumers => "CONS",
            Column::In => "IN/s",
            Column::Out => "OUT/s",
            Column::Behind => "BEHIND",
            Column::Drain => "DRAIN",
            Column::Trend => "TREND",
            Column::P99 => "P99",
            Column::Errors => "ERR/s",
        }
    }

    pub fn next(self) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Column::ALL[(i + 1) % Column::ALL.len()]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueTable {
    pub selected: Option<QueueKey>,
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    pub marked: BTreeSet<QueueKey>,
}

impl Default for QueueTable {
    fn default() -> Self {
        QueueTable {
            selected: None,
            sort: Column::Name,
            descending: false,
            filter: String::new(),
            marked: BTreeSet::new(),
        }
    }
}

pub fn key(q: &QueueInfo) -> QueueKey {
    QueueKey::new(&q.vhost, &q.name)
}

/// The queue's type as the API says it (`classic`, `stream`; `classic` when the broker sent none).
pub fn kind(q: &QueueInfo) -> &str {
    if q.kind.is_empty() {
        "classic"
    } else {
        &q.kind
    }
}

/// What the queue is used as, beside its type (which it never contradicts): `dlq` when other queues dead-letter
/// into it, `prio` with `x-max-priority`.
pub fn role(q: &QueueInfo) -> Option<&'static str> {
    if !q.dead_letter_sources.is_empty() {
        Some("dlq")
    } else if q.arguments.contains_key("x-max-priority") {
        Some("prio")
    } else {
        None
    }
}

/// Time to drain, short: `drained`, `4m12s`, `never` (at this rate).
pub fn drain_text(q: &QueueInfo) -> String {
    match q.drain_ms {
        Some(0) => "drained".into(),
        Some(ms) => crate::format::duration_ms(ms),
        None => "never".into(),
    }
}

/// Rejects, nacks, expiries and drops per second (over ten seconds, so one bad message does not flicker).
pub fn error_rate(q: &QueueInfo) -> f64 {
    let r = &q.rates;
    r.reject.last_10s + r.nack.last_10s + r.expired.last_10s + r.dropped.last_10s
}

fn compare(a: &QueueInfo, b: &QueueInfo, column: Column, history: &History) -> Ordering {
    let f = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    match column {
        Column::Name => a.name.cmp(&b.name),
        Column::Type => (kind(a), role(a)).cmp(&(kind(b), role(b))),
        Column::Ready => a.messages_ready.cmp(&b.messages_ready),
        Column::Unacked => a.messages_unacked.cmp(&b.messages_unacked),
        Column::Consumers => a.consumers.cmp(&b.consumers),
        Column::In => f(a.rates.publish.last_1s, b.rates.publish.last_1s),
        Column::Out => f(a.rates.deliver.last_1s, b.rates.deliver.last_1s),
        Column::Behind => a.time_behind_ms.cmp(&b.time_behind_ms),
        // Sooner first; "never" last.
        Column::Drain => a.drain_ms.unwrap_or(u64::MAX).cmp(&b.drain_ms.unwrap_or(u64::MAX)),
        Column::Trend => trend_rank(history.trend(&key(a))).cmp(&trend_rank(history.trend(&key(b)))),
        Column::P99 => a.latency_deliver.p99.cmp(&b.latency_deliver.p99),
        Column::Errors => f(error_rate(a), error_rate(b)),
    }
}

fn trend_rank(t: Trend) -> u8 {
    match t {
        Trend::Draining => 0,
        Trend::Stable => 1,
        Trend::Growing => 2,
    }
}

/// The rows to show: filtered by name (case-insensitive substring, or vhost/name), sorted, ties broken by name.
pub fn rows<'a>(queues: &'a [QueueInfo], table: &QueueTable, history: &History) -> Vec<&'a QueueInfo> {
    let needle = table.filter.to_lowercase();
    let mut rows: Vec<&QueueInfo> = queues
        .iter()
        .filter(|q| {
            needle.is_empty()
                || q.name.to_lowercase().contains(&needle)
                || format!("{}/{}", q.vhost, q.name).to_lowercase().contains(&needle)
        })
        .collect();
    rows.sort_by(|a, b| {
        let o = compare(a, b, table.sort, history);
        let o = if table.descending { o.reverse() } else { o };
        o.then_with(|| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)))
    });
    rows
}

/// The index of the selected queue among `rows` (the first row when the selection is gone).
pub fn selected_index(rows: &[&QueueInfo], table: &QueueTable) -> Option<usize> {
    if rows.is_empty() {
        return None;
    }
    let i = table
        .selected
        .as_ref()
        .and_then(|k| rows.iter().position(|q| q.vhost == k.vhost && q.name == k.name));
    Some(i.unwrap_or(0))
}
