//! The header: broker name, version and uptime, the context (a named broker of the config file) in its colour, the
//! connection state (live, or stale since when and retrying in how
//! long), a resource alarm when one blocks publishers, the cluster (this node's role, the term, the nodes; a warning
//! while the leader is unreachable, as during a failover), the totals and the global rates with a sparkline of the
//! publish rate.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{ACCENT, BAD, DIM, OK, TITLE, WARN};
use crate::app::{App, Link};
use crate::format;

/// Three lines on a roomy terminal, one on a small one.
pub fn height(area: Rect) -> u16 {
    if area.height >= 20 && area.width >= 60 {
        3
    } else {
        1
    }
}

fn link(app: &App, short: bool) -> Span<'static> {
    match &app.link {
        Link::Connecting => Span::styled("◌ connecting…", Style::default().fg(WARN)),
        Link::Live => Span::styled("● live", Style::default().fg(OK).add_modifier(Modifier::BOLD)),
        Link::Stale {
            since_ms, retry_at_ms, ..
        } => {
            let since = format::clock(*since_ms, app.settings.utc_offset_s);
            let retry = retry_at_ms.saturating_sub(app.now_ms).div_ceil(1000);
            let text = if short {
                format!("◌ stale {since}, retry {retry}s")
            } else {
                format!("◌ stale since {since}, retrying in {retry} s")
            };
            Span::styled(text, Style::default().fg(BAD).add_modifier(Modifier::BOLD))
        }
        Link::Refused { .. } => Span::styled(
            if short {
                "✕ login refused"
            } else {
                "✕ credentials refused: not retrying"
            },
            Style::default().fg(BAD).add_modifier(Modifier::BOLD),
        ),
    }
}

/// The broker's resource alarm, when one blocks publishers: what an operator must see first.
fn alarm(r: &warren_shared::Resources) -> Option<Span<'static>> {
    let text = match (r.memory_alarm, r.disk_alarm) {
        (false, false) => return None,
        (true, false) => format!(
            "▲ MEMORY ALARM {} / {}: publishers blocked",
            format::bytes(r.memory_used),
            format::bytes(r.memory_limit)
        ),
        (false, true) => format!(
            "▲ DISK ALARM {} free < {}: publishers blocked",
            format::bytes(r.disk_free),
            format::bytes(r.disk_free_limit)
        ),
        (true, true) => "▲ MEMORY AND DISK ALARMS: publishers blocked".to_string(),
    };
    Some(Span::styled(
        text,
        Style::default().fg(BAD).add_modifier(Modifier::BOLD),
    ))
}

/// The context's name, as a block of its colour (e.g. red for production) so it cannot be missed; plain accent text
/// for a context without a colour; nothing without contexts.
fn context(app: &App) -> Option<Span<'static>> {
    let c = app.settings.context.as_ref()?;
    let style = match c.color {
        Some(color) => Style::default()
            .bg(color)
            .fg(ratatui::style::Color::Black)
            .add_modifier(Modifier::BOLD),
        None => Style::default().fg(ACCENT).add_modifier(Modifier::BOLD),
    };
    Some(Span::styled(format!(" ⎈ {} ", c.name), style))
}

/// The cluster badge, when the broker runs clustered: this node's role and term; a warning while the leader cannot
/// be reached (the console retries, and the badge names the leader it last knew).
fn cluster(app: &App) -> Option<Span<'static>> {
    let c = app.cluster.as_ref().filter(|c| c.enabled)?;
    if matches!(app.link, Link::Stale { .. }) {
        let leader = c.leader.as_ref().map_or("?", |l| l.name.as_str());
        return Some(Span::styled(
            format!("⬢ leader {leader} unreachable (term {})", c.term),
            Style::default().fg(BAD).add_modifier(Modifier::BOLD),
        ));
    }
    Some(Span::styled(
        match c.in_sync.len() {
            n if c.role == "leader" && n > 0 => format!(
                "⬢ {} {} · term {} · {} nodes · {} in sync",
                c.node,
                c.role,
                c.term,
                c.nodes.len(),
                n - 1
            ),
            _ => format!("⬢ {} {} · term {} · {} nodes", c.node, c.role, c.term, c.nodes.len()),
        },
        Style::default().fg(ACCENT),
    ))
}

fn label(s: &str) -> Span<'static> {
    Span::styled(format!("{s} "), Style::default().fg(DIM))
}

fn value(s: String) -> Span<'static> {
    Span::styled(s, Style::default().fg(ACCENT).add_modifier(Modifier::BOLD))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let name = app
        .overview
        .as_ref()
        .map(|o| format!("{} {}", o.product, o.version))
        .unwrap_or_else(|| "Warren".into());
    let brand = Span::styled(name, Style::default().fg(TITLE).add_modifier(Modifier::BOLD));
    if area.height < 3 {
        let mut spans = vec![brand, Span::raw(" ")];
        if let Some(c) = context(app) {
            spans.push(c);
            spans.push(Span::raw(" "));
        }
        if area.width >= 60 {
            if let Some(o) = &app.overview {
                spans.push(label("up"));
                spans.push(value(format::age_ms(o.uptime_ms)));
                spans.push(Span::raw("  "));
                spans.push(label("ready"));
                spans.push(value(format::count(o.totals.messages_ready)));
                spans.push(Span::raw("  "));
            }
        }
        spans.push(link(app, area.width < 60));
        if let Some(alarm) = app.overview.as_ref().and_then(|o| alarm(&o.resources)) {
            spans.push(Span::raw(" "));
            spans.push(alarm);
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    let mut first = vec![brand];
    if let Some(c) = context(app) {
        first.push(Span::raw("  "));
        first.push(c);
    }
    if let Some(o) = &app.overview {
        first.push(Span::raw("  "));
        first.push(label("up"));
        first.push(value(format::age_ms(o.uptime_ms)));
    }
    first.push(Span::raw("  "));
    first.push(Span::styled(app.settings.url.clone(), Style::default().fg(DIM)));
    if app.settings.read_only {
        first.push(Span::styled("  [read-only]", Style::default().fg(WARN)));
    }
    first.push(Span::raw("  "));
    first.push(link(app, false));
    if let Some(c) = cluster(app) {
        first.push(Span::raw("  "));
        first.push(c);
    }
    if let Some(alarm) = app.overview.as_ref().and_then(|o| alarm(&o.resources)) {
        first.push(Span::raw("  "));
        first.push(alarm);
    }
    let mut lines = vec![Line::from(first)];
    if let Some(o) = &app.overview {
        let t = &o.totals;
        let mut second = Vec::new();
        for (l, v) in [
            ("queues", t.queues),
            ("connections", t.connections),
            ("consumers", t.consumers),
            ("ready", t.messages_ready),
            ("unacked", t.messages_unacked),
            ("dead-lettered", t.dead_lettered),
            ("returned", t.returned),
        ] {
            second.push(label(l));
            second.push(value(format::count(v)));
            second.push(Span::raw("  "));
        }
        lines.push(Line::from(second));
        let r = &o.rates;
        let mut third = Vec::new();
        for (l, v) in [
            ("in/s", r.publish.last_1s),
            ("out/s", r.deliver.last_1s),
            ("ack/s", r.ack.last_1s),
            ("reject/s", r.reject.last_1s + r.nack.last_1s),
            ("dlx/s", r.dead_lettered.last_1s),
        ] {
            third.push(label(l));
            third.push(value(format::rate(v)));
            third.push(Span::raw("  "));
        }
        let series: Vec<f64> = app.history.overview().iter().map(|s| s.publish).collect();
        third.push(Span::styled(format::sparkline(&series, 30), Style::default().fg(OK)));
        lines.push(Line::from(third));
    } else {
        lines.push(Line::from(Span::styled(
            "waiting for the first snapshot from the broker…",
            Style::default().fg(DIM),
        )));
    }
    frame.render_widget(Paragraph::new(lines), area);
}
