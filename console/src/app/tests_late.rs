//! The state update when answers come late, out of order, or after the dialog that asked is gone: an answer reaches
//! only the dialog (or messages page) that asked for it, the rest go to the flash line or are dropped. Also the
//! lifetime of queue marks, the listings' cursor under a filter, and a dead keyboard.

use ratatui::crossterm::event::KeyCode;
use warren_shared::MoveTask;

use super::dialog::Phase;
use super::tests::{api, on_dlq, task};
use super::{update, App, Level};
use crate::event::{ApiEvent, Command, Event};
use crate::fixtures::*;

fn phase(app: &App) -> Option<&Phase> {
    app.dialog.as_ref().map(|d| &d.phase)
}

fn flash(app: &App) -> Option<(Level, &str)> {
    app.flash.as_ref().map(|f| (f.level, f.text.as_str()))
}

#[test]
fn esc_hides_a_running_move_and_its_end_goes_to_the_flash_line() {
    let mut app = on_dlq();
    press(&mut app, 'R');
    let id = rid(&press(&mut app, 'y'));
    api(&mut app, moved(id, task("running", 1)));
    assert!(matches!(phase(&app), Some(Phase::Progress(_))));
    assert!(
        update(&mut app, code(KeyCode::Esc)).is_empty(),
        "esc only hides: no cancel is sent"
    );
    assert!(app.dialog.is_none());
    api(&mut app, moved(id, task("running", 3)));
    assert!(app.dialog.is_none(), "progress does not reopen a hidden dialog");
    assert!(app.flash.is_none(), "progress is not flashed");
    let cmds = api(&mut app, moved(id, task("done", 5)));
    assert_eq!(flash(&app), Some((Level::Info, "move from orders.dlq done: 5 moved")));
    assert!(matches!(&cmds[..], [Command::Peek { .. }]), "the page is read again");
}

#[test]
fn c_is_the_only_key_that_cancels_a_move() {
    let mut app = on_dlq();
    press(&mut app, 'R');
    let id = rid(&press(&mut app, 'y'));
    api(&mut app, moved(id, task("running", 1)));
    for k in ['y', 'n', 'x', 'q'] {
        assert!(press(&mut app, k).is_empty(), "{k}");
    }
    assert!(matches!(phase(&app), Some(Phase::Progress(_))));
    let cmds = press(&mut app, 'c');
    assert!(matches!(&cmds[..], [Command::CancelMove { task: 7, request_id }] if *request_id != id));
}

#[test]
fn a_late_answer_does_not_finish_a_newer_dialog() {
    let mut app = app();
    type_text(&mut app, "/dlq");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'P');
    let first = rid(&press(&mut app, 'y'));
    update(&mut app, code(KeyCode::Esc));
    press(&mut app, 'N');
    type_text(&mut app, "hi");
    let second = rid(&update(&mut app, code(KeyCode::Enter)));
    assert_ne!(first, second);

    api(
        &mut app,
        ApiEvent::Purged {
            request_id: first,
            queue: q("orders.dlq"),
            purged: 1234,
        },
    );
    assert_eq!(
        phase(&app),
        Some(&Phase::Running),
        "the purge's answer is not the publish's"
    );
    assert_eq!(flash(&app), Some((Level::Info, "purged 1234 from orders.dlq")));
    api(
        &mut app,
        ApiEvent::ActionFailed {
            request_id: first,
            error: "purge orders.dlq: timed out".into(),
        },
    );
    assert_eq!(phase(&app), Some(&Phase::Running));
    assert_eq!(flash(&app), Some((Level::Error, "purge orders.dlq: timed out")));
    api(
        &mut app,
        ApiEvent::Published {
            request_id: second,
            queue: q("orders.dlq"),
            routed: true,
        },
    );
    assert!(matches!(phase(&app), Some(Phase::Done { ok: true, lines }) if lines[0] == "Published to orders.dlq."));
}

#[test]
fn a_move_is_followed_by_its_own_dialog_only() {
    let mut app = on_dlq();
    press(&mut app, 'R');
    let first = rid(&press(&mut app, 'y'));
    update(&mut app, code(KeyCode::Esc));
    press(&mut app, 'R');
    let second = rid(&press(&mut app, 'y'));
    api(&mut app, moved(first, task("running", 1)));
    assert_eq!(phase(&app), Some(&Phase::Running), "another dialog's move");
    let other = MoveTask {
        id: 8,
        ..task("running", 2)
    };
    api(&mut app, moved(second, other.clone()));
    assert!(matches!(phase(&app), Some(Phase::Progress(t)) if t.id == 8));
    api(&mut app, moved(first, task("done", 5)));
    assert!(
        matches!(phase(&app), Some(Phase::Progress(t)) if t.id == 8),
        "the first move's end does not end the second's dialog"
    );
    assert_eq!(flash(&app), Some((Level::Info, "move from orders.dlq done: 5 moved")));
}

#[test]
fn a_report_after_the_end_never_reopens_progress() {
    let mut app = on_dlq();
    press(&mut app, 'R');
    let id = rid(&press(&mut app, 'y'));
    api(&mut app, moved(id, task("running", 1)));
    let cancel = rid(&press(&mut app, 'c'));
    api(&mut app, moved(cancel, task("cancelled", 2)));
    assert!(matches!(phase(&app), Some(Phase::Done { ok: true, .. })));
    // A poll that left before the cancel landed.
    api(&mut app, moved(id, task("running", 2)));
    assert!(
        matches!(phase(&app), Some(Phase::Done { ok: true, lines }) if lines[0] == "cancelled: moved 2 of 5, not moved 0.")
    );
    api(&mut app, moved(id, task("cancelled", 2)));
    assert!(matches!(phase(&app), Some(Phase::Done { ok: true, .. })));
}

#[test]
fn a_failed_cancel_leaves_the_progress_and_says_why() {
    let mut app = on_dlq();
    press(&mut app, 'R');
    let id = rid(&press(&mut app, 'y'));
    api(&mut app, moved(id, task("running", 1)));
    let cancel = rid(&press(&mut app, 'c'));
    api(
        &mut app,
        ApiEvent::ActionFailed {
            request_id: cancel,
            error: "cancel move 7: timed out".into(),
        },
    );
    assert!(matches!(phase(&app), Some(Phase::Progress(_))), "the move still runs");
    assert_eq!(flash(&app), Some((Level::Error, "cancel move 7: timed out")));
    api(
        &mut app,
        ApiEvent::ActionFailed {
            request_id: id,
            error: "lost track of move 7: timed out".into(),
        },
    );
    assert!(
        matches!(phase(&app), Some(Phase::Done { ok: false, .. })),
        "the move's own failure ends it"
    );
}

#[test]
fn a_slow_page_does_not_overwrite_a_newer_one() {
    let mut app = on_dlq();
    let old = seq(&press(&mut app, 'r'));
    press(&mut app, '/');
    type_text(&mut app, "amount");
    let new = seq(&update(&mut app, code(KeyCode::Enter)));
    assert!(new > old);
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: old,
            queue: q("orders.dlq"),
            from: 0,
            messages: messages(50, Some("orders")),
        },
    );
    api(
        &mut app,
        ApiEvent::PeekFailed {
            seq: old,
            queue: q("orders.dlq"),
            error: "timed out".into(),
        },
    );
    let m = app.messages.as_ref().expect("messages");
    assert_eq!((m.items.len(), m.loading), (5, true), "the stale answers are dropped");
    assert!(app.flash.is_none());
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: new,
            queue: q("orders.dlq"),
            from: 0,
            messages: messages(2, Some("orders")),
        },
    );
    let m = app.messages.as_ref().expect("messages");
    assert_eq!((m.items.len(), m.loading), (2, false));
}

#[test]
fn queue_marks_end_with_a_purge_or_with_their_queue() {
    let mut app = app();
    type_text(&mut app, "j  j ");
    let marked = |app: &App| -> Vec<String> { app.queue_table.marked.iter().map(|k| k.name.clone()).collect() };
    assert_eq!(marked(&app), vec!["audit", "emails", "orders.dlq"]);
    press(&mut app, 'P');
    let id = rid(&press(&mut app, 'y'));
    api(
        &mut app,
        ApiEvent::Purged {
            request_id: id,
            queue: q("audit"),
            purged: 0,
        },
    );
    api(
        &mut app,
        ApiEvent::ActionFailed {
            request_id: id,
            error: "purge emails: timed out".into(),
        },
    );
    assert_eq!(phase(&app), Some(&Phase::Running), "one purge still to answer");
    api(
        &mut app,
        ApiEvent::Purged {
            request_id: id,
            queue: q("orders.dlq"),
            purged: 1234,
        },
    );
    assert!(matches!(phase(&app), Some(Phase::Done { ok: false, lines }) if lines.len() == 3));
    assert_eq!(
        marked(&app),
        vec!["emails"],
        "only the queue whose purge failed stays marked"
    );

    press(&mut app, 'x');
    type_text(&mut app, "g ");
    assert_eq!(marked(&app), vec!["analytics", "emails"]);
    let mut s = snapshot(30);
    s.queues.retain(|q| q.name != "emails");
    api(&mut app, ApiEvent::Snapshot(Box::new(s)));
    assert_eq!(marked(&app), vec!["analytics"], "a deleted queue loses its mark");
}

#[test]
fn a_listing_cursor_stays_within_the_filtered_rows() {
    let mut app = app();
    type_text(&mut app, ":exchanges");
    update(&mut app, code(KeyCode::Enter));
    api(&mut app, ApiEvent::Exchanges(exchanges()));
    type_text(&mut app, "/amq");
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.exchanges.rows().len(), 2);
    type_text(&mut app, "jjjj");
    assert_eq!(app.exchanges.selected, 1, "j stops at the last row shown");
    press(&mut app, 'G');
    assert_eq!(app.exchanges.selected, 1);
    let mut fewer = exchanges();
    fewer.retain(|x| x.name != "amq.direct");
    api(&mut app, ApiEvent::Exchanges(fewer));
    assert_eq!(app.exchanges.selected, 0, "a reload clamps to the rows shown");

    type_text(&mut app, ":connections");
    update(&mut app, code(KeyCode::Enter));
    api(&mut app, ApiEvent::Connections(connections()));
    type_text(&mut app, "/5000");
    assert_eq!(app.connections.selected, 0);
    type_text(&mut app, "3");
    update(&mut app, code(KeyCode::Enter));
    type_text(&mut app, "jG");
    assert_eq!(app.connections.selected, 0);
    press(&mut app, 'x');
    assert!(
        app.dialog
            .as_ref()
            .is_some_and(|d| d.describe()[0].starts_with("Close connection 3 ")),
        "x closes the row under the cursor"
    );
}

#[test]
fn a_dead_keyboard_quits_with_the_reason() {
    let mut app = app();
    let cmds = update(&mut app, Event::InputFailed("Bad file descriptor (os error 9)".into()));
    assert_eq!(cmds, vec![Command::Quit]);
    assert!(app.quit);
    assert_eq!(
        app.fatal.as_deref(),
        Some("cannot read the terminal any more: Bad file descriptor (os error 9)")
    );
}

#[test]
fn the_audit_view_reads_pages_filters_and_says_who_may_read_it() {
    use super::audit::PAGE;
    use super::View;
    let mut app = app();
    type_text(&mut app, ":au");
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.prompt.as_ref().map(|p| p.text.as_str()), Some("audit"));
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.view(), &View::Audit);
    assert_eq!(
        cmds,
        vec![Command::ReadAudit {
            before: None,
            page_size: PAGE
        }]
    );
    assert!(
        update(&mut app, Event::Tick { now_ms: T0 + 5000 }).is_empty(),
        "one read at a time"
    );

    // A full page: `]` reads the one older than its last entry, and appends it.
    let full: Vec<_> = (0..PAGE as u64)
        .map(|i| warren_shared::AuditEntry {
            id: 1000 - i,
            action: "purge".into(),
            result: "ok".into(),
            ..Default::default()
        })
        .collect();
    api(
        &mut app,
        ApiEvent::Audit {
            before: None,
            entries: full,
        },
    );
    assert_eq!(
        press(&mut app, ']'),
        vec![Command::ReadAudit {
            before: Some(801),
            page_size: PAGE
        }]
    );
    api(
        &mut app,
        ApiEvent::Audit {
            before: Some(801),
            entries: audit_entries(),
        },
    );
    assert_eq!(app.audit.list.items.len(), PAGE + 6);
    assert!(press(&mut app, ']').is_empty(), "a short page was the oldest");
    assert_eq!(flash(&app).map(|f| f.0), Some(Level::Info));

    // The filter runs over the row text; the cursor moves within what it lets through.
    type_text(&mut app, "/mallory");
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.audit.list.rows().len(), 1);
    assert_eq!(app.audit.list.selected_row().map(|e| e.id), Some(105));
    press(&mut app, 'j');
    assert_eq!(app.audit.list.selected, 0);

    // The refresh asks for the newest page again once the interval has passed.
    let cmds = update(&mut app, Event::Tick { now_ms: T0 + 10_000 });
    assert_eq!(
        cmds,
        vec![Command::ReadAudit {
            before: None,
            page_size: PAGE
        }]
    );

    // A user who may not read it is told who may, once, and is not asked again.
    api(
        &mut app,
        ApiEvent::AuditFailed {
            before: None,
            denied: true,
            error: "user 'app' may not read the audit trail (403)".into(),
        },
    );
    assert_eq!(
        flash(&app),
        Some((Level::Warn, "the audit trail is for administrator and monitoring users"))
    );
    assert!(update(&mut app, Event::Tick { now_ms: T0 + 60_000 }).is_empty());
    assert!(press(&mut app, ']').is_empty());
    update(&mut app, code(KeyCode::Esc));
    type_text(&mut app, ":audit");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert_eq!(cmds.len(), 1, "opening the view again asks again");
}

/// Issue 15: "a wrong password says 'lost the broker' and retries forever". Refused credentials say so, stay in the
/// header, and the console stops asking the broker for anything.
#[test]
fn refused_credentials_are_named_and_nothing_more_is_asked() {
    let mut app = App::new(crate::app::Settings::default(), T0);
    api(
        &mut app,
        ApiEvent::CredentialsRefused {
            error: "Login failed (401)".into(),
        },
    );
    assert!(matches!(app.link, super::Link::Refused { .. }));
    let (level, text) = flash(&app).expect("a flash");
    assert_eq!(level, Level::Error);
    assert!(
        text.contains("refused these credentials") && !text.contains("lost the broker"),
        "{text}"
    );
    type_text(&mut app, ":exchanges");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty(), "no read is sent");
}

/// Issue 15: the purge dialog's hint said "y / enter confirm" while enter cancelled. In every kind of dialog, every
/// key of every confirm or cancel binding the hint bar shows does exactly that.
#[test]
fn every_hinted_dialog_key_does_what_its_hint_says() {
    use super::keys::{hints, presses_of, Do};
    type Opener = fn(&mut App);
    let openers: [(&str, Opener); 5] = [
        ("purge", |app| {
            press(app, 'P');
        }),
        ("delete", |app| {
            press(app, 'D');
        }),
        ("redrive", |app| {
            press(app, 'R');
        }),
        ("priority", |app| {
            press(app, 'p');
            type_text(app, "5");
        }),
        ("publish", |app| {
            press(app, 'N');
            type_text(app, "hello");
        }),
    ];
    for (name, open) in openers {
        let mut app = on_dlq();
        open(&mut app);
        assert!(app.dialog.is_some(), "{name}: a dialog");
        let shown: Vec<_> = hints(&app)
            .into_iter()
            .filter(|b| {
                matches!(
                    b.does,
                    Do::Confirm | Do::ConfirmYes | Do::ConfirmTyped | Do::Cancel | Do::CancelDefault | Do::CancelTyped
                )
            })
            .collect();
        assert_eq!(shown.len(), 2, "{name}: one confirm and one cancel hint");
        for binding in shown {
            for key in presses_of(binding.keys) {
                let mut app = on_dlq();
                open(&mut app);
                let cmds = update(&mut app, crate::event::Event::Key(key));
                if matches!(binding.does, Do::Confirm | Do::ConfirmYes | Do::ConfirmTyped) {
                    assert!(
                        !cmds.is_empty(),
                        "{name}: {key:?} is hinted “{}” but sent nothing",
                        binding.hint
                    );
                    assert!(matches!(phase(&app), Some(Phase::Running)), "{name}: {key:?}");
                } else {
                    assert!(
                        cmds.is_empty(),
                        "{name}: {key:?} is hinted “{}” but sent {cmds:?}",
                        binding.hint
                    );
                    assert!(app.dialog.is_none(), "{name}: {key:?} is hinted “{}”", binding.hint);
                }
            }
        }
    }
}

/// Issue 15: the TYPE column said `dlq` or `priority` where the API says `classic`. The type is the API's; what the
/// queue is used as is a separate marker.
#[test]
fn the_type_is_the_apis_and_the_role_is_a_marker() {
    use super::queues::{kind, role};
    let app = app();
    let of = |name: &str| app.queue(&q(name)).cloned().expect("queue");
    let (dlq, emails, orders) = (of("orders.dlq"), of("emails"), of("orders"));
    assert_eq!((kind(&dlq), role(&dlq)), ("classic", Some("dlq")));
    assert_eq!((kind(&emails), role(&emails)), ("classic", Some("prio")));
    assert_eq!((kind(&orders), role(&orders)), ("classic", None));
    let stream = stream_queue();
    assert_eq!((kind(&stream), role(&stream)), ("stream", None));
}

/// Issue 15, item 6: time to drain sorts sooner first and "never" last, and reads "drained", "45.0s" or "never".
#[test]
fn time_to_drain_sorts_never_last() {
    use super::queues::{drain_text, rows, Column};
    let mut app = app();
    app.queue_table.sort = Column::Drain;
    let order: Vec<String> = rows(&app.queues, &app.queue_table, &app.history)
        .iter()
        .map(|q| format!("{} {}", q.name, drain_text(q)))
        .collect();
    assert_eq!(
        order,
        vec![
            "analytics drained",
            "audit drained",
            "payments 15.0s",
            "emails 16.0s",
            "orders never",
            "orders.dlq never"
        ]
    );
}
