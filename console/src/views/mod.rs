//! Drawing: `render(&App)` lays out the screen — header, the current view, the flash or prompt line, the key-hint
//! bar — and draws overlays (dialog, help) on top. One file per screen.
//!
//! Invariants: drawing reads the `App` only (no I/O, no clock: "now" is `app.now_ms`), so a frame is a pure function
//! of the state and snapshot tests are deterministic; every view draws something sane down to 40x12; while the feed
//! is stale, the body is greyed out.

pub mod audit;
pub mod bindings;
pub mod connections;
pub mod consumers;
pub mod contexts;
pub mod detail;
pub mod dialog;
pub mod exchanges;
pub mod failover;
pub mod header;
pub mod help;
pub mod hints;
pub mod messages;
pub mod nodes;
pub mod queues;
pub mod scheduled;
pub mod stream;
#[cfg(test)]
mod tests;
pub mod trace;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui::Frame;

use crate::app::{App, View};

pub const ACCENT: Color = Color::Cyan;
pub const TITLE: Color = Color::LightCyan;
pub const OK: Color = Color::Green;
pub const WARN: Color = Color::Yellow;
pub const BAD: Color = Color::Red;
pub const DIM: Color = Color::DarkGray;
pub const MARK: Color = Color::LightMagenta;

/// The selected row.
pub fn selected_style() -> Style {
    Style::default()
        .bg(Color::Blue)
        .fg(Color::White)
        .add_modifier(Modifier::BOLD)
}

pub fn header_style() -> Style {
    Style::default().fg(Color::White).add_modifier(Modifier::BOLD)
}

/// A view's frame, k9s style: ` name(scope)[count] `.
pub fn frame_block<'a>(title: impl Into<Vec<Span<'a>>>) -> Block<'a> {
    let mut spans = vec![Span::raw(" ")];
    spans.extend(title.into());
    spans.push(Span::raw(" "));
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::default().fg(ACCENT))
        .title(Line::from(spans).centered())
}

/// A `title(scope)[count]` title.
pub fn title<'a>(name: &str, scope: &str, count: usize, filter: &str) -> Vec<Span<'a>> {
    let mut spans = vec![
        Span::styled(
            name.to_string(),
            Style::default().fg(TITLE).add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("({scope})"), Style::default().fg(MARK)),
        Span::styled(format!("[{count}]"), Style::default().fg(Color::White)),
    ];
    if !filter.is_empty() {
        spans.push(Span::styled(format!(" </{filter}>"), Style::default().fg(WARN)));
    }
    spans
}

/// A `w` x `h` rectangle centred in `area` (clamped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

/// The first row to show so that `selected` is visible in `height` rows.
pub fn scroll(selected: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        selected.saturating_sub(height - 1)
    }
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let header_height = header::height(area);
    let [top, banner, body, flash, hint] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(failover::height(app)),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(frame, top, app);
    failover::render(frame, banner, app);
    match app.view() {
        View::Queues => queues::render(frame, body, app),
        View::Detail(q) => detail::render(frame, body, app, q),
        View::Messages(q) => messages::render(frame, body, app, q),
        View::Exchanges => exchanges::render(frame, body, app),
        View::Bindings => bindings::render(frame, body, app),
        View::Connections => connections::render(frame, body, app),
        View::Consumers => consumers::render(frame, body, app),
        View::Nodes => nodes::render(frame, body, app),
        View::Audit => audit::render(frame, body, app),
        View::Trace { .. } => trace::render(frame, body, app),
        View::Scheduled => scheduled::render(frame, body, app),
    }
    if app.is_stale() {
        frame
            .buffer_mut()
            .set_style(body, Style::default().fg(DIM).add_modifier(Modifier::DIM));
    }
    hints::render_flash(frame, flash, app);
    hints::render_hints(frame, hint, app);
    if app.dialog.is_some() {
        dialog::render(frame, area, app);
    }
    if app.picker.is_some() {
        contexts::render(frame, area, app);
    }
    if app.help {
        help::render(frame, area, app);
    }
}

/// What a plain listing shows: its name and filter, column heads and widths.
pub struct ListSpec<'a> {
    pub name: &'a str,
    pub filter: &'a str,
    pub head: &'a [&'a str],
    pub widths: &'a [Constraint],
}

/// A plain listing table (exchanges, bindings, connections, consumers).
pub fn list_table(frame: &mut Frame, area: Rect, spec: ListSpec, rows: Vec<Vec<String>>, selected: usize) {
    let plain = Style::default().fg(Color::White);
    let rows = rows.into_iter().map(|r| (r, plain)).collect();
    styled_table(frame, area, spec, "all", rows, selected);
}

/// A listing table whose rows each have a style of their own (the audit trail marks failures), titled
/// `name(scope)[count]`.
pub fn styled_table(
    frame: &mut Frame,
    area: Rect,
    spec: ListSpec,
    scope: &str,
    rows: Vec<(Vec<String>, Style)>,
    selected: usize,
) {
    use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
    let ListSpec {
        name,
        filter,
        head,
        widths,
    } = spec;
    let block = frame_block(title(name, scope, rows.len(), filter));
    if rows.is_empty() {
        let text = if filter.is_empty() {
            "nothing here"
        } else {
            "nothing matches the filter"
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, Style::default().fg(DIM))).block(block),
            area,
        );
        return;
    }
    let header = Row::new(head.iter().map(|h| Cell::from(*h))).style(header_style());
    let body = rows
        .into_iter()
        .map(|(r, style)| Row::new(r.into_iter().map(Cell::from)).style(style));
    let table = Table::new(body, widths.to_vec())
        .header(header)
        .block(block)
        .column_spacing(2)
        .row_highlight_style(selected_style());
    let mut state = TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(table, area, &mut state);
}
