//! The journey view: a traced message's events as a timeline, one row per step with its local time, the time since
//! the step before, what happened and where; above it the message's id, its W3C `traceparent` and how long the
//! whole journey took.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::{frame_block, header_style, selected_style, title, ACCENT, BAD, DIM, OK, WARN};
use crate::app::App;
use crate::format;

/// The colour of a step: where it ended well, badly, or went on.
fn colour(kind: &str) -> Color {
    match kind {
        "acked" => OK,
        "rejected" | "expired" | "dead_lettered" | "unroutable" | "purged" => BAD,
        "redriven" | "moved" | "reprioritised" | "edited" => WARN,
        _ => Color::White,
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(t) = &app.trace else { return };
    let count = t.journey.as_ref().map_or(0, |j| j.events.len());
    let block = frame_block(title("journey", &t.vhost, count, ""));
    let Some(j) = &t.journey else {
        let (text, style) = match (&t.error, t.loading) {
            (Some(e), _) => (format!("{}: {e}", t.id), Style::default().fg(BAD)),
            (None, true) => (format!("reading the journey of {} ...", t.id), Style::default().fg(DIM)),
            (None, false) => ("nothing here".to_string(), Style::default().fg(DIM)),
        };
        frame.render_widget(Paragraph::new(Span::styled(text, style)).block(block), area);
        return;
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [head, table_area] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let first = j.events.first().map_or(0, |s| s.at_ms);
    let last = j.events.last().map_or(0, |s| s.at_ms);
    let mut id_line = vec![
        Span::styled("message ", Style::default().fg(DIM)),
        Span::styled(j.id.clone(), Style::default().fg(ACCENT).add_modifier(Modifier::BOLD)),
        Span::styled(
            format!(
                "   {} steps over {}",
                j.events.len(),
                format::duration_ms(last.saturating_sub(first))
            ),
            Style::default().fg(Color::White),
        ),
    ];
    if j.truncated {
        id_line.push(Span::styled("   (older steps dropped)", Style::default().fg(WARN)));
    }
    let parent = match &j.traceparent {
        Some(tp) => Line::from(vec![
            Span::styled("traceparent ", Style::default().fg(DIM)),
            Span::raw(tp.clone()),
        ]),
        None => Line::from(Span::styled("no traceparent", Style::default().fg(DIM))),
    };
    frame.render_widget(Paragraph::new(vec![Line::from(id_line), parent]), head);
    // Narrow terminals drop the clock: the time between steps is what a timeline is for.
    let wide = table_area.width >= 70;
    let mut previous: Option<u64> = None;
    let rows = j.events.iter().enumerate().map(|(i, s)| {
        let kind = s.event.kind();
        let since = match previous {
            Some(p) => format!("+{}", format::duration_ms(s.at_ms.saturating_sub(p))),
            None => "start".to_string(),
        };
        previous = Some(s.at_ms);
        let when = format!(
            "{}.{:03}",
            format::clock(s.at_ms, app.settings.utc_offset_s),
            s.at_ms % 1000
        );
        let mut cells = vec![Cell::from(format!("{}", i + 1))];
        if wide {
            cells.push(Cell::from(when));
        }
        cells.extend([
            Cell::from(since),
            Cell::from(Span::styled(kind.replace('_', " "), Style::default().fg(colour(kind)))),
            Cell::from(s.event.summary()),
        ]);
        Row::new(cells)
    });
    let (head, widths): (&[&str], Vec<Constraint>) = if wide {
        let w = [3, 12, 9, 13].map(Constraint::Length);
        (
            &["#", "time", "after", "step", "what"],
            [&w[..], &[Constraint::Min(20)]].concat(),
        )
    } else {
        let w = [2, 7, 9].map(Constraint::Length);
        (
            &["#", "after", "step", "what"],
            [&w[..], &[Constraint::Min(10)]].concat(),
        )
    };
    let header = Row::new(head.iter().map(|h| Cell::from(*h))).style(header_style());
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(selected_style());
    let mut state = TableState::default().with_selected(Some(t.selected.min(count.saturating_sub(1))));
    frame.render_stateful_widget(table, table_area, &mut state);
}
