//! `redrive`, `move` and `priority`: the subcommands that rearrange ready messages, with the same requests as the
//! console's dialogs. A move runs as a broker task; the subcommand follows it until it ends, so its exit code says how
//! it ended: 0 when it is done and moved everything it selected; 1 when it failed, was cancelled, or left messages
//! behind (a dead letter without an x-death source, a destination deleted meanwhile), which stay in the source.

use std::time::Duration;

use warren_shared::{MoveRequest, MoveTask, PriorityRequest};

use super::args::{Cmd, Output, Selection};
use super::{confirm, failed, print_json, Failure, Outcome};
use crate::app::messages::parse_filter;
use crate::client::Api;
use crate::event::QueueKey;

/// How often a running move is asked how far it is (as the console's progress bar).
const POLL: Duration = Duration::from_millis(200);

/// What a selection covers, in words for the question.
fn scope(selection: &Selection, limit: Option<u64>) -> String {
    match (&selection.ids[..], &selection.filter.filter, limit) {
        ([], None, None) => "every ready message (those ready when it starts)".into(),
        ([], None, Some(n)) => format!("at most {n} messages from the head"),
        ([], Some(f), _) => format!("every message matching “{f}”"),
        (ids, _, _) => format!("{} message{} by id", ids.len(), if ids.len() == 1 { "" } else { "s" }),
    }
}

fn move_request(
    to: &str,
    queue: Option<String>,
    selection: Selection,
    limit: Option<u64>,
    rate: Option<u32>,
) -> MoveRequest {
    MoveRequest {
        to: to.into(),
        queue,
        ids: (!selection.ids.is_empty()).then_some(selection.ids),
        filter: selection.filter.filter.as_deref().map(parse_filter).unwrap_or_default(),
        limit,
        rate,
        ..MoveRequest::default()
    }
}

pub async fn run(api: &Api, command: Cmd) -> Outcome {
    match command {
        Cmd::Redrive {
            queue,
            selection,
            limit,
            rate,
            vhost,
            yes,
            out,
        } => {
            let key = QueueKey::new(&vhost.vhost, &queue);
            let question = format!(
                "Redrive {} from {queue} on {} back to the queue each died in?",
                scope(&selection, limit),
                vhost.vhost
            );
            confirm(yes.yes, "redrive", &question)?;
            let request = move_request("source", None, selection, limit, rate);
            follow(api, &key, &request, "redrive", out).await
        }
        Cmd::Move {
            queue,
            to,
            selection,
            limit,
            rate,
            vhost,
            yes,
            out,
        } => {
            let key = QueueKey::new(&vhost.vhost, &queue);
            let question = format!(
                "Move {} from {queue} to {to} on {}?",
                scope(&selection, limit),
                vhost.vhost
            );
            confirm(yes.yes, "move", &question)?;
            let request = move_request("queue", Some(to), selection, limit, rate);
            follow(api, &key, &request, "move", out).await
        }
        Cmd::Priority {
            queue,
            set,
            step,
            selection,
            vhost,
            yes,
            out,
        } => {
            let key = QueueKey::new(&vhost.vhost, &queue);
            let change = match (set, step) {
                (Some(p), _) => format!("to {p}"),
                (None, Some(s)) => format!("by {s:+}"),
                (None, None) => return Err(Failure::Usage("give --set N or --step N".into())),
            };
            confirm(
                yes.yes,
                "priority",
                &format!(
                    "Change the priority of {} in {queue} {change}?",
                    scope(&selection, None)
                ),
            )?;
            let request = PriorityRequest {
                ids: (!selection.ids.is_empty()).then_some(selection.ids),
                filter: selection.filter.filter.as_deref().map(parse_filter).unwrap_or_default(),
                set,
                step,
            };
            let r = api
                .priority(&key, &request)
                .await
                .map_err(failed(format!("priority in {queue}")))?;
            if out.json {
                return print_json(&r);
            }
            println!(
                "Changed the priority of {} message{}.",
                r.changed,
                if r.changed == 1 { "" } else { "s" }
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Starts the move and follows it to its end.
async fn follow(api: &Api, queue: &QueueKey, request: &MoveRequest, verb: &str, out: Output) -> Outcome {
    let mut task = api
        .start_move(queue, request)
        .await
        .map_err(failed(format!("{verb} from {}", queue.name)))?;
    if task.state == "running" {
        let id = task.id;
        task = api
            .follow_move(id, POLL, |_| true)
            .await
            .map_err(|e| Failure::Failed(format!("lost track of move {id}: {e}")))?;
    }
    if out.json {
        print_json(&task)?;
    } else {
        println!("{}", summary(&task));
    }
    match task.state.as_str() {
        "done" if task.not_moved > 0 => Err(Failure::Failed(format!(
            "{verb} from {}: {} message{} not moved",
            queue.name,
            task.not_moved,
            if task.not_moved == 1 { "" } else { "s" }
        ))),
        "done" => Ok(()),
        state => Err(Failure::Failed(format!(
            "{verb} from {} {state}{}",
            queue.name,
            task.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        ))),
    }
}

fn summary(task: &MoveTask) -> String {
    let mut text = format!(
        "{}: moved {} of {} from {}",
        task.state, task.moved, task.total, task.queue
    );
    if task.not_moved > 0 {
        text.push_str(&format!(
            "; {} not moved (no x-death source, or the destination is gone): they stay in {}",
            task.not_moved, task.queue
        ));
    }
    text.push('.');
    text
}
