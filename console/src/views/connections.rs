//! `:connections` — every client connection (its name and client library as the client reports them, its protocol:
//! AMQP, MQTT or STOMP, peer, user, vhost, channels, connected for how long); `x` closes one.

use ratatui::layout::{Constraint, Rect};
use ratatui::Frame;

use crate::app::App;
use crate::format;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let l = &app.connections;
    let rows: Vec<Vec<String>> = l
        .rows()
        .into_iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.user_provided_name.clone().unwrap_or_else(|| "-".into()),
                c.client.clone().unwrap_or_else(|| "-".into()),
                if c.protocol.is_empty() {
                    "-".into()
                } else {
                    c.protocol.clone()
                },
                c.peer.clone(),
                c.user.clone(),
                c.vhost.clone(),
                c.channels.to_string(),
                format::age_ms(app.now_ms.saturating_sub(c.connected_at_ms)),
            ]
        })
        .collect();
    super::list_table(
        frame,
        area,
        super::ListSpec {
            name: "connections",
            filter: &l.filter,
            head: &[
                "ID", "NAME", "CLIENT", "PROTOCOL", "PEER", "USER", "VHOST", "CHANNELS", "AGE",
            ],
            widths: &[
                Constraint::Length(5),
                Constraint::Min(12),
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(21),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(6),
            ],
        },
        rows,
        l.selected,
    );
}
