//! The `:ctx` picker: the config file's contexts (name, URL, read-only), each name in its header colour, the current
//! one marked; its keys come from the key table, like the hint bar's.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{centered, frame_block, selected_style, ACCENT, DIM, WARN};
use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(selected) = app.picker else {
        return;
    };
    let current = app.settings.context.as_ref().map(|c| c.name.as_str());
    let name_width = app.contexts.iter().map(|c| c.name.chars().count()).max().unwrap_or(4);
    let mut lines: Vec<Line> = app
        .contexts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mark = if Some(c.name.as_str()) == current { "● " } else { "  " };
            let name_style = Style::default()
                .fg(c.color.unwrap_or(ACCENT))
                .add_modifier(Modifier::BOLD);
            let mut spans = vec![
                Span::styled(mark, Style::default().fg(ACCENT)),
                Span::styled(format!("{:<name_width$}", c.name), name_style),
                Span::styled(format!("  {}", c.url), Style::default().fg(Color::White)),
            ];
            if c.read_only {
                spans.push(Span::styled("  [read-only]", Style::default().fg(WARN)));
            }
            let line = Line::from(spans);
            if i == selected {
                line.style(selected_style())
            } else {
                line
            }
        })
        .collect();
    lines.push(Line::from(""));
    let mut keys = Vec::new();
    for b in crate::app::keys::hints(app) {
        keys.push(Span::styled(
            format!("[{}]", b.keys),
            Style::default().fg(ACCENT).add_modifier(Modifier::BOLD),
        ));
        keys.push(Span::styled(format!(" {}   ", b.hint), Style::default().fg(DIM)));
    }
    lines.push(Line::from(keys));
    let widest = lines.iter().map(|l| l.width()).max().unwrap_or(20) as u16;
    let rect = centered(area, widest + 4, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(frame_block(vec![Span::styled(
            "contexts",
            Style::default().fg(super::TITLE).add_modifier(Modifier::BOLD),
        )])),
        rect,
    );
}
