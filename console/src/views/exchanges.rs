//! `:exchanges` — every exchange with its type, flags and arguments.

use ratatui::layout::{Constraint, Rect};
use ratatui::Frame;

use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let l = &app.exchanges;
    let rows: Vec<Vec<String>> = l
        .rows()
        .into_iter()
        .map(|x| {
            let mut flags = Vec::new();
            if x.durable {
                flags.push("durable");
            }
            if x.auto_delete {
                flags.push("auto-delete");
            }
            if x.internal {
                flags.push("internal");
            }
            let args = serde_json::Value::Object(x.arguments.clone()).to_string();
            vec![
                x.vhost.clone(),
                if x.name.is_empty() {
                    "(default)".into()
                } else {
                    x.name.clone()
                },
                x.kind.clone(),
                flags.join(","),
                if x.arguments.is_empty() { String::new() } else { args },
            ]
        })
        .collect();
    super::list_table(
        frame,
        area,
        super::ListSpec {
            name: "exchanges",
            filter: &l.filter,
            head: &["VHOST", "NAME", "TYPE", "FLAGS", "ARGUMENTS"],
            widths: &[
                Constraint::Length(6),
                Constraint::Min(16),
                Constraint::Length(8),
                Constraint::Length(16),
                Constraint::Min(10),
            ],
        },
        rows,
        l.selected,
    );
}
