//! The TUI's side of the broker: the live feed (`GET /api/stream`, Server-Sent Events) in a background task that
//! reconnects with backoff, and the executor that runs each [`Command`] from `update` in a task of its own and
//! reports back as an [`ApiEvent`]. The requests themselves are [`api::Api`]'s, which the scriptable twin
//! (`crate::cli`) uses too.
//!
//! Invariants: nothing here touches the terminal or the `App`; results only travel through the event channel, so a
//! slow or dead broker never blocks drawing. Errors become events with a message that says what happened.

pub mod api;
mod scheduled;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::Method;
use tokio::sync::mpsc::UnboundedSender;
use warren_shared::{AuditEntry, PeekRequest, StreamActionResult, StreamSnapshot, UndoTicket};

pub use api::{Api, ApiFailure, ClientError, TlsOptions};

use crate::event::{ApiEvent, Command, Event, QueueKey, RequestId, Resource};
use api::describe;

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often a running move is polled for the progress bar.
const MOVE_POLL: Duration = Duration::from_millis(300);

/// The TUI's side of the broker: the admin API and where its answers go.
#[derive(Clone)]
pub struct Client {
    api: Api,
    events: UnboundedSender<Event>,
    /// The admin addresses of the cluster's nodes, as `/api/cluster` last listed them (empty on a single node):
    /// where the feed looks for a new leader when the one it follows stops answering.
    peers: Arc<Mutex<Vec<String>>>,
}

fn send(tx: &UnboundedSender<Event>, e: ApiEvent) {
    // The receiver is gone only when the console is quitting (or has switched to another context).
    let _ = tx.send(Event::Api(e));
}

fn undoable(request_id: RequestId, queue: QueueKey, action: &str, count: u64, ticket: UndoTicket) -> ApiEvent {
    ApiEvent::Undoable {
        request_id,
        queue,
        action: action.into(),
        count,
        ticket,
    }
}

fn stream_acted(request_id: RequestId, queue: QueueKey, result: StreamActionResult) -> ApiEvent {
    ApiEvent::StreamActed {
        request_id,
        queue,
        result,
    }
}

/// Why the live feed failed: the credentials were refused (401: retrying cannot help), the node does not lead (503
/// from a cluster follower: the leader is elsewhere), or anything else.
#[derive(Debug, PartialEq)]
enum Failure {
    Refused(String),
    NotLeader(String),
    Other(String),
}

impl Client {
    pub fn new(url: &str, user: &str, password: &str, events: UnboundedSender<Event>) -> Result<Self, ClientError> {
        Self::with_tls(url, user, password, &TlsOptions::default(), events)
    }

    /// A client whose https connections trust `tls.ca` too (or nothing is verified with `tls.insecure`).
    pub fn with_tls(
        url: &str,
        user: &str,
        password: &str,
        tls: &TlsOptions,
        events: UnboundedSender<Event>,
    ) -> Result<Self, ClientError> {
        Ok(Self::of(Api::new(url, user, password, tls)?, events))
    }

    /// A client over `api` that reports to `events`.
    pub fn of(api: Api, events: UnboundedSender<Event>) -> Self {
        Client {
            api,
            events,
            peers: Arc::default(),
        }
    }

    /// Reads the overview once: whether the broker answers with these credentials (and, over https, a certificate
    /// this client trusts).
    pub async fn check(&self) -> Result<(), String> {
        self.api.check().await.map_err(|e| e.to_string())
    }

    /// Runs the live feed until the channel closes: connect, forward snapshots, and on failure report the stale
    /// state and retry with exponential backoff.
    pub async fn stream(self, interval_ms: u64) {
        let mut backoff = BACKOFF_MIN;
        // The feed counts as dead when nothing (not even a keep-alive) arrives for this long.
        let idle = Duration::from_millis((interval_ms * 5).max(5_000));
        loop {
            let (error, not_leader) = match self.stream_once(interval_ms, idle, &mut backoff).await {
                Ok(()) => ("the broker closed the stream".to_string(), false),
                Err(Failure::Refused(error)) => {
                    // Retrying cannot help: the operator has to start again with other credentials.
                    send(&self.events, ApiEvent::CredentialsRefused { error });
                    return;
                }
                Err(Failure::NotLeader(e)) => (e, true),
                Err(Failure::Other(e)) => (e, false),
            };
            if self.events.is_closed() {
                return;
            }
            send(
                &self.events,
                ApiEvent::StreamDown {
                    error,
                    retry_in_ms: backoff.as_millis() as u64,
                },
            );
            // In a cluster, the node followed may have lost the lead (or never had it): find who leads now and
            // reconnect there at once.
            if let Some(moved) = self.follow_leader(not_leader).await {
                backoff = BACKOFF_MIN;
                send(&self.events, moved);
                continue;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// After the feed failed: when the console knows cluster peers (or the node said it does not lead), looks for the leader and moves there; the event to report when it moved.
    async fn follow_leader(&self, not_leader: bool) -> Option<ApiEvent> {
        let peers = self.peers.lock().map(|p| p.clone()).unwrap_or_default();
        if peers.is_empty() && !not_leader {
            return None;
        }
        let c = self.api.follow(&peers).await?;
        self.learn_peers(&c);
        Some(ApiEvent::LeaderMoved {
            url: self.api.url(),
            cluster: Box::new(c),
        })
    }

    fn learn_peers(&self, c: &warren_shared::cluster::ClusterSummary) {
        if let Ok(mut p) = self.peers.lock() {
            *p = c.nodes.iter().filter_map(|n| n.admin.clone()).collect();
        }
    }

    async fn stream_once(&self, interval_ms: u64, idle: Duration, backoff: &mut Duration) -> Result<(), Failure> {
        // A broker that accepts the connection but never answers would otherwise hold this task (and so every
        // reconnect) forever: no answer within `idle` counts as a failure like any other.
        let connect = self
            .api
            .request(Method::GET, &format!("/api/stream?interval_ms={interval_ms}"))
            .header("accept", "text/event-stream")
            .send();
        let resp = tokio::time::timeout(idle, connect)
            .await
            .map_err(|_| Failure::Other(format!("no answer to the stream request in {idle:?}")))?
            .map_err(|e| Failure::Other(describe(e)))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let reason = resp
                .json::<warren_shared::ApiError>()
                .await
                .map(|e| e.reason)
                .unwrap_or_else(|_| status.to_string());
            let error = format!("{reason} ({})", status.as_u16());
            return Err(match status {
                reqwest::StatusCode::UNAUTHORIZED => Failure::Refused(error),
                // A cluster follower's answer to everything but `/api/cluster`.
                reqwest::StatusCode::SERVICE_UNAVAILABLE => Failure::NotLeader(error),
                _ => Failure::Other(error),
            });
        }
        send(&self.events, ApiEvent::StreamUp);
        let mut events = resp.bytes_stream().eventsource();
        loop {
            let next = tokio::time::timeout(idle, events.next())
                .await
                .map_err(|_| Failure::Other(format!("no data for {} s", idle.as_secs())))?;
            let Some(event) = next else {
                return Ok(());
            };
            let event = event.map_err(|e| Failure::Other(format!("stream broken: {e}")))?;
            if event.data.is_empty() {
                continue;
            }
            match serde_json::from_str::<StreamSnapshot>(&event.data) {
                Ok(s) => {
                    *backoff = BACKOFF_MIN;
                    send(&self.events, ApiEvent::Snapshot(Box::new(s)));
                }
                Err(e) => return Err(Failure::Other(format!("unreadable snapshot: {e}"))),
            }
            if self.events.is_closed() {
                return Ok(());
            }
        }
    }

    /// Runs one command in the background.
    pub fn execute(&self, command: Command) {
        let client = self.clone();
        tokio::spawn(async move {
            let tx = client.events.clone();
            if let Err(e) = client.run(command).await {
                send(&tx, e);
            }
        });
    }

    async fn run(&self, command: Command) -> Result<(), ApiEvent> {
        let tx = &self.events;
        let api = &self.api;
        // Reads report their own failures below; only actions reach `failed`.
        let request_id = command.request().unwrap_or(0);
        let failed = |error: String| ApiEvent::ActionFailed { request_id, error };
        match command {
            Command::Quit | Command::SwitchContext(_) => {}
            Command::Fetch(r) => {
                let result = match r {
                    Resource::Exchanges => api.exchanges().await.map(ApiEvent::Exchanges),
                    Resource::Bindings => api.bindings().await.map(ApiEvent::Bindings),
                    Resource::Connections => api.connections().await.map(ApiEvent::Connections),
                    Resource::Consumers => api.consumers().await.map(ApiEvent::Consumers),
                    Resource::Nodes => api.cluster().await.map(|c| {
                        self.learn_peers(&c);
                        ApiEvent::Cluster(Box::new(c))
                    }),
                };
                let e = result.map_err(|e| ApiEvent::FetchFailed {
                    resource: r,
                    error: e.to_string(),
                })?;
                send(tx, e);
            }
            Command::Peek {
                seq,
                queue,
                from,
                count,
                filter,
                offset,
                timestamp_ms,
            } => {
                let body = PeekRequest {
                    from,
                    count: Some(count),
                    offset,
                    timestamp_ms,
                    filter,
                };
                let messages = match api.peek(&queue, &body).await {
                    Ok(m) => m,
                    Err(e) => {
                        return Err(ApiEvent::PeekFailed {
                            seq,
                            queue,
                            error: e.to_string(),
                        })
                    }
                };
                send(
                    tx,
                    ApiEvent::Peeked {
                        seq,
                        queue,
                        from,
                        messages,
                    },
                );
            }
            Command::Purge { queue, .. } => {
                let r = api
                    .purge(&queue)
                    .await
                    .map_err(|e| failed(format!("purge {}: {e}", queue.name)))?;
                send(
                    tx,
                    ApiEvent::Purged {
                        request_id,
                        queue: queue.clone(),
                        purged: r.purged,
                    },
                );
                if let Some(ticket) = r.undo {
                    send(tx, undoable(request_id, queue, "purged", r.purged, ticket));
                }
            }
            Command::Move { queue, request, .. } => {
                let task = api
                    .start_move(&queue, &request)
                    .await
                    .map_err(|e| failed(format!("redrive from {}: {e}", queue.name)))?;
                let running = task.state == "running";
                let id = task.id;
                send(tx, ApiEvent::Move { request_id, task });
                if running {
                    self.follow_move(request_id, id).await?;
                }
            }
            Command::CancelMove { task: id, .. } => {
                let task = api
                    .cancel_move(id)
                    .await
                    .map_err(|e| failed(format!("cancel move {id}: {e}")))?;
                send(tx, ApiEvent::Move { request_id, task });
            }
            Command::Delete { queue, ids, .. } => {
                let r = api
                    .delete(&queue, ids)
                    .await
                    .map_err(|e| failed(format!("delete from {}: {e}", queue.name)))?;
                send(
                    tx,
                    ApiEvent::Deleted {
                        request_id,
                        queue: queue.clone(),
                        deleted: r.deleted,
                    },
                );
                if let Some(ticket) = r.undo {
                    send(tx, undoable(request_id, queue, "deleted", r.deleted, ticket));
                }
            }
            Command::Undo { id, .. } => {
                let result = api.undo(id).await.map_err(|e| failed(format!("undo: {e}")))?;
                send(tx, ApiEvent::Undone { request_id, result });
            }
            Command::Priority { queue, request, .. } => {
                let r = api
                    .priority(&queue, &request)
                    .await
                    .map_err(|e| failed(format!("priority in {}: {e}", queue.name)))?;
                send(
                    tx,
                    ApiEvent::PriorityChanged {
                        request_id,
                        queue,
                        changed: r.changed,
                    },
                );
            }
            Command::Publish {
                queue,
                exchange,
                request,
                ..
            } => {
                let r = api
                    .publish(&queue.vhost, &exchange, &request)
                    .await
                    .map_err(|e| failed(format!("publish to {}: {e}", queue.name)))?;
                send(
                    tx,
                    ApiEvent::Published {
                        request_id,
                        queue,
                        routed: r.routed,
                    },
                );
            }
            Command::CloseConnection { connection, reason, .. } => {
                api.close_connection(connection, reason)
                    .await
                    .map_err(|e| failed(format!("close connection {connection}: {e}")))?;
                send(tx, ApiEvent::ConnectionClosed { request_id, connection });
            }
            Command::Pause { queue, paused, .. } => {
                let r = api.pause(&queue, paused).await.map_err(|e| {
                    failed(format!(
                        "{} {}: {e}",
                        if paused { "pause" } else { "resume" },
                        queue.name
                    ))
                })?;
                send(
                    tx,
                    ApiEvent::Paused {
                        request_id,
                        queue,
                        paused: r.paused,
                        changed: r.changed,
                    },
                );
            }
            Command::StreamReplay {
                queue, consumer, reset, ..
            } => {
                let result = api
                    .stream_replay(&queue, &consumer, &reset)
                    .await
                    .map_err(|e| failed(format!("replay {consumer} on {}: {e}", queue.name)))?;
                send(tx, stream_acted(request_id, queue, result));
            }
            Command::StreamTruncate { queue, before, .. } => {
                let result = api
                    .stream_truncate(&queue, before)
                    .await
                    .map_err(|e| failed(format!("truncate {}: {e}", queue.name)))?;
                send(tx, stream_acted(request_id, queue, result));
            }
            // The main loop runs the editor; it never reaches the client.
            Command::OpenEditor { .. } => {}
            Command::Edit { queue, id, request, .. } => {
                let result = api
                    .edit(&queue, id, &request)
                    .await
                    .map_err(|e| failed(format!("edit message {id} of {}: {e}", queue.name)))?;
                send(
                    tx,
                    ApiEvent::Edited {
                        request_id,
                        queue,
                        result,
                    },
                );
            }
            Command::ReadScheduled => {
                let e = self
                    .read_scheduled()
                    .await
                    .unwrap_or_else(|error| ApiEvent::ScheduledFailed { error });
                send(tx, e);
            }
            Command::ScheduledAct { op, calls, .. } => {
                let affected = self.act_on_scheduled(&op, &calls).await.map_err(failed)?;
                send(
                    tx,
                    ApiEvent::ScheduledActed {
                        request_id,
                        op,
                        affected,
                    },
                );
            }
            Command::ReadAudit { before, page_size } => {
                let e = match self.audit_page(before, page_size).await {
                    Ok(entries) => ApiEvent::Audit { before, entries },
                    Err((denied, error)) => ApiEvent::AuditFailed { before, denied, error },
                };
                send(tx, e);
            }
            Command::Trace { seq, vhost, id } => {
                let result = self.api.journey(&vhost, &id).await.map_err(|e| e.to_string());
                send(tx, ApiEvent::Traced { seq, result });
            }
        }
        Ok(())
    }

    /// A page of the audit trail, newest first, older than entry `before` if given. A refusal (403: the user is
    /// neither administrator nor monitoring) is told apart from other failures (`true`), so the console can say who
    /// may read it and stop asking.
    async fn audit_page(&self, before: Option<u64>, page_size: usize) -> Result<Vec<AuditEntry>, (bool, String)> {
        self.api
            .audit_page(before, page_size)
            .await
            .map_err(|e| (e.status() == Some(403), e.to_string()))
    }

    /// Polls a running move until it ends, reporting each state (the progress bar) as an answer to `request_id`.
    async fn follow_move(&self, request_id: RequestId, id: u64) -> Result<(), ApiEvent> {
        let events = &self.events;
        self.api
            .follow_move(id, MOVE_POLL, |task| {
                send(events, ApiEvent::Move { request_id, task });
                // Nobody is listening any more (the console quit, or switched brokers).
                !events.is_closed()
            })
            .await
            .map(|_| ())
            .map_err(|e| ApiEvent::ActionFailed {
                request_id,
                error: format!("lost track of move {id}: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_request_never_answered_fails_after_the_idle_time() {
        // A "broker" that accepts connections and never says a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let client = Client::new(&format!("http://{addr}"), "guest", "guest", tx).expect("client");
        let mut backoff = BACKOFF_MIN;
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            client.stream_once(1000, Duration::from_millis(200), &mut backoff),
        )
        .await
        .expect("stream_once gives up by itself");
        assert_eq!(
            result,
            Err(Failure::Other("no answer to the stream request in 200ms".to_string()))
        );
        silent.abort();
    }

    /// A "broker" that answers one request with `status` and `body`, and hands back the request line it got.
    async fn answer_once(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(response.as_bytes()).await.expect("write");
            let text = String::from_utf8_lossy(&request).to_string();
            text.lines().next().unwrap_or_default().to_string()
        });
        (format!("http://{addr}"), server)
    }

    /// Issue 15: "a wrong password says 'lost the broker' and retries forever". A 401 on the live feed is reported
    /// as refused credentials once, and the feed stops (the answering "broker" takes one request only: a retry would
    /// hang on its closed port instead of ending).
    #[tokio::test]
    async fn refused_credentials_end_the_feed_instead_of_retrying() {
        let body = r#"{"error":"not_authorised","reason":"Login failed"}"#;
        let (url, server) = answer_once("401 Unauthorized", body).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = Client::new(&url, "guest", "wrong", tx).expect("client");
        tokio::time::timeout(Duration::from_secs(10), client.stream(1000))
            .await
            .expect("the feed ends by itself");
        assert!(server.await.expect("server").starts_with("GET /api/stream"));
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        assert_eq!(
            events,
            vec![Event::Api(ApiEvent::CredentialsRefused {
                error: "Login failed (401)".into()
            })]
        );
    }

    #[tokio::test]
    async fn an_older_audit_page_is_asked_for_with_before() {
        let body = r#"[{"id":41,"at_ms":1700000000000,"user":"ops","peer":"10.0.0.7","action":"purge",
            "vhost":"/","object":"orders","messages":12,"result":"ok"}]"#;
        let (url, server) = answer_once("200 OK", body).await;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let client = Client::new(&url, "guest", "guest", tx).expect("client");
        let page = client.audit_page(Some(42), 200).await.expect("a page");
        assert_eq!(
            server.await.expect("server"),
            "GET /api/audit?page_size=200&before=42 HTTP/1.1"
        );
        assert_eq!(page.len(), 1);
        assert_eq!(
            (page[0].id, page[0].messages, page[0].user.as_str()),
            (41, Some(12), "ops")
        );
    }

    #[tokio::test]
    async fn a_refused_audit_read_is_told_apart() {
        let body = r#"{"error":"access_refused","reason":"user 'app' may not read the audit trail"}"#;
        let (url, server) = answer_once("403 Forbidden", body).await;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let client = Client::new(&url, "app", "secret", tx).expect("client");
        let result = client.audit_page(None, 200).await;
        assert_eq!(server.await.expect("server"), "GET /api/audit?page_size=200 HTTP/1.1");
        assert_eq!(
            result,
            Err((true, "user 'app' may not read the audit trail (403)".to_string()))
        );

        let (url, server) = answer_once("500 Internal Server Error", "oops").await;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let client = Client::new(&url, "guest", "guest", tx).expect("client");
        assert!(matches!(client.audit_page(None, 200).await, Err((false, _))));
        server.await.expect("server");
    }
}
