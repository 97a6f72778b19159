//! The queue detail: depth and lag, dead-letter links (where this queue's dead letters go, which queues feed it), rate
//! charts over a zoomable window that can be frozen, the publish->deliver latency histogram labelled with its
//! percentiles, error counters, consumers, arguments and policy.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Bar, BarChart, BarGroup, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap};
use ratatui::Frame;
use warren_shared::{LatencySummary, QueueInfo};

use super::{frame_block, ACCENT, BAD, DIM, OK, TITLE, WARN};
use crate::app::queues::{kind, role};
use crate::app::{App, WINDOWS_S};
use crate::event::QueueKey;
use crate::format;

fn label(s: &str) -> Span<'static> {
    Span::styled(format!("{s} "), Style::default().fg(DIM))
}

fn value(s: impl Into<String>) -> Span<'static> {
    Span::styled(s.into(), Style::default().fg(Color::White).add_modifier(Modifier::BOLD))
}

fn summary_lines(app: &App, q: &QueueInfo) -> Vec<Line<'static>> {
    let key = QueueKey::new(&q.vhost, &q.name);
    let trend = app.history.trend(&key);
    let mut flags = vec![kind(q).to_string()];
    match role(q) {
        Some("dlq") => flags.push("dead-letter queue".into()),
        Some(_) => flags.push("priority".into()),
        None => {}
    }
    if q.durable {
        flags.push("durable".into());
    }
    if q.exclusive {
        flags.push("exclusive".into());
    }
    if q.auto_delete {
        flags.push("auto-delete".into());
    }
    let util = q
        .consumer_utilisation
        .map(|u| format!(" (utilisation {:.0}%)", u * 100.0))
        .unwrap_or_default();
    let paused = if q.paused {
        Span::styled(
            "   ⏸ PAUSED: nothing is delivered (Z resumes)",
            Style::default().fg(WARN).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::raw("")
    };
    let mut lines = vec![
        Line::from(vec![
            label("type"),
            value(flags.join(", ")),
            paused,
            Span::raw("   "),
            label("policy"),
            value(q.policy.clone().unwrap_or_else(|| "none".into())),
            Span::raw("   "),
            label("size"),
            value(format::bytes(q.message_bytes)),
        ]),
        Line::from(vec![
            label("ready"),
            value(format::count(q.messages_ready)),
            Span::raw("  "),
            label("unacked"),
            value(format::count(q.messages_unacked)),
            Span::raw("  "),
            label("consumers"),
            value(format!("{}{util}", q.consumers)),
            Span::raw("  "),
            label("behind"),
            value(format::duration_ms(q.time_behind_ms)),
            Span::raw("  "),
            label("drains"),
            value(match q.drain_ms {
                _ if q.stream.is_some() => "never (a stream keeps its messages)".to_string(),
                Some(0) => "now (nothing ready)".to_string(),
                Some(ms) => format!("in {}", format::duration_ms(ms)),
                None => "never at this rate".to_string(),
            }),
            Span::raw("  "),
            label("trend"),
            value(trend.word()),
        ]),
    ];
    // Where dead letters go: the exchange and key, and the queues that list this one as a source.
    let targets: Vec<&str> = app
        .queues
        .iter()
        .filter(|t| t.vhost == q.vhost && t.dead_letter_sources.contains(&q.name))
        .map(|t| t.name.as_str())
        .collect();
    let out = match &q.dead_letter_exchange {
        Some(x) => {
            let x = if x.is_empty() { "(default)" } else { x.as_str() };
            let key = q
                .dead_letter_routing_key
                .as_deref()
                .map(|k| format!(" key {k}"))
                .unwrap_or_default();
            let to = if targets.is_empty() {
                "no queue bound".to_string()
            } else {
                targets.join(", ")
            };
            format!("exchange {x}{key} → {to}")
        }
        None => "none".into(),
    };
    lines.push(Line::from(vec![
        label("dead letters →"),
        Span::styled(out, Style::default().fg(WARN)),
    ]));
    let feeders = if q.dead_letter_sources.is_empty() {
        "none".to_string()
    } else {
        q.dead_letter_sources.join(", ")
    };
    lines.push(Line::from(vec![
        label("fed by ←"),
        Span::styled(feeders, Style::default().fg(WARN)),
    ]));
    lines
}

fn rate_chart(frame: &mut Frame, area: Rect, app: &App, key: &QueueKey) {
    let window_s = WINDOWS_S[app.detail.zoom.min(WINDOWS_S.len() - 1)];
    let end = app.detail.frozen_at.unwrap_or(app.now_ms);
    let start = end.saturating_sub(window_s * 1000);
    let samples: Vec<_> = app
        .history
        .queue(key)
        .map(|r| {
            r.iter()
                .filter(|s| s.at_ms >= start && s.at_ms <= end)
                .copied()
                .collect()
        })
        .unwrap_or_default();
    let x = |at: u64| (at as f64 - end as f64) / 1000.0;
    let series = |f: fn(&crate::app::history::Sample) -> f64| -> Vec<(f64, f64)> {
        samples.iter().map(|s| (x(s.at_ms), f(s))).collect()
    };
    let publish = series(|s| s.publish);
    let deliver = series(|s| s.deliver);
    let ack = series(|s| s.ack);
    let errors = series(|s| s.errors);
    let max = [&publish, &deliver, &ack, &errors]
        .iter()
        .flat_map(|v| v.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let frozen = if app.detail.frozen_at.is_some() {
        Span::styled(" FROZEN ", Style::default().fg(Color::Black).bg(WARN))
    } else {
        Span::raw("")
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(DIM))
        .title(Line::from(vec![
            Span::styled(
                format!(" rates/s, last {} ", format::age_ms(window_s * 1000)),
                Style::default().fg(TITLE),
            ),
            frozen,
        ]))
        .title_bottom(Line::from(vec![
            Span::styled(" ━ in ", Style::default().fg(OK)),
            Span::styled("━ out ", Style::default().fg(ACCENT)),
            Span::styled("━ ack ", Style::default().fg(Color::Blue)),
            Span::styled("━ errors ", Style::default().fg(BAD)),
        ]));
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(OK))
            .data(&publish),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(ACCENT))
            .data(&deliver),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Blue))
            .data(&ack),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(BAD))
            .data(&errors),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([-(window_s as f64), 0.0])
                .style(Style::default().fg(DIM))
                .labels([format!("-{}", format::age_ms(window_s * 1000)), "now".to_string()]),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, max])
                .style(Style::default().fg(DIM))
                .labels(["0".to_string(), format::rate(max)]),
        );
    frame.render_widget(chart, area);
}

/// Merges adjacent buckets until at most `n` remain (each keeps the upper bound of its last part).
fn fit_buckets(buckets: &[(u64, u64)], n: usize) -> Vec<(u64, u64)> {
    if buckets.len() <= n || n == 0 {
        return buckets.to_vec();
    }
    let per = buckets.len().div_ceil(n);
    buckets
        .chunks(per)
        .map(|c| (c.last().map_or(0, |b| b.0), c.iter().map(|b| b.1).sum()))
        .collect()
}

fn short_ms(ms: u64) -> String {
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}")
    }
}

/// A bar's value in at most four characters.
fn compact(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{}k", n / 1000),
        _ => format!("{}M", n / 1_000_000),
    }
}

fn histogram(frame: &mut Frame, area: Rect, l: &LatencySummary) {
    let title = Line::from(vec![
        Span::styled(" publish→deliver ms ", Style::default().fg(TITLE)),
        Span::styled(
            format!(
                "p50 {} p90 {} p99 {} p99.9 {} ",
                format::duration_ms(l.p50),
                format::duration_ms(l.p90),
                format::duration_ms(l.p99),
                format::duration_ms(l.p999)
            ),
            Style::default().fg(WARN),
        ),
    ]);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(DIM))
        .title(title)
        .title_bottom(Line::from(Span::styled(
            format!(
                " {} samples, max {} ",
                format::count(l.count),
                format::duration_ms(l.max)
            ),
            Style::default().fg(DIM),
        )));
    if l.count == 0 || l.buckets.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no deliveries in the last minute",
                Style::default().fg(DIM),
            ))
            .block(block),
            area,
        );
        return;
    }
    let inner = area.width.saturating_sub(2) as usize;
    let bar_width = 5usize;
    let buckets = fit_buckets(&l.buckets, (inner / (bar_width + 1)).max(1));
    let bars: Vec<Bar> = buckets
        .iter()
        .map(|(upper, n)| {
            let style = if *upper <= l.p50 {
                Style::default().fg(OK)
            } else if *upper <= l.p99 {
                Style::default().fg(WARN)
            } else {
                Style::default().fg(BAD)
            };
            Bar::default()
                .value(*n)
                .label(Line::from(short_ms(*upper)))
                .text_value(compact(*n))
                .style(style)
        })
        .collect();
    let chart = BarChart::default()
        .block(block)
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width as u16)
        .bar_gap(1)
        .value_style(Style::default().fg(Color::Black).bg(WARN));
    frame.render_widget(chart, area);
}

fn errors(app: &App, q: &QueueInfo) -> Vec<Line<'static>> {
    let c = &q.counters;
    let returned = app.overview.as_ref().map_or(0, |o| o.totals.returned);
    let mut lines: Vec<Line> = [
        ("nacked", c.nacked, q.rates.nack.last_10s),
        ("rejected", c.rejected, q.rates.reject.last_10s),
        ("dead-lettered", c.dead_lettered, q.rates.dead_lettered.last_10s),
        ("expired", c.expired, q.rates.expired.last_10s),
        ("dropped", c.dropped, q.rates.dropped.last_10s),
        ("redelivered", c.redelivered, q.rates.redeliver.last_10s),
    ]
    .into_iter()
    .map(|(name, n, r)| {
        let color = if n > 0 { BAD } else { Color::White };
        Line::from(vec![
            Span::styled(format!("{name:<14}"), Style::default().fg(DIM)),
            Span::styled(format!("{:>9}", format::count(n)), Style::default().fg(color)),
            Span::styled(format!(" {:>5}/s", format::rate(r)), Style::default().fg(DIM)),
        ])
    })
    .collect();
    lines.push(Line::from(vec![
        Span::styled(format!("{:<14}", "returned*"), Style::default().fg(DIM)),
        Span::styled(
            format!("{:>9}", format::count(returned)),
            Style::default().fg(Color::White),
        ),
    ]));
    lines.push(Line::from(Span::styled(
        "* broker-wide (unroutable)",
        Style::default().fg(DIM),
    )));
    lines
}

fn consumers(app: &App, q: &QueueInfo) -> Vec<Line<'static>> {
    let list: Vec<Line> = app
        .consumers
        .items
        .iter()
        .filter(|c| c.vhost == q.vhost && c.queue == q.name)
        .map(|c| {
            Line::from(vec![
                Span::styled(format::truncate(&c.consumer_tag, 24), Style::default().fg(Color::White)),
                Span::styled(
                    format!(
                        "  conn {} ch {}{}{}",
                        c.connection,
                        c.channel,
                        if c.ack_required { "" } else { " no-ack" },
                        if c.exclusive { " exclusive" } else { "" }
                    ),
                    Style::default().fg(DIM),
                ),
            ])
        })
        .collect();
    if list.is_empty() {
        vec![Line::from(Span::styled("no consumers", Style::default().fg(DIM)))]
    } else {
        list
    }
}

fn arguments(q: &QueueInfo) -> Vec<Line<'static>> {
    if q.arguments.is_empty() {
        return vec![Line::from(Span::styled("no arguments", Style::default().fg(DIM)))];
    }
    q.arguments
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) if s.is_empty() => "\"\"".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Line::from(vec![
                Span::styled(format!("{k} "), Style::default().fg(DIM)),
                Span::styled(v, Style::default().fg(Color::White)),
            ])
        })
        .collect()
}

fn boxed<'a>(title: &'a str) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(DIM))
        .title(Span::styled(format!(" {title} "), Style::default().fg(TITLE)))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, key: &QueueKey) {
    let block = frame_block(vec![
        Span::styled("queue", Style::default().fg(TITLE).add_modifier(Modifier::BOLD)),
        Span::styled(format!("({})", key.vhost), Style::default().fg(super::MARK)),
        Span::styled(format!("[{}]", key.name), Style::default().fg(Color::White)),
    ]);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(q) = app.queue(key) else {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "this queue is not in the latest snapshot (deleted?) — esc goes back",
                Style::default().fg(WARN),
            )),
            inner,
        );
        return;
    };
    let summary = summary_lines(app, q);
    if inner.height < 12 {
        // A small terminal: the facts only.
        let mut lines = summary;
        lines.push(Line::from(vec![
            label("p99"),
            value(format::duration_ms(q.latency_deliver.p99)),
            Span::raw("  "),
            label("rejected"),
            value(format::count(q.counters.rejected)),
            Span::raw("  "),
            label("dead-lettered"),
            value(format::count(q.counters.dead_lettered)),
        ]));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    // A stream's panel (span, retention, consumers with lag bars) takes the place of errors, consumers and
    // arguments.
    let bottom = match &q.stream {
        Some(s) => super::stream::height(s).min(inner.height.saturating_sub(summary.len() as u16 + 8)),
        None if inner.height >= 24 => 10,
        None => 0,
    };
    let [top, charts, lower] = Layout::vertical([
        Constraint::Length(summary.len() as u16),
        Constraint::Min(8),
        Constraint::Length(bottom),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(summary), top);
    let [left, right] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(charts);
    rate_chart(frame, left, app, key);
    histogram(frame, right, &q.latency_deliver);
    if let Some(s) = &q.stream {
        super::stream::render(frame, lower, app, s);
        return;
    }
    if bottom > 0 {
        let [a, b, c] = Layout::horizontal([
            Constraint::Length(34),
            Constraint::Percentage(50),
            Constraint::Percentage(50),
        ])
        .areas(lower);
        frame.render_widget(Paragraph::new(errors(app, q)).block(boxed("errors")), a);
        frame.render_widget(Paragraph::new(consumers(app, q)).block(boxed("consumers")), b);
        frame.render_widget(
            Paragraph::new(arguments(q))
                .wrap(Wrap { trim: true })
                .block(boxed("arguments")),
            c,
        );
    }
}
