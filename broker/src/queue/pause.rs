//! Pause and resume (an operator's action): a paused queue keeps its consumers subscribed and delivers nothing,
//! neither to them nor to `basic.get`; publishing, peek, moves and purge work as ever. Resuming dispatches at once.
//!
//! The flag lives here; whether it survives a restart is the vhost's business (a durable queue's pause is a record
//! of `definitions.log`, see `VHost::set_paused`).

use std::sync::atomic::Ordering;

use super::Queue;

impl Queue {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Pauses or resumes; returns whether that changed anything. Resuming offers the ready messages to the
    /// consumers straight away.
    pub fn set_paused(&self, paused: bool) -> bool {
        let changed = self.paused.swap(paused, Ordering::AcqRel) != paused;
        if changed && !paused {
            self.dispatch();
        }
        changed
    }
}
