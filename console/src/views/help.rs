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
        Context::Trace => "journey",
        Context::Scheduled => "scheduled messages",
        Context::Dialog => "dialogs",
        Context::Picker => "context picker (:ctx)",
    }
}

/// Width of the key column: two spaces, the longest key text, and one space.
fn key_column() -> usize {
    BINDINGS.iter().map(|b| b.keys.chars().count()).max().unwrap_or(14) + 3
}

/// Greedy word wrap of `text` into lines of at most `width` characters (a word longer than that is cut into pieces).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            let rest = word.split_off(width);
            out.push(word.into_iter().collect());
            word = rest;
        }
        let len = line.chars().count();
        if len > 0 && len + 1 + word.len() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

fn shown(app: &App, c: Context) -> Vec<&'static crate::app::keys::Binding> {
    BINDINGS
        .iter()
        .filter(|b| b.context == c && !(b.action && app.settings.read_only))
        .collect()
}

const SECTIONS: [Context; 10] = [
    Context::Global,
    Context::Queues,
    Context::Detail,
    Context::Messages,
    Context::Connections,
    Context::Audit,
    Context::Trace,
    Context::Scheduled,
    Context::Dialog,
    Context::Picker,
];

/// The widest the overlay needs to be to show every line whole (its borders included).
pub fn natural_width(app: &App) -> u16 {
    let widest = SECTIONS
        .iter()
        .flat_map(|c| shown(app, *c))
        .map(|b| key_column() + b.what.chars().count())
        .max()
        .unwrap_or(40);
    (widest + 2) as u16
}

/// The overlay's lines for an overlay `width` columns wide (borders included): descriptions that do not fit wrap
/// under themselves, so nothing is cut at any width.
pub fn lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let key_width = key_column();
    let text_width = (width as usize).saturating_sub(2 + key_width).max(16);
    let mut lines = Vec::new();
    for c in SECTIONS {
        let keys = shown(app, c);
        if keys.is_empty() {
            continue;
        }
        lines.push(Line::from(Span::styled(
            section(c),
            Style::default().fg(TITLE).add_modifier(Modifier::BOLD),
        )));
        for b in keys {
            for (i, part) in wrap(b.what, text_width).into_iter().enumerate() {
                let key = if i == 0 {
                    format!("  {:<w$}", b.keys, w = key_width - 2)
                } else {
                    " ".repeat(key_width)
                };
                lines.push(Line::from(vec![
                    Span::styled(key, Style::default().fg(ACCENT)),
                    Span::raw(part),
                ]));
            }
        }
    }
    lines.push(Line::from(Span::styled(
        "j k / arrows / pgup pgdn scroll · any other key closes this help",
        Style::default().fg(DIM),
    )));
    lines
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let width = natural_width(app).min(area.width.saturating_sub(2)).max(24);
    let popup = centered(area, width, area.height.saturating_sub(2).max(3));
    frame.render_widget(Clear, popup);
    let lines = lines(app, popup.width);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_every_word_within_the_width() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("", 5), vec![""]);
        let text = "command: queues, exchanges, bindings, connections, consumers, audit, messages <queue>";
        for w in [13, 20, 33] {
            let parts = wrap(text, w);
            assert!(parts.iter().all(|p| p.chars().count() <= w), "{parts:?}");
            assert_eq!(parts.join(" "), text);
        }
    }
}
