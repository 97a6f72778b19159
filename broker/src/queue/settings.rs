//! What shapes a queue: its spec (fixed at declare time), the operator policy over its arguments, and the limits
//! and TTL they give.
//!
//! Invariants: the effective arguments are the declared ones with the policy applied (RabbitMQ's precedence, in
//! `crate::policy`); `limits` is replaced whole when a policy changes, never edited in place, so a reader sees the
//! old or the new limits; a changed message TTL applies to every queued message, counted from its enqueue time.

use std::sync::Arc;

use amq_protocol::types::FieldTable;

use super::dead_letter::QueueLimits;
use super::Queue;

/// `x-message-ttl` in ms, if set and not negative.
fn message_ttl(arguments: &FieldTable) -> Option<u64> {
    crate::args::get_i64(arguments, "x-message-ttl").and_then(|ms| u64::try_from(ms).ok())
}

/// What a queue is, fixed at declare time.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The operator policy that applies, if any.
    pub policy: Option<Arc<crate::policy::Policy>>,
}

impl QueueSpec {
    /// The arguments with the policy applied (RabbitMQ's precedence).
    pub fn effective_arguments(&self) -> FieldTable {
        crate::policy::effective_arguments(&self.arguments, self.policy.as_deref())
    }
}

impl Queue {
    /// The `x-max-priority` and `x-message-ttl` (from the arguments and the policy) a store for this spec needs.
    pub fn store_settings(spec: &QueueSpec) -> (u8, Option<u64>) {
        let max_priority = crate::args::get_i64(&spec.arguments, "x-max-priority")
            .unwrap_or(0)
            .clamp(0, 255) as u8;
        (max_priority, message_ttl(&spec.effective_arguments()))
    }

    /// The limits in force now.
    pub fn limits(&self) -> Arc<QueueLimits> {
        self.limits.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The name of the operator policy that applies now.
    pub fn policy_name(&self) -> Option<String> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.name.clone())
    }

    /// Applies a changed operator policy (or none) to this live queue: limits, dead-lettering and expiry change at
    /// once; a changed message TTL applies to every message, counted from when it was enqueued.
    pub fn apply_policy(&self, policy: Option<Arc<crate::policy::Policy>>) {
        let effective = crate::policy::effective_arguments(&self.spec.arguments, policy.as_deref());
        self.set_traced_by_policy(policy.as_ref().is_some_and(|p| p.trace));
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(QueueLimits::from_arguments(&effective));
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        if self.is_stream {
            // A stream takes only retention and segment size from a policy; what it newly allows to go, goes now.
            let mut st = self.lock();
            if let Some(s) = st.stream.as_mut() {
                s.set_settings(crate::stream::args::effective_settings(&effective));
            }
            self.stream_retain(&mut st);
        } else {
            self.lock().store.set_ttl(message_ttl(&effective));
        }
        // A new TTL or `x-expires` may be due earlier than what is armed.
        self.arm_next();
    }
}
