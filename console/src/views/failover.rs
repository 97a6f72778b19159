//! The failover banner: a full-width bar above the view while the console is clustered and its feed is down, so a
//! leader's loss is impossible to miss. It names the leader last known, how long it has been gone, the term, and
//! the nodes the console is asking for a new leader (it moves to the first that says it leads, see
//! `client::Api::follow`). Nothing here holds state: it is drawn from `App::link` and `App::cluster`.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::BAD;
use crate::app::{App, Link};

/// The banner's text, while there is one to show.
pub fn text(app: &App) -> Option<String> {
    let c = app.cluster.as_ref().filter(|c| c.enabled)?;
    let Link::Stale { since_ms, .. } = &app.link else {
        return None;
    };
    let gone = app.now_ms.saturating_sub(*since_ms) / 1000;
    let leader = c.leader.as_ref().map_or("the leader", |l| l.name.as_str());
    let others: Vec<&str> = c
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| *n != leader)
        .collect();
    let asking = if others.is_empty() {
        "waiting for it to come back".to_string()
    } else {
        format!("asking {} which leads now", others.join(", "))
    };
    Some(format!(
        " FAILOVER  {leader} (term {}) unreachable for {gone} s · {asking} · the view below is stale ",
        c.term
    ))
}

/// One line, or none: the height the layout gives the banner.
pub fn height(app: &App) -> u16 {
    u16::from(text(app).is_some())
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(text) = text(app) else { return };
    let style = Style::default().fg(Color::White).bg(BAD).add_modifier(Modifier::BOLD);
    frame.render_widget(Paragraph::new(Line::from(Span::styled(text, style))).style(style), area);
}
