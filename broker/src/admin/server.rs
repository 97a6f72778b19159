//! The admin API's HTTP/1.1 server: the accept loops, per-connection timeouts, and the connection cap. The
//! Prometheus listener (`crate::prometheus`) is served by the same code ([`serve_router`]).
//!
//! Why not `axum::serve`: it sets no timer, so a client that connects and sends nothing (or stops halfway through
//! its headers, or idles on keep-alive) holds its socket forever; 20,000 of them used up every file descriptor, and
//! AMQP clients then failed their handshakes. Here each connection is served by hyper directly, with:
//! - hyper's header-read timeout (`config.admin_idle_timeout`), which runs from the moment the server waits for a
//!   request head: it closes silent connections, slow headers, and idle keep-alive connections alike;
//! - the same timeout on reading a request body (`super::Body`, answered 408), so a half-sent body cannot hold the
//!   connection either;
//! - a semaphore shared by every admin listener (`server::accept_loop`): at most `max_connections` sockets are
//!   open; more wait in the kernel's listen backlog, holding no descriptor of ours.
//!
//! HTTPS listeners serve the same router: the TLS handshake runs in the connection's own task under
//! `tls::HANDSHAKE_TIMEOUT` (never in the accept loop), then hyper serves the decrypted stream exactly as a plain one.
//!
//! Invariant: every request served here, over HTTP or HTTPS, carries `ConnectInfo<SocketAddr>` (the peer), which the loopback-only
//! rule for users like `guest` reads. Long responses (the SSE stream) are not cut by the timeout: it applies only
//! while a request is awaited. Shutdown: every connection finishes its response in flight and closes; streams end
//! through `stream::Shutdown`; `serve` waits at most a grace period for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::broker::Broker;
use crate::tls::{self, TlsListeners};

/// How long shutdown waits for admin connections to finish the response they are writing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves the admin API on every listener (HTTP) and every listener of `https`, at most `max_connections`
/// connections at once in all, until `shutdown` is cancelled.
pub async fn serve(
    listeners: Vec<TcpListener>,
    https: Option<TlsListeners>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let idle = broker.config.admin_idle_timeout;
    // HTTP and HTTPS listeners alike: either exposes the API.
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .chain(https.iter().flat_map(|t| &t.listeners))
        .filter_map(|l| l.local_addr().ok())
        .collect();
    if let Some(warning) = exposed_guest(&broker, &addrs) {
        tracing::warn!("{warning}");
    }
    let app = super::app(broker).layer(axum::Extension(super::stream::Shutdown(shutdown.clone())));
    serve_router(listeners, https, app, idle, shutdown, max_connections, "admin API").await
}

/// Serves `app` on every listener (HTTP) and every listener of `https` with this module's timeouts and cap (`idle`,
/// `max_connections` in all), until `shutdown` is cancelled; `what` names the server in logs. The admin API and the
/// Prometheus listener (HTTP only) both run here.
pub async fn serve_router(
    listeners: Vec<TcpListener>,
    https: Option<TlsListeners>,
    app: Router,
    idle: Duration,
    shutdown: CancellationToken,
    max_connections: usize,
    what: &'static str,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(max_connections));
    for listener in listeners {
        tracing::info!(addr = %listener.local_addr()?, max_connections, idle_timeout = ?idle, "{what} ready");
        let (app, shutdown, connections) = (app.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(crate::server::accept_loop(
            listener,
            limit.clone(),
            shutdown.clone(),
            move |stream, peer, permit| {
                connections.spawn(connection(stream, peer, app.clone(), idle, shutdown.clone(), permit));
            },
        ));
    }
    for (listener, tls) in https.into_iter().flat_map(|t| {
        let tls = t.tls;
        t.listeners.into_iter().map(move |l| (l, tls.clone()))
    }) {
        tracing::info!(addr = %listener.local_addr()?, max_connections, idle_timeout = ?idle, "{what} (HTTPS) ready");
        let (app, shutdown, connections) = (app.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(crate::server::accept_loop(
            listener,
            limit.clone(),
            shutdown.clone(),
            move |stream, peer, permit| {
                let (app, shutdown, tls) = (app.clone(), shutdown.clone(), tls.clone());
                connections.spawn(async move {
                    let handshake = tls.admin_acceptor().accept(stream);
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, handshake) => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "{what}: HTTPS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "{what}: HTTPS handshake timed out");
                                return;
                            }
                        },
                    };
                    connection(stream, peer, app, idle, shutdown, permit).await
                });
            },
        ));
    }
    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some {what} connections did not close within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
}

/// The loud warning for an admin API reachable from other hosts while the only administrator is a loopback-only
/// user (`guest`): nobody can administer the broker from where the API is offered. `None` when all is well.
pub fn exposed_guest(broker: &Broker, addrs: &[SocketAddr]) -> Option<String> {
    let exposed: Vec<&SocketAddr> = addrs.iter().filter(|a| !crate::auth::is_loopback(a.ip())).collect();
    let first = exposed.first()?;
    let admins: Vec<String> = broker
        .access
        .users()
        .into_iter()
        .filter(|u| u.tags.iter().any(|t| t == "administrator"))
        .map(|u| u.name)
        .collect();
    if admins.is_empty() || admins.iter().any(|a| !broker.access.is_loopback_only(a)) {
        return None;
    }
    Some(format!(
        "!!! the admin API listens on {first}, reachable from other hosts, but its only administrator ({}) may log \
         in from localhost only. Create an administrator (PUT /api/users/NAME with tags administrator, or [[users]] \
         in the config file) and delete guest, or bind the admin API to 127.0.0.1 !!!",
        admins.join(", ")
    ))
}

/// Serves one connection until the client closes it, a timeout closes it, or shutdown; `_permit` is its place
/// under the cap, given back when the socket closes.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    idle: Duration,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(idle);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts and clients that hang up mid-request end here; nothing to do but note it.
        tracing::debug!(%peer, error = %e, "admin connection ended");
    }
}
