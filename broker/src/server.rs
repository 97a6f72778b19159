//! The AMQP accept loops: one per listener, one task per connection, a cap on open connections shared by every
//! listener, and structural shutdown. The admin server (`admin::server`) reuses [`accept_loop`].
//!
//! TLS listeners (AMQPS) accept the same way; the TLS handshake runs inside the connection's own task, under
//! `tls::HANDSHAKE_TIMEOUT` and the shutdown token, never in the accept loop: a client that stalls its handshake
//! holds one permit and one task, and accepting goes on.
//!
//! Invariants: a connection is accepted only while it holds a permit of its server's semaphore, so the open sockets
//! of a server never exceed its cap; [`ConnectionCaps`] keeps the AMQP and admin caps together below the open-file
//! limit minus a reserve, so data files can always be opened. An accept error (EMFILE and the like) never ends a
//! loop: it backs off briefly and accepts again.
//!
//! Beside the accept loops `run` starts the broker's background tasks on the same tracker: the timer
//! (`crate::timer`, which wakes queues and delayed exchanges at their deadlines), the metrics tick (rates and
//! utilisation once a second, latency windows once a minute) and the alarm monitor.
//!
//! Shutdown: when the token is cancelled the loops stop accepting, every connection sends connection.close 320
//! (CONNECTION_FORCED) and finishes its close handshake, and `run` returns once all connection tasks have ended
//! (or after a grace period).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::amqp::connection;
use crate::broker::Broker;
use crate::config::Config;
use crate::tls::{self, TlsListeners};

/// How long an accept loop waits after an accept error (out of file descriptors, ...) before it tries again: long
/// enough not to spin on EMFILE, short enough that service resumes as soon as descriptors are freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long shutdown waits for connections to finish their close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often every queue's metrics are sampled: counters for rates, and consumer utilisation.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Latency windows move on every this many metrics ticks (a minute).
const LATENCY_ROTATE_TICKS: u64 = 60;

/// Metrics upkeep, on a tick of its own (expiry and the other deadlines are the timer's, `crate::timer`): once a
/// second a sample of every queue's counters for rates and one consumer-utilisation sample, and what can no longer
/// be undone leaves the quarantine; every minute the latency windows move on. Touches only each queue's metrics,
/// never what it holds.
async fn sample_metrics(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(METRICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        let rotate = ticks.is_multiple_of(LATENCY_ROTATE_TICKS);
        // What can no longer be undone goes.
        broker.quarantine.sweep(broker.clock.now_ms());
        for vhost in broker.vhosts() {
            for q in vhost.queues() {
                q.sample_utilisation();
                let c = q.stats.counters();
                q.rates.lock().unwrap_or_else(|e| e.into_inner()).sample(c);
                if rotate {
                    let mut l = q.latency.lock().unwrap_or_else(|e| e.into_inner());
                    l.deliver.rotate();
                    l.ack.rotate();
                }
            }
        }
    }
}

/// One pass over every queue and delayed exchange, whatever their deadlines: due delayed messages are released,
/// expired messages at the heads go, unused `x-expires` queues are removed, and each re-arms the timer if what is
/// left is due earlier than what it armed. Not how a running broker works (the timer wakes each at its deadline):
/// `Broker::advance_time` runs it right after moving the clock, so that tests see every due thing happen at once.
pub fn sweep_once(broker: &Broker) {
    broker.quarantine.sweep(broker.clock.now_ms());
    for vhost in broker.vhosts() {
        vhost.release_delayed();
        for q in vhost.queues() {
            if q.sweep() {
                info!(vhost = %vhost.name, queue = %q.name(), "queue expired (x-expires)");
                vhost.remove_queue(&q);
            }
        }
    }
}

/// How many connections each server may hold open, worked out from the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub amqp: usize,
    pub admin: usize,
}

impl ConnectionCaps {
    /// The configured caps, lowered so that `amqp + admin <= open_files - reserve`: connections can never take the
    /// descriptors that segment files need. The reserve is at most half the limit (a low limit still serves some
    /// clients), the admin API gets at most a quarter of what is left (it must not crowd out AMQP clients), and
    /// each server keeps at least one connection.
    pub fn new(open_files: u64, reserve: u64, amqp: usize, admin: usize) -> Self {
        let reserve = reserve.min(open_files / 2);
        let sockets = usize::try_from(open_files - reserve).unwrap_or(usize::MAX);
        let admin = admin.min(sockets / 4).max(1);
        let amqp = amqp.min(sockets.saturating_sub(admin)).max(1);
        ConnectionCaps { amqp, admin }
    }

    /// The caps for `config` under this process's current (soft) open-file limit.
    pub fn for_config(config: &Config) -> Self {
        let open_files = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _)) => soft,
            Err(e) => {
                warn!(error = %e, "cannot read the open-file limit; assuming 1024");
                1024
            }
        };
        let caps = Self::new(
            open_files,
            config.fd_reserve,
            config.max_connections,
            config.admin_max_connections,
        );
        if caps.amqp < config.max_connections || caps.admin < config.admin_max_connections {
            warn!(
                open_files,
                reserve = config.fd_reserve,
                amqp = caps.amqp,
                admin = caps.admin,
                "the open-file limit cannot hold the configured connection caps: lowered (raise `ulimit -n`)"
            );
        }
        caps
    }
}

/// Serves one protocol (MQTT, STOMP) on every listener: each accepted connection runs `serve` in a task of its own,
/// at most `max_connections` at once, until `shutdown`; then waits (at most 5 s) for the connections to end.
pub async fn serve_protocol<F, Fut>(
    name: &'static str,
    listeners: Vec<TcpListener>,
    max_connections: usize,
    shutdown: CancellationToken,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(max_connections));
    for listener in listeners {
        info!(addr = %listener.local_addr()?, "{name} listener ready");
        let (serve, connections) = (serve.clone(), tracker.clone());
        tracker.spawn(accept_loop(
            listener,
            limit.clone(),
            shutdown.clone(),
            move |stream, peer, permit| {
                let conn = serve(stream, peer);
                connections.spawn(async move {
                    conn.await;
                    drop(permit);
                });
            },
        ));
    }
    shutdown.cancelled().await;
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    Ok(())
}

/// Accepts connections on `listener` until `shutdown` is cancelled, each only once a permit of `limit` is free
/// (beyond the cap, clients wait in the kernel's listen backlog and hold no descriptor of ours). `serve` gets the
/// permit with the socket and must keep it as long as the socket is open.
pub async fn accept_loop(
    listener: TcpListener,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    mut serve: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, addr = ?listener.local_addr().ok(), "accept failed; retrying shortly");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        serve(stream, peer, permit);
    }
}

/// Serves AMQP on every listener (plain) and AMQPS on every listener of `tls`, at most `max_connections` at once in
/// all, until `shutdown` is cancelled.
pub async fn run(
    listeners: Vec<TcpListener>,
    tls: Option<TlsListeners>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(max_connections));
    tracker.spawn(broker.timer.clone().run(shutdown.clone()));
    tracker.spawn(sample_metrics(broker.clone(), shutdown.clone()));
    tracker.spawn(crate::alarm::monitor(
        broker.alarms.clone(),
        broker.store.root.clone(),
        shutdown.clone(),
    ));
    for listener in listeners {
        info!(addr = %listener.local_addr()?, max_connections, "AMQP listener ready");
        let (broker, shutdown, connections) = (broker.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(accept_loop(
            listener,
            limit.clone(),
            shutdown.clone(),
            move |stream, peer, permit| {
                let (broker, shutdown) = (broker.clone(), shutdown.clone());
                connections.spawn(async move {
                    connection::serve(stream, peer, broker, shutdown).await;
                    drop(permit);
                });
            },
        ));
    }
    for listener in tls.iter().flat_map(|t| &t.listeners) {
        info!(addr = %listener.local_addr()?, max_connections, "AMQPS listener ready");
    }
    for (listener, tls) in tls.into_iter().flat_map(|t| {
        let tls = t.tls;
        t.listeners.into_iter().map(move |l| (l, tls.clone()))
    }) {
        let (broker, shutdown, connections) = (broker.clone(), shutdown.clone(), tracker.clone());
        tracker.spawn(accept_loop(
            listener,
            limit.clone(),
            shutdown.clone(),
            move |stream, peer, permit| {
                let (broker, shutdown, tls) = (broker.clone(), shutdown.clone(), tls.clone());
                connections.spawn(async move {
                    // The acceptor is the configuration current now: a reload applies from the next handshake.
                    let _ = stream.set_nodelay(true);
                    let handshake = tls.amqp_acceptor().accept(stream);
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, handshake) => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                info!(%peer, error = %e, "AMQPS handshake failed");
                                return;
                            }
                            Err(_) => {
                                info!(%peer, "AMQPS handshake timed out");
                                return;
                            }
                        },
                    };
                    connection::serve_tls(stream, peer, broker, shutdown).await;
                    drop(permit);
                });
            },
        ));
    }
    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    info!("AMQP listener stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ConnectionCaps;

    #[test]
    fn caps_leave_the_reserve_free() {
        let caps = |n, r, a, b| {
            let c = ConnectionCaps::new(n, r, a, b);
            (c.amqp, c.admin)
        };
        assert_eq!(
            caps(1 << 20, 1024, 10_000, 256),
            (10_000, 256),
            "a high limit changes nothing"
        );
        // 65536 - 1024 = 64512 sockets: admin keeps 256, AMQP gets the rest.
        assert_eq!(caps(65_536, 1024, 100_000, 256), (64_256, 256));
        // 1024 files: the reserve is cut to 512; the admin API gets a quarter of the 512 sockets.
        assert_eq!(caps(1024, 1024, 10_000, 256), (384, 128));
        assert_eq!(caps(4, 1024, 10, 10), (1, 1), "each server keeps one connection");
        let c = ConnectionCaps::new(8192, 1024, 10_000, 256);
        assert!(c.amqp + c.admin <= 8192 - 1024, "{c:?}");
    }
}
