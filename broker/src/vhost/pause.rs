//! Pausing and resuming a queue, durably: a durable queue's pause is a `definitions.log` record (written before
//! the queue changes, so what a restart restores is what the operator last set); a transient queue's lives in
//! memory only, like the queue itself.

use super::topology_write::persists;
use super::VHost;
use crate::store::definitions::DefOp;

impl VHost {
    /// Pauses or resumes queue `name`. `Ok(None)`: no such queue; `Ok(Some(changed))`; `Err`: the change could not
    /// be saved, and nothing changed.
    pub fn set_paused(&self, name: &str, paused: bool) -> std::io::Result<Option<bool>> {
        // Under the topology read lock, so the queue cannot be deleted (and its record dropped) in between.
        let t = self.read();
        let Some(q) = t.queues.get(name).cloned() else {
            return Ok(None);
        };
        if q.is_paused() == paused {
            return Ok(Some(false));
        }
        if let (Some(d), true) = (&self.durability, persists(&q)) {
            d.definitions.append(&[DefOp::PauseQueue {
                vhost: self.name.clone(),
                name: name.to_string(),
                paused,
            }])?;
        }
        drop(t);
        Ok(Some(q.set_paused(paused)))
    }
}
