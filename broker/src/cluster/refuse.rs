//! What a follower answers clients: every protocol's refusal naming the leader, so a client with a list of hosts
//! moves on, and an operator sees where to go.
//!
//! - AMQP: `connection.start`, then (after the client's start-ok) `connection.close 320 CONNECTION_FORCED "not the
//!   leader; leader is HOST:PORT"`, as the issue asks.
//! - MQTT: CONNACK "server unavailable" (MQTT 5: with the reason text).
//! - STOMP: an ERROR frame.
//! - The admin API and Prometheus listeners: `GET /api/cluster` (this node's view, as on the leader), and 503 with a
//!   JSON body naming the leader for everything else.
//! - AMQPS and HTTPS listeners are closed while following (a TLS client then fails fast instead of hanging).
//!
//! Nothing here opens the data directory; the follower's refusals stop (and the listeners close) when it is elected.

use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::FieldTable;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Status;
use crate::amqp::codec::{encode_method, PROTOCOL_HEADER};
use crate::amqp::error::CONNECTION_FORCED;
use crate::Listeners;

/// How long a refused client has for each step.
const STEP: Duration = Duration::from_secs(5);

/// The refusal text: where the leader is, when known.
fn refusal(status: &Status) -> String {
    match status.leader() {
        Some(l) => format!("not the leader; leader is {}", l.amqp),
        None => "not the leader; no leader is elected yet".to_string(),
    }
}

/// Serves refusals on `listeners` until `stop`; returns once every listener is closed.
pub async fn serve(listeners: Listeners, status: Arc<Status>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    let Listeners {
        amqp,
        amqps: _,
        admin,
        admin_https: _,
        prometheus,
        mqtt,
        stomp,
    } = listeners;
    for (kind, list) in [(Kind::Amqp, amqp), (Kind::Mqtt, mqtt), (Kind::Stomp, stomp)] {
        for l in list {
            tracker.spawn(accept(l, kind, status.clone(), stop.clone()));
        }
    }
    let app = Router::new()
        .route("/api/cluster", get(cluster))
        .fallback(elsewhere)
        .with_state(status.clone());
    for l in admin.into_iter().chain(prometheus) {
        let (app, stop) = (app.clone(), stop.clone());
        tracker.spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[derive(Clone, Copy)]
enum Kind {
    Amqp,
    Mqtt,
    Stomp,
}

async fn accept(l: TcpListener, kind: Kind, status: Arc<Status>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = l.accept() => match r {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let text = refusal(&status);
        // Not tracked: a client being refused holds no listener, and must not delay an election's promotion.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(STEP * 2, refuse(stream, kind, text)).await;
        });
    }
}

async fn refuse(mut s: TcpStream, kind: Kind, text: String) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::new();
    match kind {
        Kind::Amqp => {
            while buf.len() < PROTOCOL_HEADER.len() {
                if s.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            encode_method(
                &mut out,
                0,
                AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                    version_major: 0,
                    version_minor: 9,
                    server_properties: FieldTable::default(),
                    mechanisms: "PLAIN AMQPLAIN".into(),
                    locales: "en_US".into(),
                })),
            );
            s.write_all(&out).await?;
            out.clear();
            // The client's start-ok (whatever it says), then the refusal.
            buf.clear();
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            encode_method(
                &mut out,
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: CONNECTION_FORCED,
                    reply_text: format!("CONNECTION_FORCED - {text}").as_str().into(),
                    class_id: 0,
                    method_id: 0,
                })),
            );
        }
        Kind::Mqtt => {
            use crate::mqtt::codec::{read, write, ConnCode, In, Out, Version};
            let version = loop {
                match read(&mut buf, None, 65_536) {
                    Ok(Some(In::Connect(c))) => break c.version,
                    Ok(Some(_)) | Err(_) => return Ok(()),
                    Ok(None) => {}
                }
                if s.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            };
            let ack = Out::ConnAck {
                session_present: false,
                code: ConnCode::Unavailable,
                assigned_client_id: None,
                receive_maximum: None,
                topic_alias_max: None,
                reason: (version == Version::V5).then_some(text),
            };
            let _ = write(&ack, version, &mut out);
        }
        Kind::Stomp => {
            use crate::stomp::codec::{decode, encode, Decoded, Frame, Limits};
            let limits = Limits {
                max_header_bytes: 8 * 1024,
                max_headers: 32,
                max_body: 0,
            };
            loop {
                match decode(&mut buf, &limits) {
                    Ok(Some(Decoded::Frame(_))) | Err(_) => break,
                    Ok(Some(Decoded::HeartBeat)) | Ok(None) => {}
                }
                if s.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            let mut f = Frame::new("ERROR")
                .header("message", "Not the leader")
                .header("content-type", "text/plain");
            f.body = text.into_bytes().into();
            encode(&f, &mut out);
        }
    }
    s.write_all(&out).await?;
    // Let the client read it (and answer close-ok) before the socket goes.
    let _ = tokio::time::timeout(STEP, s.read_buf(&mut buf)).await;
    Ok(())
}

async fn cluster(axum::extract::State(status): axum::extract::State<Arc<Status>>) -> impl IntoResponse {
    Json(status.summary())
}

async fn elsewhere(axum::extract::State(status): axum::extract::State<Arc<Status>>) -> impl IntoResponse {
    let leader = status.leader();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({
            "error": "not_leader",
            "reason": refusal(&status),
            "leader": leader,
        })),
    )
}
