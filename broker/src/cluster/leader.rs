//! The leader's replication server (issue 17): one task per connected follower. Each session registers the
//! follower's cursor at the log's head, sends the file list with checksums, the files the follower wants, then
//! `SyncDone` with that cursor, and from then on streams the log's ops, LZ4-compressed, in batches. The follower's
//! acks are read on a second task and reported to [`Status`].
//!
//! Invariants: the cursor is registered before any file is listed or read, so every change after the copy began
//! reaches the follower as an op (see `store::repl`); a follower that falls behind what the log keeps is
//! disconnected and syncs again from a fresh file list. File reads and checksums run on blocking threads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth::{self, Secret};
use super::files;
use super::link::{self, now_ms, LinkError, Reader, Writer};
use super::wire::{Frame, FILE_CHUNK};
use super::Status;
use crate::store::repl::ReplLog;
use crate::tls::Tls;

/// Ops sent in one frame, at most (uncompressed payload, about).
const BATCH_BYTES: usize = 4 << 20;

/// How long a connecting peer has for its `Hello` and its `Auth`: one that says nothing holds no task for long.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Accepts followers until `shutdown`, over TLS when `tls` is given (`--cluster-tls`); each must prove it holds
/// `secret` before it is sent anything.
pub async fn serve(
    listener: TcpListener,
    log: Arc<ReplLog>,
    status: Arc<Status>,
    secret: Secret,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "replication accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (log, status, secret, shutdown) = (log.clone(), status.clone(), secret.clone(), shutdown.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut node = None;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = async {
                    let (rd, wr) = match &tls {
                        Some(tls) => {
                            let accepted = tokio::time::timeout(HANDSHAKE, tls.replication_acceptor().accept(stream))
                                .await
                                .map_err(|_| LinkError::Silent)?
                                .map_err(|e| LinkError::Tls(e.to_string()))?;
                            link::split(accepted)
                        }
                        None => link::split(stream),
                    };
                    session(rd, wr, &log, &status, &secret, &mut node).await
                } => {
                    match r {
                        Err(LinkError::Closed) => info!(%peer, node = ?node, "a follower disconnected"),
                        Err(e) => warn!(%peer, node = ?node, error = %e, "a follower's replication ended"),
                        Ok(()) => {}
                    }
                }
            }
            if let Some(n) = node {
                status.replica_gone(&n);
            }
        });
    }
}

async fn session(
    mut rd: Reader,
    mut wr: Writer,
    log: &Arc<ReplLog>,
    status: &Arc<Status>,
    secret: &Secret,
    node: &mut Option<String>,
) -> Result<(), LinkError> {
    let hello = tokio::time::timeout(HANDSHAKE, rd.next())
        .await
        .map_err(|_| LinkError::Silent)??;
    let Frame::Hello {
        node: name,
        nonce: theirs,
    } = hello
    else {
        return Err(LinkError::Unexpected("first"));
    };
    // Nothing is listed, read or registered before the peer proved it holds the secret.
    let ours = auth::nonce();
    wr.send(&Frame::Challenge {
        nonce: ours,
        proof: secret.leader_proof(&name, &theirs, &ours),
    })
    .await?;
    let answer = tokio::time::timeout(HANDSHAKE, rd.next())
        .await
        .map_err(|_| LinkError::Silent)??;
    let proven = matches!(answer, Frame::Auth { proof } if secret.check_follower(&name, &ours, &theirs, &proof));
    if !proven {
        let reason = "refused: the follower did not prove it holds the cluster's secret (--cluster-secret-file)";
        let _ = wr.send(&Frame::Refused { reason: reason.into() }).await;
        return Err(LinkError::Refused(format!("{name}: {reason}")));
    }
    *node = Some(name.clone());
    // Before anything is listed: every later change reaches the follower as an op.
    let cursor = log.head();
    status.replica_syncing(&name, cursor);
    info!(node = %name, lsn = cursor, "a follower joined; sending the file list");
    let root: PathBuf = log.root().to_path_buf();
    let listed = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || files::list(&root))
            .await
            .map_err(|e| LinkError::Io(std::io::Error::other(e)))??
    };
    let count = listed.len();
    wr.send(&Frame::FileList { files: listed }).await?;
    let Frame::Want { paths } = rd.next().await? else {
        return Err(LinkError::Unexpected("instead of want"));
    };
    let wanted = paths.len();
    for path in paths {
        let mut offset = 0u64;
        loop {
            let piece = {
                let (root, path) = (root.clone(), path.clone());
                tokio::task::spawn_blocking(move || files::read_piece(&root, &path, offset, FILE_CHUNK))
                    .await
                    .map_err(|e| LinkError::Io(std::io::Error::other(e)))?
            };
            let data = match piece {
                Ok(d) => d,
                // Gone since it was listed: its removal is in the log.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e.into()),
            };
            let last = data.len() < FILE_CHUNK;
            let n = data.len() as u64;
            wr.send(&Frame::FileData {
                path: path.clone(),
                offset,
                data: data.into(),
                last,
            })
            .await?;
            offset += n;
            if last {
                break;
            }
        }
    }
    wr.send(&Frame::SyncDone { lsn: cursor }).await?;
    info!(node = %name, files = count, sent = wanted, lsn = cursor, "full sync sent; streaming");

    // Acks come back on their own task.
    let acks = {
        let (status, name, log) = (status.clone(), name.clone(), log.clone());
        tokio::spawn(async move {
            loop {
                match rd.next().await {
                    Ok(Frame::Ack { lsn }) => {
                        status.replica_acked(&name, lsn);
                        log.follower_acked(&name, lsn);
                    }
                    Ok(Frame::Heartbeat { .. }) => {}
                    Ok(_) => return LinkError::Unexpected("from a follower"),
                    Err(e) => return e,
                }
            }
        })
    };
    let result = stream_ops(&mut wr, log, cursor).await;
    acks.abort();
    result
}

async fn stream_ops(wr: &mut Writer, log: &Arc<ReplLog>, mut next: u64) -> Result<(), LinkError> {
    let mut head = log.subscribe();
    loop {
        let ops = log
            .read(next, BATCH_BYTES)
            .map_err(|b| LinkError::Refused(format!("fell behind the replication log (oldest kept {})", b.oldest)))?;
        if ops.is_empty() {
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return Ok(()) },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    wr.send(&Frame::Heartbeat { head: next, time_ms: now_ms() }).await?;
                }
            }
            continue;
        }
        let n = ops.len() as u64;
        let ops = ops.iter().map(|o| (**o).clone()).collect();
        wr.send(&Frame::Ops { first: next, ops }).await?;
        next += n;
    }
}
