//! Keys: the one table of every key binding, which both draws the help overlay and the hint bar and dispatches key
//! presses, so what a key is said to do and what it does cannot drift apart. A binding's `keys` text is parsed to
//! match presses ([`matches`]); its [`Do`] says what it does; the handlers (`views.rs`, `dialog.rs`) turn that into
//! state changes and commands.
//!
//! Order of precedence: the help overlay, then the `:ctx` picker, then an open dialog, then the prompt line, then the current view's
//! bindings, then the global ones. With `--read-only`, action keys do nothing and are neither hinted nor listed.

mod dialog;
mod views;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::dialog::{Action, Phase};
use super::{App, View};
use crate::event::Command;

pub use dialog::run_command;

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Global,
    Queues,
    Detail,
    Messages,
    Connections,
    Audit,
    Trace,
    Scheduled,
    Dialog,
    /// The `:ctx` picker.
    Picker,
}

/// What a binding does (the handlers give it its meaning in each view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Do {
    Help,
    CommandLine,
    Back,
    Quit,
    /// Cursor movement (which key says where).
    Move,
    Filter,
    OpenDetail,
    Messages,
    Mark,
    MarkPage,
    /// `s`: next column, `S`: reverse.
    Sort,
    /// `1`..`9`, `0`: by that column.
    SortColumn,
    Purge,
    Publish,
    Pause,
    Undo,
    /// `+`: in, `-`: out.
    Zoom,
    Freeze,
    Replay,
    Truncate,
    Pane,
    /// `[`: previous, `]`: next.
    Page,
    Reread,
    StreamStart,
    Redrive,
    Delete,
    Priority,
    CloseConnection,
    Record,
    Older,
    /// Confirm or cancel a redrive (`y` / `enter`, `n` / `esc`).
    Confirm,
    Cancel,
    /// Confirm a yes/no dialog of a destructive action: `y` only.
    ConfirmYes,
    /// Cancel a yes/no dialog of a destructive action: `enter` means no.
    CancelDefault,
    /// Confirm or cancel a dialog that takes text (letters are typed, so only `enter` and `esc`).
    ConfirmTyped,
    CancelTyped,
    Destination,
    Rate,
    CancelMove,
    Hide,
    /// `t`: the selected message's journey.
    Trace,
    /// Scheduled messages: cancel the marked or selected ones, or every one shown; deliver now; reschedule.
    CancelHeld,
    CancelShown,
    /// Edit the selected message in $EDITOR and publish the copy.
    Edit,
    DeliverNow,
    Reschedule,
    /// Picker: switch to the selected context.
    Pick,
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys, as shown and as matched: single characters, `enter`, `esc`, `space`, `tab`, `home`, `end`,
    /// `pgup`, `pgdn`, `↓`, `↑`, `^x` (control), `1..9` (a range); a lone `/` between keys only separates them.
    pub keys: &'static str,
    pub what: &'static str,
    pub context: Context,
    /// An action (hidden with --read-only).
    pub action: bool,
    /// Its label in the hint bar ("" = not hinted).
    pub hint: &'static str,
    pub does: Do,
}

const fn b(
    keys: &'static str,
    what: &'static str,
    context: Context,
    action: bool,
    hint: &'static str,
    does: Do,
) -> Binding {
    Binding {
        keys,
        what,
        context,
        action,
        hint,
        does,
    }
}

use Context::{
    Audit as Aud, Connections as Conns, Detail as Det, Dialog as Dlg, Global as Glob, Messages as Msgs, Queues as Qs,
    Scheduled as Sched,
};

/// Every key the console knows.
pub const BINDINGS: &[Binding] = &[
    b("?", "help: every key", Glob, false, "help", Do::Help),
    b(
        ":",
        "command: queues, exchanges, bindings, connections, consumers, audit, scheduled, nodes, messages <queue>, \
         detail <queue>, trace <message id>, undo, ctx [<context>], quit",
        Glob,
        false,
        "views",
        Do::CommandLine,
    ),
    b("esc", "back / close / clear the filter", Glob, false, "back", Do::Back),
    b("q ^c", "quit", Glob, false, "quit", Do::Quit),
    b("j k ↓ ↑", "move", Glob, false, "", Do::Move),
    b("g G home end", "first / last row", Glob, false, "", Do::Move),
    b("pgup pgdn ^b ^f ^u ^d", "page up / down", Glob, false, "", Do::Move),
    b("/", "filter the table", Glob, false, "filter", Do::Filter),
    b(
        "u",
        "undo the last purge or delete made here, while the broker keeps it (also :undo)",
        Glob,
        true,
        "",
        Do::Undo,
    ),
    b("enter", "open the queue's detail", Qs, false, "detail", Do::OpenDetail),
    b(
        "m",
        "messages (peek, nothing is consumed)",
        Qs,
        false,
        "messages",
        Do::Messages,
    ),
    b("space", "mark / unmark", Qs, false, "mark", Do::Mark),
    b("s S", "sort: next column / reverse", Qs, false, "sort", Do::Sort),
    b(
        "1..9 0",
        "sort by column 1..10 (again: reverse)",
        Qs,
        false,
        "",
        Do::SortColumn,
    ),
    b(
        "P",
        "purge the marked (or selected) queues",
        Qs,
        true,
        "purge",
        Do::Purge,
    ),
    b("N", "publish a test message", Qs, true, "", Do::Publish),
    b("Z", "pause / resume the selected queue", Qs, true, "", Do::Pause),
    b("+ -", "zoom the rate charts in / out", Det, false, "zoom", Do::Zoom),
    b("f", "freeze / unfreeze the charts", Det, false, "freeze", Do::Freeze),
    b("m", "messages (peek)", Det, false, "messages", Do::Messages),
    b("P", "purge the queue", Det, true, "purge", Do::Purge),
    b("N", "publish a test message", Det, true, "publish", Do::Publish),
    b(
        "Z",
        "pause / resume the queue (consumers stay, nothing is delivered)",
        Det,
        true,
        "pause",
        Do::Pause,
    ),
    b("j k", "streams: select a consumer", Det, false, "", Do::Move),
    b(
        "R",
        "streams: replay the selected named consumer from first, an offset or a time",
        Det,
        true,
        "replay",
        Do::Replay,
    ),
    b(
        "T",
        "streams: truncate before an offset",
        Det,
        true,
        "truncate",
        Do::Truncate,
    ),
    b(
        "enter",
        "show / hide the message pane (headers, body)",
        Msgs,
        false,
        "pane",
        Do::Pane,
    ),
    b("space", "mark / unmark", Msgs, false, "mark", Do::Mark),
    b(
        "A",
        "mark every message on the page / none",
        Msgs,
        false,
        "",
        Do::MarkPage,
    ),
    b("[ ]", "previous / next page", Msgs, false, "page", Do::Page),
    b("r", "read the page again", Msgs, false, "", Do::Reread),
    b(
        "o",
        "streams: start the pages at an offset or a time",
        Msgs,
        false,
        "offset",
        Do::StreamStart,
    ),
    b(
        "R",
        "redrive marked, filtered or all messages, to their source queue or one you name",
        Msgs,
        true,
        "redrive",
        Do::Redrive,
    ),
    b(
        "D",
        "delete the marked (or selected) messages",
        Msgs,
        true,
        "delete",
        Do::Delete,
    ),
    b(
        "p",
        "change the priority of marked (or selected) messages",
        Msgs,
        true,
        "priority",
        Do::Priority,
    ),
    b(
        "t",
        "the selected message's journey, as a timeline (also :trace ID)",
        Msgs,
        false,
        "journey",
        Do::Trace,
    ),
    b(
        "e",
        "edit the selected message in $EDITOR, then publish the copy (the original goes once the copy is stored)",
        Msgs,
        true,
        "edit",
        Do::Edit,
    ),
    b("P", "purge the queue", Msgs, true, "", Do::Purge),
    b("N", "publish a test message", Msgs, true, "", Do::Publish),
    b(
        "x ^k",
        "close the selected connection",
        Conns,
        true,
        "close",
        Do::CloseConnection,
    ),
    b("space", "mark / unmark", Sched, false, "mark", Do::Mark),
    b(
        "x",
        "cancel the marked (or selected) held messages",
        Sched,
        true,
        "cancel",
        Do::CancelHeld,
    ),
    b(
        "X",
        "cancel every held message the filter shows",
        Sched,
        true,
        "",
        Do::CancelShown,
    ),
    b(
        "n",
        "deliver the marked (or selected) held messages now",
        Sched,
        true,
        "deliver now",
        Do::DeliverNow,
    ),
    b(
        "r",
        "reschedule the marked (or selected) held messages",
        Sched,
        true,
        "reschedule",
        Do::Reschedule,
    ),
    b(
        "enter",
        "show / hide the whole record",
        Aud,
        false,
        "record",
        Do::Record,
    ),
    b(
        "]",
        "read older entries (the next page)",
        Aud,
        false,
        "older",
        Do::Older,
    ),
    b(
        "r",
        "read the journey again",
        Context::Trace,
        false,
        "reread",
        Do::Reread,
    ),
    b(
        "y / enter",
        "confirm (redrive, edit)",
        Dlg,
        false,
        "confirm",
        Do::Confirm,
    ),
    b("n / esc", "cancel", Dlg, false, "cancel", Do::Cancel),
    b(
        "y",
        "confirm (purge, delete, close a connection, pause, undo, cancel or deliver held messages)",
        Dlg,
        false,
        "confirm",
        Do::ConfirmYes,
    ),
    b(
        "n / esc / enter",
        "cancel (purge, delete, close a connection: enter means no)",
        Dlg,
        false,
        "cancel",
        Do::CancelDefault,
    ),
    b(
        "enter",
        "confirm what you typed (priority, publish, replay, truncate, reschedule, a redrive's queue)",
        Dlg,
        false,
        "confirm",
        Do::ConfirmTyped,
    ),
    b("esc", "cancel while typing", Dlg, false, "cancel", Do::CancelTyped),
    b(
        "tab",
        "redrive, edit: to the x-death source ↔ to a queue (or an exchange and key) you type",
        Dlg,
        false,
        "destination",
        Do::Destination,
    ),
    b(
        "r",
        "redrive: rate limit (full speed, 10, 100, 1000 msg/s)",
        Dlg,
        false,
        "rate",
        Do::Rate,
    ),
    b("c", "cancel a running move", Dlg, false, "cancel move", Do::CancelMove),
    b(
        "esc",
        "hide a running action (it goes on; its result shows in the flash line)",
        Dlg,
        false,
        "hide",
        Do::Hide,
    ),
    b("j k ↓ ↑", "select a context", Context::Picker, false, "", Do::Move),
    b(
        "enter",
        "switch to the selected context (the live feed restarts there)",
        Context::Picker,
        false,
        "switch",
        Do::Pick,
    ),
    b("esc", "close the picker", Context::Picker, false, "cancel", Do::Cancel),
];

pub fn context_of(view: &View) -> Context {
    match view {
        View::Queues => Context::Queues,
        View::Detail(_) => Context::Detail,
        View::Messages(_) => Context::Messages,
        View::Connections => Context::Connections,
        View::Audit => Context::Audit,
        View::Trace { .. } => Context::Trace,
        View::Scheduled => Context::Scheduled,
        _ => Context::Global,
    }
}

/// Whether one key of a binding's `keys` text is this press.
fn token_matches(token: &str, key: &KeyEvent) -> bool {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let code = match token {
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "space" => KeyCode::Char(' '),
        "tab" => KeyCode::Tab,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "pgup" => KeyCode::PageUp,
        "pgdn" => KeyCode::PageDown,
        "↓" => KeyCode::Down,
        "↑" => KeyCode::Up,
        _ => {
            if let Some(c) = token.strip_prefix('^') {
                let mut chars = c.chars();
                return match (chars.next(), chars.next()) {
                    (Some(c), None) => ctrl && key.code == KeyCode::Char(c),
                    _ => false,
                };
            }
            if let Some((from, to)) = token.split_once("..") {
                let (Some(from), Some(to)) = (from.chars().next(), to.chars().next()) else {
                    return false;
                };
                return !ctrl && matches!(key.code, KeyCode::Char(c) if (from..=to).contains(&c));
            }
            let mut chars = token.chars();
            return match (chars.next(), chars.next()) {
                (Some(c), None) => !ctrl && key.code == KeyCode::Char(c),
                _ => false,
            };
        }
    };
    !ctrl && key.code == code
}

/// Whether a press is one of `keys` (see [`Binding::keys`]).
pub fn matches(keys: &str, key: &KeyEvent) -> bool {
    let tokens: Vec<&str> = keys.split_whitespace().collect();
    let separator = |t: &&str| tokens.len() > 1 && *t == "/";
    tokens.iter().filter(|t| !separator(t)).any(|t| token_matches(t, key))
}

/// The binding a press means in `context`: the context's own first, then the global ones (dialogs have no global
/// keys). `allowed` narrows what may match (a dialog's phase).
fn find(context: Context, key: &KeyEvent, allowed: &dyn Fn(Do) -> bool) -> Option<&'static Binding> {
    let own = BINDINGS
        .iter()
        .find(|b| b.context == context && allowed(b.does) && matches(b.keys, key));
    own.or_else(|| {
        // Dialogs and the picker have no global keys.
        (context != Context::Dialog && context != Context::Picker)
            .then(|| {
                BINDINGS
                    .iter()
                    .find(|b| b.context == Context::Global && allowed(b.does) && matches(b.keys, key))
            })
            .flatten()
    })
}

/// What a dialog's keys may do in its phase (the hint bar shows exactly these).
fn dialog_allows(app: &App, does: Do) -> bool {
    let Some(d) = &app.dialog else { return false };
    let redrive = matches!(d.action, Action::Redrive { .. } | Action::Edit { .. });
    // Three kinds of confirmation: typing (letters are text: enter and esc only), redrive (y or enter), and the
    // yes/no of purge, delete and close (y only: enter means no).
    let yes_no = matches!(
        d.action,
        Action::Purge { .. }
            | Action::Delete { .. }
            | Action::Close { .. }
            | Action::Pause { .. }
            | Action::Undo { .. }
    ) || matches!(d.action, Action::Scheduled { op, .. } if op != super::scheduled::Op::Reschedule);
    match d.phase {
        Phase::Confirm => match does {
            Do::ConfirmTyped | Do::CancelTyped => d.takes_input(),
            Do::Confirm | Do::Cancel => redrive && !d.takes_input(),
            Do::ConfirmYes | Do::CancelDefault => yes_no,
            Do::Destination => redrive,
            Do::Rate => matches!(d.action, Action::Redrive { .. }) && !d.takes_input(),
            _ => false,
        },
        Phase::Running => does == Do::Hide,
        Phase::Progress(_) => matches!(does, Do::Hide | Do::CancelMove),
        Phase::Done { .. } => false,
    }
}

/// The bindings to hint at right now.
pub fn hints(app: &App) -> Vec<&'static Binding> {
    if app.picker.is_some() {
        return BINDINGS
            .iter()
            .filter(|b| b.context == Context::Picker && !b.hint.is_empty())
            .collect();
    }
    if app.dialog.is_some() {
        return BINDINGS
            .iter()
            .filter(|b| b.context == Context::Dialog && dialog_allows(app, b.does))
            .collect();
    }
    let context = context_of(app.view());
    // Streams take some keys and refuse others (they are append-only): hint at what works on this queue.
    let stream = match app.view() {
        View::Detail(q) | View::Messages(q) => app.queue(q).is_some_and(|q| q.stream.is_some()),
        _ => false,
    };
    let applies = |d: Do| match d {
        Do::Replay | Do::Truncate | Do::StreamStart => stream,
        Do::Redrive | Do::Delete | Do::Priority | Do::Purge | Do::Edit if context != Context::Queues => !stream,
        _ => true,
    };
    let view_keys = BINDINGS.iter().filter(|k| {
        k.context == context && !k.hint.is_empty() && !(k.action && app.settings.read_only) && applies(k.does)
    });
    // In a view without keys of its own (exchanges, bindings, consumers) the view's keys are the global ones.
    let global = BINDINGS
        .iter()
        .filter(|k| context != Context::Global && k.context == Context::Global && !k.hint.is_empty());
    view_keys.chain(global).collect()
}

fn is(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && !key.modifiers.contains(KeyModifiers::CONTROL)
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::CONTROL)
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
        // The overlay scrolls with the movement keys (it may be taller than the terminal); any other key closes it,
        // as its last line says.
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
    if app.picker.is_some() {
        return on_picker_key(app, key);
    }
    if app.dialog.is_some() {
        return dialog::on_dialog_key(app, key);
    }
    if app.prompt.is_some() {
        return dialog::on_prompt_key(app, key);
    }
    let Some(binding) = find(context_of(app.view()), &key, &|_| true) else {
        return Vec::new();
    };
    views::on_binding(app, binding, key)
}

/// Keys while the `:ctx` picker is open (only its own bindings).
fn on_picker_key(app: &mut App, key: KeyEvent) -> Vec<Command> {
    let Some(binding) = find(Context::Picker, &key, &|_| true) else {
        return Vec::new();
    };
    match binding.does {
        Do::Move if is(&key, 'k') || key.code == KeyCode::Up => super::contexts::pick_move(app, -1),
        Do::Move => super::contexts::pick_move(app, 1),
        Do::Pick => return super::contexts::pick(app),
        _ => app.picker = None,
    }
    Vec::new()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub use tests::presses_of;
