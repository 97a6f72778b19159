//! Edit and redrive in the app (issue 15, item 2): `e` hands the selected dead letter to the editor, the edited
//! document comes back as a diff in a confirmation dialog, and the copy goes to its x-death source or where the
//! operator names; bad JSON and unchanged documents send nothing.

use ratatui::crossterm::event::KeyCode;

use super::dialog::{Action, Phase};
use super::tests::{api, on_dlq};
use super::{update, App, Level};
use crate::event::{ApiEvent, Command, Event};
use crate::fixtures::*;

/// Presses `e` on the selected message and returns the document the editor gets.
fn open_editor(app: &mut App) -> String {
    let cmds = press(app, 'e');
    let [Command::OpenEditor { queue, id: 1, text }] = &cmds[..] else {
        panic!("the editor opens on message 1: {cmds:?}")
    };
    assert_eq!(queue, &q("orders.dlq"));
    text.clone()
}

fn edited(app: &mut App, before: &str, after: Result<String, String>) -> Vec<Command> {
    update(
        app,
        Event::Edited {
            queue: q("orders.dlq"),
            id: 1,
            before: before.to_string(),
            after,
        },
    )
}

#[test]
fn e_edits_a_dead_letter_and_the_copy_goes_to_its_source_after_a_diff() {
    let mut app = on_dlq();
    let doc = open_editor(&mut app);
    assert!(
        doc.contains("\"amount\": 3.5"),
        "the JSON body is pretty-printed: {doc}"
    );
    let after = doc.replace("\"amount\": 3.5", "\"amount\": 35.0");
    assert!(
        edited(&mut app, &doc, Ok(after)).is_empty(),
        "nothing is sent before the confirmation"
    );
    let d = app.dialog.as_ref().expect("a dialog");
    let Action::Edit { source, diff, .. } = &d.action else {
        panic!("an edit dialog: {:?}", d.action)
    };
    assert_eq!(source.as_deref(), Some("orders"));
    assert!(
        diff.iter().any(|l| l.starts_with("- ") && l.contains("3.5")),
        "{diff:?}"
    );
    assert!(
        diff.iter().any(|l| l.starts_with("+ ") && l.contains("35.0")),
        "{diff:?}"
    );
    assert_eq!(
        d.describe()[1],
        "to queue orders, where it died (from x-death); tab: somewhere else"
    );
    let cmds = press(&mut app, 'y');
    let [Command::Edit {
        request_id,
        queue,
        id: 1,
        request,
    }] = &cmds[..]
    else {
        panic!("one edit: {cmds:?}")
    };
    assert_eq!(queue, &q("orders.dlq"));
    assert_eq!(request.to, "source");
    assert!(request.body.contains("\"amount\":35.0"), "{}", request.body);
    let after = api(
        &mut app,
        ApiEvent::Edited {
            request_id: *request_id,
            queue: q("orders.dlq"),
            result: warren_shared::edit::EditResult {
                original: 1,
                destination: "queue orders".into(),
                routed_to: vec!["orders".into()],
            },
        },
    );
    assert!(matches!(&after[..], [Command::Peek { .. }]), "the page is read again");
    assert!(matches!(
        app.dialog.as_ref().map(|d| &d.phase),
        Some(Phase::Done { ok: true, lines })
            if lines[0] == "Published the edited copy to queue orders; removed message 1 from orders.dlq."
    ));
}

#[test]
fn tab_sends_the_copy_to_an_exchange_and_key_or_a_queue() {
    let mut app = on_dlq();
    let doc = open_editor(&mut app);
    edited(&mut app, &doc, Ok(doc.replace("c-7", "c-8")));
    update(&mut app, code(KeyCode::Tab));
    type_text(&mut app, "billing invoice.retry");
    let cmds = update(&mut app, code(KeyCode::Enter));
    let [Command::Edit { request, .. }] = &cmds[..] else {
        panic!("one edit: {cmds:?}")
    };
    assert_eq!(
        (
            request.to.as_str(),
            request.exchange.as_deref(),
            request.routing_key.as_deref()
        ),
        ("exchange", Some("billing"), Some("invoice.retry"))
    );

    let mut app = on_dlq();
    let doc = open_editor(&mut app);
    edited(&mut app, &doc, Ok(doc.replace("c-7", "c-8")));
    update(&mut app, code(KeyCode::Tab));
    type_text(&mut app, "a b c");
    assert!(update(&mut app, code(KeyCode::Enter)).is_empty());
    assert!(
        app.dialog.as_ref().is_some_and(|d| d.error.is_some()),
        "three words name nothing"
    );
}

#[test]
fn bad_json_an_unchanged_document_or_a_failed_editor_send_nothing() {
    let mut app = on_dlq();
    let doc = open_editor(&mut app);
    assert!(edited(&mut app, &doc, Ok(doc.replace("3.5", "3.5,,"))).is_empty());
    assert!(app.dialog.is_none());
    assert!(app
        .flash
        .as_ref()
        .is_some_and(|f| f.level == Level::Error && f.text.contains("not valid JSON")));
    assert!(edited(&mut app, &doc, Ok(doc.clone())).is_empty());
    assert!(app.flash.as_ref().is_some_and(|f| f.text.starts_with("no changes")));
    assert!(edited(&mut app, &doc, Err("the editor (vi) exited with exit status: 1".into())).is_empty());
    assert!(app.dialog.is_none());

    // Read-only: `e` opens nothing.
    app.settings.read_only = true;
    assert!(press(&mut app, 'e').is_empty());
}
