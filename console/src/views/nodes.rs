//! `:nodes` — the cluster's nodes as `/api/cluster` lists them (each with its role and its client and admin
//! addresses), and this node's view: which node leads, in which term; from the leader, which followers are in the
//! in-sync set, how many changes each has still to ack, and how long since its last ack. A single node says it is
//! not clustered.

use ratatui::layout::{Constraint, Rect};
use ratatui::Frame;

use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let leader = app
        .cluster
        .as_ref()
        .and_then(|c| c.leader.as_ref())
        .map(|l| l.name.clone())
        .unwrap_or_default();
    let term = app.cluster.as_ref().map_or(0, |c| c.term);
    let replicas = app.cluster.as_ref().map(|c| c.replicas.as_slice()).unwrap_or_default();
    let in_sync = app.cluster.as_ref().map(|c| c.in_sync.as_slice()).unwrap_or_default();
    let rows: Vec<Vec<String>> = app
        .nodes
        .rows()
        .into_iter()
        .map(|n| {
            let replica = replicas.iter().find(|r| r.node == n.name);
            vec![
                n.name.clone(),
                if n.name == leader {
                    format!("leader (term {term})")
                } else {
                    "follower".into()
                },
                match (n.name == leader, in_sync.contains(&n.name)) {
                    (true, _) => "-".into(),
                    _ if in_sync.is_empty() => "?".into(),
                    (false, true) => "yes".into(),
                    (false, false) => "no".into(),
                },
                replica.map_or("-".into(), |r| {
                    if r.state == "streaming" {
                        r.lag_ops.to_string()
                    } else {
                        r.state.clone()
                    }
                }),
                replica.map_or("-".into(), |r| format!("{:.1}s", r.last_ack_ms_ago as f64 / 1000.0)),
                n.amqp.clone(),
                n.admin.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let name = match &app.cluster {
        Some(c) if !c.enabled => "nodes (not clustered)",
        _ => "nodes",
    };
    super::list_table(
        frame,
        area,
        super::ListSpec {
            name,
            filter: &app.nodes.filter,
            head: &["NODE", "ROLE", "IN SYNC", "LAG", "LAST ACK", "AMQP", "ADMIN"],
            widths: &[
                Constraint::Min(16),
                Constraint::Length(18),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(22),
                Constraint::Length(22),
            ],
        },
        rows,
        app.nodes.selected,
    );
}
