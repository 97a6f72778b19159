//! `:nodes` — the cluster's nodes as `/api/cluster` lists them (each with its role and its client and admin
//! addresses), and this node's view: which node leads, in which term. A single node says it is not clustered.

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
    let rows: Vec<Vec<String>> = app
        .nodes
        .rows()
        .into_iter()
        .map(|n| {
            vec![
                n.name.clone(),
                if n.name == leader {
                    format!("leader (term {term})")
                } else {
                    "follower".into()
                },
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
            head: &["NODE", "ROLE", "AMQP", "ADMIN"],
            widths: &[
                Constraint::Min(16),
                Constraint::Length(18),
                Constraint::Length(22),
                Constraint::Length(22),
            ],
        },
        rows,
        app.nodes.selected,
    );
}
