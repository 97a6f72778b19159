//! The admin HTTP API (axum), served inside the broker on `--admin-listen` (default 127.0.0.1:15672).
//!
//! One router per resource (`overview`, `queues`, `exchanges`, `metrics`), merged in [`app`]; every request is
//! authenticated with HTTP basic auth against the broker's users: tag `administrator` may read and act, tag
//! `monitoring` may only read. Errors are JSON `{error, reason}` (`ApiError`), never internals. The JSON bodies are
//! the types in `warren-shared`, so the console compiles against the same contract.
//!
//! Handlers read broker state through short, non-async lock sections (queue and topology locks); none is held
//! across an `.await`.

mod actions;
mod connections;
mod exchanges;
mod filter;
mod json;
mod metrics;
pub mod moves;
mod openapi;
mod overview;
mod policies;
mod queues;
mod resources;
mod stream;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use warren_shared::ApiError;

use crate::broker::Broker;

/// An API error: status plus the JSON body.
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

/// A JSON request body whose rejections (bad JSON, wrong content type) are JSON `{error, reason}` 400s too.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(Error::bad_request(e.body_text())),
        }
    }
}

/// Like `Body`, for an optional body: none (or only whitespace) is `T::default()`.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> axum::extract::FromRequest<S> for OptionalBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Error::bad_request(e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| Error::bad_request(format!("invalid body: {e}")))
    }
}

/// A numeric id from a path; anything else names no `what` (404).
pub fn path_id(id: &str, what: &str) -> Result<u64, Error> {
    id.parse().map_err(|_| Error::not_found(format!("no {what} '{id}'")))
}

/// An argument table as JSON.
pub fn table_json(t: &amq_protocol::types::FieldTable) -> serde_json::Map<String, serde_json::Value> {
    json::table(t)
}

/// The whole API for one broker, without a socket (tests drive it with `tower::ServiceExt::oneshot`).
pub fn app(broker: Arc<Broker>) -> Router {
    Router::new()
        .merge(overview::router())
        .merge(queues::router())
        .merge(exchanges::router())
        .merge(metrics::router())
        .merge(actions::router())
        .merge(moves::router())
        .merge(policies::router())
        .merge(stream::router())
        .merge(resources::router())
        .merge(connections::router())
        .merge(openapi::router())
        .fallback(|| async { Error::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(broker.clone(), authenticate))
        .with_state(broker)
}

/// HTTP basic auth against broker users; monitoring users may only read.
async fn authenticate(State(broker): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    let creds = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, pass)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
        return Error::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "HTTP basic credentials are required",
        )
        .into_response();
    };
    let Some(tags) = broker.users.check(user, pass) else {
        return Error::new(StatusCode::UNAUTHORIZED, "not_authorised", "Login failed").into_response();
    };
    let admin = tags.iter().any(|t| t == "administrator");
    let monitoring = admin || tags.iter().any(|t| t == "monitoring");
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !monitoring || (!reads && !admin) {
        return Error::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("user '{user}' may not {} here", if reads { "read" } else { "act" }),
        )
        .into_response();
    }
    next.run(req).await
}

/// Serves the admin API until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "admin API ready");
    let app = app(broker).layer(axum::Extension(stream::Shutdown(shutdown.clone())));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::config::{Config, UserConfig};

    fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let config = Config {
            data_dir: dir.to_path_buf(),
            users: vec![UserConfig {
                name: "watcher".into(),
                password: Some("pw".into()),
                password_hash: None,
                tags: vec!["monitoring".into()],
            }],
            ..Config::default()
        };
        Broker::new(config).expect("broker")
    }

    async fn call(
        b: &Arc<Broker>,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            let token = base64::engine::general_purpose::STANDARD.encode(a);
            req = req.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        let resp = app(b.clone())
            .oneshot(req.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }

    #[tokio::test]
    async fn auth_is_required_and_monitoring_may_only_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        let (s, body) = call(&b, Method::GET, "/api/overview", None, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "not_authorised");
        let (s, _) = call(&b, Method::GET, "/api/overview", Some("guest:wrong"), "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, body) = call(&b, Method::GET, "/api/overview", Some("watcher:pw"), "").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body["product"], "Warren");
        let (s, body) = call(&b, Method::DELETE, "/api/queues/%2F/q/contents", Some("watcher:pw"), "").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(body["reason"].as_str().is_some_and(|r| r.contains("may not act")));
    }

    #[tokio::test]
    async fn every_read_endpoint_answers_and_unknowns_are_404_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        for path in [
            "/api/overview",
            "/api/vhosts",
            "/api/users",
            "/api/queues",
            "/api/queues/%2F",
            "/api/exchanges",
            "/api/exchanges/%2F",
            "/api/bindings",
            "/api/bindings/%2F",
            "/api/policies",
            "/api/connections",
            "/api/channels",
            "/api/consumers",
        ] {
            let (s, _) = call(&b, Method::GET, path, Some("guest:guest"), "").await;
            assert_eq!(s, StatusCode::OK, "{path}");
        }
        let (s, body) = call(&b, Method::GET, "/api/users", Some("guest:guest"), "").await;
        assert_eq!(s, StatusCode::OK);
        assert!(!body.to_string().contains("hash"), "never password hashes: {body}");
        for path in ["/api/queues/nope", "/api/queues/%2F/missing", "/api/nothing-here"] {
            let (s, body) = call(&b, Method::GET, path, Some("guest:guest"), "").await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body["error"], "not_found");
        }
        let (s, _) = call(&b, Method::GET, "/metrics", Some("guest:guest"), "").await;
        assert_eq!(s, StatusCode::OK);
    }

    #[tokio::test]
    async fn peek_changes_nothing_and_purge_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        let vhost = b.vhost("/").expect("vhost");
        let args = amq_protocol::types::FieldTable::default();
        let q = vhost
            .declare_queue(&crate::vhost::QueueDeclare {
                name: "q",
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                arguments: &args,
                connection_id: 1,
            })
            .expect("declare");
        for i in 0..5 {
            let props = amq_protocol::protocol::basic::AMQPProperties::default().with_delivery_mode(2);
            let m = crate::message::Message::with_properties(
                "".into(),
                "q".into(),
                props,
                bytes::Bytes::from(format!("m{i}")),
            );
            q.publish(Arc::new(m));
        }
        let (s, body) = call(
            &b,
            Method::POST,
            "/api/queues/%2F/q/peek",
            Some("guest:guest"),
            r#"{"from":1,"count":2}"#,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let bodies: Vec<&str> = body
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|m| m["body"].as_str())
            .collect();
        assert_eq!(bodies, vec!["m1", "m2"]);
        assert_eq!(body[0]["id"], 2);
        assert_eq!(body[0]["properties"]["delivery_mode"], 2);
        let (s, _) = call(
            &b,
            Method::POST,
            "/api/queues/%2F/q/peek",
            Some("guest:guest"),
            r#"{"count":0}"#,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (_, info) = call(&b, Method::GET, "/api/queues/%2F/q", Some("guest:guest"), "").await;
        assert_eq!(info["messages_ready"], 5, "peek took nothing");
        let (s, body) = call(
            &b,
            Method::DELETE,
            "/api/queues/%2F/q/contents",
            Some("guest:guest"),
            "",
        )
        .await;
        assert_eq!((s, body["purged"].clone()), (StatusCode::OK, serde_json::json!(5)));
    }

    /// Every operation in the OpenAPI document is served (no "no such endpoint", no 405), and answers JSON errors.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        let (s, doc) = call(&b, Method::GET, "/api/openapi.json", Some("guest:guest"), "").await;
        assert_eq!(s, StatusCode::OK);
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() >= 25, "{}", paths.len());
        for (path, ops) in paths {
            for (method, _) in ops.as_object().expect("ops") {
                if path == "/api/stream" {
                    continue; // never ends; tested against a live broker
                }
                let uri = path
                    .replace("{vhost}", "%2F")
                    .replace("{name}", "no-such-thing")
                    .replace("{id}", "424242");
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                let (s, body) = call(&b, m, &uri, Some("guest:guest"), "{}").await;
                assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(body["reason"], "no such endpoint", "{method} {path}");
                if !s.is_success() {
                    assert!(body["error"].is_string(), "{method} {path}: {s} {body}");
                }
            }
        }
    }
}
