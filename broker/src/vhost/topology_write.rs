//! The topology write lock, and changes made under it that are saved to `definitions.log` or not made at all.
//!
//! Every change to the topology goes through a `TopologyWrite` method (`add_queue`, `remove_exchange`, ...) that
//! records two things: the `DefOp`s that store its durable part, and how to undo it. `save` appends the ops (one
//! write, one fdatasync); if that fails, the change is undone in reverse order before the lock is released, so no
//! client ever sees a change that a restart would not bring back, and memory and disk agree.
//!
//! Invariants:
//! - ops are appended while the write lock is held, so they reach the log in the order the changes were made;
//! - only what both ends of makes durable is saved: durable exchanges (not `amq.*`), durable, non-exclusive,
//!   non-auto-delete queues, and bindings between those (a binding from `amq.*` counts);
//! - side effects that cannot be undone (deleting files, telling consumers) happen only after `save` succeeded;
//! - dropping the guard bumps the generation while the lock is still held, so a route computed under an older
//!   generation is never cached as current. A change that was not saved explicitly is saved (or undone) then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLockWriteGuard};

use crate::queue::Queue;
use crate::routing::{Binding, Destination, Exchange};
use crate::store::definitions::{BindingDef, DefOp, ExchangeDef, QueueDef};

use super::{Durability, Topology};

pub(super) struct TopologyWrite<'a> {
    pub(super) guard: RwLockWriteGuard<'a, Topology>,
    pub(super) generation: &'a AtomicU64,
    pub(super) durability: Option<&'a Durability>,
    pub(super) vhost: &'a str,
    change: Change,
}

/// What the change under way did: the records that save it, and how to take it back.
#[derive(Default)]
struct Change {
    ops: Vec<DefOp>,
    undo: Vec<Undo>,
    /// Exchanges removed by a saved change, for the caller's clean-up (their files).
    removed_exchanges: Vec<Exchange>,
}

enum Undo {
    Added(Destination),
    Bound(String, Binding),
    RemovedQueue(Arc<Queue>),
    /// Boxed: an `Exchange` is large and removals are rare.
    RemovedExchange(Box<Exchange>),
    Unbound(String, Binding),
}

/// A queue whose definition is saved: durable, and neither exclusive nor auto-delete.
pub(super) fn persists(q: &Queue) -> bool {
    q.spec.durable && !q.spec.auto_delete && q.spec.exclusive_owner.is_none()
}

impl Topology {
    fn durable_exchange(&self, name: &str) -> bool {
        name.starts_with("amq.") || self.exchanges.get(name).is_some_and(|x| x.durable)
    }

    fn durable_destination(&self, d: &Destination) -> bool {
        match d {
            Destination::Queue(n) => self.queues.get(n).is_some_and(|q| persists(q)),
            Destination::Exchange(n) => self.durable_exchange(n),
        }
    }
}

impl<'a> TopologyWrite<'a> {
    pub(super) fn new(
        guard: RwLockWriteGuard<'a, Topology>,
        generation: &'a AtomicU64,
        durability: Option<&'a Durability>,
        vhost: &'a str,
    ) -> Self {
        TopologyWrite {
            guard,
            generation,
            durability,
            vhost,
            change: Change::default(),
        }
    }

    fn op(&mut self, op: impl FnOnce(String) -> DefOp) {
        if self.durability.is_some() {
            self.change.ops.push(op(self.vhost.to_string()));
        }
    }

    pub(super) fn add_queue(&mut self, q: Arc<Queue>) {
        let name = q.name().to_string();
        if persists(&q) {
            let queue = QueueDef::of(&q);
            self.op(|vhost| DefOp::DeclareQueue { vhost, queue });
        }
        self.change.undo.push(Undo::Added(Destination::Queue(name.clone())));
        self.guard.queues.insert(name, q);
    }

    pub(super) fn add_exchange(&mut self, x: Exchange) {
        if x.durable {
            let exchange = ExchangeDef::of(&x);
            self.op(|vhost| DefOp::DeclareExchange { vhost, exchange });
        }
        self.change
            .undo
            .push(Undo::Added(Destination::Exchange(x.name.clone())));
        self.guard.exchanges.insert(x.name.clone(), x);
    }

    /// Binds (nothing happens when an identical binding exists).
    pub(super) fn add_binding(&mut self, source: &str, b: Binding) {
        let durable = self.guard.durable_exchange(source) && self.guard.durable_destination(&b.destination);
        let Some(x) = self.guard.exchanges.get_mut(source) else {
            return;
        };
        if x.router.bind(b.clone()) {
            if durable {
                let binding = BindingDef::of(source, &b);
                self.op(|vhost| DefOp::Bind { vhost, binding });
            }
            self.change.undo.push(Undo::Bound(source.to_string(), b));
        }
    }

    /// Unbinds; false when there was no such binding.
    pub(super) fn remove_binding(&mut self, source: &str, b: &Binding) -> bool {
        let durable = self.guard.durable_exchange(source) && self.guard.durable_destination(&b.destination);
        let Some(x) = self.guard.exchanges.get_mut(source) else {
            return false;
        };
        if !x.router.unbind(b) {
            return false;
        }
        if durable {
            let binding = BindingDef::of(source, b);
            self.op(|vhost| DefOp::Unbind { vhost, binding });
        }
        self.change.undo.push(Undo::Unbound(source.to_string(), b.clone()));
        true
    }

    /// Removes a queue and every binding to it (and auto-delete exchanges left without bindings).
    pub(super) fn remove_queue(&mut self, name: &str) -> Option<Arc<Queue>> {
        let q = self.guard.queues.remove(name)?;
        if persists(&q) {
            let name = name.to_string();
            self.op(|vhost| DefOp::DeleteQueue { vhost, name });
        }
        self.change.undo.push(Undo::RemovedQueue(q.clone()));
        self.remove_bindings_to(Destination::Queue(name.to_string()));
        Some(q)
    }

    /// Removes an exchange, its bindings, and every binding to it (and auto-delete exchanges left without
    /// bindings); false when there is none by that name.
    pub(super) fn remove_exchange(&mut self, name: &str) -> bool {
        let Some(x) = self.guard.exchanges.remove(name) else {
            return false;
        };
        self.removed_exchange(x);
        self.remove_bindings_to(Destination::Exchange(name.to_string()));
        true
    }

    fn removed_exchange(&mut self, x: Exchange) {
        if x.durable {
            let name = x.name.clone();
            self.op(|vhost| DefOp::DeleteExchange { vhost, name });
        }
        self.change.undo.push(Undo::RemovedExchange(Box::new(x)));
    }

    /// Drops every binding to `dest`, and auto-delete exchanges left without bindings, with the bindings to
    /// those in turn (a work list, not recursion: chains of auto-delete exchanges are the user's to make).
    fn remove_bindings_to(&mut self, dest: Destination) {
        let mut work = vec![dest];
        while let Some(dest) = work.pop() {
            let mut emptied = Vec::new();
            for x in self.guard.exchanges.values_mut() {
                let gone: Vec<Binding> = x
                    .router
                    .bindings()
                    .into_iter()
                    .filter(|b| b.destination == dest)
                    .cloned()
                    .collect();
                if gone.is_empty() {
                    continue;
                }
                x.router.remove_destination(&dest);
                let undo = gone.into_iter().map(|b| Undo::Unbound(x.name.clone(), b));
                self.change.undo.extend(undo);
                if x.auto_delete && x.router.is_empty() {
                    emptied.push(x.name.clone());
                }
            }
            for name in emptied {
                if let Some(x) = self.guard.exchanges.remove(&name) {
                    self.removed_exchange(x);
                    work.push(Destination::Exchange(name));
                }
            }
        }
    }

    /// Stores the change so far; if that fails, undoes it and returns the error. Either way the change is over.
    pub(super) fn save(&mut self) -> std::io::Result<()> {
        let ops = std::mem::take(&mut self.change.ops);
        let stored = match self.durability {
            Some(d) => d.definitions.append(&ops),
            None => Ok(()),
        };
        match stored {
            Ok(()) => {
                for u in std::mem::take(&mut self.change.undo) {
                    if let Undo::RemovedExchange(x) = u {
                        self.change.removed_exchanges.push(*x);
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.undo();
                Err(e)
            }
        }
    }

    /// For changes the broker makes by itself (an exclusive queue's connection closed, a queue expired): the
    /// change stands even when it cannot be stored yet, and its records go out before the next change's. Until
    /// then a restart brings back what was removed, which is removed again the same way.
    pub(super) fn save_or_defer(&mut self) {
        let ops = std::mem::take(&mut self.change.ops);
        self.change.undo.clear();
        if let Some(d) = self.durability {
            if let Err(e) = d.definitions.append(&ops) {
                tracing::error!(
                    vhost = %self.vhost, error = %e,
                    "could not save a deletion; it is saved with the next change that can be"
                );
                d.definitions.defer(ops);
            }
        }
    }

    /// An exchange that the saved change removed (its files are the caller's to delete).
    pub(super) fn take_removed_exchange(&mut self, name: &str) -> Option<Exchange> {
        let i = self.change.removed_exchanges.iter().position(|x| x.name == name)?;
        Some(self.change.removed_exchanges.swap_remove(i))
    }

    fn undo(&mut self) {
        self.change.ops.clear();
        let t = &mut *self.guard;
        while let Some(u) = self.change.undo.pop() {
            match u {
                Undo::Added(Destination::Queue(n)) => {
                    t.queues.remove(&n);
                }
                Undo::Added(Destination::Exchange(n)) => {
                    t.exchanges.remove(&n);
                }
                Undo::Bound(source, b) => {
                    if let Some(x) = t.exchanges.get_mut(&source) {
                        x.router.unbind(&b);
                    }
                }
                Undo::RemovedQueue(q) => {
                    t.queues.insert(q.name().to_string(), q);
                }
                Undo::RemovedExchange(x) => {
                    t.exchanges.insert(x.name.clone(), *x);
                }
                Undo::Unbound(source, b) => {
                    if let Some(x) = t.exchanges.get_mut(&source) {
                        x.router.bind(b);
                    }
                }
            }
        }
    }
}

impl std::ops::Deref for TopologyWrite<'_> {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.guard
    }
}

impl std::ops::DerefMut for TopologyWrite<'_> {
    fn deref_mut(&mut self) -> &mut Topology {
        &mut self.guard
    }
}

impl Drop for TopologyWrite<'_> {
    fn drop(&mut self) {
        if !self.change.ops.is_empty() {
            if let Err(e) = self.save() {
                tracing::error!(vhost = %self.vhost, error = %e, "could not save a change; it was undone");
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }
}
