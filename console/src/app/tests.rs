//! The state update of every action, driven through `update` with the fixtures' events.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use warren_shared::MoveTask;

use super::dialog::{Action, Phase, Scope};
use super::queues::Column;
use super::{update, App, Level, Link, View};
use crate::event::{ApiEvent, Command, Event, Resource};
use crate::fixtures::*;

pub(super) fn api(app: &mut App, e: ApiEvent) -> Vec<Command> {
    update(app, Event::Api(e))
}

/// The app on the messages view of `orders.dlq` with a page of 5 dead letters.
pub(super) fn on_dlq() -> App {
    let mut app = app();
    let cmds = type_text(&mut app, ":messages orders.dlq");
    assert!(cmds.is_empty());
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(matches!(&cmds[..], [Command::Peek { queue, from: 0, .. }] if queue.name == "orders.dlq"));
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: seq(&cmds),
            queue: q("orders.dlq"),
            from: 0,
            messages: messages(5, Some("orders")),
        },
    );
    app
}

pub(super) fn task(state: &str, moved: u64) -> MoveTask {
    MoveTask {
        id: 7,
        vhost: "/".into(),
        queue: "orders.dlq".into(),
        to: "source".into(),
        state: state.into(),
        total: 5,
        moved,
        ..MoveTask::default()
    }
}

#[test]
fn navigation_enter_m_esc_and_command_mode() {
    let mut app = app();
    assert_eq!(app.selected_queue().map(|q| q.name.as_str()), Some("analytics"));
    press(&mut app, 'j');
    update(&mut app, code(KeyCode::Down));
    assert_eq!(app.selected_queue().map(|q| q.name.as_str()), Some("emails"));
    update(&mut app, code(KeyCode::Up));
    press(&mut app, 'G');
    assert_eq!(app.selected_queue().map(|q| q.name.as_str()), Some("payments"));
    press(&mut app, 'g');
    press(&mut app, 'j');
    press(&mut app, 'j');
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.view(), &View::Detail(q("emails")));
    assert_eq!(cmds, vec![Command::Fetch(Resource::Consumers)]);
    let cmds = press(&mut app, 'm');
    assert_eq!(app.view(), &View::Messages(q("emails")));
    assert!(matches!(&cmds[..], [Command::Peek { from: 0, count: 50, .. }]));
    update(&mut app, code(KeyCode::Esc));
    assert_eq!(app.view(), &View::Detail(q("emails")));
    update(&mut app, code(KeyCode::Esc));
    update(&mut app, code(KeyCode::Esc));
    assert_eq!(app.views, vec![View::Queues], "esc never leaves the root");

    type_text(&mut app, ":exch");
    update(&mut app, code(KeyCode::Tab));
    assert_eq!(app.prompt.as_ref().map(|p| p.text.as_str()), Some("exchanges"));
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.view(), &View::Exchanges);
    assert_eq!(cmds, vec![Command::Fetch(Resource::Exchanges)]);
    for (cmd, view) in [
        ("bindings", View::Bindings),
        ("co", View::Connections),
        ("consumers", View::Consumers),
        ("detail orders", View::Detail(q("orders"))),
    ] {
        type_text(&mut app, &format!(":{cmd}"));
        update(&mut app, code(KeyCode::Enter));
        assert_eq!(app.view(), &view);
        assert_eq!(
            app.views.len(),
            2,
            "command mode goes to a top-level view over the queues"
        );
    }
    type_text(&mut app, ":nope");
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.flash.as_ref().map(|f| f.level), Some(Level::Warn));

    press(&mut app, '?');
    assert!(app.help);
    press(&mut app, 'q');
    assert!(!app.help && !app.quit, "a key closes the help first");
    let cmds = press(&mut app, 'q');
    assert!(app.quit);
    assert_eq!(cmds, vec![Command::Quit]);
    let mut app2 = crate::fixtures::app();
    update(
        &mut app2,
        Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    );
    assert!(app2.quit);
}

#[test]
fn sort_on_any_column() {
    let mut app = app();
    let names = |app: &App| -> Vec<String> {
        super::queues::rows(&app.queues, &app.queue_table, &app.history)
            .iter()
            .map(|q| q.name.clone())
            .collect()
    };
    press(&mut app, '3');
    assert_eq!(app.queue_table.sort, Column::Ready);
    assert_eq!(names(&app)[0], "analytics"); // 0 ready
    press(&mut app, '3');
    assert!(app.queue_table.descending);
    assert_eq!(names(&app)[0], "orders.dlq"); // 1,234 ready
    press(&mut app, 's');
    assert_eq!(app.queue_table.sort, Column::Unacked);
    assert!(!app.queue_table.descending);
    press(&mut app, 'S');
    assert!(app.queue_table.descending);
    press(&mut app, '9');
    assert_eq!(app.queue_table.sort, Column::Drain);
    assert_eq!(names(&app)[0], "analytics", "drained first");
    press(&mut app, '0');
    assert_eq!(app.queue_table.sort, Column::Trend);
    assert_eq!(names(&app)[0], "emails", "draining first");
    press(&mut app, '0');
    assert_eq!(names(&app)[0], "orders", "growing first");
}

#[test]
fn filter_is_live_and_esc_clears_it() {
    let mut app = app();
    press(&mut app, '/');
    type_text(&mut app, "dlq");
    assert_eq!(app.queue_table.filter, "dlq");
    assert_eq!(app.selected_queue().map(|q| q.name.as_str()), Some("orders.dlq"));
    update(&mut app, code(KeyCode::Enter));
    assert!(app.prompt.is_none());
    assert_eq!(app.queue_table.filter, "dlq", "enter keeps the filter");
    update(&mut app, code(KeyCode::Esc));
    assert!(app.queue_table.filter.is_empty(), "esc clears it");
    assert_eq!(app.views.len(), 1);
}

#[test]
fn space_marks_rows_and_purge_covers_the_marked_queues() {
    let mut app = app();
    press(&mut app, 'j');
    press(&mut app, ' ');
    press(&mut app, ' ');
    assert_eq!(
        app.queue_table
            .marked
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        vec!["audit", "emails"]
    );
    assert_eq!(app.selected_queue().map(|q| q.name.as_str()), Some("orders"));
    press(&mut app, 'P');
    let d = app.dialog.clone().expect("a purge dialog");
    assert!(d.describe()[0].starts_with("Purge 2 queues — 320 messages will be deleted"));
    let cmds = press(&mut app, 'y');
    let id = rid(&cmds);
    assert_eq!(
        cmds,
        vec![
            Command::Purge {
                request_id: id,
                queue: q("audit")
            },
            Command::Purge {
                request_id: id,
                queue: q("emails")
            }
        ]
    );
    api(
        &mut app,
        ApiEvent::Purged {
            request_id: id,
            queue: q("audit"),
            purged: 0,
        },
    );
    assert_eq!(app.dialog.as_ref().map(|d| &d.phase), Some(&Phase::Running));
    api(
        &mut app,
        ApiEvent::Purged {
            request_id: id,
            queue: q("emails"),
            purged: 320,
        },
    );
    assert!(matches!(&app.dialog.as_ref().expect("dialog").phase, Phase::Done { ok: true, lines } if lines.len() == 2));
    press(&mut app, 'x');
    assert!(app.dialog.is_none(), "any key closes a finished dialog");
}

#[test]
fn purge_states_the_count_and_can_be_declined() {
    let mut app = app();
    type_text(&mut app, "/dlq");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'P');
    let d = app.dialog.clone().expect("dialog");
    assert_eq!(
        d.describe()[0],
        "Purge queue orders.dlq on / — 1,234 messages will be deleted."
    );
    assert!(
        update(&mut app, code(KeyCode::Enter)).is_empty(),
        "enter is the default: no"
    );
    assert!(app.dialog.is_none());
    press(&mut app, 'P');
    assert!(press(&mut app, 'n').is_empty());
    assert!(app.dialog.is_none());
    press(&mut app, 'P');
    let cmds = press(&mut app, 'y');
    assert!(matches!(&cmds[..], [Command::Purge { queue, .. }] if queue == &q("orders.dlq")));
    api(
        &mut app,
        ApiEvent::Purged {
            request_id: rid(&cmds),
            queue: q("orders.dlq"),
            purged: 1234,
        },
    );
    assert!(
        matches!(&app.dialog.as_ref().expect("dialog").phase, Phase::Done { ok: true, lines } if lines[0] == "Purged 1,234 messages from orders.dlq.")
    );
}

#[test]
fn redrive_all_with_progress_and_cancel() {
    let mut app = on_dlq();
    press(&mut app, 'R');
    let d = app.dialog.clone().expect("dialog");
    assert_eq!(
        d.action,
        Action::Redrive {
            queue: q("orders.dlq"),
            scope: Scope::All { count: 1234 }
        }
    );
    // Issue 15: the dialog said "all 322" and the broker moved 346 (arrivals in between). It now says exactly what
    // will move, and the request is limited to that many.
    assert_eq!(
        d.describe()[0],
        "Redrive the 1,234 ready messages at the head (messages that arrive meanwhile stay) from orders.dlq on /"
    );
    assert_eq!(d.describe()[2], "at full speed");
    // `r` cycles the rate limit: 10, 100 messages/s.
    press(&mut app, 'r');
    press(&mut app, 'r');
    assert_eq!(
        app.dialog.as_ref().map(|d| d.describe()[2].clone()).as_deref(),
        Some("at most 100 messages/s")
    );
    let cmds = update(&mut app, code(KeyCode::Enter));
    let id = rid(&cmds);
    let [Command::Move { queue, request, .. }] = &cmds[..] else {
        panic!("a move: {cmds:?}")
    };
    assert_eq!(queue, &q("orders.dlq"));
    assert_eq!(
        (
            request.to.as_str(),
            request.ids.as_ref(),
            request.queue.as_ref(),
            request.rate,
            request.limit
        ),
        ("source", None, None, Some(100), Some(1234))
    );
    assert!(request.filter.is_empty());
    api(&mut app, moved(id, task("running", 0)));
    api(&mut app, moved(id, task("running", 2)));
    assert!(matches!(&app.dialog.as_ref().expect("dialog").phase, Phase::Progress(t) if t.moved == 2));
    let cmds = press(&mut app, 'c');
    assert!(matches!(&cmds[..], [Command::CancelMove { task: 7, .. }]));
    // The cancel's answer carries the cancel's own id: it finds the dialog by the move's task id.
    let cmds = api(&mut app, moved(rid(&cmds), task("cancelled", 3)));
    assert!(
        matches!(&app.dialog.as_ref().expect("dialog").phase, Phase::Done { ok: true, lines } if lines[0] == "cancelled: moved 3 of 5, not moved 0.")
    );
    assert!(matches!(&cmds[..], [Command::Peek { .. }]), "the page is read again");
}

#[test]
fn redrive_marked_filtered_or_to_a_named_queue() {
    let mut app = on_dlq();
    press(&mut app, ' ');
    press(&mut app, ' ');
    assert_eq!(app.messages.as_ref().map(|m| m.marked.len()), Some(2));
    press(&mut app, 'R');
    let cmds = press(&mut app, 'y');
    assert!(matches!(&cmds[..], [Command::Move { request, .. }] if request.ids == Some(vec![1, 2])));
    api(&mut app, moved(rid(&cmds), task("done", 2)));
    assert!(
        app.messages.as_ref().is_some_and(|m| m.marked.is_empty()),
        "marks are cleared after a move"
    );
    press(&mut app, 'x');

    // Filtered, to a queue typed in the dialog.
    press(&mut app, '/');
    type_text(&mut app, "h:x-tenant=t1 amount");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(
        matches!(&cmds[..], [Command::Peek { filter, from: 0, .. }] if filter.header.as_deref() == Some("x-tenant") && filter.body_contains.as_deref() == Some("amount"))
    );
    press(&mut app, 'R');
    update(&mut app, code(KeyCode::Tab));
    assert!(
        update(&mut app, code(KeyCode::Enter)).is_empty(),
        "a destination must be typed"
    );
    assert!(app.dialog.as_ref().is_some_and(|d| d.error.is_some()));
    type_text(&mut app, "orders-retry");
    let cmds = update(&mut app, code(KeyCode::Enter));
    let [Command::Move { request, .. }] = &cmds[..] else {
        panic!("a move: {cmds:?}")
    };
    assert_eq!(request.to, "queue");
    assert_eq!(request.queue.as_deref(), Some("orders-retry"));
    assert_eq!(request.filter.header_value.as_deref(), Some("t1"));
    api(
        &mut app,
        ApiEvent::ActionFailed {
            request_id: rid(&cmds),
            error: "no queue 'orders-retry' in vhost '/' (404)".into(),
        },
    );
    assert!(matches!(
        &app.dialog.as_ref().expect("dialog").phase,
        Phase::Done { ok: false, .. }
    ));
}

#[test]
fn delete_marked_messages() {
    let mut app = on_dlq();
    press(&mut app, 'j');
    press(&mut app, ' ');
    press(&mut app, ' ');
    press(&mut app, 'D');
    assert_eq!(
        app.dialog.as_ref().map(|d| d.describe()),
        Some(vec![
            "Delete 2 messages from orders.dlq on /.".to_string(),
            "This cannot be undone.".to_string()
        ])
    );
    let cmds = press(&mut app, 'y');
    let id = rid(&cmds);
    assert_eq!(
        cmds,
        vec![Command::Delete {
            request_id: id,
            queue: q("orders.dlq"),
            ids: vec![2, 3]
        }]
    );
    let cmds = api(
        &mut app,
        ApiEvent::Deleted {
            request_id: id,
            queue: q("orders.dlq"),
            deleted: 2,
        },
    );
    assert!(matches!(&cmds[..], [Command::Peek { .. }]));
    assert!(app.messages.as_ref().is_some_and(|m| m.marked.is_empty()));
    assert!(
        matches!(&app.dialog.as_ref().expect("dialog").phase, Phase::Done { ok: true, lines } if lines[0] == "Deleted 2 messages.")
    );
}

#[test]
fn change_priority_by_step_or_to_a_value() {
    let mut app = on_dlq();
    press(&mut app, ' ');
    press(&mut app, 'p');
    type_text(&mut app, "+2");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(
        matches!(&cmds[..], [Command::Priority { request, .. }] if request.step == Some(2) && request.ids == Some(vec![1]))
    );
    api(
        &mut app,
        ApiEvent::PriorityChanged {
            request_id: rid(&cmds),
            queue: q("orders.dlq"),
            changed: 1,
        },
    );
    press(&mut app, 'x');
    press(&mut app, 'p');
    type_text(&mut app, "9");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(
        matches!(&cmds[..], [Command::Priority { request, .. }] if request.set == Some(9) && request.step.is_none())
    );
    press(&mut app, 'x'); // running: only esc hides
    update(&mut app, code(KeyCode::Esc));
    assert!(app.dialog.is_none());
    api(
        &mut app,
        ApiEvent::PriorityChanged {
            request_id: rid(&cmds),
            queue: q("orders.dlq"),
            changed: 1,
        },
    );
    assert_eq!(
        app.flash.as_ref().map(|f| f.text.as_str()),
        Some("Changed the priority of 1 message."),
        "a result after the dialog was hidden goes to the flash line"
    );
}

#[test]
fn publish_a_test_message() {
    let mut app = app();
    type_text(&mut app, "jjj");
    press(&mut app, 'N');
    type_text(&mut app, "hello");
    update(&mut app, code(KeyCode::Backspace));
    let cmds = update(&mut app, code(KeyCode::Enter));
    let [Command::Publish {
        queue,
        exchange,
        request,
        ..
    }] = &cmds[..]
    else {
        panic!("a publish: {cmds:?}")
    };
    assert_eq!((queue.name.as_str(), exchange.as_str()), ("orders", "amq.default"));
    assert_eq!(
        (request.routing_key.as_str(), request.payload.as_str()),
        ("orders", "hell")
    );
    api(
        &mut app,
        ApiEvent::Published {
            request_id: rid(&cmds),
            queue: q("orders"),
            routed: true,
        },
    );
    assert!(matches!(
        &app.dialog.as_ref().expect("dialog").phase,
        Phase::Done { ok: true, .. }
    ));
}

#[test]
fn close_a_connection() {
    let mut app = app();
    type_text(&mut app, ":connections");
    update(&mut app, code(KeyCode::Enter));
    api(&mut app, ApiEvent::Connections(connections()));
    press(&mut app, 'j');
    press(&mut app, 'x');
    let d = app.dialog.clone().expect("dialog");
    assert_eq!(
        d.describe()[0],
        "Close connection 2 (127.0.0.1:50002, user guest, vhost /) and its 2 channels?"
    );
    let cmds = press(&mut app, 'y');
    assert!(matches!(&cmds[..], [Command::CloseConnection { connection: 2, .. }]));
    let cmds = api(
        &mut app,
        ApiEvent::ConnectionClosed {
            request_id: rid(&cmds),
            connection: 2,
        },
    );
    assert_eq!(cmds, vec![Command::Fetch(Resource::Connections)]);
}

#[test]
fn read_only_hides_and_disables_every_action() {
    let mut app = app();
    app.settings.read_only = true;
    for k in ['P', 'N'] {
        press(&mut app, k);
        assert!(app.dialog.is_none());
    }
    assert_eq!(app.flash.as_ref().map(|f| f.level), Some(Level::Warn));
    assert!(super::keys::hints(&app).iter().all(|b| !b.action));
    let mut app = on_dlq();
    app.settings.read_only = true;
    for k in ['R', 'D', 'p', 'P'] {
        press(&mut app, k);
        assert!(app.dialog.is_none(), "{k}");
    }
}

#[test]
fn stale_and_reconnect() {
    let mut app = app();
    update(&mut app, Event::Tick { now_ms: T0 + 500 });
    api(
        &mut app,
        ApiEvent::StreamDown {
            error: "cannot connect".into(),
            retry_in_ms: 2000,
        },
    );
    assert_eq!(
        app.link,
        Link::Stale {
            since_ms: T0,
            retry_at_ms: T0 + 2500,
            error: "cannot connect".into()
        },
        "stale since the last snapshot"
    );
    assert_eq!(app.flash.as_ref().map(|f| f.level), Some(Level::Warn));
    // No reads while stale.
    type_text(&mut app, ":connections");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    api(
        &mut app,
        ApiEvent::StreamDown {
            error: "cannot connect".into(),
            retry_in_ms: 4000,
        },
    );
    assert!(
        matches!(app.link, Link::Stale { since_ms: T0, .. }),
        "the first failure's time is kept"
    );
    api(&mut app, ApiEvent::StreamUp);
    assert_eq!(app.link, Link::Live);
    assert!(app.flash.as_ref().is_some_and(|f| f.text.contains("reconnected")));
    let cmds = update(&mut app, Event::Tick { now_ms: T0 + 3000 });
    assert_eq!(cmds, vec![Command::Fetch(Resource::Connections)], "reads resume");
    assert!(
        update(&mut app, Event::Tick { now_ms: T0 + 6000 }).is_empty(),
        "one read at a time"
    );
    api(&mut app, ApiEvent::Connections(connections()));
    assert!(
        update(&mut app, Event::Tick { now_ms: T0 + 7000 }).is_empty(),
        "fresh enough"
    );
    assert_eq!(
        update(&mut app, Event::Tick { now_ms: T0 + 8100 }),
        vec![Command::Fetch(Resource::Connections)]
    );
    update(&mut app, Event::Tick { now_ms: T0 + 20_000 });
    assert!(app.flash.is_none(), "flash messages expire");
}

#[test]
fn messages_paging_and_detail_pane() {
    let mut app = on_dlq();
    assert!(press(&mut app, ']').is_empty(), "a short page has no next page");
    let cmds = press(&mut app, 'r');
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: seq(&cmds),
            queue: q("orders.dlq"),
            from: 0,
            messages: messages(50, Some("orders")),
        },
    );
    let cmds = press(&mut app, ']');
    assert!(matches!(&cmds[..], [Command::Peek { from: 50, .. }]));
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: seq(&cmds),
            queue: q("orders.dlq"),
            from: 50,
            messages: messages(3, None),
        },
    );
    let cmds = press(&mut app, '[');
    assert!(matches!(&cmds[..], [Command::Peek { from: 0, .. }]));
    update(&mut app, code(KeyCode::Enter));
    assert!(app.messages.as_ref().is_some_and(|m| m.show_detail));
    press(&mut app, 'A');
    assert_eq!(app.messages.as_ref().map(|m| m.marked.len()), Some(3));
    press(&mut app, 'A');
    assert_eq!(app.messages.as_ref().map(|m| m.marked.len()), Some(0));
}

#[test]
fn detail_zoom_and_freeze() {
    let mut app = app();
    update(&mut app, code(KeyCode::Enter));
    assert_eq!(app.detail.zoom, 1);
    press(&mut app, '+');
    press(&mut app, '+');
    assert_eq!(app.detail.zoom, 0);
    for _ in 0..9 {
        press(&mut app, '-');
    }
    assert_eq!(app.detail.zoom, super::WINDOWS_S.len() - 1);
    press(&mut app, 'f');
    assert_eq!(app.detail.frozen_at, Some(T0));
    press(&mut app, 'f');
    assert_eq!(app.detail.frozen_at, None);
}

#[test]
fn help_scrolls_with_movement_keys_and_closes_on_any_other() {
    let mut app = app();
    press(&mut app, '?');
    assert!(app.help);
    press(&mut app, 'j');
    press(&mut app, 'j');
    update(&mut app, code(KeyCode::Down));
    assert_eq!((app.help, app.help_scroll), (true, 3));
    press(&mut app, 'k');
    assert_eq!(app.help_scroll, 2);
    press(&mut app, 'x');
    assert!(!app.help, "any other key closes it");
    press(&mut app, '?');
    assert_eq!(app.help_scroll, 0, "it opens at the top");
}

#[test]
fn the_hint_bar_lists_each_key_once() {
    let mut app = app();
    for view in ["exchanges", "bindings", "consumers", "connections", "queues"] {
        press(&mut app, ':');
        type_text(&mut app, view);
        update(&mut app, code(KeyCode::Enter));
        let hints = super::keys::hints(&app);
        let mut keys: Vec<&str> = hints.iter().map(|b| b.keys).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n, "{view}: {keys:?}");
    }
}
