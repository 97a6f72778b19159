//! The audit trail: who did what, from where, to what, touching how many messages, with what result. Operator
//! actions of the admin API, every change to users, vhosts and permissions, and every refused login (AMQP or HTTP)
//! are recorded here.
//!
//! Each record goes to the log under the `warren::audit` target and into a bounded in-broker journal (the last
//! [`CAPACITY`] records), which the admin API serves newest first at `GET /api/audit`, in pages. Invariants: the
//! journal never holds more than `CAPACITY` records (the oldest go first); ids only increase, so a page is the
//! records below an id; recording takes one short lock and never blocks on I/O.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub use warren_shared::AuditEntry;

use crate::auth::AUDIT;

/// Records kept in memory.
pub const CAPACITY: usize = 10_000;

/// What happened, as its recorder knows it.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub user: &'a str,
    pub peer: Option<std::net::IpAddr>,
    pub action: &'a str,
    pub vhost: Option<&'a str>,
    pub object: &'a str,
    pub messages: Option<u64>,
    pub result: &'a str,
}

#[derive(Default)]
pub struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    entries: VecDeque<AuditEntry>,
}

impl Journal {
    pub fn record(&self, e: Event<'_>) {
        let ok = e.result == "ok" || e.result.starts_with("ok,");
        let peer = e.peer.map(|p| p.to_canonical().to_string());
        if ok {
            tracing::info!(target: AUDIT, user = e.user, peer = ?peer, action = e.action, vhost = ?e.vhost, object = e.object, messages = ?e.messages, result = e.result, "audit");
        } else {
            tracing::warn!(target: AUDIT, user = e.user, peer = ?peer, action = e.action, vhost = ?e.vhost, object = e.object, messages = ?e.messages, result = e.result, "audit");
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.next_id += 1;
        let entry = AuditEntry {
            id: inner.next_id,
            at_ms,
            user: e.user.chars().take(255).collect(),
            peer,
            action: e.action.to_string(),
            vhost: e.vhost.map(str::to_string),
            object: e.object.chars().take(1024).collect(),
            messages: e.messages,
            result: e.result.chars().take(1024).collect(),
        };
        if inner.entries.len() >= CAPACITY {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
    }

    /// Up to `limit` records with ids below `before` (all, when `None`), newest first.
    pub fn page(&self, before: Option<u64>, limit: usize) -> Vec<AuditEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .iter()
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b))
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_bounded_and_pages_newest_first() {
        let j = Journal::default();
        for i in 0..(CAPACITY + 5) {
            j.record(Event {
                user: "u",
                action: "purge",
                object: &i.to_string(),
                result: "ok",
                ..Event::default()
            });
        }
        let first = j.page(None, 3);
        assert_eq!(
            first.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![10_005, 10_004, 10_003]
        );
        let next = j.page(Some(first[2].id), 2);
        assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), vec![10_002, 10_001]);
        assert_eq!(j.page(None, usize::MAX).len(), CAPACITY, "the oldest went");
        let oldest: Vec<u64> = j.page(Some(7), 10).iter().map(|e| e.id).collect();
        assert_eq!(oldest, vec![6], "ids 1 to 5 are gone");
    }
}
