//! The accept loop: one task per connection, a cap on open connections, and structural shutdown.
//!
//! Shutdown: when the token is cancelled the loop stops accepting, every connection sends connection.close 320
//! (CONNECTION_FORCED) and finishes its close handshake, and `run` returns once all connection tasks have ended
//! (or after a grace period).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::amqp::connection;
use crate::broker::Broker;

/// The most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 10_000;
/// How long shutdown waits for connections to finish their close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often queues drop expired messages at their head and check `x-expires`.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Upkeep: delayed messages are released, message TTL applies even with no consumer attached, and unused
/// `x-expires` queues go.
async fn sweep_queues(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sample = std::time::Instant::now();
    let mut last_rotate = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Once a second, a sample of every queue's counters for rates.
        let sample = last_sample.elapsed() >= Duration::from_secs(1);
        if sample {
            last_sample = std::time::Instant::now();
        }
        // Every minute, latency windows move on.
        let rotate = last_rotate.elapsed() >= Duration::from_secs(60);
        if rotate {
            last_rotate = std::time::Instant::now();
        }
        for vhost in broker.vhosts() {
            vhost.release_delayed();
            for q in vhost.queues() {
                q.sample_utilisation();
                if sample {
                    let c = q.stats.counters();
                    q.rates.lock().unwrap_or_else(|e| e.into_inner()).sample(c);
                }
                if rotate {
                    let mut l = q.latency.lock().unwrap_or_else(|e| e.into_inner());
                    l.deliver.rotate();
                    l.ack.rotate();
                }
                if q.sweep() {
                    info!(vhost = %vhost.name, queue = %q.name(), "queue expired (x-expires)");
                    vhost.remove_queue(&q);
                }
            }
        }
    }
}

/// Serves AMQP on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tracker.spawn(sweep_queues(broker.clone(), shutdown.clone()));
    tracker.spawn(crate::alarm::monitor(
        broker.alarms.clone(),
        broker.store.root.clone(),
        shutdown.clone(),
    ));
    info!(addr = %listener.local_addr()?, "AMQP listener ready");
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            connection::serve(stream, peer, broker, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!("some connections did not close within {SHUTDOWN_GRACE:?}");
    }
    info!("AMQP listener stopped");
    Ok(())
}
