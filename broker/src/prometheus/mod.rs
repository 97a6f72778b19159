//! The Prometheus listener, as RabbitMQ's `rabbitmq_prometheus` plugin offers it: its own port (default
//! 127.0.0.1:15692, `--prometheus-listen`), `GET /metrics` (aggregated) and `GET /metrics/per-object` (per queue),
//! RabbitMQ's metric names and labels, and no auth unless `--prometheus-auth` asks for it (then any user with a
//! management tag, checked as the admin API checks it).
//!
//! Format: the Prometheus text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`, what RabbitMQ serves and
//! every Prometheus 2.x scraper reads) unless the scraper's `Accept` asks for OpenMetrics
//! (`application/openmetrics-text`), which Prometheus does when it prefers it; both are written by the
//! `prometheus-client` crate's encoders from one [`collect::Scrape`] collector.
//!
//! Invariants: the connections are served by the admin API's server code (`admin::server::serve_router`: the same
//! timeouts and a cap of their own); a scrape reads the broker's state when it is encoded, on a blocking thread (a
//! scrape of 10,000 queues must not hold an async worker), and holds no lock across an `.await`. Errors are JSON
//! `{error, reason}` like the admin API's.

pub mod collect;
pub mod process;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::Error;
use crate::broker::Broker;
use collect::{Scrape, View};

/// The RabbitMQ version whose metric names and labels Warren follows (`rabbitmq_version` in
/// `rabbitmq_build_info`): the same release as the definitions format.
pub const RABBITMQ_VERSION: &str = crate::admin::RABBITMQ_VERSION;
/// `prometheus_client_version` in `rabbitmq_build_info`: the Rust client that encodes the output.
pub const PROMETHEUS_CLIENT_VERSION: &str = "prometheus-client 0.26";
/// `erlang_version` in `rabbitmq_build_info`: Warren runs no Erlang VM, so a placeholder that says so.
pub const ERLANG_VERSION: &str = "none";
/// The most Prometheus connections served at once (scrapers are few; each holds a socket).
pub const MAX_CONNECTIONS: usize = 16;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The listener's routes for one broker, without a socket (tests drive it with `oneshot`).
pub fn app(broker: Arc<Broker>) -> Router {
    let router = Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .fallback(|| async {
            Error::not_found("no such endpoint (this listener serves /metrics and /metrics/per-object)")
        });
    let router = if broker.config.prometheus_auth {
        router.layer(middleware::from_fn_with_state(broker.clone(), authenticate))
    } else {
        router
    };
    router.with_state(broker)
}

/// Serves [`app`] on every listener until `shutdown` is cancelled.
pub async fn serve(
    listeners: Vec<TcpListener>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    max_connections: usize,
) -> std::io::Result<()> {
    let idle = broker.config.admin_idle_timeout;
    crate::admin::server::serve_router(
        listeners,
        None,
        app(broker),
        idle,
        shutdown,
        max_connections,
        "Prometheus metrics",
    )
    .await
}

/// With `--prometheus-auth`: HTTP basic auth, a user with a management tag.
async fn authenticate(State(broker): State<Arc<Broker>>, req: Request, next: Next) -> Response {
    match crate::admin::management_caller(&broker, &req) {
        Ok(_) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn aggregated(State(b): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    scrape(b, View::Aggregated, &headers).await
}

async fn per_object(State(b): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    scrape(b, View::PerObject, &headers).await
}

/// Encodes one view in the format the scraper asked for.
async fn scrape(broker: Arc<Broker>, view: View, headers: &HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let encoded = tokio::task::spawn_blocking(move || encode(broker, view, openmetrics)).await;
    match encoded {
        Ok(Ok(body)) => {
            let content_type = if openmetrics {
                OPENMETRICS
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(Err(_)) | Err(_) => Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the metrics could not be encoded",
        )
        .into_response(),
    }
}

/// One view as text: OpenMetrics (ending in `# EOF`) or the Prometheus text format 0.0.4.
pub fn encode(broker: Arc<Broker>, view: View, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { broker, view }));
    let mut out = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    }
    Ok(out)
}

/// This node's name, as RabbitMQ spells its own (`rabbit@HOST`): `warren@HOST`.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("warren@{host}")
}

/// A cluster id that stays the same across restarts of this broker on this data directory (RabbitMQ keeps a
/// random one in its database; Warren derives one from the node name and the data directory's path).
pub fn cluster_permanent_id(b: &Broker, node: &str) -> String {
    use sha2::Digest;
    let dir = std::fs::canonicalize(&b.config.data_dir).unwrap_or_else(|_| b.config.data_dir.clone());
    let mut h = sha2::Sha256::new();
    h.update(node.as_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("warren-cluster-id-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::vhost::QueueDeclare;

    fn broker(dir: &std::path::Path) -> Arc<Broker> {
        Broker::new(Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        })
        .expect("broker")
    }

    fn declare(b: &Broker, name: &str) {
        let table = amq_protocol::types::FieldTable::default();
        b.vhost("/")
            .expect("default vhost")
            .declare_queue(&QueueDeclare {
                name,
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                arguments: &table,
                connection_id: 1,
            })
            .expect("declare");
    }

    /// A queue name may hold anything a short string can: quotes, backslashes and newlines are escaped in labels.
    #[test]
    fn queue_names_are_escaped_in_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        declare(&b, "odd \"name\" \\ with\nnewline");
        let text = encode(b.clone(), View::PerObject, false).expect("encode");
        assert!(
            text.contains(r#"rabbitmq_queue_messages_ready{vhost="/",queue="odd \"name\" \\ with\nnewline"} 0"#),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let om = encode(b, View::PerObject, true).expect("encode");
        assert!(om.ends_with("# EOF\n"));
    }

    /// Declares, redeclares and deletes are counted; the aggregated view has one unlabelled series per name.
    #[test]
    fn queue_churn_and_totals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = broker(dir.path());
        declare(&b, "a");
        declare(&b, "a");
        declare(&b, "b");
        let v = b.vhost("/").expect("vhost");
        v.delete_queue("b", false, false, 1).expect("delete");
        let text = encode(b, View::Aggregated, false).expect("encode");
        for line in [
            "rabbitmq_queues_declared_total 3\n",
            "rabbitmq_queues_created_total 2\n",
            "rabbitmq_queues_deleted_total 1\n",
            "rabbitmq_queues 1\n",
            "rabbitmq_queue_messages_ready 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains("vhost="), "no per-queue labels in the aggregated view");
    }
}
