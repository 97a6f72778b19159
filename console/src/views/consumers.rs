//! `:consumers` — every consumer: its queue, tag, connection and channel, ack mode, priority and exclusivity.

use ratatui::layout::{Constraint, Rect};
use ratatui::Frame;

use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let l = &app.consumers;
    let rows: Vec<Vec<String>> = l
        .rows()
        .into_iter()
        .map(|c| {
            vec![
                c.vhost.clone(),
                c.queue.clone(),
                c.consumer_tag.clone(),
                format!("{}/{}", c.connection, c.channel),
                if c.ack_required { "manual".into() } else { "auto".into() },
                c.priority.to_string(),
                if c.exclusive { "yes".into() } else { String::new() },
            ]
        })
        .collect();
    super::list_table(
        frame,
        area,
        super::ListSpec {
            name: "consumers",
            filter: &l.filter,
            head: &["VHOST", "QUEUE", "TAG", "CONN/CH", "ACK", "PRIO", "EXCL"],
            widths: &[
                Constraint::Length(6),
                Constraint::Min(14),
                Constraint::Min(20),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(4),
                Constraint::Length(4),
            ],
        },
        rows,
        l.selected,
    );
}
