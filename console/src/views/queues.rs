//! The queue table: name, type, ready, unacked, consumers, in/out rates with an in-row sparkline, lag (time behind and
//! trend), p99 latency and error rate. Columns drop out from the least important as the terminal narrows; the sort
//! column is marked with ▲/▼ and marked rows with ●.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use warren_shared::QueueInfo;

use super::{frame_block, header_style, selected_style, title, BAD, DIM, MARK, OK, WARN};
use crate::app::history::Trend;
use crate::app::queues::{self, Column};
use crate::app::App;
use crate::format;

/// What the table can show, in display order; `keep` ranks what stays as the terminal narrows (lower stays longer).
#[derive(Clone, Copy, PartialEq)]
enum Col {
    Data(Column),
    Spark,
}

fn width(c: Col) -> u16 {
    match c {
        Col::Data(Column::Name) => 14,
        Col::Data(Column::Type) => 12,
        Col::Data(Column::Ready) => 9,
        Col::Data(Column::Unacked) => 8,
        Col::Data(Column::Consumers) => 5,
        Col::Data(Column::In) | Col::Data(Column::Out) => 6,
        Col::Spark => 12,
        Col::Data(Column::Behind) => 8,
        Col::Data(Column::Drain) => 8,
        Col::Data(Column::Trend) => 9,
        Col::Data(Column::P99) => 7,
        Col::Data(Column::Errors) => 6,
    }
}

fn keep(c: Col) -> u8 {
    match c {
        Col::Data(Column::Name) => 0,
        Col::Data(Column::Ready) => 1,
        Col::Data(Column::In) => 2,
        Col::Data(Column::Out) => 3,
        Col::Data(Column::Trend) => 4,
        Col::Data(Column::Unacked) => 5,
        Col::Data(Column::Consumers) => 6,
        Col::Data(Column::Behind) => 7,
        Col::Spark => 8,
        Col::Data(Column::Type) => 9,
        Col::Data(Column::Drain) => 10,
        Col::Data(Column::Errors) => 11,
        Col::Data(Column::P99) => 12,
    }
}

const ORDER: [Col; 13] = [
    Col::Data(Column::Name),
    Col::Data(Column::Type),
    Col::Data(Column::Ready),
    Col::Data(Column::Unacked),
    Col::Data(Column::Consumers),
    Col::Data(Column::In),
    Col::Data(Column::Out),
    Col::Spark,
    Col::Data(Column::Behind),
    Col::Data(Column::Drain),
    Col::Data(Column::Trend),
    Col::Data(Column::P99),
    Col::Data(Column::Errors),
];

/// The columns that fit in `space` cells (one cell of spacing between columns, two for the mark).
fn columns(space: u16) -> Vec<Col> {
    let mut cols: Vec<Col> = ORDER.to_vec();
    let total = |cols: &[Col]| cols.iter().map(|c| width(*c) + 1).sum::<u16>() + 2;
    while total(&cols) > space && cols.len() > 1 {
        if let Some(worst) = cols.iter().copied().max_by_key(|c| keep(*c)) {
            cols.retain(|c| *c != worst);
        }
    }
    cols
}

fn trend_cell(t: Trend) -> Cell<'static> {
    let color = match t {
        Trend::Growing => BAD,
        Trend::Draining => OK,
        Trend::Stable => DIM,
    };
    let arrow = match t {
        Trend::Growing => "↑",
        Trend::Draining => "↓",
        Trend::Stable => "→",
    };
    Cell::from(Span::styled(format!("{arrow}{}", t.word()), Style::default().fg(color)))
}

fn cell(app: &App, q: &QueueInfo, col: Col, name_width: usize) -> Cell<'static> {
    let key = queues::key(q);
    let r = |s: String| Cell::from(Line::from(s).right_aligned());
    match col {
        Col::Data(Column::Name) => {
            let name = if q.vhost == "/" {
                q.name.clone()
            } else {
                format!("{}/{}", q.vhost, q.name)
            };
            if q.paused {
                // A paused queue must stand out: nothing is delivered from it.
                let name = format::truncate(&name, name_width.saturating_sub(2));
                return Cell::from(Line::from(vec![
                    Span::styled("⏸ ", Style::default().fg(WARN)),
                    Span::raw(name),
                ]));
            }
            Cell::from(format::truncate(&name, name_width))
        }
        Col::Data(Column::Type) => {
            // The API's type, then the role as a marker (a dead-letter queue stands out).
            let mut spans = vec![Span::styled(queues::kind(q).to_string(), Style::default().fg(DIM))];
            if let Some(role) = queues::role(q) {
                let color = if role == "dlq" { WARN } else { DIM };
                spans.push(Span::styled(format!("·{role}"), Style::default().fg(color)));
            }
            Cell::from(Line::from(spans))
        }
        Col::Data(Column::Ready) => {
            let style = if q.messages_ready > 0 && q.consumers == 0 {
                Style::default().fg(WARN)
            } else {
                Style::default()
            };
            Cell::from(Line::from(Span::styled(format::count(q.messages_ready), style)).right_aligned())
        }
        Col::Data(Column::Unacked) => r(format::count(q.messages_unacked)),
        Col::Data(Column::Consumers) => r(q.consumers.to_string()),
        Col::Data(Column::In) => r(format::rate(q.rates.publish.last_1s)),
        Col::Data(Column::Out) => r(format::rate(q.rates.deliver.last_1s)),
        Col::Spark => {
            let series = app.history.series(&key, 12, |s| s.publish);
            Cell::from(Span::styled(format::sparkline(&series, 12), Style::default().fg(OK)))
        }
        Col::Data(Column::Behind) => r(if q.messages_ready == 0 {
            "-".into()
        } else {
            format::duration_ms(q.time_behind_ms)
        }),
        Col::Data(Column::Drain) => {
            let style = match q.drain_ms {
                None if q.messages_ready > 0 => Style::default().fg(WARN),
                _ => Style::default(),
            };
            Cell::from(Line::from(Span::styled(queues::drain_text(q), style)).right_aligned())
        }
        Col::Data(Column::Trend) => trend_cell(app.history.trend(&key)),
        Col::Data(Column::P99) => r(if q.latency_deliver.count == 0 {
            "-".into()
        } else {
            format::duration_ms(q.latency_deliver.p99)
        }),
        Col::Data(Column::Errors) => {
            let e = queues::error_rate(q);
            let style = if e > 0.0 {
                Style::default().fg(BAD)
            } else {
                Style::default()
            };
            Cell::from(Line::from(Span::styled(format::rate(e), style)).right_aligned())
        }
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let table = &app.queue_table;
    let rows = queues::rows(&app.queues, table, &app.history);
    let scope = if table.marked.is_empty() {
        "all".to_string()
    } else {
        format!("{} marked", table.marked.len())
    };
    let block = frame_block(title("queues", &scope, rows.len(), &table.filter));
    if rows.is_empty() {
        let text = if app.overview.is_none() {
            "waiting for the broker…"
        } else if !table.filter.is_empty() {
            "no queue matches the filter (esc clears it)"
        } else {
            "no queues yet — run the demo: cargo run -p warren-bench --bin warren-demo"
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, Style::default().fg(DIM))).block(block),
            area,
        );
        return;
    }
    let inner = area.width.saturating_sub(2);
    let cols = columns(inner);
    let fixed: u16 = cols
        .iter()
        .filter(|c| **c != Col::Data(Column::Name))
        .map(|c| width(*c) + 1)
        .sum();
    // The name column takes what the longest name needs, up to what is left; spare room stays on the right.
    let longest = rows.iter().map(|q| q.name.chars().count() + 1).max().unwrap_or(8) as u16;
    let name_width = inner.saturating_sub(fixed + 3).min(longest.max(12)).max(6);
    let header_cells = cols.iter().map(|c| {
        let text = match c {
            Col::Spark => "IN HISTORY".to_string(),
            Col::Data(col) => {
                let arrow = if *col == table.sort {
                    if table.descending {
                        "▼"
                    } else {
                        "▲"
                    }
                } else {
                    ""
                };
                format!("{}{arrow}", col.title())
            }
        };
        let line = Line::from(text);
        let left = matches!(c, Col::Data(Column::Name | Column::Type | Column::Trend) | Col::Spark);
        Cell::from(if left { line } else { line.right_aligned() })
    });
    let header = Row::new(std::iter::once(Cell::from("")).chain(header_cells)).style(header_style());
    let body = rows.iter().map(|q| {
        let marked = table.marked.contains(&queues::key(q));
        let style = if marked {
            Style::default().fg(MARK).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::White)
        };
        let mut cells = vec![Cell::from(if marked { "●" } else { " " })];
        cells.extend(cols.iter().map(|c| cell(app, q, *c, name_width as usize)));
        Row::new(cells).style(style)
    });
    let mut widths = vec![Constraint::Length(1)];
    widths.extend(cols.iter().map(|c| match c {
        Col::Data(Column::Name) => Constraint::Length(name_width),
        c => Constraint::Length(width(*c)),
    }));
    let t = Table::new(body, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(selected_style());
    let mut state = TableState::default().with_selected(queues::selected_index(&rows, table));
    frame.render_stateful_widget(t, area, &mut state);
}
