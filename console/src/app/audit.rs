//! `:audit` — the broker's audit trail (`GET /api/audit`) as the console holds it: the pages read so far, newest
//! first, with the `/` filter and cursor of a [`Listing`], and whether older pages remain on the broker.
//!
//! The newest page is read when the view opens and again at each refresh; `]` reads the page older than the last
//! entry held and appends it. Invariants: the entries are in the broker's order (ids strictly decreasing, none
//! twice); a refresh is put in front of what is held only when it reaches back to it (otherwise more entries arrived
//! than a page holds, or the broker restarted and its ids began again, and the page replaces what is held, so no gap
//! is hidden); an answer to an older page is appended only if it starts where the entries end; at most one read is in
//! flight; after a refusal (403) nothing is read until the view is opened again. The cursor stays on the entry it was
//! on when a refresh adds rows above it.

use warren_shared::AuditEntry;

use super::listings::{matches, Listing, Row};
use crate::event::Command;

/// Entries read at a time.
pub const PAGE: usize = 200;

/// The console's message when the broker refuses the trail (its own reason names the user, which the operator knows).
pub const DENIED: &str = "the audit trail is for administrator and monitoring users";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditTrail {
    pub list: Listing<AuditEntry>,
    /// The last page read was full, so the broker may keep older entries: `]` reads them.
    pub more: bool,
    /// The broker refused the trail to this user: the view says so instead of asking again every refresh.
    pub denied: bool,
    /// The whole record under the cursor is shown below the table (`enter`).
    pub show_entry: bool,
}

/// Whether an entry records a success: the broker writes `ok` (or `ok, …`), and anything else says why not.
pub fn succeeded(e: &AuditEntry) -> bool {
    e.result == "ok" || e.result.starts_with("ok,")
}

impl Row for AuditEntry {
    fn matches(&self, needle: &str) -> bool {
        let messages = self.messages.map(|n| n.to_string()).unwrap_or_default();
        matches(
            needle,
            &[
                &self.user,
                self.peer.as_deref().unwrap_or(""),
                &self.action,
                self.vhost.as_deref().unwrap_or(""),
                &self.object,
                &messages,
                &self.result,
            ],
        )
    }
}

impl AuditTrail {
    /// The view is opened: a refusal is forgotten (the operator may have been given the tag since).
    pub fn open(&mut self) {
        self.denied = false;
    }

    /// A read of the newest page, unless a read is in flight or the trail was refused.
    pub fn read_newest(&mut self) -> Option<Command> {
        if self.list.pending || self.denied {
            return None;
        }
        self.list.pending = true;
        Some(Command::ReadAudit {
            before: None,
            page_size: PAGE,
        })
    }

    /// A read of the page older than the last entry held; `None` when there is none to read or one is in flight.
    pub fn read_older(&mut self) -> Option<Command> {
        if self.list.pending || self.denied || !self.more {
            return None;
        }
        let last = self.list.items.last()?.id;
        self.list.pending = true;
        Some(Command::ReadAudit {
            before: Some(last),
            page_size: PAGE,
        })
    }

    /// A page arrived: the newest (`before: None`) or the one older than entry `before`.
    pub fn load(&mut self, before: Option<u64>, entries: Vec<AuditEntry>, now_ms: u64) {
        self.list.pending = false;
        let kept = self.list.selected_row().map(|e| e.id);
        let full = entries.len() >= PAGE;
        match before {
            None => {
                self.list.fetched_ms = Some(now_ms);
                let held_newest = self.list.items.first().map(|e| e.id);
                let page_oldest = entries.last().map(|e| e.id);
                let page_newest = entries.first().map(|e| e.id);
                let joins = match (held_newest, page_newest, page_oldest) {
                    (Some(held), Some(newest), Some(oldest)) => newest >= held && (!full || oldest <= held),
                    _ => false,
                };
                if joins {
                    let oldest = page_oldest.unwrap_or(0);
                    let older: Vec<AuditEntry> = self.list.items.drain(..).filter(|e| e.id < oldest).collect();
                    // The tail still comes from the pages read before: whether more remains is as they said.
                    if older.is_empty() {
                        self.more = full;
                    }
                    self.list.items = entries;
                    self.list.items.extend(older);
                } else {
                    self.list.items = entries;
                    self.more = full;
                }
            }
            Some(id) => {
                // An answer to a page asked before a refresh replaced the entries would not join them.
                if self.list.items.last().map(|e| e.id) != Some(id) {
                    return;
                }
                self.list.items.extend(entries.into_iter().filter(|e| e.id < id));
                self.more = full;
            }
        }
        let rows = self.list.rows();
        let at = kept.and_then(|id| rows.iter().position(|e| e.id == id));
        let last = rows.len().saturating_sub(1);
        self.list.selected = at.unwrap_or(self.list.selected).min(last);
    }

    /// A read failed. The time is noted so the next refresh waits its turn instead of asking again at once.
    pub fn failed(&mut self, denied: bool, now_ms: u64) {
        self.list.pending = false;
        self.list.fetched_ms = Some(now_ms);
        if denied {
            self.denied = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> AuditEntry {
        AuditEntry {
            id,
            at_ms: id * 1000,
            user: "guest".into(),
            action: "purge".into(),
            object: format!("q{id}"),
            result: "ok".into(),
            ..AuditEntry::default()
        }
    }

    /// Entries `from` down to `to` (newest first, as the broker sends them).
    fn page(from: u64, to: u64) -> Vec<AuditEntry> {
        (to..=from).rev().map(entry).collect()
    }

    fn ids(t: &AuditTrail) -> (u64, u64, usize) {
        let first = t.list.items.first().map_or(0, |e| e.id);
        let last = t.list.items.last().map_or(0, |e| e.id);
        (first, last, t.list.items.len())
    }

    #[test]
    fn older_pages_append_and_a_refresh_joins_in_front() {
        let mut t = AuditTrail::default();
        assert_eq!(
            t.read_newest(),
            Some(Command::ReadAudit {
                before: None,
                page_size: PAGE
            })
        );
        assert_eq!(t.read_newest(), None, "one read at a time");
        t.load(None, page(1000, 801), 1);
        assert!(t.more, "a full page: older entries may remain");
        assert_eq!(
            t.read_older(),
            Some(Command::ReadAudit {
                before: Some(801),
                page_size: PAGE
            })
        );
        t.load(Some(801), page(800, 701), 2);
        assert_eq!(ids(&t), (1000, 701, 300));
        assert!(!t.more, "a short page is the oldest the broker keeps");
        assert_eq!(t.read_older(), None);

        t.list.selected = 5;
        let cursor = t.list.selected_row().map(|e| e.id);
        t.read_newest();
        t.load(None, page(1003, 804), 3);
        assert_eq!(
            ids(&t),
            (1003, 701, 303),
            "the new entries go in front, the older pages stay"
        );
        assert!(!t.more, "the tail is still the oldest page");
        assert_eq!(
            t.list.selected_row().map(|e| e.id),
            cursor,
            "the cursor stays on its entry"
        );
    }

    #[test]
    fn a_refresh_that_does_not_reach_back_replaces_and_a_stray_page_is_dropped() {
        let mut t = AuditTrail::default();
        t.read_newest();
        t.load(None, page(1000, 801), 1);
        t.read_older();
        t.read_newest();
        t.list.pending = false;
        t.read_newest();
        t.load(None, page(1500, 1301), 2);
        assert_eq!(
            ids(&t),
            (1500, 1301, 200),
            "500 new entries: a gap, so the page replaces"
        );
        t.load(Some(801), page(800, 601), 3);
        assert_eq!(ids(&t), (1500, 1301, 200), "an answer for the old tail does not join");
        t.load(None, page(12, 1), 4);
        assert_eq!(ids(&t), (12, 1, 12), "the broker restarted: its ids began again");
        assert!(!t.more);
    }

    #[test]
    fn a_refusal_stops_the_reads_until_the_view_opens_again() {
        let mut t = AuditTrail::default();
        t.read_newest();
        t.failed(true, 5);
        assert_eq!(t.read_newest(), None);
        t.open();
        assert!(t.read_newest().is_some());
    }
}
