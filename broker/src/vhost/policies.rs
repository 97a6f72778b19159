//! A vhost's operator policies: the config file's, and those set through the admin API.
//!
//! Invariants:
//! - an API policy shadows a config policy of the same name; deleting it brings the config one back;
//! - a change is saved in `definitions.log` before it is answered; a change that cannot be saved puts the old set
//!   back and fails (the API's 500);
//! - lock order: topology, then policies, then a queue. Changes are made under the topology write lock (so a queue
//!   declared meanwhile sees the old or the new set, whole) and applied to live queues with no topology lock held.

use std::sync::Arc;

use crate::policy::Policy;
use crate::queue::Queue;
use crate::store::definitions::{DefOp, PolicyDef};

use super::VHost;

/// A vhost's policies: from the config file, and set through the admin API. An API policy shadows a config policy
/// of the same name; deleting it brings the config one back.
#[derive(Default)]
pub struct Policies {
    config: Vec<Policy>,
    api: Vec<Policy>,
}

impl Policies {
    /// The policies in force.
    pub fn effective(&self) -> impl Iterator<Item = &Policy> + '_ {
        self.api.iter().chain(
            self.config
                .iter()
                .filter(|c| !self.api.iter().any(|a| a.name == c.name)),
        )
    }
}

impl VHost {
    /// Sets the config file's policies (at start, before queues are restored or declared).
    pub fn with_policies(self, policies: Vec<Policy>) -> Self {
        self.policies.write().unwrap_or_else(|e| e.into_inner()).config = policies;
        self
    }

    /// Replaces the config file's policies (SIGHUP) and applies the policies again to every live queue; API
    /// policies keep shadowing file policies of the same name. Returns whether the file's set changed.
    pub fn set_file_policies(&self, policies: Vec<Policy>) -> bool {
        self.change_policies(|ps| {
            let same = |a: &Policy, b: &Policy| {
                (a.name.as_str(), a.pattern.as_str(), a.priority, &a.definition)
                    == (b.name.as_str(), b.pattern.as_str(), b.priority, &b.definition)
            };
            let changed =
                ps.config.len() != policies.len() || ps.config.iter().zip(&policies).any(|(a, b)| !same(a, b));
            ps.config = policies;
            (changed, None)
        })
        .unwrap_or(false)
    }

    /// The policies in force, by name.
    pub fn policies(&self) -> Vec<Policy> {
        let mut v: Vec<Policy> = self
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .effective()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds or replaces an API policy (by name), saves it, and applies the policies again to every live queue.
    /// Returns whether it replaced a policy of that name; an error (and no change) when it could not be saved.
    pub fn set_policy(&self, policy: Policy) -> std::io::Result<bool> {
        let op = DefOp::SetPolicy {
            vhost: self.name.clone(),
            policy: PolicyDef::from(&policy),
        };
        self.change_policies(|ps| {
            let replaced = ps.effective().any(|p| p.name == policy.name);
            ps.api.retain(|p| p.name != policy.name);
            ps.api.push(policy);
            (replaced, Some(op))
        })
    }

    /// Removes an API policy (a config policy of that name applies again); false when there is none by that name.
    pub fn delete_policy(&self, name: &str) -> std::io::Result<bool> {
        self.change_policies(|ps| {
            let before = ps.api.len();
            ps.api.retain(|p| p.name != name);
            let removed = ps.api.len() != before;
            let op = removed.then(|| DefOp::DeletePolicy {
                vhost: self.name.clone(),
                name: name.to_string(),
            });
            (removed, op)
        })
    }

    /// Changes the policies under the topology lock (so a queue declared meanwhile sees the old or the new set,
    /// whole) and saves the change (or puts the old set back and fails), then applies them to every live queue
    /// with no topology lock held (a queue may route dead letters). Applying happens under the policies read
    /// lock, so concurrent changes apply in order.
    fn change_policies<T>(&self, change: impl FnOnce(&mut Policies) -> (T, Option<DefOp>)) -> std::io::Result<T> {
        let t = self.write();
        let mut ps = self.policies.write().unwrap_or_else(|e| e.into_inner());
        let before = ps.api.clone();
        let (out, op) = change(&mut ps);
        if let (Some(d), Some(op)) = (&self.durability, op) {
            if let Err(e) = d.definitions.append(&[op]) {
                ps.api = before;
                return Err(e);
            }
        }
        drop(ps);
        let queues: Vec<Arc<Queue>> = t.queues.values().cloned().collect();
        let ps = self.policies.read().unwrap_or_else(|e| e.into_inner());
        drop(t);
        for q in queues {
            let p = crate::policy::select(ps.effective(), &self.name, q.name())
                .cloned()
                .map(Arc::new);
            q.apply_policy(p);
        }
        drop(ps);
        // A policy with `trace: true` may have gone.
        self.refresh_trace();
        Ok(out)
    }

    /// Puts back the API policies `definitions.log` saved (at start, under the topology write lock).
    pub(super) fn restore_policies(&self, defs: &[PolicyDef]) {
        let mut ps = self.policies.write().unwrap_or_else(|e| e.into_inner());
        for d in defs {
            match Policy::from_json(&d.name, &self.name, &d.pattern, d.priority, &d.definition) {
                Ok(p) => {
                    ps.api.retain(|old| old.name != p.name);
                    ps.api.push(p);
                }
                Err(e) => tracing::error!(vhost = %self.name, error = %e, "cannot restore policy"),
            }
        }
    }
}
