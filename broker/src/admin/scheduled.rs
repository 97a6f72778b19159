//! Scheduled messages: what `x-delayed-message` exchanges hold until their `x-delay` has passed
//! (`crate::routing::delayed`), listed and acted on by operators. RabbitMQ's delayed-message plugin can do neither.
//!
//! - `GET /api/scheduled`: each delayed exchange the caller may see, with how many messages it holds and when the
//!   first is due.
//! - `POST /api/scheduled/{vhost}`: a page of held messages in due order, of one exchange or all of the vhost's,
//!   filtered as peek filters (`read` permission on each exchange listed).
//! - `POST /api/exchanges/{vhost}/{name}/scheduled/{cancel|deliver|reschedule}`: by ids, by filter, or `all`
//!   (`write` permission on the exchange, as publishing to it needs). A cancel drops the messages; a delivery routes
//!   them now; a reschedule holds them until a new time, durably before it answers. Each is audited.

use std::collections::HashSet;
use std::sync::Arc;

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use warren_shared::scheduled::{
    ScheduledAction, ScheduledActionResult, ScheduledMessage, ScheduledPage, ScheduledRequest, ScheduledSummary,
};

use super::caller::{audit, Caller};
use super::queues::vhost;
use super::{json, AdminState, ApiResult, Body, Error, OptionalBody};
use crate::auth::{Kind, Perm};
use crate::broker::Broker;
use crate::message::Message;
use crate::routing::delayed::{DelayedHold, Scheduled};

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .api_route(
            "/api/scheduled",
            get_with(summary, |o| {
                o.summary("Delayed exchanges and the messages they hold (extension)")
            }),
        )
        .api_route(
            "/api/scheduled/{vhost}",
            post_with(list, |o| {
                o.summary("A page of the messages delayed exchanges hold, in due order (extension)")
            }),
        )
        .api_route(
            "/api/exchanges/{vhost}/{name}/scheduled/{action}",
            post_with(act, |o| {
                o.summary("Cancel, deliver now or reschedule held messages: action is cancel, deliver or reschedule (extension)")
            }),
        )
}

/// The holds of `vhost`'s delayed exchanges (of `only`, when given), by exchange name.
fn holds(b: &Broker, v: &str, only: Option<&str>) -> Result<Vec<(String, Arc<DelayedHold>)>, Error> {
    let vh = vhost(b, v)?;
    let t = vh.read();
    if let Some(name) = only {
        let x = t
            .exchanges
            .get(name)
            .ok_or_else(|| Error::not_found(format!("no exchange '{name}' in vhost '{v}'")))?;
        let hold = x.delayed.clone().ok_or_else(|| {
            Error::bad_request(format!(
                "exchange '{name}' in vhost '{v}' is not an x-delayed-message exchange"
            ))
        })?;
        return Ok(vec![(name.to_string(), hold)]);
    }
    let mut all: Vec<(String, Arc<DelayedHold>)> = t
        .exchanges
        .values()
        .filter_map(|x| x.delayed.clone().map(|h| (x.name.clone(), h)))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

async fn summary(State(b): State<Arc<Broker>>, caller: Caller) -> ApiResult<Vec<ScheduledSummary>> {
    let mut out = Vec::new();
    for vh in b.vhosts() {
        if !(caller.sees_all() || caller.may_see(&b, &vh.name)) {
            continue;
        }
        for (exchange, hold) in holds(&b, &vh.name, None)? {
            let (messages, bytes, next_due_ms) = hold.summary();
            out.push(ScheduledSummary {
                vhost: vh.name.clone(),
                exchange,
                messages,
                bytes,
                next_due_ms,
            });
        }
    }
    out.sort_by(|a, b| (&a.vhost, &a.exchange).cmp(&(&b.vhost, &b.exchange)));
    Ok(Json(out))
}

async fn list(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path(v): Path<String>,
    OptionalBody(req): OptionalBody<ScheduledRequest>,
) -> ApiResult<ScheduledPage> {
    let count = req.count.unwrap_or(50);
    if count == 0 || count > 1000 {
        return Err(Error::bad_request("count must be between 1 and 1000"));
    }
    let holds = holds(&b, &v, req.exchange.as_deref())?;
    for (name, _) in &holds {
        caller.check(&b, &v, Perm::Read, Kind::Exchange, name)?;
    }
    // A filter reads every held message: not on an async worker.
    let page = tokio::task::spawn_blocking(move || page(&v, &holds, &req, count as usize))
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(Json(page))
}

/// Merges the exchanges' pages in due order: each lists its first `from + count` matching, so the merged page is
/// exact.
fn page(vhost: &str, holds: &[(String, Arc<DelayedHold>)], req: &ScheduledRequest, count: usize) -> ScheduledPage {
    let matches = super::filter::message_matcher(&req.filter);
    let want = (req.from as usize).saturating_add(count);
    let (mut total, mut matching) = (0, 0);
    let mut found: Vec<(&str, Scheduled)> = Vec::new();
    for (name, hold) in holds {
        total += hold.summary().0;
        let (page, n) = hold.list(&matches, 0, want);
        matching += n;
        found.extend(page.into_iter().map(|s| (name.as_str(), s)));
    }
    found.sort_by(|a, b| (a.1.due_ms, a.0, a.1.id).cmp(&(b.1.due_ms, b.0, b.1.id)));
    let messages = found
        .into_iter()
        .skip(req.from as usize)
        .take(count)
        .map(|(exchange, s)| shown(vhost, exchange, &s))
        .collect();
    ScheduledPage {
        total,
        matching,
        messages,
    }
}

fn shown(vhost: &str, exchange: &str, s: &Scheduled) -> ScheduledMessage {
    let m: &Message = &s.message;
    let (body_encoding, body) = json::body(&m.body);
    ScheduledMessage {
        id: s.id,
        vhost: vhost.to_string(),
        exchange: exchange.to_string(),
        routing_key: m.routing_key.to_string(),
        due_ms: s.due_ms,
        held_ms: s.held_ms,
        size: m.size() as u64,
        persistent: m.persistent,
        properties: json::properties(&m.properties()),
        body_encoding: body_encoding.into(),
        body,
    }
}

async fn act(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Path((v, name, action)): Path<(String, String, String)>,
    Body(req): Body<ScheduledAction>,
) -> ApiResult<ScheduledActionResult> {
    let holds = holds(&b, &v, Some(&name))?;
    caller.check(&b, &v, Perm::Write, Kind::Exchange, &name)?;
    let Some((_, hold)) = holds.into_iter().next() else {
        return Err(Error::not_found(format!("no exchange '{name}' in vhost '{v}'")));
    };
    if req.ids.is_none() && req.filter.is_empty() && !req.all {
        return Err(Error::bad_request(
            "say which messages: 'ids', a filter, or \"all\": true",
        ));
    }
    let now = b.clock.now_ms();
    let due = match (action.as_str(), req.due_ms, req.delay_ms) {
        ("reschedule", Some(_), Some(_)) => return Err(Error::bad_request("give 'due_ms' or 'delay_ms', not both")),
        ("reschedule", Some(due), None) => Some(due),
        ("reschedule", None, Some(delay)) => Some(now.saturating_add(delay)),
        ("reschedule", None, None) => return Err(Error::bad_request("a reschedule needs 'due_ms' or 'delay_ms'")),
        ("cancel" | "deliver", None, None) => None,
        ("cancel" | "deliver", _, _) => {
            return Err(Error::bad_request(format!(
                "'due_ms' and 'delay_ms' are for a reschedule, not a {action}"
            )))
        }
        _ => {
            return Err(Error::not_found(format!(
                "no action '{action}' (use cancel, deliver or reschedule)"
            )))
        }
    };
    let affected = tokio::task::spawn_blocking(move || {
        let ids: Option<HashSet<u64>> = req.ids.as_ref().map(|ids| ids.iter().copied().collect());
        let matches = super::filter::message_matcher(&req.filter);
        let pick = |id: u64, m: &Message| ids.as_ref().is_none_or(|ids| ids.contains(&id)) && matches(m);
        match due {
            Some(due) => hold.reschedule(&pick, due, now),
            None if action == "cancel" => Ok(hold.cancel(&pick)),
            None => Ok(hold.deliver_now(&pick)),
        }
        .map(|n| (action, n))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| Error::internal(format!("could not hold the messages again: {e}")));
    let (action, n) = affected?;
    audit(&b, &caller, &format!("scheduled.{action}"), &v, &name, n as u64);
    Ok(Json(ScheduledActionResult {
        action,
        affected: n as u64,
    }))
}
