//! Moves and redrives as background tasks: `POST /api/queues/{vhost}/{name}/move` starts one, `GET /api/moves`
//! lists them, `GET /api/moves/{id}` follows one, `DELETE /api/moves/{id}` cancels one.
//!
//! A move works in batches. Each batch is written at its destination first — and, for persistent messages on durable
//! queues, the task waits for the group commit that makes it durable — and only then settled (removed) at the source.
//! A crash in between leaves a message in both places: **a message may be duplicated, never lost**. Every moved
//! message carries an `x-redriven` count header so a duplicate can be recognised.
//!
//! What moves is fixed when the task starts: the given ids, the ids matching the filter, or (with neither) as many
//! messages from the head as were ready then. Messages taken out count as unacked in the source until they are
//! settled or put back; those that cannot be moved (no destination) go back when the task ends, as does the rest of
//! the selection when it is cancelled or fails. A broker shutdown cancels every running move (after its batch).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::AMQPValue;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use tokio_util::sync::CancellationToken;
use warren_shared::{MoveRequest, MoveTask};

use super::queues::vhost;
use super::stream::Shutdown;
use super::{filter, AdminState, ApiResult, Body, Error};
use crate::amqp::properties::encode_properties;
use crate::args;
use crate::broker::Broker;
use crate::message::Message;
use crate::queue::{Entry, Queue};
use crate::vhost::VHost;

/// Finished tasks kept for `GET /api/moves`.
const KEEP_FINISHED: usize = 100;
/// Messages per batch when no rate limit asks for smaller ones.
const BATCH: usize = 256;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/queues/{vhost}/{name}/move",
            post_with(start, |o| {
                o.summary("Move or redrive messages in a background task (202; 200 with wait)")
                    .response_with::<202, Json<MoveTask>, _>(|r| r.description("Started"))
                    .response_with::<200, Json<MoveTask>, _>(|r| r.description("Finished (with wait)"))
            }),
        )
        .api_route(
            "/api/moves",
            get_with(list, |o| o.summary("Move tasks, running and recent")),
        )
        .api_route(
            "/api/moves/{id}",
            get_with(one, |o| o.summary("One move task")).delete_with(cancel, |o| o.summary("Cancel a move task")),
        )
}

/// The admin API's move tasks, running and recently finished (held by `AdminState`).
#[derive(Debug, Default)]
pub struct Moves {
    next_id: AtomicU64,
    tasks: Mutex<Vec<Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    task: MoveTask,
    cancel: CancellationToken,
}

impl Moves {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new task; its cancel token is a child of `parent` (the admin server's shutdown), so a shutdown
    /// stops every move after its current batch.
    fn register(&self, mut task: MoveTask, parent: &CancellationToken) -> (MoveTask, CancellationToken) {
        task.id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let cancel = parent.child_token();
        let mut tasks = self.lock();
        while tasks.iter().filter(|t| t.task.state != "running").count() >= KEEP_FINISHED {
            match tasks.iter().position(|t| t.task.state != "running") {
                Some(i) => tasks.remove(i),
                None => break,
            };
        }
        tasks.push(Tracked {
            task: task.clone(),
            cancel: cancel.clone(),
        });
        (task, cancel)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut MoveTask)) -> Option<MoveTask> {
        let mut tasks = self.lock();
        let t = tasks.iter_mut().find(|t| t.task.id == id)?;
        f(&mut t.task);
        Some(t.task.clone())
    }

    pub fn list(&self) -> Vec<MoveTask> {
        self.lock().iter().map(|t| t.task.clone()).collect()
    }

    pub fn get(&self, id: u64) -> Option<MoveTask> {
        self.lock().iter().find(|t| t.task.id == id).map(|t| t.task.clone())
    }

    fn cancel(&self, id: u64) -> Option<MoveTask> {
        let tasks = self.lock();
        let t = tasks.iter().find(|t| t.task.id == id)?;
        t.cancel.cancel();
        Some(t.task.clone())
    }
}

/// Where a dead letter came from: the queue of its newest `x-death` entry.
pub(super) fn source_queue(props: &AMQPProperties) -> Option<String> {
    let headers = props.headers().as_ref()?;
    if let Some(AMQPValue::FieldArray(a)) = headers.inner().get("x-death") {
        if let Some(AMQPValue::FieldTable(t)) = a.as_slice().first() {
            if let Some(q) = args::get_str(t, "queue") {
                return Some(q.to_string());
            }
        }
    }
    args::get_str(headers, "x-first-death-queue").map(str::to_string)
}

/// The message as it will be republished: same body and properties (x-death kept), `x-redriven` counted up.
fn redriven(m: &Message, exchange: &str, routing_key: &str) -> (Message, AMQPProperties) {
    let props = m.properties();
    let mut headers = props.headers().clone().unwrap_or_default();
    let n = args::get_i64(&headers, "x-redriven").unwrap_or(0) + 1;
    headers.insert("x-redriven".into(), AMQPValue::LongLongInt(n));
    let props = props.with_headers(headers);
    let raw = encode_properties(&props);
    (
        Message::new(exchange.into(), routing_key.into(), &props, raw, m.body.clone()).inherit_trace(m),
        props,
    )
}

/// What a task moves, fixed at its start.
enum Selection {
    /// These messages, taken out of the source at the start.
    Taken(Vec<Entry>),
    /// This many more from the head.
    Head(u64),
}

/// What a move takes: the given ids (those that match the filter, if there is one), the messages matching the
/// filter, or — with neither — as many from the head as are ready now (at most `limit`).
fn select(
    source: &Queue,
    ids: Option<Vec<u64>>,
    message_filter: &warren_shared::MessageFilter,
    limit: Option<u64>,
) -> Selection {
    let matches = filter::matcher(message_filter);
    match ids {
        Some(ids) => {
            let ids: HashSet<u64> = ids.into_iter().collect();
            let mut taken = source.take(Some(&ids));
            if !message_filter.is_empty() {
                let (keep, back): (Vec<Entry>, Vec<Entry>) = taken.into_iter().partition(|e| matches(e));
                source.put_back(back);
                taken = keep;
            }
            Selection::Taken(taken)
        }
        None if !message_filter.is_empty() => {
            let ids: HashSet<u64> = source.matching_ids(&matches).into_iter().collect();
            Selection::Taken(source.take(Some(&ids)))
        }
        None => Selection::Head(source.depth().0.min(limit.unwrap_or(u64::MAX))),
    }
}

async fn start(
    State(b): State<Arc<Broker>>,
    State(moves): State<Arc<Moves>>,
    caller: super::caller::Caller,
    Path((v, name)): Path<(String, String)>,
    shutdown: Option<Extension<Shutdown>>,
    Body(req): Body<MoveRequest>,
) -> Result<(StatusCode, Json<MoveTask>), Error> {
    // A move consumes from its source and publishes to its destination.
    use crate::auth::{Kind, Perm};
    caller.check(&b, &v, Perm::Read, Kind::Queue, &name)?;
    match (req.to.as_str(), &req.queue, &req.exchange) {
        ("queue", Some(q), _) => caller.check(&b, &v, Perm::Write, Kind::Queue, q)?,
        ("exchange", _, Some(x)) => caller.check(&b, &v, Perm::Write, Kind::Exchange, x)?,
        _ => caller.check(&b, &v, Perm::Write, Kind::Queue, &name)?,
    }
    super::caller::audit(&b, &caller, "move", &v, &name, 0);
    let shutdown = shutdown.map(|Extension(Shutdown(t))| t).unwrap_or_default();
    let vh = vhost(&b, &v)?;
    let source = vh
        .queue(&name)
        .ok_or_else(|| Error::not_found(format!("no queue '{name}' in vhost '{v}'")))?;
    // Moves take messages out of their source: not from a stream (into one is fine: it is appended to).
    super::queues::refuse_stream(&source, &v, &name, "moving messages out")?;
    let destination = match req.to.as_str() {
        "source" => None,
        "queue" if req.queue.is_some() => req.queue.clone(),
        "exchange" if req.exchange.is_some() => req.exchange.clone(),
        _ => {
            return Err(Error::bad_request(
                "'to' must be \"source\", \"queue\" (with \"queue\") or \"exchange\" (with \"exchange\")",
            ))
        }
    };
    if req.rate == Some(0) {
        return Err(Error::bad_request("'rate' must be at least 1 message per second"));
    }
    if let Some(x) = &req.exchange {
        if !vh.has_exchange(x) {
            return Err(Error::not_found(format!("no exchange '{x}' in vhost '{v}'")));
        }
    }
    if let Some(q) = &req.queue {
        if vh.queue(q).is_none() {
            return Err(Error::not_found(format!("no queue '{q}' in vhost '{v}'")));
        }
    }
    // Selecting may read a whole disk-backed queue: not on an async worker.
    let (q, ids, message_filter, limit) = (source.clone(), req.ids.clone(), req.filter.clone(), req.limit);
    let selection = tokio::task::spawn_blocking(move || select(&q, ids, &message_filter, limit))
        .await
        .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let total = match &selection {
        Selection::Taken(t) => t.len() as u64,
        Selection::Head(n) => *n,
    };
    let (task, cancel) = moves.register(
        MoveTask {
            id: 0,
            vhost: v,
            queue: name,
            to: req.to.clone(),
            destination,
            state: "running".into(),
            total,
            moved: 0,
            not_moved: 0,
            rate: req.rate,
            started_ms: vh.clock.now_ms(),
            finished_ms: None,
            error: None,
        },
        &shutdown,
    );
    let job = Job {
        broker: b.clone(),
        moves: moves.clone(),
        vhost: vh,
        source,
        req,
        id: task.id,
        cancel,
    };
    let wait = job.req.wait;
    let handle = tokio::spawn(job.run(selection));
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(task)));
    }
    let _ = handle.await;
    let done = moves
        .get(task.id)
        .ok_or_else(|| Error::not_found(format!("no move task {}", task.id)))?;
    Ok((StatusCode::OK, Json(done)))
}

struct Job {
    broker: Arc<Broker>,
    /// Where the task's progress is reported.
    moves: Arc<Moves>,
    vhost: Arc<VHost>,
    source: Arc<Queue>,
    req: MoveRequest,
    id: u64,
    cancel: CancellationToken,
}

impl Job {
    async fn run(self, selection: Selection) {
        let batch_size = match self.req.rate {
            Some(r) => (r as usize / 10).clamp(1, BATCH),
            None => BATCH,
        };
        let started = Instant::now();
        let (mut taken, mut head) = match selection {
            Selection::Taken(t) => (t, 0),
            Selection::Head(n) => (Vec::new(), n),
        };
        taken.reverse(); // batches pop from the back, in delivery order
        let mut kept: Vec<Entry> = Vec::new();
        let (mut moved_total, mut state, mut error) = (0u64, "done", None);
        loop {
            if self.cancel.is_cancelled() {
                state = "cancelled";
                break;
            }
            let batch: Vec<Entry> = if head > 0 {
                let b = self.source.take_up_to((head as usize).min(batch_size));
                head = head.saturating_sub(b.len() as u64);
                if b.is_empty() {
                    head = 0;
                }
                b
            } else {
                let n = taken.len().saturating_sub(batch_size);
                let mut b = taken.split_off(n);
                b.reverse();
                b
            };
            if batch.is_empty() {
                break;
            }
            let (moved, not_moved, ok) = self.move_batch(batch).await;
            if !ok {
                // Not known to be stored at the destination: they stay in the source (copies may exist there).
                self.source.put_back(moved);
                kept.extend(not_moved);
                state = "failed";
                error = Some("the destination could not store the messages; they stay in the source".to_string());
                break;
            }
            self.source.settle_moved(moved.iter());
            moved_total += moved.len() as u64;
            let (m, n) = (moved.len() as u64, not_moved.len() as u64);
            kept.extend(not_moved);
            self.moves.update(self.id, |t| {
                t.moved += m;
                t.not_moved += n;
            });
            if let Some(rate) = self.req.rate {
                let due = Duration::from_secs_f64(moved_total as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::select! {
                        _ = self.cancel.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        taken.reverse();
        self.source.put_back(taken);
        self.source.put_back(kept);
        let now_ms = self.vhost.clock.now_ms();
        self.moves.update(self.id, |t| {
            t.state = state.into();
            t.error = error;
            t.finished_ms = Some(now_ms);
        });
    }

    /// Publishes `batch` at its destinations and waits until it is durable there. Returns (moved, not moved, ok).
    async fn move_batch(&self, batch: Vec<Entry>) -> (Vec<Entry>, Vec<Entry>, bool) {
        let (mut moved, mut kept) = (Vec::new(), Vec::new());
        // The batch may span several group-commit rounds: all of them must succeed.
        let (mut first, mut last) = (u64::MAX, 0);
        let mut failed = false;
        let req = &self.req;
        for e in batch {
            let props = e.message.properties();
            let target: Option<(String, String)> = match req.to.as_str() {
                "source" => source_queue(&props).map(|q| (String::new(), q)),
                "queue" => req.queue.clone().map(|q| (String::new(), q)),
                _ => req.exchange.clone().map(|x| {
                    let key = req
                        .routing_key
                        .clone()
                        .unwrap_or_else(|| e.message.routing_key.to_string());
                    (x, key)
                }),
            };
            let Some((exchange, routing_key)) = target else {
                kept.push(e);
                continue;
            };
            let (message, props) = redriven(&e.message, &exchange, &routing_key);
            let message = Arc::new(message);
            let mut queues = Vec::new();
            if exchange.is_empty() {
                queues.extend(self.vhost.queue(&routing_key));
            } else if self
                .vhost
                .route_internal(&exchange, &routing_key, props.headers().as_ref(), None, &mut queues)
                .is_err()
            {
                kept.push(e);
                continue;
            }
            if queues.is_empty() {
                kept.push(e);
                continue;
            }
            if self.vhost.trace.any() && (self.source.traces(&e.message) || queues.iter().any(|q| q.is_traced())) {
                let from = self.source.name().to_string();
                let to = queues.iter().map(|q| q.name().to_string()).collect();
                let event = if req.to == "source" {
                    crate::trace::TraceEvent::Redriven { from, to }
                } else {
                    crate::trace::TraceEvent::Moved { from, to }
                };
                self.source.record_trace(&message, event);
            }
            let mut routed = false;
            for q in &queues {
                let p = q.publish(message.clone());
                if p.ticket > 0 {
                    first = first.min(p.ticket);
                    last = last.max(p.ticket);
                }
                failed |= p.failed;
                routed |= p.routed;
            }
            // Not enqueued anywhere (the destination was deleted meanwhile, or refused it): it stays.
            if routed {
                moved.push(e);
            } else {
                kept.push(e);
            }
        }
        if last > 0 {
            failed |= !synced(&self.broker, first, last).await;
        }
        (moved, kept, !failed)
    }
}

/// Waits until the syncer's rounds `first..=last` (the tickets of publishes) are done; whether all of them stored
/// what they held.
pub(super) async fn synced(broker: &Broker, first: u64, last: u64) -> bool {
    broker.store.syncer.wait(first, last).await
}

async fn list(
    State(b): State<Arc<Broker>>,
    State(moves): State<Arc<Moves>>,
    caller: super::caller::Caller,
) -> ApiResult<Vec<MoveTask>> {
    let mut all = moves.list();
    all.retain(|m| caller.may_see(&b, &m.vhost));
    Ok(Json(all))
}

async fn one(State(moves): State<Arc<Moves>>, Path(id): Path<String>) -> ApiResult<MoveTask> {
    let n = super::path_id(&id, "move task")?;
    moves
        .get(n)
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("no move task {n}")))
}

/// Cancels a running task (it stops after its current batch); a finished one is returned as it is.
async fn cancel(State(moves): State<Arc<Moves>>, Path(id): Path<String>) -> ApiResult<MoveTask> {
    let n = super::path_id(&id, "move task")?;
    moves
        .cancel(n)
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("no move task {n}")))
}
