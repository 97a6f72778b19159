//! `GET /api/audit`: the audit journal (`crate::audit`), newest first, in pages: `?page_size=N` (default 100, at
//! most 1000) and `?before=ID` for the page after the one that ended with ID. For administrators and monitoring
//! users.

use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use warren_shared::AuditEntry;

use super::caller::{forbidden, Caller};
use super::{AdminState, ApiResult, Error, Query};
use crate::broker::Broker;

const MAX_PAGE: usize = 1000;

pub fn router() -> ApiRouter<AdminState> {
    ApiRouter::new().api_route(
        "/api/audit",
        get_with(page, |o| {
            o.summary(
                "The audit trail: operator actions, access changes, refusals and failed logins \
                 (administrator and monitoring users)",
            )
        }),
    )
}

#[derive(Deserialize, JsonSchema)]
struct AuditQuery {
    /// Records per page, newest first (default 100, at most 1000).
    #[schemars(range(min = 1, max = 1000))]
    page_size: Option<u64>,
    /// Only records with ids below this one (the next page).
    before: Option<u64>,
}

async fn page(State(b): State<Arc<Broker>>, caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Vec<AuditEntry>> {
    if !caller.sees_all() {
        return Err(forbidden(format!(
            "user '{}' may not read the audit trail (administrator or monitoring only)",
            caller.user
        )));
    }
    let size = q.page_size.unwrap_or(100);
    if size == 0 || size > MAX_PAGE as u64 {
        return Err(Error::bad_request(format!(
            "page_size must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(Json(b.audit.page(q.before, size as usize)))
}
