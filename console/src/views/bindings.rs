//! `:bindings` — every binding: source exchange, destination, routing key and arguments.

use ratatui::layout::{Constraint, Rect};
use ratatui::Frame;

use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let l = &app.bindings;
    let rows: Vec<Vec<String>> = l
        .rows()
        .into_iter()
        .map(|b| {
            vec![
                b.vhost.clone(),
                if b.source.is_empty() {
                    "(default)".into()
                } else {
                    b.source.clone()
                },
                format!("{} {}", b.destination_type, b.destination),
                b.routing_key.clone(),
                if b.arguments.is_empty() {
                    String::new()
                } else {
                    serde_json::Value::Object(b.arguments.clone()).to_string()
                },
            ]
        })
        .collect();
    super::list_table(
        frame,
        area,
        super::ListSpec {
            name: "bindings",
            filter: &l.filter,
            head: &["VHOST", "SOURCE", "DESTINATION", "ROUTING KEY", "ARGUMENTS"],
            widths: &[
                Constraint::Length(6),
                Constraint::Min(14),
                Constraint::Min(20),
                Constraint::Min(14),
                Constraint::Min(8),
            ],
        },
        rows,
        l.selected,
    );
}
