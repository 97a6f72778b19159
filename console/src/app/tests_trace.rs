//! The journey view's state: `t` on a message and `:trace ID` open it and read the journey, the answer fills it
//! (only the latest read's), a failure stays in the view, and a message with no id to follow says so.

use ratatui::crossterm::event::KeyCode;

use super::{update, App, Level, View};
use crate::event::{ApiEvent, Command, Event};
use crate::fixtures::*;

fn on_messages() -> App {
    let mut app = app();
    type_text(&mut app, ":messages orders.dlq");
    let cmds = update(&mut app, code(KeyCode::Enter));
    update(
        &mut app,
        Event::Api(ApiEvent::Peeked {
            seq: seq(&cmds),
            queue: q("orders.dlq"),
            from: 0,
            messages: messages(3, Some("orders")),
        }),
    );
    app
}

#[test]
fn t_on_a_message_opens_its_journey_by_its_trace_id() {
    let mut app = on_messages();
    press(&mut app, 'j');
    let cmds = press(&mut app, 't');
    assert!(
        matches!(&cmds[..], [Command::Trace { vhost, id, .. }] if vhost == "/" && id == "order-2"),
        "{cmds:?}"
    );
    assert_eq!(
        app.view(),
        &View::Trace {
            vhost: "/".into(),
            id: "order-2".into()
        }
    );
    let t = app.trace.as_ref().expect("trace state");
    assert!(t.loading && t.journey.is_none());
    update(
        &mut app,
        Event::Api(ApiEvent::Traced {
            seq: trace_seq(&cmds),
            result: Ok(journey("order-2")),
        }),
    );
    let t = app.trace.as_ref().expect("trace state");
    assert!(!t.loading);
    assert_eq!(t.journey.as_ref().map(|j| j.events.len()), Some(8));
    // Steps are rows: j moves, r reads again; esc goes back to the messages.
    press(&mut app, 'j');
    assert_eq!(app.trace.as_ref().map(|t| t.selected), Some(1));
    let again = press(&mut app, 'r');
    assert!(matches!(&again[..], [Command::Trace { seq, .. }] if *seq > trace_seq(&cmds)));
    update(&mut app, code(KeyCode::Esc));
    assert!(matches!(app.view(), View::Messages(_)));
}

#[test]
fn colon_trace_reads_a_journey_by_id_and_a_late_answer_is_dropped() {
    let mut app = app();
    type_text(&mut app, ":trace w-42");
    let first = update(&mut app, code(KeyCode::Enter));
    assert!(matches!(&first[..], [Command::Trace { vhost, id, .. }] if vhost == "/" && id == "w-42"));
    let second = press(&mut app, 'r');
    update(
        &mut app,
        Event::Api(ApiEvent::Traced {
            seq: trace_seq(&first),
            result: Ok(journey("stale")),
        }),
    );
    assert!(
        app.trace.as_ref().is_some_and(|t| t.journey.is_none() && t.loading),
        "an older read's answer"
    );
    update(
        &mut app,
        Event::Api(ApiEvent::Traced {
            seq: trace_seq(&second),
            result: Err("no journey 'w-42' in vhost '/' (404)".into()),
        }),
    );
    let t = app.trace.as_ref().expect("trace state");
    assert_eq!(t.error.as_deref(), Some("no journey 'w-42' in vhost '/' (404)"));
    assert!(!t.loading);
    type_text(&mut app, ":trace");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert_eq!(app.flash.as_ref().map(|f| f.level), Some(Level::Warn), "usage");
}

#[test]
fn a_message_with_nothing_to_follow_says_so() {
    let mut app = on_messages();
    if let Some(m) = app.messages.as_mut() {
        for item in &mut m.items {
            item.trace_id = None;
            item.properties.remove("message_id");
        }
    }
    assert!(press(&mut app, 't').is_empty());
    assert!(matches!(app.view(), View::Messages(_)));
    let flash = app.flash.as_ref().map(|f| f.text.clone()).unwrap_or_default();
    assert!(flash.contains("no message_id and was not traced"), "{flash}");
}
