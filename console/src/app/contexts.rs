//! Contexts at runtime: `:ctx NAME` asks the run loop to switch brokers, `:ctx` alone opens a picker of the config
//! file's contexts, and [`switched`] starts the app over on the new broker.
//!
//! Invariants: the app only asks for a switch ([`Command::SwitchContext`]); the run loop resolves the context (its
//! password command may take a while), restarts the live feed and drops the old broker's channel, so no answer from
//! the old broker reaches the app after [`switched`]. Everything learnt from a broker (snapshots, listings, marks,
//! pages, dialogs, the undo ticket) is per broker and is dropped with it; what belongs to the operator (the terminal's
//! size, the contexts, the request-id counter) stays.

use super::{App, Level};
use crate::event::{Command, ContextInfo};

/// `:ctx` (`arg`: none, or the context's name).
pub fn command(app: &mut App, arg: Option<&str>) -> Vec<Command> {
    if app.contexts.is_empty() {
        app.flash(
            Level::Warn,
            format!(
                "no contexts: name your brokers in {} (see the README)",
                crate::config::default_path().display()
            ),
        );
        return Vec::new();
    }
    let Some(name) = arg else {
        let current = current_name(app);
        app.picker = Some(
            app.contexts
                .iter()
                .position(|c| Some(c.name.as_str()) == current)
                .unwrap_or(0),
        );
        return Vec::new();
    };
    switch(app, name)
}

fn current_name(app: &App) -> Option<&str> {
    app.settings.context.as_ref().map(|c| c.name.as_str())
}

/// Asks for a switch to `name`, if it is a context and not the current one.
pub fn switch(app: &mut App, name: &str) -> Vec<Command> {
    if !app.contexts.iter().any(|c| c.name == name) {
        let known: Vec<&str> = app.contexts.iter().map(|c| c.name.as_str()).collect();
        app.flash(
            Level::Warn,
            format!("no context named '{name}' (there are: {})", known.join(", ")),
        );
        return Vec::new();
    }
    if current_name(app) == Some(name) {
        app.flash(Level::Info, format!("already on context {name}"));
        return Vec::new();
    }
    app.flash(Level::Info, format!("switching to context {name}…"));
    vec![Command::SwitchContext(name.to_string())]
}

/// The picker's selection moved by `delta` rows (clamped).
pub fn pick_move(app: &mut App, delta: isize) {
    let last = app.contexts.len().saturating_sub(1);
    if let Some(i) = app.picker.as_mut() {
        *i = i.saturating_add_signed(delta).min(last);
    }
}

/// Enter in the picker: switch to the selected context.
pub fn pick(app: &mut App) -> Vec<Command> {
    let Some(name) = app
        .picker
        .take()
        .and_then(|i| app.contexts.get(i))
        .map(|c| c.name.clone())
    else {
        return Vec::new();
    };
    switch(app, &name)
}

/// The run loop switched to `info`'s broker: start over there.
pub fn switched(app: &mut App, info: ContextInfo) {
    let mut settings = app.settings.clone();
    settings.url = info.url.clone();
    settings.read_only = info.read_only;
    let text = format!("on context {} ({})", info.name, info.url);
    settings.context = Some(info);
    let mut fresh = App::new(settings, app.now_ms);
    fresh.size = app.size;
    fresh.contexts = std::mem::take(&mut app.contexts);
    // Ids keep increasing: nothing sent before can be mistaken for something sent after.
    fresh.last_id = app.last_id;
    fresh.flash(Level::Info, text);
    *app = fresh;
}
