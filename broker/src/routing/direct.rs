//! The direct exchange: a message goes to the bindings whose key equals its routing key exactly.
//! Bindings are indexed by key, so routing is one hash lookup.

use std::collections::HashMap;

use amq_protocol::types::FieldTable;

use super::{Binding, Destination, Router};

#[derive(Default)]
pub struct DirectBindings {
    by_key: HashMap<String, Vec<Binding>>,
}

impl Router for DirectBindings {
    fn bind(&mut self, binding: Binding) -> bool {
        let list = self.by_key.entry(binding.routing_key.clone()).or_default();
        if list.contains(&binding) {
            return false;
        }
        list.push(binding);
        true
    }

    fn unbind(&mut self, binding: &Binding) -> bool {
        let Some(list) = self.by_key.get_mut(&binding.routing_key) else {
            return false;
        };
        let before = list.len();
        list.retain(|b| b != binding);
        let removed = list.len() != before;
        if list.is_empty() {
            self.by_key.remove(&binding.routing_key);
        }
        removed
    }

    fn route<'a>(&'a self, routing_key: &str, _headers: Option<&FieldTable>, out: &mut Vec<&'a Destination>) {
        if let Some(list) = self.by_key.get(routing_key) {
            out.extend(list.iter().map(|b| &b.destination));
        }
    }

    fn bindings(&self) -> Vec<&Binding> {
        self.by_key.values().flatten().collect()
    }

    fn remove_destination(&mut self, destination: &Destination) {
        self.by_key.retain(|_, list| {
            list.retain(|b| &b.destination != destination);
            !list.is_empty()
        });
    }

    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(q: &str, k: &str) -> Binding {
        Binding {
            destination: Destination::Queue(q.into()),
            routing_key: k.into(),
            arguments: FieldTable::default(),
        }
    }

    #[test]
    fn routes_by_exact_key() {
        let mut x = DirectBindings::default();
        assert!(x.bind(b("q1", "a")));
        assert!(!x.bind(b("q1", "a")), "identical binding is not added twice");
        x.bind(b("q2", "a"));
        x.bind(b("q3", "b"));
        let count = |x: &DirectBindings, k: &str| {
            let mut out = Vec::new();
            x.route(k, None, &mut out);
            out.len()
        };
        assert_eq!(count(&x, "a"), 2);
        assert_eq!(count(&x, "c"), 0);
        assert!(x.unbind(&b("q1", "a")));
        assert!(!x.unbind(&b("q1", "a")));
        x.remove_destination(&Destination::Queue("q2".into()));
        assert_eq!(count(&x, "a"), 0);
    }
}
