//! Streams in the console: the consumer panel's selection, "replay from…" behind its confirmation (with typed
//! positions checked before anything is sent), truncate-before, the messages view starting at an offset or a time,
//! and the actions that streams refuse, refused in the console already.

use ratatui::crossterm::event::KeyCode;

use super::dialog::{Action, Phase};
use super::tests::api;
use super::{update, App, Level};
use crate::event::{ApiEvent, Command};
use crate::fixtures::*;

fn open_events(app: &mut App) -> Vec<Command> {
    type_text(app, ":detail events");
    update(app, code(KeyCode::Enter))
}

fn flash(app: &App) -> Option<(Level, &str)> {
    app.flash.as_ref().map(|f| (f.level, f.text.as_str()))
}

#[test]
fn replay_from_asks_for_a_position_confirms_and_reports_where_the_consumer_reads_next() {
    let mut app = app_with_stream();
    open_events(&mut app);
    let cmds = press(&mut app, 'R');
    assert!(cmds.is_empty(), "nothing is sent before the confirmation");
    let Some(d) = &app.dialog else { panic!("a dialog opens") };
    assert_eq!(
        d.action,
        Action::Replay {
            queue: q("events"),
            consumer: "etl".into(),
            offset: 50_900,
            lag: 100,
        }
    );
    assert!(
        d.describe()[0].contains("it is at offset 50,900 (100 behind)"),
        "{:?}",
        d.describe()
    );
    // A position that does not parse keeps the dialog open and says why.
    type_text(&mut app, "yesterday");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert!(app.dialog.as_ref().and_then(|d| d.error.as_ref()).is_some());
    for _ in 0.."yesterday".len() {
        update(&mut app, code(KeyCode::Backspace));
    }
    type_text(&mut app, "-1h");
    let cmds = update(&mut app, code(KeyCode::Enter));
    let [Command::StreamReplay {
        request_id,
        queue,
        consumer,
        reset,
    }] = &cmds[..]
    else {
        panic!("one replay command: {cmds:?}")
    };
    assert_eq!((queue, consumer.as_str()), (&q("events"), "etl"));
    assert_eq!(reset.timestamp_ms, Some(app.now_ms - 3_600_000));
    api(
        &mut app,
        ApiEvent::StreamActed {
            request_id: *request_id,
            queue: q("events"),
            result: warren_shared::StreamActionResult {
                offset: Some(42_000),
                segments_removed: None,
                first_offset: 1_000,
            },
        },
    );
    assert_eq!(
        app.dialog.as_ref().map(|d| d.phase.clone()),
        Some(Phase::Done {
            ok: true,
            lines: vec!["It reads from offset 42,000 next (events starts at offset 1,000).".into()]
        })
    );
}

#[test]
fn only_named_consumers_can_be_replayed_and_j_k_pick_among_them() {
    let mut app = app_with_stream();
    open_events(&mut app);
    press(&mut app, 'j');
    assert_eq!(app.detail.stream_row, 1);
    press(&mut app, 'R');
    assert!(app.dialog.is_none(), "the unnamed consumer has no stored offset");
    assert!(flash(&app).is_some_and(|(l, t)| l == Level::Warn && t.contains("x-stream-consumer-name")));
    // The third row is billing's stored offset: it is away, and can be replayed for when it comes back.
    press(&mut app, 'j');
    press(&mut app, 'j');
    assert_eq!(app.detail.stream_row, 2, "the cursor stops at the last row");
    press(&mut app, 'R');
    assert!(matches!(
        &app.dialog.as_ref().map(|d| d.action.clone()),
        Some(Action::Replay { consumer, offset: 30_000, lag: 21_000, .. }) if consumer == "billing"
    ));
    type_text(&mut app, "first");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(matches!(&cmds[..], [Command::StreamReplay { reset, .. }]
        if reset.offset == Some(serde_json::Value::String("first".into()))));
}

#[test]
fn truncate_takes_an_offset_and_the_read_only_console_offers_neither() {
    let mut app = app_with_stream();
    open_events(&mut app);
    press(&mut app, 'T');
    type_text(&mut app, "20x");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    update(&mut app, code(KeyCode::Backspace));
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(matches!(&cmds[..], [Command::StreamTruncate { before: 20, .. }]));

    let mut app = app_with_stream();
    app.settings.read_only = true;
    open_events(&mut app);
    press(&mut app, 'R');
    press(&mut app, 'T');
    assert!(app.dialog.is_none());
}

#[test]
fn purge_is_refused_on_a_stream_before_asking_the_broker() {
    let mut app = app_with_stream();
    open_events(&mut app);
    assert!(press(&mut app, 'P').is_empty());
    assert!(app.dialog.is_none());
    assert!(flash(&app).is_some_and(|(_, t)| t.contains("append-only")));
    let cmds = press(&mut app, 'm');
    assert!(matches!(
        &cmds[..],
        [Command::Peek {
            offset: None,
            timestamp_ms: None,
            ..
        }]
    ));
    for k in ['R', 'D', 'p', 'P'] {
        app.flash = None;
        assert!(press(&mut app, k).is_empty(), "{k}");
        assert!(app.dialog.is_none(), "{k}");
        assert!(flash(&app).is_some_and(|(_, t)| t.contains("append-only")), "{k}");
    }
}

#[test]
fn the_messages_view_of_a_stream_starts_at_an_offset_or_a_time() {
    let mut app = app_with_stream();
    type_text(&mut app, ":messages events");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'o');
    type_text(&mut app, "25000");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(matches!(
        &cmds[..],
        [Command::Peek {
            from: 0,
            offset: Some(25_000),
            timestamp_ms: None,
            ..
        }]
    ));
    press(&mut app, 'o');
    // The prompt starts with the offset given before; clear it and give a time.
    for _ in 0..5 {
        update(&mut app, code(KeyCode::Backspace));
    }
    type_text(&mut app, "2023-11-14T22:00:00Z");
    let cmds = update(&mut app, code(KeyCode::Enter));
    assert!(matches!(
        &cmds[..],
        [Command::Peek {
            offset: None,
            timestamp_ms: Some(1_699_999_200_000),
            ..
        }]
    ));
    press(&mut app, 'o');
    for _ in 0..20 {
        update(&mut app, code(KeyCode::Backspace));
    }
    type_text(&mut app, "next");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert!(flash(&app).is_some_and(|(_, t)| t.contains("first, an offset or a time")));
    // On a queue that is not a stream, `o` says so.
    let mut app = crate::fixtures::app();
    type_text(&mut app, ":messages orders");
    update(&mut app, code(KeyCode::Enter));
    press(&mut app, 'o');
    assert!(app.prompt.is_none());
    assert!(flash(&app).is_some_and(|(_, t)| t.contains("streams")));
}
