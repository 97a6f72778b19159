//! Contexts in the app (issue 15, item 7): `:ctx NAME` asks the run loop for a switch, `:ctx` opens a picker, and a
//! switch starts the app over on the new broker with its settings (read-only included), keeping only what belongs
//! to the operator.

use ratatui::crossterm::event::KeyCode;

use super::keys::{hints, Do};
use super::{update, App, Level, Link, View};
use crate::event::{ApiEvent, Command, Event};
use crate::fixtures::*;

fn run(app: &mut App, command: &str) -> Vec<Command> {
    type_text(app, &format!(":{command}"));
    update(app, code(KeyCode::Enter))
}

fn flash(app: &App) -> (Level, String) {
    app.flash
        .as_ref()
        .map(|f| (f.level, f.text.clone()))
        .unwrap_or((Level::Info, String::new()))
}

#[test]
fn without_a_config_file_ctx_says_where_to_write_one() {
    let mut app = app();
    assert!(run(&mut app, "ctx").is_empty());
    let (level, text) = flash(&app);
    assert_eq!(level, Level::Warn);
    assert!(text.starts_with("no contexts: name your brokers in "), "{text}");
    assert!(text.ends_with("warren/console.toml (see the README)"), "{text}");
    assert_eq!(app.picker, None);
}

#[test]
fn ctx_name_asks_for_a_switch_to_a_known_other_context() {
    let mut app = app_on_local();
    assert_eq!(run(&mut app, "ctx prod"), vec![Command::SwitchContext("prod".into())]);
    assert_eq!(flash(&app), (Level::Info, "switching to context prod…".into()));
    // Nothing changes until the run loop says the switch is made.
    assert_eq!(app.settings.context.as_ref().map(|c| c.name.as_str()), Some("local"));
    assert!(!app.queues.is_empty());

    assert!(run(&mut app, "ctx staging").is_empty());
    assert_eq!(
        flash(&app),
        (
            Level::Warn,
            "no context named 'staging' (there are: local, prod)".into()
        )
    );
    assert!(run(&mut app, "context local").is_empty());
    assert_eq!(flash(&app), (Level::Info, "already on context local".into()));
}

#[test]
fn ctx_alone_opens_a_picker_driven_by_the_key_table() {
    let mut app = app_on_local();
    assert!(run(&mut app, "ctx").is_empty());
    assert_eq!(app.picker, Some(0), "the current context is selected");
    // Only the picker's keys are hinted, and only they act: q does not quit, k at the top stays.
    let hinted: Vec<Do> = hints(&app).iter().map(|b| b.does).collect();
    assert_eq!(hinted, [Do::Pick, Do::Cancel]);
    assert!(press(&mut app, 'q').is_empty());
    assert!(!app.quit);
    press(&mut app, 'k');
    assert_eq!(app.picker, Some(0));
    update(&mut app, code(KeyCode::Down));
    press(&mut app, 'j');
    assert_eq!(app.picker, Some(1), "clamped at the last context");
    assert_eq!(
        update(&mut app, code(KeyCode::Enter)),
        vec![Command::SwitchContext("prod".into())]
    );
    assert_eq!(app.picker, None);

    run(&mut app, "ctx");
    assert!(update(&mut app, code(KeyCode::Esc)).is_empty());
    assert_eq!(app.picker, None);
    assert_eq!(app.views, vec![View::Queues], "esc closed the picker only");
}

#[test]
fn a_switch_clears_everything_learnt_from_the_old_broker() {
    let mut app = app_on_local();
    // State from the old broker: marks, a messages page, an undo ticket, a view stack, a listing.
    type_text(&mut app, " ");
    run(&mut app, "messages orders.dlq");
    let last_id = app.last_id;
    app.last_undo = Some(super::UndoRef {
        id: 7,
        queue: q("orders"),
        action: "purged".into(),
        count: 3,
        until_ms: T0 + 60_000,
    });
    app.size = (150, 50);
    let prod = contexts()[1].clone();
    assert!(update(&mut app, Event::ContextSwitched(prod.clone())).is_empty());

    assert_eq!(app.settings.context, Some(prod.clone()));
    assert_eq!(app.settings.url, "https://warren.prod.example:15671");
    assert!(app.settings.read_only, "prod is read-only");
    assert_eq!(app.link, Link::Connecting);
    assert!(app.queues.is_empty() && app.overview.is_none());
    assert!(app.history.overview().is_empty());
    assert_eq!(app.views, vec![View::Queues]);
    assert!(app.messages.is_none() && app.dialog.is_none() && app.prompt.is_none());
    assert!(app.queue_table.marked.is_empty());
    assert_eq!(app.last_undo, None);
    // What belongs to the operator stays.
    assert_eq!(app.size, (150, 50));
    assert_eq!(app.contexts, contexts());
    assert_eq!(app.last_id, last_id, "ids keep increasing across a switch");
    assert_eq!(
        flash(&app),
        (
            Level::Info,
            "on context prod (https://warren.prod.example:15671)".into()
        )
    );

    // The new broker's feed arrives; prod's read-only is honoured: no purge dialog.
    update(&mut app, Event::Api(ApiEvent::StreamUp));
    update(&mut app, Event::Api(ApiEvent::Snapshot(Box::new(snapshot(0)))));
    assert!(!app.queues.is_empty());
    assert!(press(&mut app, 'P').is_empty());
    assert!(app.dialog.is_none());
    assert_eq!(flash(&app).1, "read-only mode: actions are disabled");
}

#[test]
fn a_failed_switch_keeps_the_current_broker() {
    let mut app = app_on_local();
    let queues = app.queues.len();
    update(
        &mut app,
        Event::ContextFailed {
            name: "prod".into(),
            error: "the password command failed (exit code 1)".into(),
        },
    );
    assert_eq!(
        flash(&app),
        (
            Level::Error,
            "cannot switch to context prod: the password command failed (exit code 1)".into()
        )
    );
    assert_eq!(app.settings.context.as_ref().map(|c| c.name.as_str()), Some("local"));
    assert_eq!(app.queues.len(), queues);
}

#[test]
fn tab_completes_a_context_name_after_ctx() {
    let mut app = app_on_local();
    type_text(&mut app, ":ctx p");
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.prompt.as_ref().map(|p| p.text.as_str()), Some("ctx prod"));
    assert_eq!(
        update(&mut app, code(KeyCode::Enter)),
        vec![Command::SwitchContext("prod".into())]
    );
    type_text(&mut app, ":ct");
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.prompt.as_ref().map(|p| p.text.as_str()), Some("ctx"));
}
