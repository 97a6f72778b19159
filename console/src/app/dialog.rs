//! Action dialogs: every destructive or writing action opens one that states its blast radius (which queue, how many
//! messages) before anything is sent, then shows the action running (with a progress bar for moves) and its result.
//!
//! Life of a dialog: `Confirm` (the operator may type into `input` where the action takes a value) -> `Running`
//! (the command was sent) -> `Progress` (moves only, while the broker's task runs) -> `Done` (result or error; any
//! key closes). Nothing here does I/O: [`Dialog::confirm`] returns the commands to send.
//!
//! Answers are matched to the dialog that asked: by the request id its commands carried, or, for a move, by the
//! broker's task id once known. A dialog never leaves `Done` (a late progress report cannot reopen it).

use warren_shared::{ConnectionInfo, MessageFilter, MoveRequest, MoveTask, PriorityRequest, PublishRequest};

use super::scheduled::{self, Op, Target};
use super::stream::Position;
use crate::event::{Command, QueueKey, RequestId};
use crate::format::count;
use warren_shared::edit::EditRequest;

/// Which messages a message action applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Every ready message in the queue (`count` as the last snapshot saw it).
    All {
        count: u64,
    },
    Marked(Vec<u64>),
    /// Those that match the filter (`shown` of them are on the current page).
    Filtered {
        filter: MessageFilter,
        text: String,
        shown: u64,
    },
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::All { count: n } => format!(
                "the {} ready message{} at the head (messages that arrive meanwhile stay)",
                count(*n),
                plural(*n as usize)
            ),
            Scope::Marked(ids) => format!("{} marked message{}", count(ids.len() as u64), plural(ids.len())),
            Scope::Filtered { text, shown, .. } => {
                format!("every message matching “{text}” ({} on this page)", count(*shown))
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Purge these queues (with their ready counts).
    Purge {
        queues: Vec<(QueueKey, u64)>,
    },
    /// Move messages back to the queue each died in (`input` empty), or to the queue named in `input`.
    Redrive {
        queue: QueueKey,
        scope: Scope,
    },
    Delete {
        queue: QueueKey,
        ids: Vec<u64>,
    },
    /// `input`: `+N` / `-N` to step, `N` to set.
    Priority {
        queue: QueueKey,
        ids: Vec<u64>,
    },
    /// `input`: the payload, published to the queue through the default exchange.
    Publish {
        queue: QueueKey,
    },
    Close {
        connection: ConnectionInfo,
    },
    /// Put back what purge or delete `id` removed (`what`: "the 7 messages purged"; `until`: when the undo
    /// window ends, as a local time).
    Undo {
        id: u64,
        queue: QueueKey,
        what: String,
        until: String,
    },
    /// Pause (`pause`) or resume a queue; `consumers` and `ready` as the last snapshot saw them.
    Pause {
        queue: QueueKey,
        pause: bool,
        consumers: u64,
        ready: u64,
    },
    /// `input`: where the named stream consumer reads next (see [`Position::parse`]). `offset` and `lag`: where it
    /// is now, as the last snapshot saw it.
    Replay {
        queue: QueueKey,
        consumer: String,
        offset: u64,
        lag: u64,
    },
    /// `input`: the offset before which whole segments go. `first` and `next`: the stream's span now.
    Truncate {
        queue: QueueKey,
        first: u64,
        next: u64,
    },
    /// Publish the edited copy of message `id` of `queue` to `source` (from x-death), or to what `input` names once
    /// `choosing_queue`; then the original is removed. `diff`: what the operator changed.
    Edit {
        queue: QueueKey,
        id: u64,
        source: Option<String>,
        diff: Vec<String>,
        request: EditRequest,
    },
    /// Cancel, deliver now or reschedule (`input`: when) held messages of delayed exchanges.
    Scheduled {
        op: Op,
        targets: Vec<Target>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Confirm,
    Running,
    Progress(MoveTask),
    Done { ok: bool, lines: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dialog {
    pub action: Action,
    pub phase: Phase,
    /// Text typed into the dialog (see [`Action`] for what it means).
    pub input: String,
    /// Redrive only: the operator is typing a destination queue instead of using x-death's source.
    pub choosing_queue: bool,
    /// Redrive only: a rate limit in messages per second (`None`: as fast as the destination syncs).
    pub rate: Option<u32>,
    /// Why the last confirm was refused (bad input), shown under the input.
    pub error: Option<String>,
    /// Purge of several queues: answers still expected, what came back, and whether any failed.
    pub pending: usize,
    pub results: Vec<String>,
    pub failed: bool,
    /// The id the confirmed commands carry; answers with another id belong to someone else.
    pub request_id: Option<RequestId>,
    /// Redrive only: the broker's move task, once the first answer named it (cancel and progress go by it).
    pub move_task: Option<u64>,
    /// Purge and delete: whether (and for how long) the broker keeps what they remove for undo, in words; none: it
    /// cannot be undone.
    pub undo_note: Option<String>,
}

impl Dialog {
    pub fn new(action: Action) -> Self {
        Dialog {
            action,
            phase: Phase::Confirm,
            input: String::new(),
            choosing_queue: false,
            rate: None,
            error: None,
            pending: 0,
            results: Vec::new(),
            failed: false,
            request_id: None,
            move_task: None,
            undo_note: None,
        }
    }

    /// The line that says whether the removal can be undone.
    fn undo_line(&self) -> String {
        self.undo_note
            .clone()
            .unwrap_or_else(|| "This cannot be undone.".into())
    }

    /// Whether an answer to `request_id` is meant for this dialog.
    pub fn sent(&self, request_id: RequestId) -> bool {
        self.request_id == Some(request_id)
    }

    /// Whether a report on move `task`, answering `request_id`, is meant for this dialog.
    pub fn follows(&self, request_id: RequestId, task: u64) -> bool {
        self.sent(request_id) || self.move_task == Some(task)
    }

    /// Whether the dialog takes typed text in its current phase.
    pub fn takes_input(&self) -> bool {
        self.phase == Phase::Confirm
            && match self.action {
                Action::Priority { .. } | Action::Publish { .. } | Action::Replay { .. } | Action::Truncate { .. } => {
                    true
                }
                Action::Scheduled { op, .. } => op == Op::Reschedule,
                Action::Redrive { .. } | Action::Edit { .. } => self.choosing_queue,
                _ => false,
            }
    }

    pub fn title(&self) -> &'static str {
        match self.action {
            Action::Purge { .. } => "Purge",
            Action::Redrive { .. } => "Redrive",
            Action::Delete { .. } => "Delete messages",
            Action::Priority { .. } => "Change priority",
            Action::Publish { .. } => "Publish a test message",
            Action::Close { .. } => "Close connection",
            Action::Undo { .. } => "Undo",
            Action::Pause { pause: true, .. } => "Pause a queue",
            Action::Pause { pause: false, .. } => "Resume a queue",
            Action::Replay { .. } => "Replay a stream consumer",
            Action::Truncate { .. } => "Truncate a stream",
            Action::Edit { .. } => "Edit and redrive",
            Action::Scheduled { op: Op::Cancel, .. } => "Cancel held messages",
            Action::Scheduled { op: Op::Deliver, .. } => "Deliver held messages now",
            Action::Scheduled { op: Op::Reschedule, .. } => "Reschedule held messages",
        }
    }

    /// The blast radius, in words: what will change, where, and how much.
    pub fn describe(&self) -> Vec<String> {
        match &self.action {
            Action::Purge { queues } => {
                let total: u64 = queues.iter().map(|(_, n)| n).sum();
                let mut lines = match queues.as_slice() {
                    [(q, n)] => vec![format!(
                        "Purge queue {} on {} — {} message{} will be deleted.",
                        q.name,
                        q.vhost,
                        count(*n),
                        plural(*n as usize)
                    )],
                    _ => {
                        let mut v = vec![format!(
                            "Purge {} queues — {} messages will be deleted:",
                            queues.len(),
                            count(total)
                        )];
                        v.extend(
                            queues
                                .iter()
                                .map(|(q, n)| format!("  {} on {} ({})", q.name, q.vhost, count(*n))),
                        );
                        v
                    }
                };
                lines.push(self.undo_line());
                lines
            }
            Action::Redrive { queue, scope } => {
                let to = if self.choosing_queue {
                    format!("to queue: {}", if self.input.is_empty() { "…" } else { &self.input })
                } else {
                    "back to the queue each one died in (from x-death)".to_string()
                };
                let rate = match self.rate {
                    None => "at full speed".to_string(),
                    Some(r) => format!("at most {} messages/s", count(r as u64)),
                };
                vec![
                    format!("Redrive {} from {} on {}", scope.describe(), queue.name, queue.vhost),
                    to,
                    rate,
                ]
            }
            Action::Delete { queue, ids } => vec![
                format!(
                    "Delete {} message{} from {} on {}.",
                    count(ids.len() as u64),
                    plural(ids.len()),
                    queue.name,
                    queue.vhost
                ),
                self.undo_line(),
            ],
            Action::Undo { queue, what, until, .. } => vec![
                format!(
                    "Put back {what} into {} on {} (at its tail, in their order)?",
                    queue.name, queue.vhost
                ),
                format!("Undo is possible until {until}."),
            ],
            Action::Priority { queue, ids } => vec![
                format!(
                    "Change the priority of {} message{} in {} on {}.",
                    count(ids.len() as u64),
                    plural(ids.len()),
                    queue.name,
                    queue.vhost
                ),
                "Type +N or -N to step, or N to set (capped at x-max-priority).".into(),
            ],
            Action::Publish { queue } => vec![
                format!(
                    "Publish one message to {} on {} (default exchange, routing key “{}”).",
                    queue.name, queue.vhost, queue.name
                ),
                "Type the payload:".into(),
            ],
            Action::Close { connection: c } => vec![format!(
                "Close connection {} ({}, user {}, vhost {}) and its {} channel{}?",
                c.id,
                c.peer,
                c.user,
                c.vhost,
                c.channels,
                plural(c.channels as usize)
            )],
            Action::Pause {
                queue,
                pause: true,
                consumers,
                ready,
            } => vec![
                format!(
                    "Pause queue {} on {} until it is resumed: its consumers ({}) stay subscribed and get nothing; \
                     {} ready message{} wait.",
                    queue.name,
                    queue.vhost,
                    count(*consumers),
                    count(*ready),
                    plural(*ready as usize)
                ),
                "Publishing, peek, moves and purge go on; a durable queue stays paused across restarts.".into(),
            ],
            Action::Pause {
                queue,
                consumers,
                ready,
                ..
            } => vec![format!(
                "Resume queue {} on {}: its consumers ({}) get the {} ready message{} at once.",
                queue.name,
                queue.vhost,
                count(*consumers),
                count(*ready),
                plural(*ready as usize)
            )],
            Action::Replay {
                queue,
                consumer,
                offset,
                lag,
            } => vec![
                format!(
                    "Replay consumer “{consumer}” of stream {} on {}: it is at offset {} ({} behind).",
                    queue.name,
                    queue.vhost,
                    count(*offset),
                    count(*lag)
                ),
                "Its stored offset is replaced; if it is connected, it moves there at once.".into(),
                "From: first, last, next, an offset, a time (2026-12-01T09:30:00Z) or -15m:".into(),
            ],
            Action::Truncate { queue, first, next } => vec![
                format!(
                    "Remove the segments of stream {} on {} that lie wholly before an offset (it holds {} to {}).",
                    queue.name,
                    queue.vhost,
                    count(*first),
                    count(next.saturating_sub(1))
                ),
                "Whole segments only: the stream may keep some messages before it. This cannot be undone.".into(),
                "Before offset:".into(),
            ],
            Action::Scheduled { op, targets } => scheduled::describe(*op, targets),
            Action::Edit {
                queue,
                id,
                source,
                diff,
                ..
            } => super::edit::describe(self, queue, *id, source.as_deref(), diff),
        }
    }

    /// The operator confirmed: the commands to send, tagged with `request_id`, or `None` when the input is not valid
    /// (the dialog then says why and stays open).
    pub fn confirm(&mut self, request_id: RequestId, now_ms: u64) -> Option<Vec<Command>> {
        if self.phase != Phase::Confirm {
            return None;
        }
        self.error = None;
        let commands = match &self.action {
            Action::Purge { queues } => {
                self.pending = queues.len();
                queues
                    .iter()
                    .map(|(q, _)| Command::Purge {
                        request_id,
                        queue: q.clone(),
                    })
                    .collect()
            }
            Action::Redrive { queue, scope } => {
                let mut request = MoveRequest {
                    to: "source".into(),
                    rate: self.rate,
                    ..MoveRequest::default()
                };
                if self.choosing_queue {
                    let name = self.input.trim();
                    if name.is_empty() {
                        self.error = Some("type the destination queue's name (tab: back to x-death's source)".into());
                        return None;
                    }
                    request.to = "queue".into();
                    request.queue = Some(name.to_string());
                }
                match scope {
                    // Exactly the messages the dialog counted, from the head: later arrivals stay.
                    Scope::All { count } => request.limit = Some(*count),
                    Scope::Marked(ids) => request.ids = Some(ids.clone()),
                    Scope::Filtered { filter, .. } => request.filter = filter.clone(),
                }
                vec![Command::Move {
                    request_id,
                    queue: queue.clone(),
                    request,
                }]
            }
            Action::Delete { queue, ids } => vec![Command::Delete {
                request_id,
                queue: queue.clone(),
                ids: ids.clone(),
            }],
            Action::Priority { queue, ids } => {
                let text = self.input.trim();
                let mut request = PriorityRequest {
                    ids: Some(ids.clone()),
                    ..PriorityRequest::default()
                };
                if let Some(step) = text.strip_prefix('+').or_else(|| text.strip_prefix('-').map(|_| text)) {
                    match step.parse::<i16>() {
                        Ok(s) if s != 0 => request.step = Some(s),
                        _ => {
                            self.error = Some(format!("“{text}” is not a step like +1 or -2"));
                            return None;
                        }
                    }
                } else {
                    match text.parse::<u8>() {
                        Ok(p) => request.set = Some(p),
                        Err(_) => {
                            self.error = Some(format!("“{text}” is not a priority (0-255) or a step (+N/-N)"));
                            return None;
                        }
                    }
                }
                vec![Command::Priority {
                    request_id,
                    queue: queue.clone(),
                    request,
                }]
            }
            Action::Publish { queue } => vec![Command::Publish {
                request_id,
                queue: queue.clone(),
                exchange: "amq.default".into(),
                request: PublishRequest {
                    routing_key: queue.name.clone(),
                    payload: self.input.clone(),
                    ..PublishRequest::default()
                },
            }],
            Action::Close { connection } => vec![Command::CloseConnection {
                request_id,
                connection: connection.id,
                reason: "closed from warren-console".into(),
            }],
            Action::Undo { id, .. } => vec![Command::Undo { request_id, id: *id }],
            Action::Pause { queue, pause, .. } => vec![Command::Pause {
                request_id,
                queue: queue.clone(),
                paused: *pause,
            }],
            Action::Replay { queue, consumer, .. } => match Position::parse(&self.input, now_ms) {
                Ok(p) => vec![Command::StreamReplay {
                    request_id,
                    queue: queue.clone(),
                    consumer: consumer.clone(),
                    reset: p.reset(),
                }],
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            },
            Action::Truncate { queue, .. } => match self.input.trim().parse::<u64>() {
                Ok(before) => vec![Command::StreamTruncate {
                    request_id,
                    queue: queue.clone(),
                    before,
                }],
                Err(_) => {
                    self.error = Some(format!("“{}” is not an offset", self.input.trim()));
                    return None;
                }
            },
            Action::Edit {
                queue,
                id,
                source,
                request,
                ..
            } => match super::edit::command(self, queue, *id, source.as_deref(), request, request_id) {
                Ok(c) => vec![c],
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            },
            Action::Scheduled { op, targets } => {
                match scheduled::command(*op, targets, &self.input, request_id, now_ms) {
                    Ok(c) => vec![c],
                    Err(e) => {
                        self.error = Some(e);
                        return None;
                    }
                }
            }
        };
        self.phase = Phase::Running;
        self.request_id = Some(request_id);
        Some(commands)
    }

    /// Redrive: the next rate limit in the cycle full speed → 10 → 100 → 1,000 messages/s → full speed.
    pub fn cycle_rate(&mut self) {
        self.rate = match self.rate {
            None => Some(10),
            Some(10) => Some(100),
            Some(100) => Some(1000),
            _ => None,
        };
    }

    pub fn finish(&mut self, ok: bool, lines: Vec<String>) {
        self.phase = Phase::Done { ok, lines };
    }

    /// The answer said the removal can be undone: say how, under the result (or, while answers of a purge of
    /// several queues are still coming, with the results).
    pub fn note_undo(&mut self, line: String) {
        match &mut self.phase {
            Phase::Done { lines, .. } => lines.push(line),
            _ => self.results.push(line),
        }
    }

    /// A move task arrived (accepted, progressed or ended). Progress only moves forward: a running report after
    /// the end (a poll that crossed a cancel) is ignored; an end after the end (the cancel's answer and the last
    /// poll) shows the latest.
    pub fn on_move(&mut self, task: MoveTask) {
        self.move_task = Some(task.id);
        if task.state == "running" {
            if matches!(self.phase, Phase::Running | Phase::Progress(_)) {
                self.phase = Phase::Progress(task);
            }
            return;
        }
        let mut lines = vec![format!(
            "{}: moved {} of {}, not moved {}.",
            task.state,
            count(task.moved),
            count(task.total),
            count(task.not_moved)
        )];
        if task.not_moved > 0 {
            lines.push("Messages not moved stay in the queue (no x-death source, or the destination is gone).".into());
        }
        if let Some(e) = &task.error {
            lines.push(format!("error: {e}"));
        }
        let ok = task.state == "done" || task.state == "cancelled";
        self.finish(ok, lines);
    }

    /// A purge answered (several may be expected).
    pub fn on_purged(&mut self, queue: &QueueKey, purged: u64) {
        self.results.push(format!(
            "Purged {} message{} from {}.",
            count(purged),
            plural(purged as usize),
            queue.name
        ));
        self.one_answered();
    }

    /// The action failed. A purge of several queues waits for the others' answers and lists every outcome.
    pub fn on_failed(&mut self, error: String) {
        if matches!(self.action, Action::Purge { .. }) {
            self.failed = true;
            self.results.push(error);
            self.one_answered();
        } else {
            self.finish(false, vec![error]);
        }
    }

    fn one_answered(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            let lines = std::mem::take(&mut self.results);
            self.finish(!self.failed, lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> QueueKey {
        QueueKey::new("/", name)
    }

    #[test]
    fn purge_states_its_blast_radius() {
        let d = Dialog::new(Action::Purge {
            queues: vec![(q("orders.dlq"), 1234)],
        });
        assert_eq!(
            d.describe()[0],
            "Purge queue orders.dlq on / — 1,234 messages will be deleted."
        );
    }

    #[test]
    fn priority_input_is_parsed() {
        let mut d = Dialog::new(Action::Priority {
            queue: q("emails"),
            ids: vec![1, 2],
        });
        d.input = "x".into();
        assert_eq!(d.confirm(1, 0), None);
        assert!(d.error.is_some());
        d.input = "-2".into();
        let Some(cmds) = d.confirm(1, 0) else {
            panic!("a step is valid")
        };
        assert!(
            matches!(&cmds[0], Command::Priority { request, .. } if request.step == Some(-2) && request.set.is_none())
        );
        let mut d = Dialog::new(Action::Priority {
            queue: q("emails"),
            ids: vec![1],
        });
        d.input = "+3".into();
        assert!(
            matches!(&d.confirm(1, 0).unwrap_or_default()[0], Command::Priority { request, .. } if request.step == Some(3))
        );
        let mut d = Dialog::new(Action::Priority {
            queue: q("emails"),
            ids: vec![1],
        });
        d.input = "7".into();
        assert!(
            matches!(&d.confirm(1, 0).unwrap_or_default()[0], Command::Priority { request, .. } if request.set == Some(7))
        );
    }
}
