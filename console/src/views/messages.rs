//! The messages view (peek): a page of a queue's ready messages — id, age, priority, delivery count, the `x-death`
//! reason and source queue, size and a body preview — and, with enter, a pane with the selected message's
//! properties, headers and body (JSON pretty-printed, binary as hex). Nothing is consumed by looking.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use warren_shared::PeekedMessage;

use super::{frame_block, header_style, selected_style, title, DIM, MARK, TITLE, WARN};
use crate::app::messages::{body_lines, death, death_rows, preview, DeathRow, MessagesState, PAGE};
use crate::app::App;
use crate::event::QueueKey;
use crate::format;

/// `x-death` as a table with local times, instead of one long line of JSON with epoch seconds.
fn death_lines(m: &PeekedMessage, utc_offset_s: i32) -> Vec<Line<'static>> {
    let rows = death_rows(m, utc_offset_s);
    if rows.is_empty() {
        return Vec::new();
    }
    let w = |f: &dyn Fn(&DeathRow) -> &str, head: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
            .max(head.len())
    };
    let widths = [
        w(&|r| &r.count, "COUNT"),
        w(&|r| &r.reason, "REASON"),
        w(&|r| &r.queue, "QUEUE"),
        w(&|r| &r.exchange, "EXCHANGE"),
        w(&|r| &r.routing_keys, "ROUTING KEYS"),
    ];
    let line = |cells: [&str; 6], style: Style| {
        let mut text = String::from("    ");
        for (cell, width) in cells.iter().zip(widths) {
            text.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(cells[5]);
        Line::from(Span::styled(text, style))
    };
    let mut lines = vec![
        Line::from(Span::styled("  x-death:", Style::default().fg(DIM))),
        line(
            ["COUNT", "REASON", "QUEUE", "EXCHANGE", "ROUTING KEYS", "TIME"],
            Style::default().fg(DIM),
        ),
    ];
    for r in &rows {
        lines.push(line(
            [&r.count, &r.reason, &r.queue, &r.exchange, &r.routing_keys, &r.time],
            Style::default(),
        ));
    }
    lines
}

fn detail_lines(m: &PeekedMessage, utc_offset_s: i32) -> Vec<Line<'static>> {
    let dim = Style::default().fg(DIM);
    let mut lines = vec![Line::from(vec![
        Span::styled("id ", dim),
        Span::raw(m.id.to_string()),
        Span::styled("  exchange ", dim),
        Span::raw(if m.exchange.is_empty() {
            "(default)".into()
        } else {
            m.exchange.clone()
        }),
        Span::styled("  key ", dim),
        Span::raw(m.routing_key.clone()),
    ])];
    lines.push(Line::from(vec![
        Span::styled("priority ", dim),
        Span::raw(m.priority.to_string()),
        Span::styled("  deliveries ", dim),
        Span::raw(m.delivery_count.to_string()),
        Span::styled("  persistent ", dim),
        Span::raw(m.persistent.to_string()),
        Span::styled("  size ", dim),
        Span::raw(format::bytes(m.size)),
    ]));
    for (k, v) in &m.properties {
        if k == "headers" {
            continue;
        }
        let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        lines.push(Line::from(vec![Span::styled(format!("{k} "), dim), Span::raw(v)]));
    }
    if let Some(headers) = m.properties.get("headers").and_then(|h| h.as_object()) {
        lines.push(Line::from(Span::styled("headers", Style::default().fg(TITLE))));
        for (k, v) in headers {
            if k == "x-death" && v.is_array() {
                lines.extend(death_lines(m, utc_offset_s));
                continue;
            }
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            lines.push(Line::from(vec![Span::styled(format!("  {k}: "), dim), Span::raw(v)]));
        }
    }
    let kind = if m.body_encoding == "base64" {
        "body (binary, hex)"
    } else {
        "body"
    };
    lines.push(Line::from(Span::styled(kind, Style::default().fg(TITLE))));
    lines.extend(body_lines(m).into_iter().map(Line::from));
    lines
}

fn table(frame: &mut Frame, area: Rect, app: &App, state: &MessagesState, block: Block) {
    let wide = area.width >= 80;
    let mut head = vec!["", "ID", "AGE", "PRI", "DLV"];
    if wide {
        head.push("DEATH ← SOURCE");
        head.push("SIZE");
    }
    head.push("BODY");
    let header = Row::new(head.into_iter().map(Cell::from)).style(header_style());
    let rows = state.items.iter().map(|m| {
        let marked = state.marked.contains(&m.id);
        let r = |s: String| Cell::from(Line::from(s).right_aligned());
        let mut cells = vec![
            Cell::from(if marked { "●" } else { " " }),
            r(m.id.to_string()),
            r(format::age_ms(app.now_ms.saturating_sub(m.enqueued_ms))),
            r(m.priority.to_string()),
            r(m.delivery_count.to_string()),
        ];
        if wide {
            let d = death(m)
                .map(|(reason, queue)| format!("{reason} ← {queue}"))
                .unwrap_or_else(|| "-".into());
            cells.push(Cell::from(Span::styled(d, Style::default().fg(WARN))));
            cells.push(r(format::bytes(m.size)));
        }
        cells.push(Cell::from(Span::styled(preview(m), Style::default().fg(DIM))));
        let style = if marked {
            Style::default().fg(MARK).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::White)
        };
        Row::new(cells).style(style)
    });
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(3),
        Constraint::Length(3),
    ];
    if wide {
        widths.push(Constraint::Length(26));
        widths.push(Constraint::Length(8));
    }
    widths.push(Constraint::Min(10));
    let t = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(selected_style());
    let selected = (!state.items.is_empty()).then_some(state.selected);
    let mut ts = TableState::default().with_selected(selected);
    frame.render_stateful_widget(t, area, &mut ts);
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, key: &QueueKey) {
    let Some(state) = app.messages.as_ref().filter(|m| &m.queue == key) else {
        return;
    };
    let ready = app.queue(key).map_or(0, |q| q.messages_ready);
    let page = state.from / PAGE + 1;
    let stream = app.queue(key).and_then(|q| q.stream.as_ref());
    let scope = if area.width < 60 {
        key.name.clone()
    } else if let Some(s) = stream {
        let start = match state.start {
            Some(p) => p.describe(app.settings.utc_offset_s),
            None => "the first offset kept".into(),
        };
        format!(
            "{} · page {page} from {start} · offsets {} – {}",
            key.name,
            format::count(s.first_offset),
            format::count(s.next_offset.saturating_sub(1))
        )
    } else if state.marked.is_empty() {
        format!("{} · page {page} · {} ready", key.name, format::count(ready))
    } else {
        format!("{} · page {page} · {} marked", key.name, state.marked.len())
    };
    let mut t = title("messages", &scope, state.items.len(), &state.filter_text);
    if state.loading {
        t.push(Span::styled(" loading…", Style::default().fg(DIM)));
    }
    let block = frame_block(t);
    if state.items.is_empty() {
        let text = if state.loading {
            "reading…"
        } else if !state.filter.is_empty() {
            "no message matches the filter"
        } else if stream.is_some() {
            "no messages from there on (o: start elsewhere)"
        } else {
            "no ready messages"
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, Style::default().fg(DIM))).block(block),
            area,
        );
        return;
    }
    let pane = state.show_detail && area.height >= 10;
    if !pane {
        table(frame, area, app, state, block);
        return;
    }
    let (list, detail) = if area.width >= 200 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
        (a, b)
    } else {
        let [a, b] = Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
        (a, b)
    };
    table(frame, list, app, state, block);
    if let Some(m) = state.selected_message() {
        let b = Block::default()
            .borders(Borders::ALL)
            .border_style(Style::default().fg(DIM))
            .title(Span::styled(format!(" message {} ", m.id), Style::default().fg(TITLE)));
        frame.render_widget(
            Paragraph::new(detail_lines(m, app.settings.utc_offset_s))
                .wrap(Wrap { trim: false })
                .block(b),
            detail,
        );
    }
}
