//! Snapshot tests of every view (ratatui's `TestBackend` + insta), including the stale state, dialogs, the help
//! overlay and a 40x12 terminal. The app is built from the fixtures at fixed instants, so frames are deterministic.

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::Terminal;

use crate::app::{update, App};
use crate::event::{ApiEvent, Command, Event};
use crate::fixtures::*;

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| super::render(f, app)).expect("draw");
    t
}

fn api(app: &mut App, e: ApiEvent) {
    update(app, Event::Api(e));
}

fn go(app: &mut App, command: &str) -> Vec<Command> {
    type_text(app, &format!(":{command}"));
    update(app, code(KeyCode::Enter))
}

fn dlq_messages() -> App {
    let mut app = app();
    let cmds = go(&mut app, "messages orders.dlq");
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: seq(&cmds),
            queue: q("orders.dlq"),
            from: 0,
            messages: messages(12, Some("orders")),
        },
    );
    app
}

#[test]
fn queues() {
    let mut app = app();
    type_text(&mut app, "jj ");
    insta::assert_snapshot!("queues_120x30", draw(&app, 120, 30).backend());
    insta::assert_snapshot!("queues_160x24", draw(&app, 160, 24).backend());
}

#[test]
fn queues_filtered_and_sorted() {
    let mut app = app();
    type_text(&mut app, "33/ord");
    insta::assert_snapshot!(draw(&app, 100, 20).backend());
}

#[test]
fn queues_stale() {
    let mut app = app();
    update(&mut app, Event::Tick { now_ms: T0 + 1000 });
    api(
        &mut app,
        ApiEvent::StreamDown {
            error: "cannot connect (is the broker running, and is --url right?)".into(),
            retry_in_ms: 4000,
        },
    );
    update(&mut app, Event::Tick { now_ms: T0 + 2000 });
    insta::assert_snapshot!(draw(&app, 120, 30).backend());
}

#[test]
fn connecting_before_the_first_snapshot() {
    let app = App::new(crate::app::Settings::default(), T0);
    insta::assert_snapshot!(draw(&app, 80, 12).backend());
}

#[test]
fn tiny_terminal() {
    let mut app = app();
    insta::assert_snapshot!("tiny_queues", draw(&app, 40, 12).backend());
    update(&mut app, code(KeyCode::Enter));
    insta::assert_snapshot!("tiny_detail", draw(&app, 40, 12).backend());
    let mut app = dlq_messages();
    insta::assert_snapshot!("tiny_messages", draw(&app, 40, 12).backend());
    update(&mut app, key('R'));
    insta::assert_snapshot!("tiny_dialog", draw(&app, 40, 12).backend());
    update(&mut app, Event::Tick { now_ms: T0 + 1000 });
    api(
        &mut app,
        ApiEvent::StreamDown {
            error: "down".into(),
            retry_in_ms: 8000,
        },
    );
    update(&mut app, code(KeyCode::Esc));
    insta::assert_snapshot!("tiny_stale", draw(&app, 40, 12).backend());
}

#[test]
fn detail() {
    let mut app = app();
    type_text(&mut app, "jjj");
    update(&mut app, code(KeyCode::Enter));
    api(&mut app, ApiEvent::Consumers(consumers()));
    insta::assert_snapshot!("detail_140x44", draw(&app, 140, 44).backend());
    type_text(&mut app, "+f");
    insta::assert_snapshot!("detail_zoomed_frozen_100x30", draw(&app, 100, 30).backend());
}

#[test]
fn messages_view() {
    let mut app = dlq_messages();
    type_text(&mut app, "j  ");
    insta::assert_snapshot!("messages_120x30", draw(&app, 120, 30).backend());
    update(&mut app, code(KeyCode::Enter));
    insta::assert_snapshot!("messages_pane_120x40", draw(&app, 120, 40).backend());
}

#[test]
fn messages_binary_body_as_hex() {
    let mut app = app();
    let cmds = go(&mut app, "messages orders");
    let mut m = message(9, None);
    m.body_encoding = "base64".into();
    m.body = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gQUJD".into();
    api(
        &mut app,
        ApiEvent::Peeked {
            seq: seq(&cmds),
            queue: q("orders"),
            from: 0,
            messages: vec![m],
        },
    );
    update(&mut app, code(KeyCode::Enter));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn listings() {
    let mut app = app();
    go(&mut app, "exchanges");
    api(&mut app, ApiEvent::Exchanges(exchanges()));
    insta::assert_snapshot!("exchanges", draw(&app, 100, 14).backend());
    go(&mut app, "bindings");
    api(&mut app, ApiEvent::Bindings(bindings()));
    insta::assert_snapshot!("bindings", draw(&app, 100, 14).backend());
    go(&mut app, "connections");
    api(&mut app, ApiEvent::Connections(connections()));
    insta::assert_snapshot!("connections", draw(&app, 100, 14).backend());
    go(&mut app, "consumers");
    api(&mut app, ApiEvent::Consumers(consumers()));
    insta::assert_snapshot!("consumers", draw(&app, 100, 14).backend());
}

#[test]
fn the_cluster_in_the_nodes_view_and_the_header() {
    let mut app = app();
    go(&mut app, "nodes");
    api(&mut app, ApiEvent::Cluster(Box::new(cluster())));
    insta::assert_snapshot!("nodes", draw(&app, 120, 20).backend());
    // While the leader is unreachable (a failover), the badge says so.
    api(
        &mut app,
        ApiEvent::StreamDown {
            error: "connection refused".into(),
            retry_in_ms: 2000,
        },
    );
    insta::assert_snapshot!("nodes_leader_unreachable", draw(&app, 120, 20).backend());
    // The client found the new leader and moved there: the flash says who and where, the header shows its URL,
    // and the banner goes once the feed is up again.
    api(
        &mut app,
        ApiEvent::LeaderMoved {
            url: "http://10.0.0.2:15672".into(),
            cluster: Box::new(warren_shared::cluster::ClusterSummary {
                node: "n2".into(),
                term: 9,
                leader: cluster().nodes.get(1).cloned(),
                in_sync: vec!["n2".into(), "n3".into()],
                replicas: vec![],
                ..cluster()
            }),
        },
    );
    api(&mut app, ApiEvent::StreamUp);
    insta::assert_snapshot!("nodes_following_the_new_leader", draw(&app, 120, 20).backend());
}

#[test]
fn dialogs() {
    let mut app = app();
    type_text(&mut app, "/dlq");
    update(&mut app, code(KeyCode::Enter));
    update(&mut app, key('P'));
    insta::assert_snapshot!("dialog_purge", draw(&app, 100, 24).backend());

    let mut app = dlq_messages();
    update(&mut app, key('R'));
    insta::assert_snapshot!("dialog_redrive_confirm", draw(&app, 100, 24).backend());
    let cmds = update(&mut app, key('y'));
    let request_id = rid(&cmds);
    api(
        &mut app,
        ApiEvent::Move {
            request_id,
            task: warren_shared::MoveTask {
                id: 3,
                vhost: "/".into(),
                queue: "orders.dlq".into(),
                to: "source".into(),
                state: "running".into(),
                total: 1234,
                moved: 617,
                ..Default::default()
            },
        },
    );
    insta::assert_snapshot!("dialog_redrive_progress", draw(&app, 100, 24).backend());
    api(
        &mut app,
        ApiEvent::Move {
            request_id,
            task: warren_shared::MoveTask {
                id: 3,
                vhost: "/".into(),
                queue: "orders.dlq".into(),
                state: "done".into(),
                total: 1234,
                moved: 1230,
                not_moved: 4,
                ..Default::default()
            },
        },
    );
    insta::assert_snapshot!("dialog_redrive_done", draw(&app, 100, 24).backend());

    let mut app = dlq_messages();
    update(&mut app, key(' '));
    update(&mut app, key('p'));
    type_text(&mut app, "+x");
    update(&mut app, code(KeyCode::Enter));
    insta::assert_snapshot!("dialog_priority_invalid", draw(&app, 100, 24).backend());
}

#[test]
fn help_and_prompt() {
    let mut app = app();
    update(&mut app, key('?'));
    insta::assert_snapshot!("help", draw(&app, 100, 60).backend());
    app.settings.read_only = true;
    insta::assert_snapshot!("help_read_only", draw(&app, 100, 50).backend());
    update(&mut app, key('x'));
    type_text(&mut app, ":conn");
    insta::assert_snapshot!("command_prompt_read_only", draw(&app, 100, 16).backend());
}

#[test]
fn memory_alarm_in_the_header() {
    let mut app = app();
    let mut s = snapshot(30);
    s.overview.resources = warren_shared::Resources {
        memory_used: 3 << 30,
        memory_limit: 2 << 30,
        memory_alarm: true,
        disk_free: 40 << 30,
        disk_free_limit: 1 << 30,
        disk_alarm: false,
        ..Default::default()
    };
    api(&mut app, ApiEvent::Snapshot(Box::new(s)));
    insta::assert_snapshot!(draw(&app, 140, 12).backend());
}

#[test]
fn audit() {
    let mut app = app();
    go(&mut app, "audit");
    api(
        &mut app,
        ApiEvent::Audit {
            before: None,
            entries: audit_entries(),
        },
    );
    let t = draw(&app, 120, 14);
    insta::assert_snapshot!("audit", t.backend());
    // Failures are drawn in the error colour, successes not (the snapshot holds the text only).
    let colour = |row: u16| t.backend().buffer()[(2, row)].fg;
    assert_eq!(
        (colour(3), colour(4), colour(5), colour(6)),
        (
            ratatui::style::Color::White,
            super::BAD,
            super::BAD,
            ratatui::style::Color::White
        )
    );
    type_text(&mut app, "jj");
    update(&mut app, code(KeyCode::Enter));
    insta::assert_snapshot!("audit_record", draw(&app, 100, 24).backend());
    insta::assert_snapshot!("tiny_audit_record", draw(&app, 40, 12).backend());
    api(
        &mut app,
        ApiEvent::AuditFailed {
            before: None,
            denied: true,
            error: "user 'app' may not read the audit trail (403)".into(),
        },
    );
    insta::assert_snapshot!("audit_refused", draw(&app, 100, 10).backend());
}

#[test]
fn stream_detail_and_replay() {
    let mut app = app_with_stream();
    go(&mut app, "detail events");
    insta::assert_snapshot!("stream_detail_140x40", draw(&app, 140, 40).backend());
    press(&mut app, 'R');
    type_text(&mut app, "-1h");
    insta::assert_snapshot!("stream_replay_dialog_100x30", draw(&app, 100, 30).backend());
    let mut app = app_with_stream();
    go(&mut app, "messages events");
    insta::assert_snapshot!("stream_messages_empty_100x12", draw(&app, 100, 12).backend());
}

/// The rows of a drawn screen, as text.
fn screen(t: &Terminal<TestBackend>) -> Vec<String> {
    let b = t.backend().buffer();
    (0..b.area.height)
        .map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol()).collect::<String>())
        .collect()
}

/// Issue 15: "lines in the help overlay are cut even at 200 columns". At 200 columns every description is whole on
/// its row; on a narrow terminal they wrap, and no word is lost.
#[test]
fn help_lines_are_whole_when_wide_and_wrap_when_narrow() {
    use crate::app::keys::BINDINGS;
    let mut app = app();
    update(&mut app, key('?'));
    let wide = screen(&draw(&app, 200, 130));
    for b in BINDINGS {
        assert!(
            wide.iter().any(|row| row.contains(b.what)),
            "cut at 200 columns: {}",
            b.what
        );
    }
    let narrow = screen(&draw(&app, 70, 260)).join(" ");
    for b in BINDINGS {
        for word in b.what.split_whitespace() {
            assert!(narrow.contains(word), "“{word}” of “{}” lost at 70 columns", b.what);
        }
    }
}

/// A paused queue stands out in the table (⏸ before its name) and in its detail.
#[test]
fn a_paused_queue() {
    let mut app = app();
    let mut s = snapshot(30);
    if let Some(o) = s.queues.iter_mut().find(|q| q.name == "orders") {
        o.paused = true;
    }
    api(&mut app, ApiEvent::Snapshot(Box::new(s)));
    insta::assert_snapshot!("queues_with_a_paused_queue_120x14", draw(&app, 120, 14).backend());
    go(&mut app, "detail orders");
    insta::assert_snapshot!("detail_paused_120x12", draw(&app, 120, 12).backend());
}

#[test]
fn journey_timeline() {
    let mut app = dlq_messages();
    let cmds = press(&mut app, 't');
    api(
        &mut app,
        ApiEvent::Traced {
            seq: trace_seq(&cmds),
            result: Ok(journey("order-1")),
        },
    );
    insta::assert_snapshot!("journey_120x20", draw(&app, 120, 20).backend());
    insta::assert_snapshot!("tiny_journey", draw(&app, 40, 12).backend());
}

/// `:scheduled`: held messages in due order, one marked, then the reschedule dialog.
#[test]
fn scheduled() {
    let mut app = app();
    go(&mut app, "scheduled");
    api(
        &mut app,
        ApiEvent::Scheduled {
            total: 3,
            messages: scheduled_messages(),
        },
    );
    type_text(&mut app, "j ");
    insta::assert_snapshot!("scheduled_120x14", draw(&app, 120, 14).backend());
    type_text(&mut app, "r+10m");
    insta::assert_snapshot!("scheduled_reschedule_100x20", draw(&app, 100, 20).backend());
}

/// Edit and redrive: the diff of an edited dead letter and where the copy goes.
#[test]
fn edit_dialog() {
    let mut app = dlq_messages();
    let cmds = press(&mut app, 'e');
    let Some(Command::OpenEditor { text, .. }) = cmds.into_iter().next() else {
        panic!("the editor opens")
    };
    let after = text.replace("\"amount\": 3.5", "\"amount\": 35.0");
    update(
        &mut app,
        Event::Edited {
            queue: q("orders.dlq"),
            id: 1,
            before: text,
            after: Ok(after),
        },
    );
    insta::assert_snapshot!("edit_dialog_100x30", draw(&app, 100, 30).backend());
}

/// The cell of the first `text` on the screen (its first character).
fn find_cell(t: &Terminal<TestBackend>, text: &str) -> Option<ratatui::buffer::Cell> {
    let buffer = t.backend().buffer();
    let width = buffer.area.width as usize;
    let chars: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    let wanted: Vec<String> = text.chars().map(String::from).collect();
    (0..chars.len().saturating_sub(wanted.len()))
        .find(|&i| (i % width) + wanted.len() <= width && wanted.iter().enumerate().all(|(j, w)| chars[i + j] == w))
        .map(|i| buffer.content[i].clone())
}

/// Issue 15, item 7: the header names the context in its colour (a red block for production), in the roomy and the
/// one-line header; the picker lists every context with its URL and marks the current one.
#[test]
fn context_in_the_header_and_the_picker() {
    use ratatui::style::Color;
    let mut app = app_on_local();
    update(&mut app, Event::ContextSwitched(contexts()[1].clone()));
    update(&mut app, Event::Tick { now_ms: T0 + 500 });
    api(&mut app, ApiEvent::StreamUp);
    api(&mut app, ApiEvent::Snapshot(Box::new(snapshot(31))));
    let t = draw(&app, 120, 20);
    insta::assert_snapshot!("context_prod_header_120x20", t.backend());
    let cell = find_cell(&t, "⎈ prod").expect("the context is in the header");
    assert_eq!((cell.bg, cell.fg), (Color::Red, Color::Black), "prod's colour");
    let tiny = draw(&app, 60, 12);
    insta::assert_snapshot!("context_prod_tiny", tiny.backend());
    assert_eq!(find_cell(&tiny, "⎈ prod").map(|c| c.bg), Some(Color::Red));

    go(&mut app, "ctx");
    insta::assert_snapshot!("context_picker_100x16", draw(&app, 100, 16).backend());
    insta::assert_snapshot!("context_picker_tiny", draw(&app, 40, 12).backend());
    // A context without a colour is plain accent text.
    let local = app_on_local();
    let cell = find_cell(&draw(&local, 120, 20), "⎈ local").expect("local is in the header");
    assert_eq!((cell.bg, cell.fg), (Color::Reset, super::ACCENT));
}
