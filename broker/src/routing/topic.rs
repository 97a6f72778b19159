//! The topic exchange: binding keys are dot-separated words where `*` matches exactly one word and `#` matches
//! zero or more. Patterns are split once, at bind time.

use amq_protocol::types::FieldTable;

use super::{Binding, Destination, Router};

#[derive(Default)]
pub struct TopicBindings {
    bindings: Vec<(Vec<String>, Binding)>,
}

fn matches_words(pattern: &[String], words: &[&str]) -> bool {
    match pattern.split_first() {
        None => words.is_empty(),
        Some((p, rest)) if p == "#" => {
            // '#' swallows zero or more words.
            (0..=words.len()).any(|skip| matches_words(rest, &words[skip..]))
        }
        Some((p, rest)) => match words.split_first() {
            Some((w, wrest)) => (p == "*" || p == w) && matches_words(rest, wrest),
            None => false,
        },
    }
}

fn split_pattern(key: &str) -> Vec<String> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').map(str::to_string).collect()
    }
}

impl Router for TopicBindings {
    fn bind(&mut self, binding: Binding) -> bool {
        if self.bindings.iter().any(|(_, b)| b == &binding) {
            return false;
        }
        self.bindings.push((split_pattern(&binding.routing_key), binding));
        true
    }

    fn unbind(&mut self, binding: &Binding) -> bool {
        let before = self.bindings.len();
        self.bindings.retain(|(_, b)| b != binding);
        before != self.bindings.len()
    }

    fn route<'a>(&'a self, routing_key: &str, _headers: Option<&FieldTable>, out: &mut Vec<&'a Destination>) {
        let words: Vec<&str> = if routing_key.is_empty() {
            Vec::new()
        } else {
            routing_key.split('.').collect()
        };
        for (pattern, b) in &self.bindings {
            if matches_words(pattern, &words) {
                out.push(&b.destination);
            }
        }
    }

    fn bindings(&self) -> Vec<&Binding> {
        self.bindings.iter().map(|(_, b)| b).collect()
    }

    fn remove_destination(&mut self, destination: &Destination) {
        self.bindings.retain(|(_, b)| &b.destination != destination);
    }

    fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, k: &str) -> bool {
        let words: Vec<&str> = if k.is_empty() {
            Vec::new()
        } else {
            k.split('.').collect()
        };
        matches_words(&split_pattern(p), &words)
    }

    #[test]
    fn star_and_hash() {
        assert!(m("a.*.c", "a.b.c"));
        assert!(!m("a.*.c", "a.c"));
        assert!(!m("a.*.c", "a.b.b.c"));
        assert!(m("a.#", "a"));
        assert!(m("a.#", "a.b.c"));
        assert!(m("#", ""));
        assert!(m("#", "x.y"));
        assert!(m("#.c", "a.b.c"));
        assert!(m("a.#.c", "a.c"));
        assert!(m("*.#", "a"));
        assert!(!m("*", ""));
        assert!(!m("*.b", "a.c"));
        assert!(m("a.b", "a.b"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }
}
