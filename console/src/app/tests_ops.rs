//! Operator features of issue 15 in the app: pausing and resuming a queue from the table and the detail, behind
//! a confirmation that states who is affected, and the answer in the dialog.

use ratatui::crossterm::event::KeyCode;

use super::dialog::{Action, Phase};
use super::tests::api;
use super::{update, App};
use crate::event::{ApiEvent, Command};
use crate::fixtures::*;

fn dialog_action(app: &App) -> Option<Action> {
    app.dialog.as_ref().map(|d| d.action.clone())
}

#[test]
fn z_pauses_a_running_queue_behind_a_confirmation_and_resumes_a_paused_one() {
    let mut app = app();
    type_text(&mut app, ":detail orders");
    update(&mut app, code(KeyCode::Enter));
    assert!(
        press(&mut app, 'Z').is_empty(),
        "nothing is sent before the confirmation"
    );
    assert_eq!(
        dialog_action(&app),
        Some(Action::Pause {
            queue: q("orders"),
            pause: true,
            consumers: 1,
            ready: 352,
        })
    );
    let lines = app.dialog.as_ref().map(|d| d.describe()).unwrap_or_default();
    assert_eq!(
        lines[0],
        "Pause queue orders on / until it is resumed: its consumers (1) stay subscribed and get nothing; 352 ready \
         messages wait."
    );
    // A yes/no dialog: enter means no.
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert!(app.dialog.is_none());
    press(&mut app, 'Z');
    let cmds = press(&mut app, 'y');
    let [Command::Pause {
        request_id,
        queue,
        paused: true,
    }] = &cmds[..]
    else {
        panic!("one pause command: {cmds:?}")
    };
    assert_eq!(queue, &q("orders"));
    api(
        &mut app,
        ApiEvent::Paused {
            request_id: *request_id,
            queue: q("orders"),
            paused: true,
            changed: true,
        },
    );
    assert!(matches!(
        app.dialog.as_ref().map(|d| &d.phase),
        Some(Phase::Done { ok: true, lines }) if lines[0] == "Paused orders: nothing is delivered until it is resumed."
    ));

    // Once a snapshot says it is paused, Z offers to resume it (from the queue table too).
    press(&mut app, 'x');
    let mut s = snapshot(31);
    if let Some(o) = s.queues.iter_mut().find(|q| q.name == "orders") {
        o.paused = true;
    }
    api(&mut app, ApiEvent::Snapshot(Box::new(s)));
    update(&mut app, code(KeyCode::Esc));
    type_text(&mut app, "/orders");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'Z');
    assert!(matches!(dialog_action(&app), Some(Action::Pause { pause: false, .. })));
    let cmds = press(&mut app, 'y');
    assert!(matches!(&cmds[..], [Command::Pause { paused: false, .. }]));
}

#[test]
fn the_read_only_console_cannot_pause() {
    let mut app = app();
    app.settings.read_only = true;
    type_text(&mut app, ":detail orders");
    update(&mut app, code(KeyCode::Enter));
    assert!(press(&mut app, 'Z').is_empty());
    assert!(app.dialog.is_none());
}

fn with_undo(app: &mut App, max_bytes: u64) {
    if let Some(o) = app.overview.as_mut() {
        o.undo_window_ms = 600_000;
        o.undo_max_bytes = max_bytes;
    }
}

/// Issue 15, item 5: the purge dialog says beforehand whether (and for how long) the purge can be undone; the
/// result says how; `u` puts the messages back behind a confirmation.
#[test]
fn a_purge_can_be_undone_with_u_and_the_dialogs_say_so() {
    let mut app = app();
    with_undo(&mut app, 64 << 20);
    type_text(&mut app, ":detail orders.dlq");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'P');
    let lines = app.dialog.as_ref().map(|d| d.describe()).unwrap_or_default();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("It can be undone for 10m00s afterwards (u, or :undo).")
    );
    let cmds = press(&mut app, 'y');
    let [Command::Purge { request_id, .. }] = &cmds[..] else {
        panic!("a purge: {cmds:?}")
    };
    let id = *request_id;
    api(
        &mut app,
        ApiEvent::Purged {
            request_id: id,
            queue: q("orders.dlq"),
            purged: 1234,
        },
    );
    api(
        &mut app,
        ApiEvent::Undoable {
            request_id: id,
            queue: q("orders.dlq"),
            action: "purged".into(),
            count: 1234,
            ticket: warren_shared::UndoTicket {
                id: 9,
                until_ms: T0 + 600_000,
            },
        },
    );
    assert!(matches!(
        app.dialog.as_ref().map(|d| &d.phase),
        Some(Phase::Done { lines, .. }) if lines == &vec![
            "Purged 1,234 messages from orders.dlq.".to_string(),
            "u undoes it until 22:23:20.".to_string()
        ]
    ));
    press(&mut app, 'x'); // closes the result
    assert!(
        press(&mut app, 'u').is_empty(),
        "nothing is sent before the confirmation"
    );
    let lines = app.dialog.as_ref().map(|d| d.describe()).unwrap_or_default();
    assert_eq!(
        lines,
        vec![
            "Put back the 1,234 messages purged into orders.dlq on / (at its tail, in their order)?".to_string(),
            "Undo is possible until 22:23:20.".to_string()
        ]
    );
    let cmds = press(&mut app, 'y');
    let [Command::Undo { request_id, id: 9 }] = &cmds[..] else {
        panic!("an undo of ticket 9: {cmds:?}")
    };
    api(
        &mut app,
        ApiEvent::Undone {
            request_id: *request_id,
            result: warren_shared::UndoResult {
                vhost: "/".into(),
                queue: "orders.dlq".into(),
                restored: 1234,
            },
        },
    );
    assert!(matches!(
        app.dialog.as_ref().map(|d| &d.phase),
        Some(Phase::Done { ok: true, lines }) if lines[0] == "Put back 1,234 messages into orders.dlq."
    ));
    assert!(app.last_undo.is_none(), "an undo happens once");
    press(&mut app, 'x');
    press(&mut app, 'u');
    assert!(app.dialog.is_none());
    assert!(app
        .flash
        .as_ref()
        .is_some_and(|f| f.text.starts_with("nothing to undo")));
}

#[test]
fn a_purge_too_large_to_keep_says_it_cannot_be_undone_and_a_late_undo_says_too_late() {
    let mut app = app();
    with_undo(&mut app, 1000);
    type_text(&mut app, ":detail orders.dlq");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'P');
    let lines = app.dialog.as_ref().map(|d| d.describe()).unwrap_or_default();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("This cannot be undone: 380.8KiB is more than the 1000B the broker keeps for undo.")
    );
    update(&mut app, code(KeyCode::Esc));
    app.last_undo = Some(super::UndoRef {
        id: 3,
        queue: q("orders"),
        action: "deleted".into(),
        count: 1,
        until_ms: T0 - 1,
    });
    type_text(&mut app, ":undo");
    update(&mut app, code(KeyCode::Enter));
    assert!(app.dialog.is_none());
    assert!(app.flash.as_ref().is_some_and(|f| f.text.starts_with("too late")));
}
