//! The listings read on demand (exchanges, bindings, connections, consumers): the items the last fetch returned, the
//! `/` filter, and the cursor.
//!
//! Invariant: `selected` indexes the *filtered* rows ([`Listing::rows`]), which are what the view draws and what an
//! action (closing a connection) acts on; it stays within them whenever the items, the filter or the cursor change.

use warren_shared::{BindingInfo, ConnectionInfo, ConsumerInfo, ExchangeInfo};

#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub selected: usize,
    pub filter: String,
    pub fetched_ms: Option<u64>,
    pub pending: bool,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            items: Vec::new(),
            selected: 0,
            filter: String::new(),
            fetched_ms: None,
            pending: false,
        }
    }
}

/// A listing's row, as the `/` filter sees it.
pub trait Row {
    /// Whether the lower-cased `needle` occurs in one of the row's shown fields.
    fn matches(&self, needle: &str) -> bool;
}

/// Whether the lower-cased `needle` occurs in any of `fields`, ignoring case; an empty needle matches everything.
pub fn matches(needle: &str, fields: &[&str]) -> bool {
    needle.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(needle))
}

impl Row for ExchangeInfo {
    fn matches(&self, needle: &str) -> bool {
        matches(needle, &[&self.name, &self.kind, &self.vhost])
    }
}

impl Row for BindingInfo {
    fn matches(&self, needle: &str) -> bool {
        matches(needle, &[&self.source, &self.destination, &self.routing_key])
    }
}

impl Row for ConnectionInfo {
    fn matches(&self, needle: &str) -> bool {
        let (name, client) = (
            self.user_provided_name.as_deref().unwrap_or(""),
            self.client.as_deref().unwrap_or(""),
        );
        matches(
            needle,
            &[
                &self.peer,
                &self.user,
                &self.vhost,
                &self.id.to_string(),
                name,
                client,
                &self.protocol,
            ],
        )
    }
}

impl Row for warren_shared::cluster::ClusterNode {
    fn matches(&self, needle: &str) -> bool {
        matches(needle, &[&self.name, &self.amqp, self.admin.as_deref().unwrap_or("")])
    }
}

impl Row for ConsumerInfo {
    fn matches(&self, needle: &str) -> bool {
        matches(needle, &[&self.queue, &self.consumer_tag, &self.vhost])
    }
}

impl<T: Row> Listing<T> {
    /// The rows shown: the items that match the filter, in the broker's order.
    pub fn rows(&self) -> Vec<&T> {
        let needle = self.filter.to_lowercase();
        self.items.iter().filter(|x| x.matches(&needle)).collect()
    }

    /// The row under the cursor.
    pub fn selected_row(&self) -> Option<&T> {
        self.rows().get(self.selected).copied()
    }

    /// A fetch answered: the new items, the cursor kept on the same index as far as the filtered rows reach.
    pub fn load(&mut self, items: Vec<T>, now_ms: u64) {
        self.items = items;
        self.clamp();
        self.fetched_ms = Some(now_ms);
        self.pending = false;
    }

    /// A new filter: the cursor goes to the first matching row.
    pub fn set_filter(&mut self, text: String) {
        self.filter = text;
        self.selected = 0;
    }

    fn clamp(&mut self) {
        self.selected = self.selected.min(self.rows().len().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(name: &str) -> ExchangeInfo {
        ExchangeInfo {
            vhost: "/".into(),
            name: name.into(),
            kind: "direct".into(),
            ..ExchangeInfo::default()
        }
    }

    #[test]
    fn load_clamps_the_cursor_to_the_filtered_rows() {
        let mut l = Listing::default();
        l.load(
            vec![exchange("a.1"), exchange("b.1"), exchange("a.2"), exchange("b.2")],
            1,
        );
        l.set_filter("A.".into());
        assert_eq!(l.rows().len(), 2, "the filter ignores case");
        l.selected = 1;
        l.load(
            vec![exchange("a.1"), exchange("b.1"), exchange("b.2"), exchange("b.3")],
            2,
        );
        assert_eq!(l.selected, 0, "one row matches now: the cursor is on it, not past it");
        assert_eq!(l.selected_row().map(|x| x.name.as_str()), Some("a.1"));
        l.load(Vec::new(), 3);
        assert_eq!((l.selected, l.selected_row()), (0, None));
    }
}
