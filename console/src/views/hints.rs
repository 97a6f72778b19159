//! The two bottom lines: the flash line (errors, reconnects, results; or the prompt being typed) and the key-hint
//! bar, which is always shown and drawn from the same key table as the help overlay.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{ACCENT, BAD, DIM, OK, WARN};
use crate::app::keys::hints;
use crate::app::{App, Level, PromptKind};

pub fn render_flash(frame: &mut Frame, area: Rect, app: &App) {
    if let Some(p) = &app.prompt {
        let lead = match p.kind {
            PromptKind::Command => ":",
            PromptKind::Filter => "/",
            PromptKind::MessageFilter => "/ (h:header=value p:property=value text) ",
            PromptKind::StreamStart => "start at (first, an offset, 2026-12-01T09:30:00Z, -15m) ",
        };
        let line = Line::from(vec![
            Span::styled(lead, Style::default().fg(WARN).add_modifier(Modifier::BOLD)),
            Span::styled(p.text.clone(), Style::default().fg(Color::White)),
            Span::styled("█", Style::default().fg(ACCENT)),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    if let Some(f) = &app.flash {
        let (color, tag) = match f.level {
            Level::Info => (OK, "ok"),
            Level::Warn => (WARN, "warn"),
            Level::Error => (BAD, "error"),
        };
        let line = Line::from(vec![
            Span::styled(
                format!("{tag}: "),
                Style::default().fg(color).add_modifier(Modifier::BOLD),
            ),
            Span::styled(f.text.clone(), Style::default().fg(color)),
        ]);
        frame.render_widget(Paragraph::new(line), area);
    }
}

pub fn render_hints(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    for b in hints(app) {
        spans.push(Span::styled(
            format!("<{}>", b.keys),
            Style::default().fg(ACCENT).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(format!(" {}  ", b.hint), Style::default().fg(DIM)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
