//! Who is calling the admin API, and what they may see and do (RabbitMQ's management tags):
//! - `administrator`: everything, in every vhost;
//! - `monitoring`: reads everything, in every vhost, and changes nothing;
//! - `policymaker`: what `management` may, plus the policies of the vhosts they have permissions on;
//! - `management`: reads only the vhosts they have permissions on (and their own connections), and acts there
//!   only with the AMQP permission the same client operation would need (`Caller::check`);
//! - no tag: no admin API at all (401, as RabbitMQ's "Not management user").
//!
//! `authenticate` (in `mod.rs`) puts a `Caller` into every request it lets through; [`gate`] then refuses what a
//! tag never allows, before any handler runs: requests naming a vhost the caller may not see, and changes by users
//! who may not change anything, or outside the few endpoints that check AMQP permissions themselves. A new
//! endpoint is therefore administrator-only until it is listed in [`ACTS_WITH_PERMISSIONS`].

use std::net::IpAddr;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::{request::Parts, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Error;
use crate::auth::{Kind, Perm};
use crate::broker::Broker;

#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub tags: Vec<String>,
    /// The client's address (none for requests from inside the process, as in tests).
    pub peer: Option<IpAddr>,
}

/// Endpoints that a `management` or `policymaker` user may call to change something: each checks the AMQP
/// permission (or, for policies, the tag) itself.
const ACTS_WITH_PERMISSIONS: &[&str] = &[
    "/api/queues/{vhost}/{name}",
    "/api/queues/{vhost}/{name}/contents",
    "/api/queues/{vhost}/{name}/peek",
    "/api/queues/{vhost}/{name}/delete",
    "/api/queues/{vhost}/{name}/move",
    "/api/queues/{vhost}/{name}/priority",
    "/api/queues/{vhost}/{name}/pause",
    "/api/queues/{vhost}/{name}/resume",
    "/api/queues/{vhost}/{name}/trace",
    "/api/queues/{vhost}/{name}/stream/offsets/{consumer}",
    "/api/queues/{vhost}/{name}/stream/truncate",
    "/api/undo/{id}",
    "/api/scheduled/{vhost}",
    "/api/queues/{vhost}/{name}/messages/{id}/edit",
    "/api/exchanges/{vhost}/{name}/scheduled/{action}",
    "/api/exchanges/{vhost}/{name}",
    "/api/exchanges/{vhost}/{name}/publish",
    "/api/bindings/{vhost}",
    "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
    "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
    "/api/queues/{vhost}/{name}/get",
    "/api/policies/{vhost}/{name}",
    "/api/connections/{id}",
];

impl Caller {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    /// Administrators and monitoring users see every vhost.
    pub fn sees_all(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    /// May use the admin API at all.
    pub fn is_management(&self) -> bool {
        ["administrator", "monitoring", "policymaker", "management"]
            .iter()
            .any(|t| self.has(t))
    }

    /// May change things (subject to permissions): every management tag but a lone `monitoring`.
    pub fn may_act(&self) -> bool {
        self.is_admin() || self.has("policymaker") || self.has("management")
    }

    pub fn may_see(&self, b: &Broker, vhost: &str) -> bool {
        self.sees_all() || b.access.has_access(vhost, &self.user)
    }

    /// The AMQP permission the equivalent client operation needs (administrators may do everything).
    pub fn check(&self, b: &Broker, vhost: &str, perm: Perm, kind: Kind, name: &str) -> Result<(), Error> {
        if self.is_admin() {
            return Ok(());
        }
        let refused = || {
            Error::new(
                StatusCode::FORBIDDEN,
                "access_refused",
                crate::auth::permissions::refused(
                    perm,
                    kind,
                    crate::auth::permissions::exchange_name(name),
                    vhost,
                    &self.user,
                ),
            )
        };
        let allowed = b
            .access
            .grant(vhost, &self.user)
            .is_some_and(|g| g.check(perm, kind, name).is_ok());
        if allowed {
            return Ok(());
        }
        let e = refused();
        b.audit.record(crate::audit::Event {
            user: &self.user,
            peer: self.peer,
            action: "refused",
            vhost: Some(vhost),
            object: name,
            messages: None,
            result: &e.1.reason,
        });
        Err(e)
    }

    pub fn require_admin(&self) -> Result<(), Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(forbidden(format!("user '{}' is not an administrator", self.user)))
        }
    }

    /// Policies: administrators, and policymakers on vhosts they have permissions on.
    pub fn require_policymaker(&self, b: &Broker, vhost: &str) -> Result<(), Error> {
        if self.is_admin() || (self.has("policymaker") && b.access.has_access(vhost, &self.user)) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "user '{}' may not manage the policies of vhost '{vhost}'",
                self.user
            )))
        }
    }
}

pub fn forbidden(reason: String) -> Error {
    Error::new(StatusCode::FORBIDDEN, "forbidden", reason)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Error::new(
                StatusCode::UNAUTHORIZED,
                "not_authorised",
                "HTTP basic credentials are required",
            )
        })
    }
}

/// The tag rules that hold for whole endpoints (see the module doc); runs after routing, so it sees the matched
/// route and its `{vhost}`.
pub async fn gate(
    axum::extract::State(b): axum::extract::State<std::sync::Arc<Broker>>,
    caller: Option<axum::Extension<Caller>>,
    route: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let Some(axum::Extension(caller)) = caller else {
        return next.run(req).await;
    };
    if let Some(vhost) = params
        .as_ref()
        .ok()
        .and_then(|p| p.iter().find(|(k, _)| *k == "vhost").map(|(_, v)| v.to_string()))
    {
        if !caller.may_see(&b, &vhost) {
            return forbidden(format!("user '{}' has no access to vhost '{vhost}'", caller.user)).into_response();
        }
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reads && !caller.is_admin() {
        let listed = route
            .as_ref()
            .is_some_and(|r| ACTS_WITH_PERMISSIONS.contains(&r.as_str()));
        if !(listed && caller.may_act()) {
            let reason = format!(
                "user '{}' may not change anything here (tags: {})",
                caller.user,
                if caller.tags.is_empty() {
                    "none".to_string()
                } else {
                    caller.tags.join(",")
                }
            );
            b.audit.record(crate::audit::Event {
                user: &caller.user,
                peer: caller.peer,
                action: "refused",
                vhost: None,
                object: &format!("{} {}", req.method(), req.uri().path()),
                messages: None,
                result: &reason,
            });
            return forbidden(format!(
                "user '{}' may not change anything here (tags: {})",
                caller.user,
                if caller.tags.is_empty() {
                    "none".to_string()
                } else {
                    caller.tags.join(",")
                }
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// Records a successful operator action in the audit trail: who, from where, what, on which vhost and resource,
/// and how many messages it touched.
pub fn audit(b: &Broker, caller: &Caller, action: &str, vhost: &str, name: &str, messages: u64) {
    b.audit.record(crate::audit::Event {
        user: &caller.user,
        peer: caller.peer,
        action,
        vhost: Some(vhost),
        object: name,
        messages: Some(messages),
        result: "ok",
    });
}
