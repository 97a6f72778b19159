//! `GET /api/audit`: the audit journal (`crate::audit`), newest first, in pages: `?page_size=N` (default 100, at
//! most 1000) and `?before=ID` for the page after the one that ended with ID. For administrators and monitoring
//! users.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use warren_shared::AuditEntry;

use super::caller::{forbidden, Caller};
use super::{AdminState, ApiResult, Error};
use crate::broker::Broker;

const MAX_PAGE: usize = 1000;

pub fn router() -> Router<AdminState> {
    Router::new().route("/api/audit", get(page))
}

async fn page(
    State(b): State<Arc<Broker>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Vec<AuditEntry>> {
    if !caller.sees_all() {
        return Err(forbidden(format!(
            "user '{}' may not read the audit trail (administrator or monitoring only)",
            caller.user
        )));
    }
    let number = |k: &str| -> Result<Option<u64>, Error> {
        q.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| Error::bad_request(format!("{k} must be a whole number, not '{v}'")))
            })
            .transpose()
    };
    let size = number("page_size")?.unwrap_or(100);
    if size == 0 || size > MAX_PAGE as u64 {
        return Err(Error::bad_request(format!(
            "page_size must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(Json(b.audit.page(number("before")?, size as usize)))
}
