//! Message filters shared by peek, move, priority change and scheduled messages: a [`MessageFilter`] from the API
//! turned into a predicate over queue entries or messages. Header and property values are compared as text, the body as bytes.

use warren_shared::MessageFilter;

use super::json;
use crate::message::Message;
use crate::queue::Entry;

/// A predicate that accepts the entries `filter` selects (all of them for an empty filter).
pub fn matcher(filter: &MessageFilter) -> impl Fn(&Entry) -> bool + '_ {
    let m = message_matcher(filter);
    move |e: &Entry| m(&e.message)
}

/// A predicate that accepts the messages `filter` selects (all of them for an empty filter).
pub fn message_matcher(filter: &MessageFilter) -> impl Fn(&Message) -> bool + '_ {
    move |m: &Message| {
        if let Some(needle) = &filter.body_contains {
            if !needle.is_empty() && !m.body.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return false;
            }
        }
        if filter.header.is_none() && filter.property.is_none() {
            return true;
        }
        let p = json::properties(&m.properties());
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(h) = &filter.header {
            match p.get("headers").and_then(|hs| hs.get(h)) {
                Some(v) if filter.header_value.as_ref().is_none_or(|want| &text(v) == want) => {}
                _ => return false,
            }
        }
        if let Some(name) = &filter.property {
            match p.get(name) {
                Some(v) if filter.property_value.as_ref().is_none_or(|want| &text(v) == want) => {}
                _ => return false,
            }
        }
        true
    }
}
