//! Scheduled messages, for `:scheduled`: what every delayed exchange holds (one page per vhost that holds any,
//! merged in due order), and the cancel / deliver / reschedule calls of one action.

use reqwest::Method;
use warren_shared::scheduled::{
    ScheduledAction, ScheduledActionResult, ScheduledMessage, ScheduledPage, ScheduledRequest, ScheduledSummary,
};

use super::Client;
use crate::app::scheduled::PAGE;
use crate::event::ApiEvent;
use crate::format::path_segment;

impl Client {
    /// The held messages of every vhost the user may see, in due order; `total` is how many are held in all.
    pub(super) async fn read_scheduled(&self) -> Result<ApiEvent, String> {
        let summary = self.get::<Vec<ScheduledSummary>>("/api/scheduled").await?;
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
            let path = format!("/api/scheduled/{}", path_segment(vhost));
            let (_, page) = self.call::<_, ScheduledPage>(Method::POST, &path, Some(&body)).await?;
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
            let path = format!(
                "/api/exchanges/{}/{}/scheduled/{op}",
                path_segment(vhost),
                path_segment(exchange)
            );
            let (_, r) = self
                .call::<_, ScheduledActionResult>(Method::POST, &path, Some(body))
                .await
                .map_err(|e| format!("{op} held messages of {exchange}: {e}"))?;
            affected += r.affected;
        }
        Ok(affected)
    }
}
