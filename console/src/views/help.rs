//! The `?` overlay: every key binding, grouped by where it applies (from the same table as the hint bar). With
//! `--read-only`, action keys are not listed.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{centered, frame_block, ACCENT, DIM, TITLE};
use crate::app::keys::{Context, BINDINGS};
use crate::app::App;

fn section(c: Context) -> &'static str {
    match c {
        Context::Global => "everywhere",
        Context::Queues => "queues",
        Context::Detail => "queue detail",
        Context::Messages => "messages",
        Context::Connections => "connections",
        Context::Audit => "audit",
        Context::Dialog => "dialogs",
    }
}

pub fn lines(app: &App) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for c in [
        Context::Global,
        Context::Queues,
        Context::Detail,
        Context::Messages,
        Context::Connections,
        Context::Audit,
        Context::Dialog,
    ] {
        let keys: Vec<_> = BINDINGS
            .iter()
            .filter(|b| b.context == c && !(b.action && app.settings.read_only))
            .collect();
        if keys.is_empty() {
            continue;
        }
        lines.push(Line::from(Span::styled(
            section(c),
            Style::default().fg(TITLE).add_modifier(Modifier::BOLD),
        )));
        for b in keys {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<16}", b.keys), Style::default().fg(ACCENT)),
                Span::raw(b.what),
            ]));
        }
    }
    lines.push(Line::from(Span::styled(
        "j k / arrows / pgup pgdn scroll · any other key closes this help",
        Style::default().fg(DIM),
    )));
    lines
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let popup = centered(area, 92, area.height.saturating_sub(2).max(3));
    frame.render_widget(Clear, popup);
    let lines = lines(app);
    // Scrolling stops when the last line is in view.
    let visible = popup.height.saturating_sub(2);
    let max_scroll = (lines.len() as u16).saturating_sub(visible);
    let scroll = app.help_scroll.min(max_scroll);
    let more = if scroll < max_scroll { " ↓ more (j)" } else { "" };
    let block = frame_block(vec![
        Span::styled("help", Style::default().fg(TITLE)),
        Span::styled(more, Style::default().fg(DIM)),
    ]);
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), popup);
}
