//! Scheduled messages, for `:scheduled`: what every delayed exchange holds (one page per vhost that holds any,
//! merged in due order), and the cancel / deliver / reschedule calls of one action. The requests are `Api`'s.

use warren_shared::scheduled::{ScheduledAction, ScheduledMessage, ScheduledRequest};

use super::Client;
use crate::app::scheduled::PAGE;
use crate::event::ApiEvent;

impl Client {
    /// The held messages of every vhost the user may see, in due order; `total` is how many are held in all.
    pub(super) async fn read_scheduled(&self) -> Result<ApiEvent, String> {
        let summary = self.api.scheduled_summary().await.map_err(|e| e.to_string())?;
        let total = summary.iter().map(|s| s.messages).sum();
        let mut vhosts: Vec<&str> = summary
            .iter()
            .filter(|s| s.messages > 0)
            .map(|s| s.vhost.as_str())
            .collect();
        vhosts.dedup();
        let mut messages: Vec<ScheduledMessage> = Vec::new();
        for vhost in vhosts {
            let body = ScheduledRequest {
                count: Some(PAGE),
                ..ScheduledRequest::default()
            };
            let page = self.api.scheduled(vhost, &body).await.map_err(|e| e.to_string())?;
            messages.extend(page.messages);
        }
        messages.sort_by(|a, b| (a.due_ms, &a.vhost, &a.exchange, a.id).cmp(&(b.due_ms, &b.vhost, &b.exchange, b.id)));
        Ok(ApiEvent::Scheduled { total, messages })
    }

    /// `op` on each (vhost, exchange, body) in turn; how many messages it applied to in all.
    pub(super) async fn act_on_scheduled(
        &self,
        op: &str,
        calls: &[(String, String, ScheduledAction)],
    ) -> Result<u64, String> {
        let mut affected = 0;
        for (vhost, exchange, body) in calls {
            let r = self
                .api
                .scheduled_act(vhost, exchange, op, body)
                .await
                .map_err(|e| format!("{op} held messages of {exchange}: {e}"))?;
            affected += r.affected;
        }
        Ok(affected)
    }
}
