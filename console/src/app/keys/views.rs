//! What a binding does in each view: the handlers behind the key table (`mod.rs`), one per view, each matching on
//! the binding's [`Do`] (the key itself only says which way a move, a sort or a page goes).

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::super::dialog::{Action, Scope};
use super::super::listings::{Listing, Row};
use super::super::queues::{self, Column};
use super::super::stream::{self, Position};
use super::super::{next_id, App, Level, Prompt, PromptKind, View, WINDOWS_S};
use super::{ctrl, is, Binding, Do};
use crate::event::{Command, QueueKey};

/// Cursor movement common to every table: the new index for `len` rows (the key is one of the move bindings).
fn movement(key: &KeyEvent, current: usize, len: usize, page: usize) -> usize {
    let last = len.saturating_sub(1);
    let next = match key.code {
        KeyCode::Down => current + 1,
        KeyCode::Up => current.saturating_sub(1),
        KeyCode::Home => 0,
        KeyCode::End => last,
        KeyCode::PageDown => current + page,
        KeyCode::PageUp => current.saturating_sub(page),
        _ if ctrl(key, 'f') || ctrl(key, 'd') => current + page,
        _ if ctrl(key, 'b') || ctrl(key, 'u') => current.saturating_sub(page),
        _ if is(key, 'j') => current + 1,
        _ if is(key, 'k') => current.saturating_sub(1),
        _ if is(key, 'g') => 0,
        _ if is(key, 'G') => last,
        _ => current,
    };
    next.min(last)
}

/// Rows a page-up/down moves: the table's visible height, roughly.
fn page(app: &App) -> usize {
    (app.size.1 as usize).saturating_sub(8).max(1)
}

/// Action keys do nothing in read-only mode (and say so).
fn allowed(app: &mut App) -> bool {
    if app.settings.read_only {
        app.flash(Level::Warn, "read-only mode: actions are disabled");
        return false;
    }
    true
}

fn open(app: &mut App, action: Action) -> Vec<Command> {
    if allowed(app) {
        app.dialog = Some(super::super::dialog::Dialog::new(action));
    }
    Vec::new()
}

/// What the broker counts for each message it keeps for undo besides its body and properties (its
/// `quarantine::PER_MESSAGE`).
const UNDO_PER_MESSAGE: u64 = 256;

/// Opens a purge or delete of `count` messages of about `bytes`, saying whether the broker will keep it for undo
/// (from the overview's window and bound).
fn open_removal(app: &mut App, action: Action, count: u64, bytes: u64) -> Vec<Command> {
    let bytes = bytes + count * UNDO_PER_MESSAGE;
    let note = app.overview.as_ref().and_then(|o| {
        if o.undo_window_ms == 0 {
            None
        } else if bytes > o.undo_max_bytes {
            Some(format!(
                "This cannot be undone: {} is more than the {} the broker keeps for undo.",
                crate::format::bytes(bytes),
                crate::format::bytes(o.undo_max_bytes)
            ))
        } else {
            Some(format!(
                "It can be undone for {} afterwards (u, or :undo).",
                crate::format::duration_ms(o.undo_window_ms)
            ))
        }
    });
    open(app, action);
    if let Some(d) = app.dialog.as_mut() {
        d.undo_note = note;
    }
    Vec::new()
}

/// `u` and `:undo`: put back the last purge or delete made from this console, behind a confirmation.
pub fn undo(app: &mut App) -> Vec<Command> {
    let Some(u) = app.last_undo.clone() else {
        app.flash(
            Level::Info,
            "nothing to undo: purges and deletes made from this console can be undone for a while",
        );
        return Vec::new();
    };
    if u.until_ms <= app.now_ms {
        app.last_undo = None;
        app.flash(Level::Warn, format!("too late: the undo of {} has ended", u.queue.name));
        return Vec::new();
    }
    let action = Action::Undo {
        id: u.id,
        what: format!(
            "the {} message{} {}",
            crate::format::count(u.count),
            if u.count == 1 { "" } else { "s" },
            u.action
        ),
        until: crate::format::clock(u.until_ms, app.settings.utc_offset_s),
        queue: u.queue,
    };
    open(app, action)
}

const APPEND_ONLY: &str = "streams are append-only: nothing is purged, deleted, moved out or reprioritised";

fn is_stream(app: &App, queue: &QueueKey) -> bool {
    app.queue(queue).is_some_and(|q| q.stream.is_some())
}

/// A press of `binding`: the global meanings first, then the view's own.
pub fn on_binding(app: &mut App, binding: &Binding, key: KeyEvent) -> Vec<Command> {
    match binding.does {
        Do::Quit => {
            app.quit = true;
            return vec![Command::Quit];
        }
        Do::Help => {
            app.help = true;
            app.help_scroll = 0;
            return Vec::new();
        }
        Do::CommandLine => {
            app.prompt = Some(Prompt {
                kind: PromptKind::Command,
                text: String::new(),
            });
            return Vec::new();
        }
        Do::Filter => {
            let (kind, text) = match app.view() {
                View::Messages(_) => (
                    PromptKind::MessageFilter,
                    app.messages.as_ref().map(|m| m.filter_text.clone()).unwrap_or_default(),
                ),
                View::Queues => (PromptKind::Filter, app.queue_table.filter.clone()),
                View::Detail(_) => return Vec::new(),
                _ => (PromptKind::Filter, list_filter(app)),
            };
            app.prompt = Some(Prompt { kind, text });
            return Vec::new();
        }
        Do::Undo => return undo(app),
        Do::Back => {
            if *app.view() == View::Queues && !app.queue_table.filter.is_empty() {
                app.queue_table.filter.clear();
            } else {
                app.back();
            }
            return Vec::new();
        }
        _ => {}
    }
    match app.view().clone() {
        View::Queues => on_queues(app, binding.does, key),
        View::Detail(q) => on_detail(app, binding.does, key, q),
        View::Messages(q) => on_messages(app, binding.does, key, q),
        View::Connections => on_connections(app, binding.does, key),
        View::Audit => on_audit(app, binding.does, key),
        View::Trace { .. } => on_trace(app, binding.does, key),
        View::Scheduled => on_scheduled(app, binding.does, key),
        View::Exchanges | View::Bindings | View::Consumers | View::Nodes => {
            if binding.does == Do::Move {
                on_list_move(app, key);
            }
            Vec::new()
        }
    }
}

/// The journey view: move between steps, read it again.
fn on_trace(app: &mut App, does: Do, key: KeyEvent) -> Vec<Command> {
    let page_rows = page(app);
    let seq = next_id(&mut app.last_id);
    let Some(t) = app.trace.as_mut() else {
        return Vec::new();
    };
    match does {
        Do::Move => {
            let n = t.journey.as_ref().map_or(0, |j| j.events.len());
            t.selected = movement(&key, t.selected, n, page_rows);
            Vec::new()
        }
        Do::Reread => vec![t.read(seq)],
        _ => Vec::new(),
    }
}

/// The filter of the listing shown (empty elsewhere).
fn list_filter(app: &App) -> String {
    match app.view() {
        View::Exchanges => app.exchanges.filter.clone(),
        View::Bindings => app.bindings.filter.clone(),
        View::Connections => app.connections.filter.clone(),
        View::Consumers => app.consumers.filter.clone(),
        View::Nodes => app.nodes.filter.clone(),
        View::Audit => app.audit.list.filter.clone(),
        View::Scheduled => app.scheduled.filter.clone(),
        _ => String::new(),
    }
}

fn on_list_move(app: &mut App, key: KeyEvent) {
    let page = page(app);
    match app.view() {
        View::Exchanges => move_in(&mut app.exchanges, &key, page),
        View::Bindings => move_in(&mut app.bindings, &key, page),
        View::Connections => move_in(&mut app.connections, &key, page),
        View::Consumers => move_in(&mut app.consumers, &key, page),
        View::Nodes => move_in(&mut app.nodes, &key, page),
        View::Audit => move_in(&mut app.audit.list, &key, page),
        _ => {}
    }
}

/// Moves a listing's cursor within the rows the filter lets through (the ones drawn).
fn move_in<T: Row>(listing: &mut Listing<T>, key: &KeyEvent, page: usize) {
    listing.selected = movement(key, listing.selected, listing.rows().len(), page);
}

/// `:scheduled`: move, mark, and the actions on held messages (each behind a dialog).
fn on_scheduled(app: &mut App, does: Do, key: KeyEvent) -> Vec<Command> {
    use super::super::scheduled::{targets, Op};
    let op = match does {
        Do::Move => {
            let len = app.scheduled.rows().len();
            app.scheduled.selected = movement(&key, app.scheduled.selected, len, page(app));
            return Vec::new();
        }
        Do::Mark => {
            app.scheduled.toggle_mark();
            let len = app.scheduled.rows().len();
            app.scheduled.selected = (app.scheduled.selected + 1).min(len.saturating_sub(1));
            return Vec::new();
        }
        Do::CancelHeld | Do::CancelShown => Op::Cancel,
        Do::DeliverNow => Op::Deliver,
        Do::Reschedule => Op::Reschedule,
        _ => return Vec::new(),
    };
    let keys = if does == Do::CancelShown {
        app.scheduled.shown()
    } else {
        app.scheduled.chosen()
    };
    if keys.is_empty() {
        app.flash(Level::Info, "no held messages here");
        return Vec::new();
    }
    open(
        app,
        Action::Scheduled {
            op,
            targets: targets(&keys),
        },
    )
}

fn on_queues(app: &mut App, does: Do, key: KeyEvent) -> Vec<Command> {
    let rows = queues::rows(&app.queues, &app.queue_table, &app.history);
    let keys: Vec<QueueKey> = rows.iter().map(|q| queues::key(q)).collect();
    let current = queues::selected_index(&rows, &app.queue_table).unwrap_or(0);
    drop(rows);
    let selected = keys.get(current).cloned();
    match does {
        Do::Move => {
            let i = movement(&key, current, keys.len(), page(app));
            app.queue_table.selected = keys.get(i).cloned();
            Vec::new()
        }
        Do::OpenDetail => selected.map(|q| app.push(View::Detail(q))).unwrap_or_default(),
        Do::Messages => selected.map(|q| app.push(View::Messages(q))).unwrap_or_default(),
        Do::Mark => {
            if let Some(q) = selected {
                if !app.queue_table.marked.remove(&q) {
                    app.queue_table.marked.insert(q);
                }
                app.queue_table.selected = keys.get((current + 1).min(keys.len().saturating_sub(1))).cloned();
            }
            Vec::new()
        }
        Do::Sort if is(&key, 'S') => {
            app.queue_table.descending = !app.queue_table.descending;
            Vec::new()
        }
        Do::Sort => {
            app.queue_table.sort = app.queue_table.sort.next();
            app.queue_table.descending = false;
            Vec::new()
        }
        Do::SortColumn => {
            if let KeyCode::Char(c @ '0'..='9') = key.code {
                let i = if c == '0' { 9 } else { c as usize - '1' as usize };
                let column = Column::ALL[i];
                if app.queue_table.sort == column {
                    app.queue_table.descending = !app.queue_table.descending;
                } else {
                    app.queue_table.sort = column;
                    app.queue_table.descending = false;
                }
            }
            Vec::new()
        }
        Do::Purge => {
            let targets: Vec<QueueKey> = if app.queue_table.marked.is_empty() {
                selected.into_iter().collect()
            } else {
                app.queue_table.marked.iter().cloned().collect()
            };
            purge(app, targets)
        }
        Do::Publish => match selected {
            Some(queue) => open(app, Action::Publish { queue }),
            None => Vec::new(),
        },
        Do::Pause => match selected {
            Some(queue) => pause(app, queue),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn purge(app: &mut App, targets: Vec<QueueKey>) -> Vec<Command> {
    if targets.is_empty() {
        return Vec::new();
    }
    if let Some(s) = targets.iter().find(|k| is_stream(app, k)) {
        app.flash(Level::Warn, format!("{} is a stream: {APPEND_ONLY}", s.name));
        return Vec::new();
    }
    // Each queue's purge is kept for undo on its own: the largest decides what the dialog can promise.
    let (count, largest) = targets
        .iter()
        .filter_map(|k| app.queue(k))
        .map(|q| (q.messages_ready, q.message_bytes))
        .max_by_key(|(n, bytes)| bytes + n * UNDO_PER_MESSAGE)
        .unwrap_or((0, 0));
    let queues = targets
        .into_iter()
        .map(|k| {
            let n = app.queue(&k).map_or(0, |q| q.messages_ready);
            (k, n)
        })
        .collect();
    open_removal(app, Action::Purge { queues }, count, largest)
}

/// `Z`: pause a running queue, resume a paused one (as the last snapshot saw it).
fn pause(app: &mut App, queue: QueueKey) -> Vec<Command> {
    let Some(q) = app.queue(&queue) else {
        return Vec::new();
    };
    let action = Action::Pause {
        pause: !q.paused,
        consumers: q.consumers,
        ready: q.messages_ready,
        queue,
    };
    open(app, action)
}

fn on_detail(app: &mut App, does: Do, key: KeyEvent, queue: QueueKey) -> Vec<Command> {
    match does {
        Do::Zoom if is(&key, '+') => app.detail.zoom = app.detail.zoom.saturating_sub(1),
        Do::Zoom => app.detail.zoom = (app.detail.zoom + 1).min(WINDOWS_S.len() - 1),
        Do::Freeze => {
            app.detail.frozen_at = match app.detail.frozen_at {
                Some(_) => None,
                None => Some(app.now_ms),
            }
        }
        Do::Messages => return app.push(View::Messages(queue)),
        Do::Purge => return purge(app, vec![queue]),
        Do::Publish => return open(app, Action::Publish { queue }),
        Do::Pause => return pause(app, queue),
        Do::Replay | Do::Truncate => return on_stream_action(app, does, queue),
        Do::Move => {
            let rows = app.queue(&queue).map(stream::rows_of).unwrap_or_default();
            app.detail.stream_row = movement(&key, app.detail.stream_row, rows.len(), page(app));
        }
        _ => {}
    }
    Vec::new()
}

/// `R` (replay the selected named consumer) and `T` (truncate before) in a stream's detail.
fn on_stream_action(app: &mut App, does: Do, queue: QueueKey) -> Vec<Command> {
    let Some(s) = app.queue(&queue).and_then(|q| q.stream.clone()) else {
        app.flash(Level::Warn, "replay and truncate are for streams");
        return Vec::new();
    };
    if does == Do::Truncate {
        return open(
            app,
            Action::Truncate {
                queue,
                first: s.first_offset,
                next: s.next_offset,
            },
        );
    }
    let rows = stream::rows(&s);
    match rows.get(app.detail.stream_row.min(rows.len().saturating_sub(1))) {
        None => app.flash(Level::Warn, "this stream has no consumers to replay"),
        Some(r) => match &r.name {
            None => app.flash(
                Level::Warn,
                "only consumers with an x-stream-consumer-name have a stored offset to replay",
            ),
            Some(name) => {
                let action = Action::Replay {
                    queue,
                    consumer: name.clone(),
                    offset: r.offset,
                    lag: r.lag,
                };
                return open(app, action);
            }
        },
    }
    Vec::new()
}

fn on_messages(app: &mut App, does: Do, key: KeyEvent, queue: QueueKey) -> Vec<Command> {
    if does == Do::Trace {
        return crate::app::trace::from_selected_message(app);
    }
    let page_rows = page(app);
    let ready = app.queue(&queue).map_or(0, |q| q.messages_ready);
    let stream = is_stream(app, &queue);
    let Some(m) = app.messages.as_mut() else {
        return Vec::new();
    };
    let selected_id = m.selected_message().map(|x| x.id);
    // Marked messages, else the one under the cursor.
    let targets: Vec<u64> = if m.marked.is_empty() {
        selected_id.into_iter().collect()
    } else {
        m.marked.iter().copied().collect()
    };
    match does {
        Do::Move => m.selected = movement(&key, m.selected, m.items.len(), page_rows),
        Do::Pane => m.show_detail = !m.show_detail,
        Do::Mark => {
            if let Some(id) = selected_id {
                if !m.marked.remove(&id) {
                    m.marked.insert(id);
                }
                m.selected = (m.selected + 1).min(m.items.len().saturating_sub(1));
            }
        }
        Do::MarkPage => {
            let page_ids: Vec<u64> = m.items.iter().map(|x| x.id).collect();
            if page_ids.iter().all(|id| m.marked.contains(id)) {
                m.marked.clear();
            } else {
                m.marked.extend(page_ids);
            }
        }
        Do::Page => {
            let size = super::super::messages::PAGE;
            // `]`: the next page, when this one is full; `[`: the previous one, if any.
            let from = if is(&key, ']') {
                (m.items.len() as u64 == size).then_some(m.from + size)
            } else {
                (m.from > 0).then(|| m.from.saturating_sub(size))
            };
            if let Some(from) = from {
                return vec![m.peek(from, next_id(&mut app.last_id))];
            }
        }
        Do::Reread => return vec![m.peek(m.from, next_id(&mut app.last_id))],
        Do::StreamStart if stream => {
            let text = match m.start {
                Some(Position::Offset(n)) => n.to_string(),
                _ => String::new(),
            };
            app.prompt = Some(Prompt {
                kind: PromptKind::StreamStart,
                text,
            });
        }
        Do::StreamStart => app.flash(Level::Warn, "offsets are for streams"),
        Do::Redrive | Do::Delete | Do::Priority | Do::Purge | Do::Edit if stream => app.flash(Level::Warn, APPEND_ONLY),
        Do::Edit => {
            let Some(message) = m.selected_message() else {
                return Vec::new();
            };
            let open = Command::OpenEditor {
                queue,
                id: message.id,
                text: crate::editor::document(message),
            };
            if allowed(app) {
                return vec![open];
            }
        }
        Do::Redrive => {
            let scope = if !m.marked.is_empty() {
                Scope::Marked(m.marked.iter().copied().collect())
            } else if !m.filter.is_empty() {
                Scope::Filtered {
                    filter: m.filter.clone(),
                    text: m.filter_text.clone(),
                    shown: m.items.len() as u64,
                }
            } else {
                Scope::All { count: ready }
            };
            return open(app, Action::Redrive { queue, scope });
        }
        Do::Delete if !targets.is_empty() => {
            let bytes = m.items.iter().filter(|x| targets.contains(&x.id)).map(|x| x.size).sum();
            let count = targets.len() as u64;
            return open_removal(app, Action::Delete { queue, ids: targets }, count, bytes);
        }
        Do::Priority if !targets.is_empty() => return open(app, Action::Priority { queue, ids: targets }),
        Do::Purge => return purge(app, vec![queue]),
        Do::Publish => return open(app, Action::Publish { queue }),
        _ => {}
    }
    Vec::new()
}

fn on_connections(app: &mut App, does: Do, key: KeyEvent) -> Vec<Command> {
    match does {
        Do::CloseConnection => {
            if let Some(c) = app.connections.selected_row().cloned() {
                return open(app, Action::Close { connection: c });
            }
        }
        Do::Move => on_list_move(app, key),
        _ => {}
    }
    Vec::new()
}

fn on_audit(app: &mut App, does: Do, key: KeyEvent) -> Vec<Command> {
    match does {
        Do::Record => app.audit.show_entry = !app.audit.show_entry,
        Do::Older => {
            if !app.audit.more && !app.audit.list.pending {
                app.flash(Level::Info, "no older entries: that is as far back as the broker keeps");
            }
            return app.read_audit(true).into_iter().collect();
        }
        Do::Move => on_list_move(app, key),
        _ => {}
    }
    Vec::new()
}
