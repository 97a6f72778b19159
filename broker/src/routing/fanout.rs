//! The fanout exchange: every bound destination gets every message; keys are ignored.

use amq_protocol::types::FieldTable;

use super::{Binding, Destination, Router};

#[derive(Default)]
pub struct FanoutBindings {
    bindings: Vec<Binding>,
}

impl Router for FanoutBindings {
    fn bind(&mut self, binding: Binding) -> bool {
        if self.bindings.contains(&binding) {
            return false;
        }
        self.bindings.push(binding);
        true
    }

    fn unbind(&mut self, binding: &Binding) -> bool {
        let before = self.bindings.len();
        self.bindings.retain(|b| b != binding);
        before != self.bindings.len()
    }

    fn route<'a>(&'a self, _routing_key: &str, _headers: Option<&FieldTable>, out: &mut Vec<&'a Destination>) {
        out.extend(self.bindings.iter().map(|b| &b.destination));
    }

    fn bindings(&self) -> Vec<&Binding> {
        self.bindings.iter().collect()
    }

    fn remove_destination(&mut self, destination: &Destination) {
        self.bindings.retain(|b| &b.destination != destination);
    }

    fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}
