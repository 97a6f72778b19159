//! The admin API over HTTP, typed: one method per request the console makes, with the bodies and answers of
//! `warren-shared`. Both faces of the console use it: the TUI's executor ([`super::Client`], which turns answers into
//! events) and the scriptable twin (`crate::cli`, which prints them).
//!
//! Invariants: every request carries basic auth and a timeout; an error answer becomes [`ApiFailure::Refused`] with
//! the broker's own `reason`, a request that got no answer [`ApiFailure::Transport`] in words an operator can act on.
//! Nothing here knows about the terminal, events or output formats.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use warren_shared::cluster::ClusterSummary;
use warren_shared::{
    ApiError, AuditEntry, BindingInfo, CloseRequest, ConnectionInfo, ConsumerInfo, DeleteMessages, DeleteResult,
    ExchangeInfo, MoveRequest, MoveTask, PauseResult, PeekRequest, PeekedMessage, PriorityRequest, PriorityResult,
    PublishRequest, PublishResult, PurgeResult, QueueInfo, StreamActionResult, StreamOffsetReset, StreamTruncate,
    UndoBatch, UndoResult,
};

use crate::event::QueueKey;
use crate::format::path_segment;

/// How long one request may take (the live feed has its own rules).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one node may take to say whether it leads, while the console looks for a new leader.
const LEADER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How https URLs are verified: the built-in roots, plus `ca` if given; `insecure` skips verification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOptions {
    /// A PEM file of CA certificates to trust besides the built-in roots (`--ca`).
    pub ca: Option<PathBuf>,
    /// Accept any certificate (`--insecure`): for a test broker only.
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA file {path}: {source}")]
    ReadCa { path: PathBuf, source: std::io::Error },
    #[error("no usable CA certificate in {path}: {source}")]
    BadCa { path: PathBuf, source: reqwest::Error },
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiFailure {
    /// No answer: the broker is not reachable, its certificate is not trusted, or it took too long.
    #[error("{0}")]
    Transport(String),
    /// The broker answered with an error: its status and its `reason` (or the status line when the body was not
    /// the API's JSON error).
    #[error("{reason} ({status})")]
    Refused { status: u16, reason: String },
    /// The broker answered with success, but not with what this request returns.
    #[error("unexpected answer from {path}: {error}")]
    Unexpected { path: String, error: String },
}

impl ApiFailure {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiFailure::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `/api/queues/{vhost}/{name}{rest}`, both percent-encoded.
pub fn queue_path(q: &QueueKey, rest: &str) -> String {
    format!("/api/queues/{}/{}{rest}", path_segment(&q.vhost), path_segment(&q.name))
}

/// One broker's admin API, with its credentials. Clones share the base URL, which moves to a cluster's new leader
/// when [`Api::follow`] finds one (the lock is held only to copy or replace the string).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Arc<RwLock<String>>,
    user: String,
    password: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Api")
            .field("base", &self.url())
            .field("user", &self.user)
            .finish()
    }
}

impl Api {
    /// A client whose https connections trust `tls.ca` too (or nothing is verified with `tls.insecure`).
    pub fn new(url: &str, user: &str, password: &str, tls: &TlsOptions) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(3));
        if let Some(path) = &tls.ca {
            let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::BadCa {
                path: path.clone(),
                source,
            })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if tls.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(Api {
            http: builder.build()?,
            base: Arc::new(RwLock::new(url.trim_end_matches('/').to_string())),
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// The broker's base URL (no trailing slash).
    pub fn url(&self) -> String {
        self.base.read().map_or_else(|e| e.into_inner().clone(), |b| b.clone())
    }

    fn set_url(&self, url: String) {
        match self.base.write() {
            Ok(mut b) => *b = url,
            Err(e) => *e.into_inner() = url,
        }
    }

    /// A request with basic auth and no timeout (the live feed sets its own).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_at(&self.url(), method, path)
    }

    fn request_at(&self, base: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{base}{path}"))
            .basic_auth(&self.user, Some(&self.password))
    }

    /// `GET /api/cluster` of the admin API at `base`, within `LEADER_PROBE_TIMEOUT`.
    async fn cluster_at(&self, base: &str) -> Option<ClusterSummary> {
        let resp = self
            .request_at(base, Method::GET, "/api/cluster")
            .timeout(LEADER_PROBE_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Finds the cluster's leader and moves this client (and its clones) to its admin API. Asks this node first,
    /// then the one it names as leader, then each of `peers` (admin `host:port`s, as `/api/cluster` lists them),
    /// over this client's scheme. Returns the leader's summary when the client moved; None when it already talks
    /// to the leader, on a single node, or when no node says it leads (mid-election: ask again later).
    pub async fn follow(&self, peers: &[String]) -> Option<ClusterSummary> {
        let current = self.url();
        let scheme = current.split_once("://").map_or("http", |(s, _)| s).to_string();
        let at = |admin: &str| format!("{scheme}://{admin}");
        let mut tried: Vec<String> = Vec::new();
        let mut queue: std::collections::VecDeque<String> = std::iter::once(current.clone())
            .chain(peers.iter().map(|p| at(p)))
            .collect();
        while let Some(base) = queue.pop_front() {
            if tried.contains(&base) {
                continue;
            }
            tried.push(base.clone());
            let Some(c) = self.cluster_at(&base).await else {
                continue;
            };
            if !c.enabled {
                return None;
            }
            if c.role == "leader" {
                if base == current {
                    return None;
                }
                self.set_url(base);
                return Some(c);
            }
            // A follower names the leader: ask it next.
            if let Some(admin) = c.leader.as_ref().and_then(|l| l.admin.as_deref()) {
                queue.push_front(at(admin));
            }
        }
        None
    }

    /// Sends a request and decodes the answer; an error answer becomes [`ApiFailure::Refused`] with its `reason`.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiFailure> {
        let mut req = self.request(method, path).timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ApiFailure::Transport(describe(e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ApiFailure::Transport(describe(e)))?;
        if !status.is_success() {
            return Err(refusal(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiFailure::Unexpected {
            path: path.to_string(),
            error: e.to_string(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// Reads the overview once: whether the broker answers with these credentials (and, over https, a certificate
    /// this client trusts).
    pub async fn check(&self) -> Result<(), ApiFailure> {
        self.get::<serde_json::Value>("/api/overview").await.map(|_| ())
    }

    /// Every queue the user may see, or those of one vhost.
    pub async fn queues(&self, vhost: Option<&str>) -> Result<Vec<QueueInfo>, ApiFailure> {
        match vhost {
            Some(v) => self.get(&format!("/api/queues/{}", path_segment(v))).await,
            None => self.get("/api/queues").await,
        }
    }

    pub async fn exchanges(&self) -> Result<Vec<ExchangeInfo>, ApiFailure> {
        self.get("/api/exchanges").await
    }

    pub async fn bindings(&self) -> Result<Vec<BindingInfo>, ApiFailure> {
        self.get("/api/bindings").await
    }

    pub async fn connections(&self) -> Result<Vec<ConnectionInfo>, ApiFailure> {
        self.get("/api/connections").await
    }

    pub async fn cluster(&self) -> Result<ClusterSummary, ApiFailure> {
        self.get("/api/cluster").await
    }

    pub async fn consumers(&self) -> Result<Vec<ConsumerInfo>, ApiFailure> {
        self.get("/api/consumers").await
    }

    /// A page of ready messages; nothing is consumed.
    pub async fn peek(&self, queue: &QueueKey, request: &PeekRequest) -> Result<Vec<PeekedMessage>, ApiFailure> {
        self.call(Method::POST, &queue_path(queue, "/peek"), Some(request))
            .await
    }

    pub async fn purge(&self, queue: &QueueKey) -> Result<PurgeResult, ApiFailure> {
        self.call::<(), _>(Method::DELETE, &queue_path(queue, "/contents"), None)
            .await
    }

    /// Starts a move (a redrive is a move `to: "source"`): the task as the broker took it.
    pub async fn start_move(&self, queue: &QueueKey, request: &MoveRequest) -> Result<MoveTask, ApiFailure> {
        self.call(Method::POST, &queue_path(queue, "/move"), Some(request))
            .await
    }

    pub async fn move_task(&self, id: u64) -> Result<MoveTask, ApiFailure> {
        self.get(&format!("/api/moves/{id}")).await
    }

    /// Polls move `id` every `every` until it ends, handing `progress` each state read (it returns whether to go
    /// on following); the last state read, or the error of the tenth failed poll in a row.
    pub async fn follow_move(
        &self,
        id: u64,
        every: Duration,
        mut progress: impl FnMut(MoveTask) -> bool,
    ) -> Result<MoveTask, ApiFailure> {
        let mut errors = 0;
        loop {
            tokio::time::sleep(every).await;
            match self.move_task(id).await {
                Ok(task) => {
                    errors = 0;
                    let running = task.state == "running";
                    if !progress(task.clone()) || !running {
                        return Ok(task);
                    }
                }
                Err(e) => {
                    errors += 1;
                    if errors >= 10 {
                        return Err(e);
                    }
                }
            }
        }
    }

    pub async fn cancel_move(&self, id: u64) -> Result<MoveTask, ApiFailure> {
        self.call::<(), _>(Method::DELETE, &format!("/api/moves/{id}"), None)
            .await
    }

    pub async fn delete(&self, queue: &QueueKey, ids: Vec<u64>) -> Result<DeleteResult, ApiFailure> {
        let body = DeleteMessages { ids };
        self.call(Method::POST, &queue_path(queue, "/delete"), Some(&body))
            .await
    }

    /// What can still be undone, newest first.
    pub async fn undo_list(&self) -> Result<Vec<UndoBatch>, ApiFailure> {
        self.get("/api/undo").await
    }

    /// Puts back what purge or delete `id` removed.
    pub async fn undo(&self, id: u64) -> Result<UndoResult, ApiFailure> {
        self.call::<(), _>(Method::POST, &format!("/api/undo/{id}"), None).await
    }

    pub async fn priority(&self, queue: &QueueKey, request: &PriorityRequest) -> Result<PriorityResult, ApiFailure> {
        self.call(Method::POST, &queue_path(queue, "/priority"), Some(request))
            .await
    }

    /// Publishes one message through `exchange` (`amq.default` is the default exchange) of `vhost`.
    pub async fn publish(
        &self,
        vhost: &str,
        exchange: &str,
        request: &PublishRequest,
    ) -> Result<PublishResult, ApiFailure> {
        let path = format!(
            "/api/exchanges/{}/{}/publish",
            path_segment(vhost),
            path_segment(exchange)
        );
        self.call(Method::POST, &path, Some(request)).await
    }

    /// Pauses (`paused`) or resumes a queue.
    pub async fn pause(&self, queue: &QueueKey, paused: bool) -> Result<PauseResult, ApiFailure> {
        let path = queue_path(queue, if paused { "/pause" } else { "/resume" });
        self.call::<(), _>(Method::PUT, &path, None).await
    }

    pub async fn close_connection(&self, connection: u64, reason: String) -> Result<(), ApiFailure> {
        let body = CloseRequest { reason: Some(reason) };
        self.call::<_, serde_json::Value>(Method::DELETE, &format!("/api/connections/{connection}"), Some(&body))
            .await
            .map(|_| ())
    }

    pub async fn stream_replay(
        &self,
        queue: &QueueKey,
        consumer: &str,
        reset: &StreamOffsetReset,
    ) -> Result<StreamActionResult, ApiFailure> {
        let path = queue_path(queue, &format!("/stream/offsets/{}", path_segment(consumer)));
        self.call(Method::POST, &path, Some(reset)).await
    }

    pub async fn stream_truncate(&self, queue: &QueueKey, before: u64) -> Result<StreamActionResult, ApiFailure> {
        let body = StreamTruncate { before };
        self.call(Method::POST, &queue_path(queue, "/stream/truncate"), Some(&body))
            .await
    }

    /// A page of the audit trail (`GET /api/audit`), newest first, older than entry `before` if given.
    /// Publishes an edited copy of message `id` of `queue`, then the broker removes the original.
    pub async fn edit(
        &self,
        queue: &QueueKey,
        id: u64,
        request: &warren_shared::edit::EditRequest,
    ) -> Result<warren_shared::edit::EditResult, ApiFailure> {
        let path = queue_path(queue, &format!("/messages/{id}/edit"));
        self.call(Method::POST, &path, Some(request)).await
    }

    /// Each delayed exchange the user may see, with what it holds.
    pub async fn scheduled_summary(&self) -> Result<Vec<warren_shared::scheduled::ScheduledSummary>, ApiFailure> {
        self.get("/api/scheduled").await
    }

    /// A page of the messages `vhost`'s delayed exchanges hold, in due order.
    pub async fn scheduled(
        &self,
        vhost: &str,
        request: &warren_shared::scheduled::ScheduledRequest,
    ) -> Result<warren_shared::scheduled::ScheduledPage, ApiFailure> {
        let path = format!("/api/scheduled/{}", path_segment(vhost));
        self.call(Method::POST, &path, Some(request)).await
    }

    /// Cancels, delivers now or reschedules (`op`) held messages of one delayed exchange.
    pub async fn scheduled_act(
        &self,
        vhost: &str,
        exchange: &str,
        op: &str,
        request: &warren_shared::scheduled::ScheduledAction,
    ) -> Result<warren_shared::scheduled::ScheduledActionResult, ApiFailure> {
        let path = format!(
            "/api/exchanges/{}/{}/scheduled/{op}",
            path_segment(vhost),
            path_segment(exchange)
        );
        self.call(Method::POST, &path, Some(request)).await
    }

    pub async fn audit_page(&self, before: Option<u64>, page_size: usize) -> Result<Vec<AuditEntry>, ApiFailure> {
        let mut path = format!("/api/audit?page_size={page_size}");
        if let Some(id) = before {
            path.push_str(&format!("&before={id}"));
        }
        self.get(&path).await
    }

    /// A message's journey (`GET /api/trace/{vhost}/{id}`), as the broker gives it.
    /// A message's journey (`GET /api/trace/{vhost}/{id}`), typed.
    pub async fn journey(&self, vhost: &str, id: &str) -> Result<warren_shared::trace::Journey, ApiFailure> {
        self.get(&format!("/api/trace/{}/{}", path_segment(vhost), path_segment(id)))
            .await
    }

    pub async fn trace(&self, vhost: &str, id: &str) -> Result<serde_json::Value, ApiFailure> {
        self.get(&format!("/api/trace/{}/{}", path_segment(vhost), path_segment(id)))
            .await
    }
}

/// An error answer: the API's `reason`, or the status line.
fn refusal(status: StatusCode, body: &[u8]) -> ApiFailure {
    let reason = match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.reason,
        Err(_) => format!("HTTP {status}"),
    };
    ApiFailure::Refused {
        status: status.as_u16(),
        reason,
    }
}

/// A transport error in words an operator can act on.
pub fn describe(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if e.is_connect() && text.to_ascii_lowercase().contains("certificate") {
        format!(
            "the broker's certificate is not trusted (give its CA with --ca, or --insecure for a test broker): {text}"
        )
    } else if e.is_connect() {
        "cannot connect (is the broker running, and is --url right?)".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_vhost_is_percent_encoded() {
        assert_eq!(
            queue_path(&QueueKey::new("/", "orders.dlq"), "/move"),
            "/api/queues/%2F/orders.dlq/move"
        );
    }

    #[test]
    fn a_refusal_reads_the_reason() {
        let body = br#"{"error":"not_found","reason":"no queue 'x'"}"#;
        let f = refusal(StatusCode::NOT_FOUND, body);
        assert_eq!(f.to_string(), "no queue 'x' (404)");
        assert_eq!(f.status(), Some(404));
        let f = refusal(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(f.to_string(), "HTTP 502 Bad Gateway (502)");
    }
}
