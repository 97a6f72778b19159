//! Scheduled messages in the app (issue 15): `:scheduled` reads what delayed exchanges hold; cancel, deliver now
//! and reschedule act on the marked or selected messages, or on every row the filter shows, behind confirmations.

use ratatui::crossterm::event::KeyCode;
use warren_shared::scheduled::ScheduledAction;

use super::dialog::{Action, Phase};
use super::scheduled::{Op, Target};
use super::tests::api;
use super::{update, App, View};
use crate::event::{ApiEvent, Command, Event};
use crate::fixtures::*;

fn on_scheduled() -> App {
    let mut app = app();
    let cmds = type_text(&mut app, ":scheduled");
    assert!(cmds.is_empty());
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert_eq!(cmds, vec![Command::ReadScheduled]);
    assert_eq!(app.view(), &View::Scheduled);
    assert!(
        update(&mut app, Event::Tick { now_ms: T0 + 100 }).is_empty(),
        "one read at a time"
    );
    api(
        &mut app,
        ApiEvent::Scheduled {
            total: 3,
            messages: scheduled_messages(),
        },
    );
    app
}

#[test]
fn cancel_asks_first_and_sends_the_selected_id_to_its_exchange() {
    let mut app = on_scheduled();
    press(&mut app, 'j');
    assert!(
        press(&mut app, 'x').is_empty(),
        "nothing is sent before the confirmation"
    );
    let expected = Action::Scheduled {
        op: Op::Cancel,
        targets: vec![Target {
            vhost: "/".into(),
            exchange: "retry".into(),
            ids: vec![3],
        }],
    };
    assert_eq!(app.dialog.as_ref().map(|d| d.action.clone()), Some(expected));
    assert_eq!(
        app.dialog.as_ref().map(|d| d.describe()).unwrap_or_default()[0],
        "Cancel 1 held message of retry on /: they are dropped, never delivered."
    );
    // A yes/no dialog: enter means no.
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert!(app.dialog.is_none());
    press(&mut app, 'x');
    let cmds = press(&mut app, 'y');
    let [Command::ScheduledAct { request_id, op, calls }] = &cmds[..] else {
        panic!("one action: {cmds:?}")
    };
    assert_eq!(op, "cancel");
    assert_eq!(
        calls,
        &vec![(
            "/".to_string(),
            "retry".to_string(),
            ScheduledAction {
                ids: Some(vec![3]),
                ..ScheduledAction::default()
            }
        )]
    );
    let after = api(
        &mut app,
        ApiEvent::ScheduledActed {
            request_id: *request_id,
            op: "cancel".into(),
            affected: 1,
        },
    );
    assert_eq!(after, vec![Command::ReadScheduled], "the list is read again");
    assert!(matches!(
        app.dialog.as_ref().map(|d| &d.phase),
        Some(Phase::Done { ok: true, lines }) if lines[0] == "Cancelled 1 held message."
    ));
}

#[test]
fn marked_messages_are_delivered_now_and_the_filter_scopes_cancel_all() {
    let mut app = on_scheduled();
    // space marks and moves down: the first two rows.
    press(&mut app, ' ');
    press(&mut app, ' ');
    assert_eq!(app.scheduled.marked.len(), 2);
    press(&mut app, 'n');
    let cmds = press(&mut app, 'y');
    let [Command::ScheduledAct { op, calls, .. }] = &cmds[..] else {
        panic!("one action: {cmds:?}")
    };
    assert_eq!(op, "deliver");
    let ids: Vec<(&str, Vec<u64>)> = calls
        .iter()
        .map(|(_, x, a)| (x.as_str(), a.ids.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        ids,
        vec![("later", vec![7]), ("retry", vec![3])],
        "one call per exchange"
    );

    // X cancels what the filter shows, and only that.
    let mut app = on_scheduled();
    type_text(&mut app, "/later");
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.scheduled.rows().len(), 2);
    press(&mut app, 'X');
    let cmds = press(&mut app, 'y');
    let [Command::ScheduledAct { calls, .. }] = &cmds[..] else {
        panic!("one action: {cmds:?}")
    };
    assert_eq!(calls[0].2.ids, Some(vec![7, 9]));
    assert_eq!(calls.len(), 1);
}

#[test]
fn reschedule_takes_a_delay_or_a_time_and_refuses_nonsense() {
    let mut app = on_scheduled();
    press(&mut app, 'r');
    type_text(&mut app, "soon");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert!(
        app.dialog.as_ref().is_some_and(|d| d.error.is_some()),
        "the dialog says why"
    );
    for _ in 0..4 {
        update(&mut app, code(KeyCode::Backspace));
    }
    type_text(&mut app, "+15m");
    let cmds = update(&mut app, code(KeyCode::Enter));
    let [Command::ScheduledAct { op, calls, .. }] = &cmds[..] else {
        panic!("one action: {cmds:?}")
    };
    assert_eq!(op, "reschedule");
    assert_eq!(calls[0].2.due_ms, Some(app.now_ms + 15 * 60_000));
    assert_eq!(calls[0].2.ids, Some(vec![7]));
}

#[test]
fn read_only_hides_the_actions_and_a_failed_read_says_so() {
    let mut app = on_scheduled();
    app.settings.read_only = true;
    assert!(press(&mut app, 'x').is_empty());
    assert!(app.dialog.is_none());
    let hinted: Vec<&str> = super::keys::hints(&app).iter().map(|b| b.hint).collect();
    assert!(!hinted.contains(&"cancel") && hinted.contains(&"mark"), "{hinted:?}");
    app.scheduled.fetched_ms = None;
    let cmds = update(&mut app, Event::Tick { now_ms: T0 + 10_000 });
    assert_eq!(cmds, vec![Command::ReadScheduled]);
    api(
        &mut app,
        ApiEvent::ScheduledFailed {
            error: "HTTP 500".into(),
        },
    );
    assert!(app.flash.as_ref().is_some_and(|f| f.text.contains("HTTP 500")));
    assert!(!app.scheduled.pending);
}
