//! The HTTP side of the soak: admin readers polling `/api/overview`, `/api/queues` and `/metrics` every second,
//! one reader holding `/api/stream` open, and the redrive of the dead-letter queues through `POST .../move`.
//!
//! Each reader has its own `reqwest::Client` (its own keep-alive connection), as separate dashboards would. Errors
//! are counted and reported, never fatal: the soak goes on and the summary says what failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result, WrapErr};
use futures::StreamExt;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use warren_shared::{MoveTask, Overview, QueueInfo};

use crate::Ctx;

/// The SSE stream sends an update every second: this long without a byte means it is stuck.
const STREAM_SILENCE: Duration = Duration::from_secs(10);
/// A redrive that takes longer than this is reported as failed (it would be thousands of messages per second).
const MOVE_DEADLINE: Duration = Duration::from_secs(600);

/// One admin API client.
pub struct Admin {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

/// What the first reader saw last, for the progress line.
#[derive(Default)]
pub struct Latest {
    pub overview: Option<Overview>,
    pub queues: Vec<QueueInfo>,
}

impl Admin {
    /// `timeout`: for the whole of each request; `None` for the endless stream.
    pub fn new(ctx: &Ctx, timeout: Option<Duration>) -> Result<Self> {
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(t) = timeout {
            http = http.timeout(t);
        }
        Ok(Admin {
            http: http.build().wrap_err("cannot build an HTTP client")?,
            base: ctx.admin.trim_end_matches('/').to_string(),
            user: ctx.user.clone(),
            password: ctx.password.clone(),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
    }

    async fn send(&self, req: RequestBuilder, what: &str) -> Result<Vec<u8>> {
        let resp = req.send().await.wrap_err_with(|| what.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.wrap_err_with(|| what.to_string())?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            bail!("{what}: HTTP {status}: {text}");
        }
        Ok(body.to_vec())
    }

    pub async fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.send(self.request(Method::GET, path), &format!("GET {path}")).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).wrap_err_with(|| format!("GET {path}: unexpected JSON"))
    }

    async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T> {
        let req = self
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_string());
        let answer = self.send(req, &format!("POST {path}")).await?;
        serde_json::from_slice(&answer).wrap_err_with(|| format!("POST {path}: unexpected JSON"))
    }

    /// Our queues (work queues and their DLQs) as the broker lists them.
    pub async fn our_queues(&self, ctx: &Ctx) -> Result<Vec<QueueInfo>> {
        let all: Vec<QueueInfo> = self.get_json("/api/queues").await?;
        Ok(all
            .into_iter()
            .filter(|q| q.vhost == "/" && ctx.is_ours(&q.name))
            .collect())
    }
}

/// Polls the three read endpoints every second until `stop`.
pub async fn reader(ctx: Arc<Ctx>, admin: Admin, index: usize, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for path in ["/api/overview", "/api/queues", "/metrics"] {
            let started = Instant::now();
            let answer = admin.get(path).await;
            ctx.stats.admin_requests.inc();
            ctx.stats.admin_slowest_ms.max(started.elapsed().as_millis() as u64);
            let body = match answer {
                Ok(body) => body,
                Err(e) => {
                    ctx.stats.admin_errors.inc();
                    ctx.stats.error(format!("admin reader {index}: {e:#}"));
                    continue;
                }
            };
            if index != 0 {
                continue;
            }
            let mut latest = ctx.latest.lock().unwrap_or_else(|e| e.into_inner());
            match path {
                "/api/overview" => latest.overview = serde_json::from_slice(&body).ok(),
                "/api/queues" => {
                    let all: Vec<QueueInfo> = serde_json::from_slice(&body).unwrap_or_default();
                    latest.queues = all.into_iter().filter(|q| ctx.is_ours(&q.name)).collect();
                }
                _ => {}
            }
        }
    }
}

/// Holds `/api/stream` open until `stop`, counting events; opens it again when it ends, fails or goes silent.
pub async fn stream(ctx: Arc<Ctx>, admin: Admin, stop: CancellationToken) {
    loop {
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            e = follow(&ctx, &admin) => e,
        };
        ctx.stats.stream_reconnects.inc();
        ctx.stats.error(format!("admin stream: {ended:#}"));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Reads the stream until something goes wrong (it never ends well: the broker runs on).
async fn follow(ctx: &Ctx, admin: &Admin) -> color_eyre::eyre::Report {
    let resp = match admin.request(Method::GET, "/api/stream").send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return eyre!("GET /api/stream: HTTP {}", r.status()),
        Err(e) => return eyre!(e).wrap_err("GET /api/stream"),
    };
    let mut body = resp.bytes_stream();
    let mut pending = String::new();
    loop {
        let chunk = match tokio::time::timeout(STREAM_SILENCE, body.next()).await {
            Err(_) => return eyre!("no event for {} s", STREAM_SILENCE.as_secs()),
            Ok(None) => return eyre!("the stream ended"),
            Ok(Some(Err(e))) => return eyre!(e).wrap_err("reading the stream"),
            Ok(Some(Ok(chunk))) => chunk,
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if event.lines().any(|l| l.starts_with("event:")) {
                ctx.stats.stream_events.inc();
            }
        }
        if pending.len() > 64 << 20 {
            return eyre!("an event over 64 MiB without its end");
        }
    }
}

/// Redrives every DLQ back to its source queue each `every` until `stop` (checked between rounds, so a round in
/// progress finishes and no move is left behind).
pub async fn redrive_loop(ctx: Arc<Ctx>, admin: Admin, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        redrive_all(&ctx, &admin).await;
    }
}

/// One round: each DLQ moved back to its source, one after the other, each followed to its end.
pub async fn redrive_all(ctx: &Ctx, admin: &Admin) {
    for q in &ctx.queues {
        let dlq = format!("{q}.dlq");
        match redrive(admin, &dlq).await {
            Ok(task) => {
                ctx.stats.redrives.inc();
                ctx.stats.redriven.add(task.moved);
                if task.state != "done" || task.not_moved > 0 {
                    ctx.stats.redrive_failures.inc();
                    ctx.stats.error(format!(
                        "redrive of {dlq} (move {}): {}, {} of {} moved, {} not moved{}",
                        task.id,
                        task.state,
                        task.moved,
                        task.total,
                        task.not_moved,
                        task.error.map(|e| format!(": {e}")).unwrap_or_default()
                    ));
                }
            }
            Err(e) => {
                ctx.stats.redrive_failures.inc();
                ctx.stats.error(format!("redrive of {dlq}: {e:#}"));
            }
        }
    }
}

/// Starts a move of `dlq` back to where each message died (`"to": "source"`) and polls it until it ends.
async fn redrive(admin: &Admin, dlq: &str) -> Result<MoveTask> {
    let started = Instant::now();
    let mut task: MoveTask = admin
        .post_json(
            &format!("/api/queues/%2F/{dlq}/move"),
            &serde_json::json!({"to": "source"}),
        )
        .await?;
    while task.state == "running" {
        if started.elapsed() > MOVE_DEADLINE {
            bail!("move {} still running after {} s", task.id, MOVE_DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        task = admin.get_json(&format!("/api/moves/{}", task.id)).await?;
    }
    Ok(task)
}
