//! Edit and redrive in the app: what happens when the operator's editor closes on a message (`Event::Edited`),
//! and the words and the command of the confirmation dialog that follows.
//!
//! An unchanged document, a failed editor or a document that does not parse ends here with a message and nothing
//! sent. Otherwise the dialog shows the diff and where the copy goes: back to the queue of the message's newest
//! `x-death` by default, or (`tab`) a queue, or an exchange and a routing key, typed as `QUEUE` or
//! `EXCHANGE ROUTING-KEY`.

use warren_shared::edit::EditRequest;

use super::dialog::{Action, Dialog};
use super::{App, Level};
use crate::event::{Command, QueueKey, RequestId};

/// At most this many diff lines are shown (the rest are counted).
const DIFF_LINES: usize = 24;

/// The editor closed on message `id` of `queue`.
pub fn on_edited(app: &mut App, queue: QueueKey, id: u64, before: &str, after: Result<String, String>) {
    let after = match after {
        Ok(text) => text,
        Err(e) => return app.flash(Level::Error, e),
    };
    if after.trim_end() == before.trim_end() {
        return app.flash(Level::Info, "no changes: nothing was published");
    }
    let request = match crate::editor::parse(&after) {
        Ok(r) => r,
        Err(e) => return app.flash(Level::Error, e),
    };
    if app.settings.read_only {
        return app.flash(Level::Warn, "read-only mode: actions are disabled");
    }
    let source = app
        .messages
        .as_ref()
        .and_then(|m| m.items.iter().find(|x| x.id == id))
        .and_then(super::messages::death)
        .map(|(_, q)| q);
    let mut diff = crate::editor::diff(before, &after);
    if diff.len() > DIFF_LINES {
        let more = diff.len() - DIFF_LINES;
        diff.truncate(DIFF_LINES);
        diff.push(format!("  … and {more} more lines"));
    }
    let mut dialog = Dialog::new(Action::Edit {
        queue,
        id,
        source: source.clone(),
        diff,
        request,
    });
    // Without an x-death source, the operator must name where it goes.
    dialog.choosing_queue = source.is_none();
    app.dialog = Some(dialog);
}

/// The dialog's lines: what happens, where the copy goes, and the diff.
pub fn describe(d: &Dialog, queue: &QueueKey, id: u64, source: Option<&str>, diff: &[String]) -> Vec<String> {
    let to = if d.choosing_queue {
        format!(
            "to: {} (a queue, or an exchange and a routing key; tab: {})",
            if d.input.is_empty() { "…" } else { &d.input },
            if source.is_some() {
                "back to the x-death source"
            } else {
                "no x-death source"
            }
        )
    } else {
        match source {
            Some(q) => format!("to queue {q}, where it died (from x-death); tab: somewhere else"),
            None => "no x-death says where it came from: tab, then name a queue".into(),
        }
    };
    let mut lines = vec![
        format!(
            "Publish the edited copy of message {id} of {} on {}; the original is removed once the copy is stored.",
            queue.name, queue.vhost
        ),
        to,
        String::new(),
    ];
    lines.extend(diff.iter().cloned());
    lines
}

/// The command of a confirmed edit, or why the destination typed is not one.
pub fn command(
    d: &Dialog,
    queue: &QueueKey,
    id: u64,
    source: Option<&str>,
    request: &EditRequest,
    request_id: RequestId,
) -> Result<Command, String> {
    let mut request = request.clone();
    if d.choosing_queue {
        let words: Vec<&str> = d.input.split_whitespace().collect();
        match words.as_slice() {
            [q] => {
                request.to = "queue".into();
                request.queue = Some(q.to_string());
            }
            [x, key] => {
                request.to = "exchange".into();
                request.exchange = Some(x.to_string());
                request.routing_key = Some(key.to_string());
            }
            _ => return Err("type a queue, or an exchange and a routing key".into()),
        }
    } else if source.is_none() {
        return Err("this message has no x-death source: tab, then name a queue".into());
    } else {
        request.to = "source".into();
    }
    Ok(Command::Edit {
        request_id,
        queue: queue.clone(),
        id,
        request,
    })
}
