//! A stream's panel in the queue detail: its span (first and last offset, times), size, segments, retention and
//! filter figures, and one row per consumer (connected, or a named consumer's stored offset) with a lag bar: how
//! much of the stream lies between the consumer and the head. `R` replays the selected named consumer, `T`
//! truncates (see `app::keys`).

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use warren_shared::StreamSummary;

use super::{header_style, selected_style, BAD, DIM, OK, WARN};
use crate::app::stream::{rows, StreamRow};
use crate::app::App;
use crate::format;

/// How many lines the panel wants for `s`: its figures, the table's head and rows, and the borders.
pub fn height(s: &StreamSummary) -> u16 {
    (rows(s).len().max(1) as u16) + 5
}

fn figures(app: &App, s: &StreamSummary) -> Vec<Line<'static>> {
    let dim = |t: &str| Span::styled(format!("{t} "), Style::default().fg(DIM));
    let value = |t: String| Span::styled(t, Style::default().fg(Color::White));
    let span = if s.next_offset > s.first_offset {
        format!(
            "{} – {}",
            format::count(s.first_offset),
            format::count(s.next_offset - 1)
        )
    } else {
        format!("empty (next {})", format::count(s.next_offset))
    };
    let times = if s.last_timestamp_ms > 0 {
        format!(
            "{} – {}",
            format::date_time(s.first_timestamp_ms, app.settings.utc_offset_s),
            format::date_time(s.last_timestamp_ms, app.settings.utc_offset_s)
        )
    } else {
        "—".into()
    };
    let mut retention = Vec::new();
    if let Some(b) = s.max_bytes {
        retention.push(format::bytes(b));
    }
    if let Some(a) = s.max_age_ms {
        retention.push(format::duration_ms(a));
    }
    let retention = if retention.is_empty() {
        "none".to_string()
    } else {
        retention.join(" / ")
    };
    vec![
        Line::from(vec![
            dim("offsets"),
            value(span),
            Span::raw("   "),
            dim("appended"),
            value(times),
        ]),
        Line::from(vec![
            dim("size"),
            value(format!(
                "{} in {} segment{}",
                format::bytes(s.bytes),
                s.segments,
                if s.segments == 1 { "" } else { "s" }
            )),
            Span::raw("   "),
            dim("retention"),
            value(retention),
            Span::raw("   "),
            dim("filters skipped"),
            value(format!(
                "{} segments, {} msgs",
                format::count(s.segments_skipped),
                format::count(s.filtered_out)
            )),
        ]),
    ]
}

/// `lag` of `total` as a bar `width` cells wide (at least one cell when there is any lag).
pub fn bar(lag: u64, total: u64, width: usize) -> String {
    let filled = if lag == 0 || total == 0 {
        0
    } else {
        ((lag.min(total) as f64 / total as f64 * width as f64).round() as usize).clamp(1, width)
    };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn lag_colour(lag: u64, total: u64) -> Color {
    if total == 0 || lag * 10 <= total {
        OK
    } else if lag * 2 <= total {
        WARN
    } else {
        BAD
    }
}

fn cells(r: &StreamRow, total: u64, width: usize) -> Row<'static> {
    let colour = lag_colour(r.lag, total);
    Row::new(vec![
        Cell::from(r.name.clone().unwrap_or_else(|| "(unnamed)".into())),
        Cell::from(r.tag.clone().unwrap_or_else(|| "(stored offset)".into()))
            .style(Style::default().fg(if r.tag.is_some() { Color::White } else { DIM })),
        Cell::from(format::count(r.offset)),
        Cell::from(format::count(r.lag)).style(Style::default().fg(colour)),
        Cell::from(r.lag_ms.map_or_else(|| "—".into(), format::duration_ms)),
        Cell::from(bar(r.lag, total, width)).style(Style::default().fg(colour)),
    ])
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, s: &StreamSummary) {
    let block = Block::default()
        .borders(Borders::TOP)
        .border_style(Style::default().fg(DIM))
        .title(Span::styled(" stream ", Style::default().fg(Color::White)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines = figures(app, s);
    let fig_height = (lines.len() as u16).min(inner.height);
    frame.render_widget(
        Paragraph::new(lines),
        Rect {
            height: fig_height,
            ..inner
        },
    );
    let table_area = Rect {
        y: inner.y + fig_height,
        height: inner.height.saturating_sub(fig_height),
        ..inner
    };
    let list = rows(s);
    if list.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no consumers and no stored offsets (consumers with x-stream-consumer-name keep theirs)",
                Style::default().fg(DIM),
            )),
            table_area,
        );
        return;
    }
    let total = s.next_offset.saturating_sub(s.first_offset);
    let fixed = 20 + 18 + 12 + 10 + 8 + 5;
    let bar_width = (table_area.width as usize).saturating_sub(fixed).clamp(4, 40);
    let selected = app.detail.stream_row.min(list.len() - 1);
    let body: Vec<Row> = list
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let row = cells(r, total, bar_width);
            if i == selected {
                row.style(selected_style())
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(
        body,
        [
            Constraint::Length(20),
            Constraint::Length(18),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Min(4),
        ],
    )
    .header(Row::new(["CONSUMER", "TAG", "OFFSET", "LAG", "BEHIND", "LAG OF STREAM"]).style(header_style()));
    frame.render_widget(table, table_area);
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn lag_bars_fill_in_proportion_and_show_any_lag() {
        assert_eq!(bar(0, 100, 10), "░░░░░░░░░░");
        assert_eq!(bar(50, 100, 10), "█████░░░░░");
        assert_eq!(bar(1, 1_000_000, 4), "█░░░");
        assert_eq!(bar(500, 100, 4), "████");
        assert_eq!(bar(3, 0, 4), "░░░░");
    }
}
