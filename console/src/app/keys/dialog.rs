//! Keys while a dialog or the prompt line is open: a dialog's keys come from the table (`mod.rs`), narrowed to what
//! its phase allows, which is also what the hint bar shows; text is typed into dialogs that take input and into the
//! prompt; and the `:` commands.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::super::dialog::Phase;
use super::super::messages::parse_filter;
use super::super::queues;
use super::super::stream::Position;
use super::super::{next_id, App, Level, PromptKind, View};
use super::{dialog_allows, find, Context, Do};
use crate::event::Command;

pub fn on_dialog_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let Some(d) = app.dialog.as_mut() else {
        return Vec::new();
    };
    if let Phase::Done { .. } = d.phase {
        // The result is read: any key closes it.
        app.dialog = None;
        return Vec::new();
    }
    // Typed text goes into a dialog that takes input; enter and esc keep their table meaning.
    if d.takes_input() && !matches!(key.code, KeyCode::Enter | KeyCode::Esc | KeyCode::Tab) {
        match key.code {
            KeyCode::Backspace => {
                d.input.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => d.input.push(c),
            _ => {}
        }
        return Vec::new();
    }
    let Some(binding) = find(Context::Dialog, &key, &|does| dialog_allows(app, does)) else {
        return Vec::new();
    };
    let Some(d) = app.dialog.as_mut() else {
        return Vec::new();
    };
    match binding.does {
        Do::Confirm | Do::ConfirmYes | Do::ConfirmTyped => {
            d.confirm(next_id(&mut app.last_id), app.now_ms).unwrap_or_default()
        }
        Do::Cancel | Do::CancelDefault | Do::CancelTyped | Do::Hide => {
            // Hiding a running action: it goes on, and its result shows in the flash line (no dialog is there to
            // match it).
            app.dialog = None;
            Vec::new()
        }
        Do::Destination => {
            d.choosing_queue = !d.choosing_queue;
            d.error = None;
            Vec::new()
        }
        Do::Rate => {
            d.cycle_rate();
            Vec::new()
        }
        // The cancel gets an id of its own: if it fails, the move may still be running, so the error goes to the
        // flash line and the progress stays; its answer (the cancelled task) finds the dialog by task id.
        Do::CancelMove => match d.move_task {
            Some(task) => vec![Command::CancelMove {
                request_id: next_id(&mut app.last_id),
                task,
            }],
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

pub fn on_prompt_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
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
                PromptKind::StreamStart => stream_start(app, &text),
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
            let names: Vec<&str> = app.contexts.iter().map(|c| c.name.as_str()).collect();
            if let Some(done) = complete(&prompt.text, &names) {
                if let Some(p) = app.prompt.as_mut() {
                    p.text = done;
                }
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

/// `o` in a stream's messages view: the pages start at an offset or a time (`first`: the oldest again).
fn stream_start(app: &mut App, text: &str) -> Vec<Command> {
    let now = app.now_ms;
    let Some(m) = app.messages.as_mut() else {
        return Vec::new();
    };
    let start = match Position::parse(text, now) {
        Ok(p @ (Position::Offset(_) | Position::Time(_))) => Some(p),
        Ok(Position::First) => None,
        Ok(_) => {
            app.flash(Level::Warn, "pages start at first, an offset or a time");
            return Vec::new();
        }
        Err(e) => {
            app.flash(Level::Warn, e);
            return Vec::new();
        }
    };
    m.start = start;
    m.selected = 0;
    vec![m.peek(0, next_id(&mut app.last_id))]
}

/// The live table filter of the current view (a listing's cursor goes to the first matching row).
fn set_filter(app: &mut App, text: String) {
    match app.view() {
        View::Queues => app.queue_table.filter = text,
        View::Exchanges => app.exchanges.set_filter(text),
        View::Bindings => app.bindings.set_filter(text),
        View::Connections => app.connections.set_filter(text),
        View::Consumers => app.consumers.set_filter(text),
        View::Nodes => app.nodes.set_filter(text),
        View::Audit => app.audit.list.set_filter(text),
        View::Scheduled => app.scheduled.set_filter(text),
        View::Detail(_) | View::Messages(_) | View::Trace { .. } => {}
    }
}

const COMMANDS: [&str; 14] = [
    "queues",
    "nodes",
    "exchanges",
    "bindings",
    "connections",
    "consumers",
    "audit",
    "scheduled",
    "messages",
    "detail",
    "undo",
    "ctx",
    "trace",
    "quit",
];

/// Tab in the command line: a command by its prefix, or after `ctx ` a context by its prefix (when only one fits).
fn complete(text: &str, contexts: &[&str]) -> Option<String> {
    let (lead, prefix, choices): (&str, &str, Vec<&str>) = match text.strip_prefix("ctx ") {
        Some(name) => ("ctx ", name, contexts.to_vec()),
        None if !text.is_empty() => ("", text, COMMANDS.to_vec()),
        None => return None,
    };
    let mut matches = choices.into_iter().filter(|c| c.starts_with(prefix));
    let first = matches.next()?;
    matches.next().is_none().then(|| format!("{lead}{first}"))
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
        "n" | "no" | "node" | "nodes" | "cluster" => View::Nodes,
        "a" | "au" | "audit" => View::Audit,
        "s" | "sc" | "sched" | "scheduled" | "delayed" => View::Scheduled,
        "u" | "undo" => return super::views::undo(app),
        "ctx" | "context" | "contexts" => return super::super::contexts::command(app, arg),
        "t" | "trace" | "journey" => return super::super::trace::command(app, arg),
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
                    "unknown command ':{other}' (try :queues, :exchanges, :bindings, :connections, :consumers, :audit, \
                     :scheduled, :ctx)"
                ),
            );
            return Vec::new();
        }
    };
    app.goto(view)
}
