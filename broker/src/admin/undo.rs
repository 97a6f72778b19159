//! Undo of an operator's purge or message delete (`crate::quarantine` keeps what they removed for a while):
//! `GET /api/undo` lists what can still be undone, `POST /api/undo/{id}` puts it back into its queue (at the
//! tail, in the order it would have been delivered), durably before it answers.
//!
//! Listing shows the vhosts the caller may see; restoring needs `write` on the queue (it publishes into it). A
//! restore is audited. What the quarantine keeps is in memory only: a restart ends every undo.

use std::sync::Arc;

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use warren_shared::{UndoBatch, UndoResult, UndoTicket};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{AdminState, ApiResult, Error};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::message::Message;
use crate::queue::Entry;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/undo",
            get_with(list, |o| {
                o.summary("Purges and deletes that can still be undone, newest first")
            }),
        )
        .api_route(
            "/api/undo/{id}",
            post_with(restore, |o| {
                o.summary("Put back what a purge or delete removed, into its queue")
            }),
        )
}

/// Keeps what a purge or delete took out of `queue` (already settled there) for undo; the ticket to undo it.
pub fn keep(
    b: &Broker,
    caller: &Caller,
    vhost: &str,
    queue: &str,
    action: &str,
    taken: Vec<Entry>,
) -> Option<UndoTicket> {
    let messages: Vec<Arc<Message>> = taken.into_iter().map(|e| e.message).collect();
    b.quarantine
        .keep(vhost, queue, action, &caller.user, messages, b.clock.now_ms())
        .map(|(id, until_ms)| UndoTicket { id, until_ms })
}

async fn list(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<UndoBatch>> {
    let batches = b
        .quarantine
        .list(b.clock.now_ms())
        .into_iter()
        .filter(|(x, _)| caller.sees_all() || caller.may_see(&b, &x.vhost))
        .map(|(x, messages)| UndoBatch {
            id: x.id,
            messages: messages as u64,
            vhost: x.vhost,
            queue: x.queue,
            action: x.action,
            user: x.user,
            bytes: x.bytes,
            at_ms: x.at_ms,
            until_ms: x.until_ms,
        })
        .collect();
    Ok(Json(batches))
}

async fn restore(State(b): State<Arc<Broker>>, caller: Caller, Path(id): Path<String>) -> ApiResult<UndoResult> {
    let id = super::path_id(&id, "undo")?;
    let gone = || {
        Error::not_found(format!(
            "nothing to undo with id {id} (unknown, or its undo window has ended)"
        ))
    };
    let now = b.clock.now_ms();
    let (found, _) = b
        .quarantine
        .list(now)
        .into_iter()
        .find(|(x, _)| x.id == id)
        .ok_or_else(gone)?;
    caller.check(&b, &found.vhost, Perm::Write, Kind::Queue, &found.queue)?;
    let batch = b.quarantine.take(id, now).ok_or_else(gone)?;
    let Some(q) = vhost(&b, &batch.vhost).ok().and_then(|v| v.queue(&batch.queue)) else {
        let (v, name) = (batch.vhost.clone(), batch.queue.clone());
        b.quarantine.put_back(batch);
        return Err(Error::not_found(format!(
            "queue '{name}' in vhost '{v}' is gone: declare it again, then undo (the messages wait until the window ends)"
        )));
    };
    // Publishing writes (and waits for) the store: the tickets say when it is durable.
    let (mut first, mut last, mut failed) = (u64::MAX, 0, Vec::new());
    let mut restored = 0u64;
    for m in &batch.messages {
        let p = q.publish(m.clone());
        if p.ticket > 0 {
            first = first.min(p.ticket);
            last = last.max(p.ticket);
        }
        if p.routed && !p.failed {
            restored += 1;
        } else {
            failed.push(m.clone());
        }
    }
    let stored = last == 0 || super::moves::synced(&b, first, last).await;
    if !stored || !failed.is_empty() {
        // What is not known to be stored goes back, to be tried again while the window lasts (a retry may then
        // restore a copy twice, never lose one).
        let total = batch.messages.len();
        let kept = if stored { failed } else { batch.messages.clone() };
        let (left, bytes) = (kept.len(), kept.iter().map(|m| m.size() as u64).sum());
        let queue = batch.queue.clone();
        b.quarantine.put_back(crate::quarantine::Batch {
            messages: kept,
            bytes,
            ..batch
        });
        return Err(Error::internal(format!(
            "queue '{queue}' could not store every message back: {left} of {total} stay in the undo; try again"
        )));
    }
    audit(&b, &caller, "undo", &batch.vhost, &batch.queue, restored);
    Ok(Json(UndoResult {
        vhost: batch.vhost,
        queue: batch.queue,
        restored,
    }))
}
