//! Keys: the one table of every key binding (the help overlay and the hint bar are drawn from it), and the handlers
//! that turn a key press into state changes and commands.
//!
//! Order of precedence: the help overlay, then an open dialog, then the prompt line, then keys that work everywhere,
//! then the current view's keys. With `--read-only`, action keys do nothing and are neither hinted nor listed.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::dialog::{Action, Dialog, Phase, Scope};
use super::listings::{Listing, Row};
use super::messages::parse_filter;
use super::queues::{self, Column};
use super::{next_id, App, Level, Prompt, PromptKind, View, WINDOWS_S};
use crate::event::{Command, QueueKey};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Global,
    Queues,
    Detail,
    Messages,
    Connections,
    Audit,
    Dialog,
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static str,
    pub what: &'static str,
    pub context: Context,
    /// An action (hidden with --read-only).
    pub action: bool,
    /// Its label in the hint bar ("" = not hinted).
    pub hint: &'static str,
}

const fn b(keys: &'static str, what: &'static str, context: Context, action: bool, hint: &'static str) -> Binding {
    Binding {
        keys,
        what,
        context,
        action,
        hint,
    }
}

use Context::{
    Audit as Aud, Connections as Conns, Detail as Det, Dialog as Dlg, Global as Glob, Messages as Msgs, Queues as Qs,
};

/// Every key the console knows.
pub const BINDINGS: &[Binding] = &[
    b("?", "help: every key", Glob, false, "help"),
    b(
        ":",
        "command: queues, exchanges, bindings, connections, consumers, audit, messages <queue>, detail <queue>, quit",
        Glob,
        false,
        "views",
    ),
    b("esc", "back / close / clear the filter", Glob, false, "back"),
    b("q ^c", "quit", Glob, false, "quit"),
    b("j k ↓ ↑", "move", Glob, false, ""),
    b("g G home end", "first / last row", Glob, false, ""),
    b("pgup pgdn ^b ^f", "page up / down", Glob, false, ""),
    b("/", "filter the table", Glob, false, "filter"),
    b("enter", "open the queue's detail", Qs, false, "detail"),
    b("m", "messages (peek, nothing is consumed)", Qs, false, "messages"),
    b("space", "mark / unmark", Qs, false, "mark"),
    b("s S", "sort: next column / reverse", Qs, false, "sort"),
    b("1..9 0", "sort by column 1..10 (again: reverse)", Qs, false, ""),
    b("P", "purge the marked (or selected) queues", Qs, true, "purge"),
    b("N", "publish a test message", Qs, true, ""),
    b("+ -", "zoom the rate charts in / out", Det, false, "zoom"),
    b("f", "freeze / unfreeze the charts", Det, false, "freeze"),
    b("m", "messages (peek)", Det, false, "messages"),
    b("P", "purge the queue", Det, true, "purge"),
    b("N", "publish a test message", Det, true, "publish"),
    b(
        "enter",
        "show / hide the message pane (headers, body)",
        Msgs,
        false,
        "pane",
    ),
    b("space", "mark / unmark", Msgs, false, "mark"),
    b("A", "mark every message on the page / none", Msgs, false, ""),
    b("[ ]", "previous / next page", Msgs, false, "page"),
    b("r", "read the page again", Msgs, false, ""),
    b(
        "R",
        "redrive marked, filtered or all messages, to their source queue or one you name",
        Msgs,
        true,
        "redrive",
    ),
    b("D", "delete the marked (or selected) messages", Msgs, true, "delete"),
    b(
        "p",
        "change the priority of marked (or selected) messages",
        Msgs,
        true,
        "priority",
    ),
    b("P", "purge the queue", Msgs, true, ""),
    b("N", "publish a test message", Msgs, true, ""),
    b("x ^k", "close the selected connection", Conns, true, "close"),
    b("enter", "show / hide the whole record", Aud, false, "record"),
    b("]", "read older entries (the next page)", Aud, false, "older"),
    b("y / enter", "confirm", Dlg, false, "confirm"),
    b("n / esc", "cancel", Dlg, false, "cancel"),
    b(
        "tab",
        "redrive: to the x-death source ↔ to a queue you type",
        Dlg,
        false,
        "destination",
    ),
    b(
        "r",
        "redrive: rate limit (full speed, 10, 100, 1000 msg/s)",
        Dlg,
        false,
        "rate",
    ),
    b("c", "cancel a running move", Dlg, false, "cancel move"),
    b(
        "esc",
        "hide a running action (it goes on; its result shows in the flash line)",
        Dlg,
        false,
        "hide",
    ),
];

pub fn context_of(view: &View) -> Context {
    match view {
        View::Queues => Context::Queues,
        View::Detail(_) => Context::Detail,
        View::Messages(_) => Context::Messages,
        View::Connections => Context::Connections,
        View::Audit => Context::Audit,
        _ => Context::Global,
    }
}

/// The bindings to hint at right now.
pub fn hints(app: &App) -> Vec<&'static Binding> {
    if let Some(d) = &app.dialog {
        let keys: &[&str] = match d.phase {
            Phase::Confirm if matches!(d.action, Action::Redrive { .. }) => &["y / enter", "n / esc", "tab", "r"],
            Phase::Confirm => &["y / enter", "n / esc"],
            Phase::Running => &["esc"],
            Phase::Progress(_) => &["c", "esc"],
            Phase::Done { .. } => &[],
        };
        return BINDINGS
            .iter()
            .filter(|b| b.context == Context::Dialog && keys.contains(&b.keys))
            .collect();
    }
    let context = if app.dialog.is_some() {
        Context::Dialog
    } else {
        context_of(app.view())
    };
    let view_keys = BINDINGS
        .iter()
        .filter(|k| k.context == context && !k.hint.is_empty() && !(k.action && app.settings.read_only));
    // In a view without keys of its own (exchanges, bindings, consumers) the view's keys are the global ones.
    let global = BINDINGS.iter().filter(|k| {
        !matches!(context, Context::Dialog | Context::Global) && k.context == Context::Global && !k.hint.is_empty()
    });
    view_keys.chain(global).collect()
}

fn is(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && !key.modifiers.contains(KeyModifiers::CONTROL)
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::CONTROL)
}

/// Cursor movement common to every table: the new index for `len` rows, or `None` when the key is not a move.
fn movement(key: &KeyEvent, current: usize, len: usize, page: usize) -> Option<usize> {
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
        _ => return None,
    };
    Some(next.min(last))
}

/// Rows a page-up/down moves: the table's visible height, roughly.
fn page(app: &App) -> usize {
    (app.size.1 as usize).saturating_sub(8).max(1)
}

pub fn on_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    if ctrl(&key, 'c') {
        app.quit = true;
        return vec![Command::Quit];
    }
    if app.help {
        // The overlay scrolls with the movement keys (it may be taller than the terminal); any other key closes it.
        match key.code {
            KeyCode::Char('j') | KeyCode::Down => app.help_scroll = app.help_scroll.saturating_add(1),
            KeyCode::Char('k') | KeyCode::Up => app.help_scroll = app.help_scroll.saturating_sub(1),
            KeyCode::PageDown | KeyCode::Char(' ') => app.help_scroll = app.help_scroll.saturating_add(10),
            KeyCode::PageUp => app.help_scroll = app.help_scroll.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => app.help_scroll = 0,
            _ => app.help = false,
        }
        return Vec::new();
    }
    if app.dialog.is_some() {
        return on_dialog_key(app, key);
    }
    if app.prompt.is_some() {
        return on_prompt_key(app, key);
    }
    match key.code {
        KeyCode::Char('q') => {
            app.quit = true;
            return vec![Command::Quit];
        }
        KeyCode::Char('?') => {
            app.help = true;
            app.help_scroll = 0;
            return Vec::new();
        }
        KeyCode::Char(':') => {
            app.prompt = Some(Prompt {
                kind: PromptKind::Command,
                text: String::new(),
            });
            return Vec::new();
        }
        KeyCode::Char('/') => {
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
        KeyCode::Esc => {
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
        View::Queues => on_queues_key(app, key),
        View::Detail(q) => on_detail_key(app, key, q),
        View::Messages(q) => on_messages_key(app, key, q),
        View::Connections => on_connections_key(app, key),
        View::Audit => on_audit_key(app, key),
        View::Exchanges | View::Bindings | View::Consumers => {
            on_list_key(app, key);
            Vec::new()
        }
    }
}

/// The filter of the listing shown (empty elsewhere).
fn list_filter(app: &App) -> String {
    match app.view() {
        View::Exchanges => app.exchanges.filter.clone(),
        View::Bindings => app.bindings.filter.clone(),
        View::Connections => app.connections.filter.clone(),
        View::Consumers => app.consumers.filter.clone(),
        View::Audit => app.audit.list.filter.clone(),
        _ => String::new(),
    }
}

fn on_list_key(app: &mut App, key: KeyEvent) {
    let page = page(app);
    match app.view() {
        View::Exchanges => move_in(&mut app.exchanges, &key, page),
        View::Bindings => move_in(&mut app.bindings, &key, page),
        View::Connections => move_in(&mut app.connections, &key, page),
        View::Consumers => move_in(&mut app.consumers, &key, page),
        View::Audit => move_in(&mut app.audit.list, &key, page),
        _ => {}
    }
}

/// Moves a listing's cursor within the rows the filter lets through (the ones drawn).
fn move_in<T: Row>(listing: &mut Listing<T>, key: &KeyEvent, page: usize) {
    if let Some(i) = movement(key, listing.selected, listing.rows().len(), page) {
        listing.selected = i;
    }
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
        app.dialog = Some(Dialog::new(action));
    }
    Vec::new()
}

fn on_queues_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let rows = queues::rows(&app.queues, &app.queue_table, &app.history);
    let keys: Vec<QueueKey> = rows.iter().map(|q| queues::key(q)).collect();
    let current = queues::selected_index(&rows, &app.queue_table).unwrap_or(0);
    drop(rows);
    if let Some(i) = movement(&key, current, keys.len(), page(app)) {
        app.queue_table.selected = keys.get(i).cloned();
        return Vec::new();
    }
    let selected = keys.get(current).cloned();
    match key.code {
        KeyCode::Enter => selected.map(|q| app.push(View::Detail(q))).unwrap_or_default(),
        KeyCode::Char('m') => selected.map(|q| app.push(View::Messages(q))).unwrap_or_default(),
        KeyCode::Char(' ') => {
            if let Some(q) = selected {
                if !app.queue_table.marked.remove(&q) {
                    app.queue_table.marked.insert(q);
                }
                app.queue_table.selected = keys.get((current + 1).min(keys.len().saturating_sub(1))).cloned();
            }
            Vec::new()
        }
        KeyCode::Char('s') => {
            app.queue_table.sort = app.queue_table.sort.next();
            app.queue_table.descending = false;
            Vec::new()
        }
        KeyCode::Char('S') => {
            app.queue_table.descending = !app.queue_table.descending;
            Vec::new()
        }
        KeyCode::Char(c @ '0'..='9') => {
            let i = if c == '0' { 9 } else { c as usize - '1' as usize };
            let column = Column::ALL[i];
            if app.queue_table.sort == column {
                app.queue_table.descending = !app.queue_table.descending;
            } else {
                app.queue_table.sort = column;
                app.queue_table.descending = false;
            }
            Vec::new()
        }
        KeyCode::Char('P') => {
            let targets: Vec<QueueKey> = if app.queue_table.marked.is_empty() {
                selected.into_iter().collect()
            } else {
                app.queue_table.marked.iter().cloned().collect()
            };
            purge(app, targets)
        }
        KeyCode::Char('N') => match selected {
            Some(queue) => open(app, Action::Publish { queue }),
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn purge(app: &mut App, targets: Vec<QueueKey>) -> Vec<Command> {
    if targets.is_empty() {
        return Vec::new();
    }
    let queues = targets
        .into_iter()
        .map(|k| {
            let n = app.queue(&k).map_or(0, |q| q.messages_ready);
            (k, n)
        })
        .collect();
    open(app, Action::Purge { queues })
}

fn on_detail_key(app: &mut App, key: KeyEvent, queue: QueueKey) -> Vec<Command> {
    match key.code {
        KeyCode::Char('+') | KeyCode::Char('=') => app.detail.zoom = app.detail.zoom.saturating_sub(1),
        KeyCode::Char('-') | KeyCode::Char('_') => app.detail.zoom = (app.detail.zoom + 1).min(WINDOWS_S.len() - 1),
        KeyCode::Char('f') => {
            app.detail.frozen_at = match app.detail.frozen_at {
                Some(_) => None,
                None => Some(app.now_ms),
            }
        }
        KeyCode::Char('m') => return app.push(View::Messages(queue)),
        KeyCode::Char('P') => return purge(app, vec![queue]),
        KeyCode::Char('N') => return open(app, Action::Publish { queue }),
        _ => {}
    }
    Vec::new()
}

fn on_messages_key(app: &mut App, key: KeyEvent, queue: QueueKey) -> Vec<Command> {
    let page_rows = page(app);
    let ready = app.queue(&queue).map_or(0, |q| q.messages_ready);
    let Some(m) = app.messages.as_mut() else {
        return Vec::new();
    };
    if let Some(i) = movement(&key, m.selected, m.items.len(), page_rows) {
        m.selected = i;
        return Vec::new();
    }
    let selected_id = m.selected_message().map(|x| x.id);
    // Marked messages, else the one under the cursor.
    let targets: Vec<u64> = if m.marked.is_empty() {
        selected_id.into_iter().collect()
    } else {
        m.marked.iter().copied().collect()
    };
    match key.code {
        KeyCode::Enter => m.show_detail = !m.show_detail,
        KeyCode::Char(' ') => {
            if let Some(id) = selected_id {
                if !m.marked.remove(&id) {
                    m.marked.insert(id);
                }
                m.selected = (m.selected + 1).min(m.items.len().saturating_sub(1));
            }
        }
        KeyCode::Char('A') => {
            let page_ids: Vec<u64> = m.items.iter().map(|x| x.id).collect();
            if page_ids.iter().all(|id| m.marked.contains(id)) {
                m.marked.clear();
            } else {
                m.marked.extend(page_ids);
            }
        }
        KeyCode::Char(']') if m.items.len() as u64 == super::messages::PAGE => {
            return vec![m.peek(m.from + super::messages::PAGE, next_id(&mut app.last_id))];
        }
        KeyCode::Char('[') if m.from > 0 => {
            return vec![m.peek(m.from.saturating_sub(super::messages::PAGE), next_id(&mut app.last_id))];
        }
        KeyCode::Char('r') => return vec![m.peek(m.from, next_id(&mut app.last_id))],
        KeyCode::Char('R') => {
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
        KeyCode::Char('D') if !targets.is_empty() => return open(app, Action::Delete { queue, ids: targets }),
        KeyCode::Char('p') if !targets.is_empty() => return open(app, Action::Priority { queue, ids: targets }),
        KeyCode::Char('P') => return purge(app, vec![queue]),
        KeyCode::Char('N') => return open(app, Action::Publish { queue }),
        _ => {}
    }
    Vec::new()
}

fn on_connections_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    if is(&key, 'x') || ctrl(&key, 'k') {
        if let Some(c) = app.connections.selected_row().cloned() {
            return open(app, Action::Close { connection: c });
        }
        return Vec::new();
    }
    on_list_key(app, key);
    Vec::new()
}

fn on_audit_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    if key.code == KeyCode::Enter {
        app.audit.show_entry = !app.audit.show_entry;
    } else if is(&key, ']') {
        if !app.audit.more && !app.audit.list.pending {
            app.flash(Level::Info, "no older entries: that is as far back as the broker keeps");
        }
        return app.read_audit(true).into_iter().collect();
    } else {
        on_list_key(app, key);
    }
    Vec::new()
}

fn on_dialog_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let Some(d) = app.dialog.as_mut() else {
        return Vec::new();
    };
    match &d.phase {
        Phase::Done { .. } => {
            app.dialog = None;
            Vec::new()
        }
        Phase::Running | Phase::Progress(_) if key.code == KeyCode::Esc => {
            // Hide it: the action goes on, and its result shows in the flash line (no dialog is there to match it).
            app.dialog = None;
            Vec::new()
        }
        Phase::Running => Vec::new(),
        Phase::Progress(_) => match d.move_task {
            // The cancel gets an id of its own: if it fails, the move may still be running, so the error goes to
            // the flash line and the progress stays; its answer (the cancelled task) finds the dialog by task id.
            Some(task) if is(&key, 'c') => vec![Command::CancelMove {
                request_id: next_id(&mut app.last_id),
                task,
            }],
            _ => Vec::new(),
        },
        Phase::Confirm => {
            if key.code == KeyCode::Esc {
                app.dialog = None;
                return Vec::new();
            }
            if key.code == KeyCode::Tab && matches!(d.action, Action::Redrive { .. }) {
                d.choosing_queue = !d.choosing_queue;
                d.error = None;
                return Vec::new();
            }
            if is(&key, 'r') && is_redrive(d) && !d.takes_input() {
                d.cycle_rate();
                return Vec::new();
            }
            if d.takes_input() {
                match key.code {
                    KeyCode::Enter => return d.confirm(next_id(&mut app.last_id)).unwrap_or_default(),
                    KeyCode::Backspace => {
                        d.input.pop();
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => d.input.push(c),
                    _ => {}
                }
                return Vec::new();
            }
            let confirm = is(&key, 'y') || is(&key, 'Y') || (key.code == KeyCode::Enter && is_redrive(d));
            if confirm {
                return d.confirm(next_id(&mut app.last_id)).unwrap_or_default();
            }
            if is(&key, 'n') || is(&key, 'N') || key.code == KeyCode::Enter {
                app.dialog = None;
            }
            Vec::new()
        }
    }
}

fn is_redrive(d: &Dialog) -> bool {
    matches!(d.action, Action::Redrive { .. })
}

fn on_prompt_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let Some(prompt) = app.prompt.as_mut() else {
        return Vec::new();
    };
    let kind = prompt.kind;
    match key.code {
        KeyCode::Esc => {
            app.prompt = None;
            if kind == PromptKind::Filter {
                set_filter(app, String::new());
            }
            Vec::new()
        }
        KeyCode::Enter => {
            let text = prompt.text.trim().to_string();
            app.prompt = None;
            match kind {
                PromptKind::Command => run_command(app, &text),
                PromptKind::Filter => Vec::new(),
                PromptKind::MessageFilter => match app.messages.as_mut() {
                    Some(m) => {
                        m.filter = parse_filter(&text);
                        m.filter_text = text;
                        m.marked.clear();
                        m.selected = 0;
                        vec![m.peek(0, next_id(&mut app.last_id))]
                    }
                    None => Vec::new(),
                },
            }
        }
        KeyCode::Backspace => {
            prompt.text.pop();
            let text = prompt.text.clone();
            if kind == PromptKind::Filter {
                set_filter(app, text);
            }
            Vec::new()
        }
        KeyCode::Tab if kind == PromptKind::Command => {
            if let Some(done) = complete(&prompt.text) {
                prompt.text = done;
            }
            Vec::new()
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            prompt.text.push(c);
            let text = prompt.text.clone();
            if kind == PromptKind::Filter {
                set_filter(app, text);
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// The live table filter of the current view (a listing's cursor goes to the first matching row).
fn set_filter(app: &mut App, text: String) {
    match app.view() {
        View::Queues => app.queue_table.filter = text,
        View::Exchanges => app.exchanges.set_filter(text),
        View::Bindings => app.bindings.set_filter(text),
        View::Connections => app.connections.set_filter(text),
        View::Consumers => app.consumers.set_filter(text),
        View::Audit => app.audit.list.set_filter(text),
        View::Detail(_) | View::Messages(_) => {}
    }
}

const COMMANDS: [&str; 9] = [
    "queues",
    "exchanges",
    "bindings",
    "connections",
    "consumers",
    "audit",
    "messages",
    "detail",
    "quit",
];

fn complete(text: &str) -> Option<String> {
    let mut matches = COMMANDS.iter().filter(|c| c.starts_with(text) && !text.is_empty());
    let first = matches.next()?;
    matches.next().is_none().then(|| first.to_string())
}

/// `:` commands: a view by (a prefix of) its name, `messages <queue>` / `detail <queue>`, or `quit`.
pub fn run_command(app: &mut App, text: &str) -> Vec<Command> {
    let mut words = text.split_whitespace();
    let Some(word) = words.next() else {
        return Vec::new();
    };
    let arg = words.next();
    let view = match word {
        "q" | "q!" | "quit" | "exit" => {
            app.quit = true;
            return vec![Command::Quit];
        }
        "qu" | "queue" | "queues" => View::Queues,
        "x" | "ex" | "exchange" | "exchanges" => View::Exchanges,
        "b" | "bi" | "binding" | "bindings" => View::Bindings,
        "co" | "conn" | "conns" | "connection" | "connections" => View::Connections,
        "cs" | "cons" | "consumer" | "consumers" => View::Consumers,
        "a" | "au" | "audit" => View::Audit,
        "m" | "msg" | "messages" | "peek" | "d" | "detail" => {
            let Some(name) = arg else {
                app.flash(Level::Warn, format!("usage: :{word} <queue>"));
                return Vec::new();
            };
            let Some(q) = app.queues.iter().find(|q| q.name == name).map(queues::key) else {
                app.flash(Level::Warn, format!("no queue named '{name}'"));
                return Vec::new();
            };
            app.queue_table.selected = Some(q.clone());
            let view = if word.starts_with('d') {
                View::Detail(q)
            } else {
                View::Messages(q)
            };
            return app.goto(view);
        }
        other => {
            app.flash(
                Level::Warn,
                format!(
                    "unknown command ':{other}' (try :queues, :exchanges, :bindings, :connections, :consumers, :audit)"
                ),
            );
            return Vec::new();
        }
    };
    app.goto(view)
}
