//! `:audit` — the broker's audit trail, newest first: when (local time), who, from where, what, in which vhost, on
//! what, how many messages, and the result. Failed and refused entries are drawn in the error colour; enter shows the
//! whole record under the table (long objects and reasons are cut in the columns). A user the broker refuses sees why
//! instead of an empty table.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use warren_shared::AuditEntry;

use super::{frame_block, title, BAD, DIM, TITLE, WARN};
use crate::app::audit::{succeeded, DENIED};
use crate::app::App;
use crate::format;

/// How a row is drawn: failures stand out.
fn row_style(e: &AuditEntry) -> Style {
    if succeeded(e) {
        Style::default().fg(Color::White)
    } else {
        Style::default().fg(BAD)
    }
}

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

fn record_lines(e: &AuditEntry, utc_offset_s: i32) -> Vec<Line<'static>> {
    let dim = Style::default().fg(DIM);
    let field = |k: &str, v: String| Line::from(vec![Span::styled(format!("{k:<9}"), dim), Span::raw(v)]);
    let result = Line::from(vec![
        Span::styled(format!("{:<9}", "result"), dim),
        Span::styled(e.result.clone(), row_style(e)),
    ]);
    vec![
        field("when", format::date_time(e.at_ms, utc_offset_s)),
        field("user", e.user.clone()),
        field("peer", or_dash(e.peer.as_deref())),
        field("action", e.action.clone()),
        field("vhost", or_dash(e.vhost.as_deref())),
        field("object", e.object.clone()),
        field("messages", e.messages.map_or_else(|| "-".into(), format::count)),
        result,
    ]
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.audit;
    if t.denied {
        let block = frame_block(title("audit", "refused", 0, ""));
        let text = Span::styled(format!("{DENIED}."), Style::default().fg(WARN));
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block), area);
        return;
    }
    // The record goes below the table; where both do not fit, it takes the table's place.
    let (list, pane) = match (t.show_entry, area.height) {
        (false, _) => (area, None),
        (true, h) if h >= 14 => {
            let [a, b] = Layout::vertical([Constraint::Min(4), Constraint::Length(10)]).areas(area);
            (a, Some(b))
        }
        (true, _) => (Rect::default(), Some(area)),
    };
    let offset = app.settings.utc_offset_s;
    let rows: Vec<(Vec<String>, Style)> = t
        .list
        .rows()
        .into_iter()
        .map(|e| {
            let cells = vec![
                format::clock(e.at_ms, offset),
                e.user.clone(),
                or_dash(e.peer.as_deref()),
                e.action.clone(),
                or_dash(e.vhost.as_deref()),
                e.object.clone(),
                e.messages.map_or_else(|| "-".into(), format::count),
                e.result.clone(),
            ];
            (cells, row_style(e))
        })
        .collect();
    // `newest`: older entries remain on the broker (`]` reads them); `all`: everything the broker keeps is here.
    let scope = if t.more { "newest" } else { "all" };
    super::styled_table(
        frame,
        list,
        super::ListSpec {
            name: "audit",
            filter: &t.list.filter,
            head: &["TIME", "USER", "PEER", "ACTION", "VHOST", "OBJECT", "MSGS", "RESULT"],
            widths: &[
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(15),
                Constraint::Length(18),
                Constraint::Length(6),
                Constraint::Min(12),
                Constraint::Length(5),
                Constraint::Min(12),
            ],
        },
        scope,
        rows,
        t.list.selected,
    );
    if let (Some(pane), Some(e)) = (pane, t.list.selected_row()) {
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(Style::default().fg(DIM))
            .title(Span::styled(
                format!(" audit entry {} ", e.id),
                Style::default().fg(TITLE),
            ));
        frame.render_widget(
            Paragraph::new(record_lines(e, offset))
                .wrap(Wrap { trim: false })
                .block(block),
            pane,
        );
    }
}
