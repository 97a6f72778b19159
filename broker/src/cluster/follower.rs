//! A follower's replication client (issue 17): connects to the leader's replication address, takes a full sync
//! (fetching only the files that differ, setting aside those the leader does not have), then applies the leader's
//! ops as they come and acks each batch once it is applied and synced. Reconnects after any failure; ends when
//! `stop` is cancelled (this node is about to lead), after the batch in hand is applied.
//!
//! Invariants: the `cluster/synced` marker is removed before the copy is touched and written only after a full
//! sync completed and was synced, so a node whose copy is incomplete never claims to be in sync; every file
//! operation runs on a blocking thread; the data directory's `.lock` is held by this node the whole time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth::{self, Secret};
use super::files::{self, Touched};
use super::link::{self, now_ms, LinkError};
use super::wire::Frame;
use super::Status;
use crate::tls::Tls;

/// How long the leader has to answer `Hello` with its challenge.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// At most this many ops are applied between two syncs and acks.
const COALESCE_OPS: usize = 64 * 1024;

/// The marker of a completed full sync, relative to the data directory.
pub const SYNCED_MARKER: &str = "cluster/synced";

/// Whether this node's copy completed a full sync (and so may lead).
pub fn synced(root: &Path) -> bool {
    root.join(SYNCED_MARKER).exists()
}

async fn blocking_io<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, LinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LinkError::Io(std::io::Error::other(e)))?
        .map_err(LinkError::Io)
}

/// Follows the leader at `leader` (its replication address) until `stop`, over TLS when `tls` is given; each end
/// proves it holds `secret`.
pub async fn run(
    leader: String,
    node: String,
    secret: Secret,
    tls: Option<Arc<Tls>>,
    root: PathBuf,
    status: Arc<Status>,
    stop: CancellationToken,
) {
    loop {
        // Not raced against `stop`: a batch in hand is applied before the session returns.
        match session(&leader, &node, &secret, tls.as_deref(), &root, &status, &stop).await {
            Ok(()) => return,
            Err(e) => {
                status.following(&leader, false, 0);
                warn!(leader = %leader, error = %e, "replication from the leader stopped; reconnecting")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn session(
    leader: &str,
    node: &str,
    secret: &Secret,
    tls: Option<&Tls>,
    root: &Path,
    status: &Arc<Status>,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let stream = tokio::select! {
        s = TcpStream::connect(leader) => s?,
        _ = stop.cancelled() => return Ok(()),
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = match tls {
        Some(tls) => {
            let connector = tls
                .replication_connector()
                .ok_or_else(|| LinkError::Tls("--cluster-tls needs --tls-ca to verify the leader".into()))?;
            // The leader's certificate must name the host it advertised (an IP address or a DNS name).
            let host = leader.rsplit_once(':').map_or(leader, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| LinkError::Tls(format!("{host}: {e}")))?;
            let stream = tokio::time::timeout(HANDSHAKE, connector.connect(name, stream))
                .await
                .map_err(|_| LinkError::Silent)?
                .map_err(|e| LinkError::Tls(e.to_string()))?;
            link::split(stream)
        }
        None => link::split(stream),
    };
    let ours = auth::nonce();
    wr.send(&Frame::Hello {
        node: node.to_string(),
        nonce: ours,
    })
    .await?;
    // The leader proves it holds the secret before this node proves it, and before anything is applied here.
    let challenge = tokio::select! {
        f = tokio::time::timeout(HANDSHAKE, rd.next()) => f.map_err(|_| LinkError::Silent)??,
        _ = stop.cancelled() => return Ok(()),
    };
    let theirs = match challenge {
        Frame::Challenge { nonce, proof } if secret.check_leader(node, &ours, &nonce, &proof) => nonce,
        Frame::Challenge { .. } => {
            return Err(LinkError::Refused(
                "the leader did not prove it holds the cluster's secret (do the --cluster-secret-file contents \
                 differ?)"
                    .into(),
            ))
        }
        Frame::Refused { reason } => return Err(LinkError::Refused(reason)),
        _ => return Err(LinkError::Unexpected("instead of the challenge")),
    };
    wr.send(&Frame::Auth {
        proof: secret.follower_proof(node, &theirs, &ours),
    })
    .await?;
    let first = tokio::select! {
        f = rd.next() => f?,
        _ = stop.cancelled() => return Ok(()),
    };
    let theirs = match first {
        Frame::FileList { files } => files,
        Frame::Refused { reason } => return Err(LinkError::Refused(reason)),
        _ => return Err(LinkError::Unexpected("instead of the file list")),
    };
    let (want, extra) = {
        let root = root.to_path_buf();
        blocking_io(move || {
            // No longer a complete copy from here on.
            match std::fs::remove_file(root.join(SYNCED_MARKER)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mine = files::list(&root)?;
            let (want, extra) = files::compare(&theirs, &mine);
            files::set_aside(&root, &extra, now_ms())?;
            Ok((want, extra.len()))
        })
        .await?
    };
    info!(
        leader,
        fetch = want.len(),
        set_aside = extra,
        "full sync from the leader"
    );
    wr.send(&Frame::Want { paths: want }).await?;
    let mut touched = Touched::default();
    let lsn = loop {
        let frame = tokio::select! {
            f = rd.next() => f?,
            _ = stop.cancelled() => return Ok(()),
        };
        match frame {
            Frame::FileData { path, offset, data, .. } => {
                let root = root.to_path_buf();
                touched = blocking_io(move || {
                    files::write_piece(&root, &path, offset, &data, &mut touched)?;
                    Ok(touched)
                })
                .await?;
            }
            Frame::SyncDone { lsn } => break lsn,
            _ => return Err(LinkError::Unexpected("during the full sync")),
        }
    };
    // Ops from `lsn` on are applied next; the copy is complete once they start, and it is marked after the first
    // batch (or now, when there is none yet) is synced.
    let mut applied = lsn;
    let mut marked = false;
    loop {
        if !marked {
            let root = root.to_path_buf();
            touched = blocking_io(move || {
                touched.sync()?;
                std::fs::create_dir_all(root.join("cluster"))?;
                std::fs::write(root.join(SYNCED_MARKER), applied.to_string())?;
                std::fs::File::open(root.join("cluster"))?.sync_all()?;
                Ok(touched)
            })
            .await?;
            marked = true;
            status.following(leader, true, applied);
            wr.send(&Frame::Ack { lsn: applied }).await?;
            info!(leader, lsn = applied, "in sync with the leader");
        }
        let frame = tokio::select! {
            f = rd.next() => f?,
            _ = stop.cancelled() => return Ok(()),
        };
        match frame {
            Frame::Ops { first, ops } => {
                if first != applied {
                    return Err(LinkError::Refused(format!("ops from {first}, expected {applied}")));
                }
                // Every batch that has already arrived is applied with this one, and all of them are synced and
                // acked once: one fdatasync per touched file for as much as the leader sent meanwhile.
                let mut batch = ops;
                let mut end = applied + batch.len() as u64;
                while batch.len() < COALESCE_OPS {
                    match rd.try_next()? {
                        Some(Frame::Ops { first, ops }) if first == end => {
                            end += ops.len() as u64;
                            batch.extend(ops);
                        }
                        Some(Frame::Ops { first, .. }) => {
                            return Err(LinkError::Refused(format!("ops from {first}, expected {end}")))
                        }
                        Some(Frame::Heartbeat { .. }) => {}
                        Some(_) => return Err(LinkError::Unexpected("while streaming")),
                        None => break,
                    }
                }
                let root = root.to_path_buf();
                touched = blocking_io(move || {
                    for op in &batch {
                        files::apply(&root, op, &mut touched)?;
                    }
                    touched.sync()?;
                    Ok(touched)
                })
                .await?;
                applied = end;
                status.following(leader, true, applied);
                wr.send(&Frame::Ack { lsn: applied }).await?;
            }
            Frame::Heartbeat { .. } => wr.send(&Frame::Ack { lsn: applied }).await?,
            _ => return Err(LinkError::Unexpected("while streaming")),
        }
    }
}
