//! `:scheduled` — what delayed exchanges hold, in due order: when each is due (from now, and the local time), where
//! it goes, its id and message id, size and the start of its body. Marked rows are coloured; the title says how
//! many are held in all when that is more than were read.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::Frame;

use super::{ListSpec, MARK};
use crate::app::scheduled::{due_in, key, message_id};
use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let s = &app.scheduled;
    let plain = Style::default().fg(ratatui::style::Color::White);
    let rows: Vec<(Vec<String>, Style)> = s
        .rows()
        .into_iter()
        .map(|m| {
            let marked = s.marked.contains(&key(m));
            let body: String = m
                .body
                .chars()
                .take(60)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            (
                vec![
                    format!("{}{}", if marked { "● " } else { "" }, due_in(m.due_ms, app.now_ms)),
                    crate::format::clock(m.due_ms, app.settings.utc_offset_s),
                    m.vhost.clone(),
                    m.exchange.clone(),
                    m.routing_key.clone(),
                    m.id.to_string(),
                    message_id(m).to_string(),
                    crate::format::bytes(m.size),
                    body,
                ],
                if marked { Style::default().fg(MARK) } else { plain },
            )
        })
        .collect();
    let scope = if s.total as usize > s.items.len() {
        format!("{} of {} held", s.items.len(), crate::format::count(s.total))
    } else {
        "held".to_string()
    };
    super::styled_table(
        frame,
        area,
        ListSpec {
            name: "scheduled",
            filter: &s.filter,
            head: &[
                "DUE",
                "AT",
                "VHOST",
                "EXCHANGE",
                "ROUTING KEY",
                "ID",
                "MESSAGE ID",
                "SIZE",
                "BODY",
            ],
            widths: &[
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Min(10),
                Constraint::Min(10),
                Constraint::Length(6),
                Constraint::Length(12),
                Constraint::Length(7),
                Constraint::Min(10),
            ],
        },
        &scope,
        rows,
        s.selected,
    );
}
