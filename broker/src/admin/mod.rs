//! The admin HTTP API (axum), served inside the broker on every `--admin-listen` address (default
//! 127.0.0.1:15672) by [`server`] (timeouts and a connection cap).
//!
//! One router per resource (`overview`, `queues`, `exchanges`, `access`, ...), merged in [`routes`]; each is an
//! `aide` router, so every route is in the OpenAPI document ([`openapi`]) by construction. Every request is
//! authenticated with HTTP basic auth against the broker's users: tag `administrator` may read and act, tag
//! `monitoring` may only read, and users in `loopback_users` (`guest`) only from a loopback peer. Errors are JSON
//! `{error, reason}` (`ApiError`), never internals; a body over [`MAX_BODY`] is 413, one that does not arrive within
//! the idle timeout 408. The JSON bodies are the types in `warren-shared`, so the console compiles against the
//! same contract.
//!
//! Handlers read broker state through short, non-async lock sections (queue and topology locks); none is held
//! across an `.await`.

mod access;
mod actions;
mod audit;
mod bindings;
pub mod caller;
mod cluster;
mod connections;
pub mod definitions;
mod definitions_export;
mod edit;
mod exchanges;
mod filter;
mod get;
mod json;
mod limits;
mod metrics;
pub mod moves;
mod nodes;
mod openapi;
mod overview;
mod paging;
mod pause;
mod policies;
mod queues;
mod replicated;
mod resources;
mod scheduled;
pub mod server;
mod stream;
mod streams;
mod trace;
mod undo;

use std::net::SocketAddr;
use std::sync::Arc;

use aide::axum::ApiRouter;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use warren_shared::ApiError;

use crate::broker::Broker;
pub use definitions_export::RABBITMQ_FORMAT as RABBITMQ_VERSION;
pub use overview::resources;

/// An API error: status plus the JSON body.
#[derive(Debug)]
pub struct Error(StatusCode, ApiError);

impl Error {
    pub fn new(status: StatusCode, error: &str, reason: impl Into<String>) -> Self {
        Error(
            status,
            ApiError {
                error: error.to_string(),
                reason: reason.into(),
            },
        )
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", reason)
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", reason)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"Warren\""),
            );
        }
        r
    }
}

pub type ApiResult<T> = Result<Json<T>, Error>;

/// The largest request body read (axum's default, stated here so that README and the 413 agree): a test message
/// published through the API, base64 and all, fits; a body meant to exhaust memory does not.
pub const MAX_BODY: usize = 2 << 20;

/// A body extractor's rejection as the API's JSON error: 413 for a body over [`MAX_BODY`] (a client must learn that
/// retrying will not help), 400 for anything else (bad JSON, wrong content type).
fn rejection(status: StatusCode, text: String) -> Error {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(
            status,
            "payload_too_large",
            format!("{text} (the limit is {MAX_BODY} bytes)"),
        )
    } else {
        Error::bad_request(text)
    }
}

/// Reads a body within the admin idle timeout: a client that stops halfway through its body must not hold its
/// connection (and its place under the connection cap) forever.
async fn within_idle_timeout<T>(broker: &Broker, read: impl std::future::Future<Output = T>) -> Result<T, Error> {
    let limit = broker.config.admin_idle_timeout;
    tokio::time::timeout(limit, read).await.map_err(|_| {
        Error::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {limit:?}"),
        )
    })
}

/// A JSON request body whose rejections (bad JSON, wrong content type, too large, too slow) are JSON
/// `{error, reason}` errors too.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    S: Send + Sync,
    Arc<Broker>: FromRef<S>,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let broker = Arc::<Broker>::from_ref(state);
        match within_idle_timeout(&broker, Json::<T>::from_request(req, state)).await? {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(rejection(e.status(), e.body_text())),
        }
    }
}

/// Like `Body`, for an optional body: none (or only whitespace) is `T::default()`.
pub struct OptionalBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for OptionalBody<T>
where
    S: Send + Sync,
    Arc<Broker>: FromRef<S>,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let broker = Arc::<Broker>::from_ref(state);
        let bytes = within_idle_timeout(&broker, axum::body::Bytes::from_request(req, state))
            .await?
            .map_err(|e| rejection(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| Error::bad_request(format!("invalid body: {e}")))
    }
}

/// Query parameters, typed: a value of the wrong type (`page=x`, `use_regex=maybe`) is a JSON 400 naming it, as
/// `Body`'s rejections are. Parameters a handler does not know are ignored (RabbitMQ's tools send a few).
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(Error::bad_request(e.body_text())),
        }
    }
}

/// A numeric id from a path; anything else names no `what` (404).
pub fn path_id(id: &str, what: &str) -> Result<u64, Error> {
    id.parse().map_err(|_| Error::not_found(format!("no {what} '{id}'")))
}

/// What the handlers share: the broker they act on, and what belongs to the admin layer alone. Handlers extract
/// either part (`State<Arc<Broker>>`, `State<Arc<Moves>>`) through `FromRef`.
#[derive(Clone)]
pub struct AdminState {
    pub broker: Arc<Broker>,
    /// Move (redrive) tasks, running and recently finished. They are the admin API's own work, so the API owns
    /// them (the domain knows nothing of moves): one registry per [`app`], which `server::serve` builds once for
    /// all its listeners.
    pub moves: Arc<moves::Moves>,
}

impl FromRef<AdminState> for Arc<Broker> {
    fn from_ref(s: &AdminState) -> Self {
        s.broker.clone()
    }
}

impl FromRef<AdminState> for Arc<moves::Moves> {
    fn from_ref(s: &AdminState) -> Self {
        s.moves.clone()
    }
}

/// Every route of the API, documented.
fn routes() -> ApiRouter<AdminState> {
    ApiRouter::new()
        .merge(overview::router())
        .merge(access::router())
        .merge(audit::router())
        .merge(cluster::router())
        .merge(nodes::router())
        .merge(bindings::router())
        .merge(get::router())
        .merge(definitions::router())
        .merge(limits::router())
        .merge(queues::router())
        .merge(exchanges::router())
        .merge(metrics::router())
        .merge(actions::router())
        .merge(moves::router())
        .merge(policies::router())
        .merge(stream::router())
        .merge(streams::router())
        .merge(pause::router())
        .merge(undo::router())
        .merge(trace::router())
        .merge(scheduled::router())
        .merge(edit::router())
        .merge(resources::router())
        .merge(connections::router())
        .merge(openapi::router())
}

/// The whole API for one broker, without a socket (tests drive it with `tower::ServiceExt::oneshot`).
pub fn app(broker: Arc<Broker>) -> Router {
    let mut api = aide::openapi::OpenApi::default();
    let router = routes().finish_api_with(&mut api, openapi::finish);
    router
        .layer(axum::Extension(openapi::serialize(&api)))
        .fallback(|| async { Error::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(broker.clone(), replicated::replicated))
        .layer(middleware::from_fn_with_state(broker.clone(), caller::gate))
        .layer(middleware::from_fn_with_state(broker.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AdminState {
            broker,
            moves: Arc::default(),
        })
}

/// HTTP basic auth against broker users (loopback-only users, `guest`, only from a loopback peer); puts the
/// [`caller::Caller`] into the request for [`caller::gate`] and the handlers. A request without `ConnectInfo` comes from inside the process (`oneshot` in tests, the fuzz
/// target): `server` always inserts it for requests from the network.
async fn authenticate(State(broker): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    let caller = match management_caller(&broker, &req) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Who sent `req`, from its HTTP basic credentials, if that is a user with a management tag: the check the admin
/// API and the Prometheus listener (when it asks for auth) make. The error is the response to send (401, 403 or
/// 429, JSON `{error, reason}`).
pub fn management_caller(broker: &Broker, req: &Request) -> Result<caller::Caller, Error> {
    let creds = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, pass)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(Error::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "HTTP basic credentials are required",
        ));
    };
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    // A request without a peer comes from inside the process (tests): it counts as loopback.
    let from = peer.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let found = match broker.access.authenticate("HTTP basic", user, pass, from) {
        Ok(found) => found,
        Err(crate::auth::AuthError::LoopbackOnly(_)) => {
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("user '{user}' can only connect via localhost"),
            ))
        }
        Err(e @ crate::auth::AuthError::TooManyFailures { .. }) => {
            let text = e.to_string();
            let text = text.split_once(" - ").map_or(text.clone(), |(_, t)| t.to_string());
            return Err(Error::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", text));
        }
        Err(_) => return Err(Error::new(StatusCode::UNAUTHORIZED, "not_authorised", "Login failed")),
    };
    let caller = caller::Caller {
        user: found.name,
        tags: found.tags,
        peer,
    };
    if !caller.is_management() {
        return Err(Error::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not management user",
        ));
    }
    Ok(caller)
}

#[cfg(test)]
mod tests;
