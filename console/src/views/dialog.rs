//! The action dialog: the blast radius before anything happens, an input line where the action takes a value, a
//! progress bar while a move runs (`c` cancels it, `esc` only hides the dialog), and the result.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, frame_block, ACCENT, BAD, DIM, OK, WARN};
use crate::app::dialog::{Action, Phase};
use crate::app::App;
use crate::format;

fn key(k: &str, what: &str) -> Vec<Span<'static>> {
    vec![
        Span::styled(
            format!("[{k}]"),
            Style::default().fg(ACCENT).add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!(" {what}   "), Style::default().fg(DIM)),
    ]
}

/// The dialog's keys in its phase, as the key table has them (`app::keys::hints`).
fn table_keys(app: &App) -> Vec<Span<'static>> {
    crate::app::keys::hints(app)
        .into_iter()
        .flat_map(|b| key(b.keys, b.hint))
        .collect()
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(d) = &app.dialog else {
        return;
    };
    let width = area.width.saturating_sub(4).clamp(20, 76);
    // An edit's diff: removed lines red, added lines green.
    let diff = matches!(d.action, Action::Edit { .. });
    let mut lines: Vec<Line> = d
        .describe()
        .into_iter()
        .map(|l| {
            let colour = match l.get(..2) {
                Some("- ") if diff => BAD,
                Some("+ ") if diff => OK,
                _ => Color::White,
            };
            Line::from(Span::styled(l, Style::default().fg(colour)))
        })
        .collect();
    let mut gauge = None;
    match &d.phase {
        Phase::Confirm => {
            if d.takes_input() {
                lines.push(Line::from(vec![
                    Span::styled("> ", Style::default().fg(WARN)),
                    Span::styled(
                        d.input.clone(),
                        Style::default().fg(Color::White).add_modifier(Modifier::BOLD),
                    ),
                    Span::styled("█", Style::default().fg(ACCENT)),
                ]));
            }
            if let Some(e) = &d.error {
                lines.push(Line::from(Span::styled(e.clone(), Style::default().fg(BAD))));
            }
            lines.push(Line::from(""));
            // The same bindings as the hint bar, from the one key table: what is shown is what the keys do.
            let mut keys = table_keys(app);
            if matches!(d.action, Action::Redrive { .. }) {
                keys.push(Span::styled(
                    if d.choosing_queue {
                        "(now: to a queue you type)"
                    } else {
                        "(now: to each one's x-death source)"
                    },
                    Style::default().fg(DIM),
                ));
            }
            lines.push(Line::from(keys));
        }
        Phase::Running => {
            lines.push(Line::from(Span::styled("working…", Style::default().fg(WARN))));
            lines.push(Line::from(table_keys(app)));
        }
        Phase::Progress(task) => {
            let ratio = if task.total == 0 {
                0.0
            } else {
                ((task.moved + task.not_moved) as f64 / task.total as f64).clamp(0.0, 1.0)
            };
            gauge = Some((
                ratio,
                format!(
                    "{} / {} moved{}",
                    format::count(task.moved),
                    format::count(task.total),
                    if task.not_moved > 0 {
                        format!(", {} not moved", format::count(task.not_moved))
                    } else {
                        String::new()
                    }
                ),
            ));
            lines.push(Line::from(Span::styled(
                format!("move #{} running", task.id),
                Style::default().fg(WARN),
            )));
            lines.push(Line::from(table_keys(app)));
        }
        Phase::Done { ok, lines: result } => {
            let color = if *ok { OK } else { BAD };
            lines.push(Line::from(""));
            for l in result {
                lines.push(Line::from(Span::styled(
                    l.clone(),
                    Style::default().fg(color).add_modifier(Modifier::BOLD),
                )));
            }
            lines.push(Line::from(key("any key", "close")));
        }
    }
    // Wrapped height, roughly: long lines take more than one row.
    let inner_width = width.saturating_sub(2).max(1) as usize;
    let text_rows: u16 = lines
        .iter()
        .map(|l| (l.width().max(1).div_ceil(inner_width)) as u16)
        .sum();
    let height = text_rows + 2 + if gauge.is_some() { 1 } else { 0 };
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let danger = matches!(
        d.action,
        Action::Purge { .. } | Action::Delete { .. } | Action::Close { .. }
    );
    let title_color = if danger { BAD } else { WARN };
    let block = frame_block(vec![Span::styled(
        d.title(),
        Style::default().fg(title_color).add_modifier(Modifier::BOLD),
    )]);
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    match gauge {
        Some((ratio, label)) => {
            let [text, bar] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text);
            frame.render_widget(
                Gauge::default()
                    .ratio(ratio)
                    .label(label)
                    .gauge_style(Style::default().fg(OK).bg(Color::Black)),
                bar,
            );
        }
        None => frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner),
    }
}
