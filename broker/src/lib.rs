//! Warren: a lightweight, persistent AMQP 0-9-1 message broker.
//!
//! The binary (`main.rs`) only parses configuration and calls [`run`]; tests and benchmarks call [`run`] on a
//! listener bound to port 0. See `ARCHITECTURE.md` for the path of a message through these modules.

pub mod admin;
pub mod alarm;
pub mod alerts;
pub mod amqp;
pub mod args;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod counters;
pub mod message;
pub mod mqtt;
pub mod outbox;
pub mod policy;
pub mod prometheus;
pub mod quarantine;
pub mod queue;
pub mod reload;
pub mod routing;
pub mod server;
pub mod stomp;
pub mod store;
pub mod stream;
pub mod timer;
pub mod tls;
pub mod trace;
pub mod vhost;

use std::sync::Arc;

pub use broker::Broker;
pub use config::Config;
use tokio::net::TcpListener;
pub use tokio_util::sync::CancellationToken;

/// Why the broker could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Definitions(String),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("invalid --log '{0}': {1}")]
    LogFilter(String, tracing_subscriber::filter::ParseError),
}

/// Installs the process's log subscriber as `config` asks: its `--log` filter, and text (coloured only when stdout
/// is a terminal and `NO_COLOR` is unset) or JSON lines. Binaries call it once, before `launch`.
pub fn init_logs(config: &Config) -> Result<(), RunError> {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).map_err(|e| RunError::LogFilter(config.log.clone(), e))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        config::LogFormat::Json => logs.json().init(),
        config::LogFormat::Text => logs
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    Ok(())
}

/// Every listener a broker serves, already bound (port 0 in tests). TLS listeners need a [`tls::Tls`].
#[derive(Debug, Default)]
pub struct Listeners {
    /// Plain AMQP.
    pub amqp: Vec<TcpListener>,
    /// AMQP over TLS.
    pub amqps: Vec<TcpListener>,
    /// The admin API over HTTP.
    pub admin: Vec<TcpListener>,
    /// The admin API over HTTPS.
    pub admin_https: Vec<TcpListener>,
    /// Prometheus metrics (plain HTTP, as RabbitMQ's plugin by default).
    pub prometheus: Vec<TcpListener>,
    /// MQTT 3.1.1 and 5.0.
    pub mqtt: Vec<TcpListener>,
    /// STOMP 1.0, 1.1 and 1.2.
    pub stomp: Vec<TcpListener>,
}

/// Opens the data directory, recovers, and serves AMQP on an already-bound listener until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let broker = Broker::new(config)?;
    serve(listener, broker, shutdown).await
}

/// Runs the broker as the binary does: reads the TLS files, builds the runtime `config.threads` asks for, opens and
/// recovers the data directory, listens on every `config.listen`, `config.amqps_listen`, `config.admin_listen`,
/// `config.admin_https_listen` and `config.prometheus_listen` address, and serves until SIGINT or SIGTERM (SIGHUP
/// reloads the TLS files). Blocks until shut down.
pub fn launch(config: Config) -> Result<(), RunError> {
    // Bad certificate or key files stop the broker before it touches its data directory.
    let tls = config.tls.as_ref().map(tls::Tls::load).transpose()?.map(Arc::new);
    raise_open_file_limit();
    let runtime = match config.threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        if config.cluster.is_some() {
            cluster::run(config, tls, shutdown).await?;
        } else {
            start(config, tls, shutdown).await?;
        }
        tracing::info!("Warren stopped");
        Ok(())
    })
}

/// Opens and recovers the data directory, binds every listener of `config`, and serves until `shutdown` (what a
/// single node does at start, and what a cluster node does once it is elected leader).
pub async fn start(config: Config, tls: Option<Arc<tls::Tls>>, shutdown: CancellationToken) -> Result<(), RunError> {
    start_with(config, tls, shutdown, |_| {}).await
}

/// [`start`], with `prepare` run on the broker before it serves (a cluster leader hands it its status).
pub async fn start_with(
    config: Config,
    tls: Option<Arc<tls::Tls>>,
    shutdown: CancellationToken,
    prepare: impl FnOnce(&Arc<Broker>),
) -> Result<(), RunError> {
    let broker = Broker::new(config)?;
    prepare(&broker);
    if let Some(path) = &broker.config.load_definitions {
        let loaded = admin::definitions::load_file(&broker, path).map_err(RunError::Definitions)?;
        tracing::info!(file = %path.display(), loaded = %loaded, "loaded definitions (--load-definitions)");
    }
    let listeners = bind_listeners(&broker.config).await?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %broker.config.data_dir.display(), "starting Warren");
    tokio::spawn(reload_on_sighup(broker.clone(), tls.clone(), shutdown.clone()));
    serve_listeners(listeners, tls, broker, shutdown).await
}

/// Binds every listener `c` names.
pub async fn bind_listeners(c: &Config) -> std::io::Result<Listeners> {
    Ok(Listeners {
        amqp: bind_all(&c.listen, "AMQP (is another broker running?)").await?,
        amqps: bind_all(&c.amqps_listen, "AMQPS (is another broker running?)").await?,
        admin: bind_all(&c.admin_listen, "the admin API").await?,
        admin_https: bind_all(&c.admin_https_listen, "the admin API over HTTPS").await?,
        prometheus: bind_all(&c.prometheus_listen, "Prometheus metrics").await?,
        mqtt: bind_all(
            &c.mqtt_listen,
            "MQTT (is another MQTT broker running? --mqtt-listen none turns it off)",
        )
        .await?,
        stomp: bind_all(
            &c.stomp_listen,
            "STOMP (is another STOMP broker running? --stomp-listen none turns it off)",
        )
        .await?,
    })
}

/// Binds every address, or fails naming the one that could not be bound.
async fn bind_all(addrs: &[std::net::SocketAddr], what: &str) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} for {what}: {e}")))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Each durable queue that holds messages keeps two files open, and each connection a socket: the soft limit on
/// open files (often 1024) is raised to the hard limit, as RabbitMQ's packages do with `ulimit -n`.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 4096 => tracing::warn!(
            limit = n,
            "the open-file limit is low: durable queues with messages and connections may run out (raise `ulimit -Hn`)"
        ),
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn signal_shutdown(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let ctrl_c = tokio::signal::ctrl_c();
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// SIGHUP reloads the config file's vhosts, users, permissions and policies (`reload`), when the broker was started
/// with one, and the TLS certificate, key and CA files, when TLS is on. A failed reload keeps what was in force.
async fn reload_on_sighup(broker: Arc<Broker>, tls: Option<Arc<tls::Tls>>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: nothing will be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            s = hup.recv() => if s.is_none() { return },
        }
        if let Some(path) = broker.config.config_file.clone() {
            let b = broker.clone();
            match tokio::task::spawn_blocking(move || b.reload_config()).await {
                Ok(Ok(done)) => tracing::info!(file = %path.display(), %done, "SIGHUP: config file reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "SIGHUP: config file not reloaded; the previous definitions stay in force")
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: config file reload failed"),
            }
        }
        if let Some(tls) = &tls {
            match tls.reload().await {
                Ok(()) => tracing::info!(cert = %tls.config().cert.display(), "SIGHUP: TLS certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; the previous certificates stay in use")
                }
            }
        }
    }
}

/// Serves an already-built broker's AMQP listener (tests keep a handle on the broker).
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) -> Result<(), RunError> {
    let caps = server::ConnectionCaps::for_config(&broker.config);
    Ok(server::run(vec![listener], None, broker, shutdown, caps.amqp).await?)
}

/// Serves AMQP on every listener in `amqp`, the admin API on every listener in `admin` (none: no admin API) and
/// Prometheus metrics on every listener in `prometheus` (none: no metrics listener), until `shutdown` is cancelled.
/// The servers' connection caps come from the open-file limit ([`server::ConnectionCaps`]); the Prometheus
/// listener's few connections come out of the admin API's share.
pub async fn serve_all(
    amqp: Vec<TcpListener>,
    admin: Vec<TcpListener>,
    prometheus: Vec<TcpListener>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let listeners = Listeners {
        amqp,
        admin,
        prometheus,
        ..Listeners::default()
    };
    serve_listeners(listeners, None, broker, shutdown).await
}

/// Serves every listener in `listeners` (the TLS ones with `tls`, whose [`tls::Tls::reload`] takes effect on the
/// next handshake) until `shutdown` is cancelled. TLS listeners without `tls` are an error.
pub async fn serve_listeners(
    listeners: Listeners,
    tls: Option<Arc<tls::Tls>>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let with_tls = |l: Vec<TcpListener>| -> Result<Option<tls::TlsListeners>, RunError> {
        match (&tls, l.is_empty()) {
            (_, true) => Ok(None),
            (Some(tls), false) => Ok(Some(tls::TlsListeners {
                listeners: l,
                tls: tls.clone(),
            })),
            (None, false) => Err(RunError::Tls(tls::TlsError::Setup(
                "TLS listeners need a TLS configuration (--tls-cert and --tls-key)".into(),
            ))),
        }
    };
    let amqps = with_tls(listeners.amqps)?;
    let admin_https = with_tls(listeners.admin_https)?;
    let caps = server::ConnectionCaps::for_config(&broker.config);
    let prometheus_cap = (caps.admin / 4).clamp(1, prometheus::MAX_CONNECTIONS);
    let admin_cap = match listeners.prometheus.is_empty() {
        true => caps.admin,
        false => caps.admin.saturating_sub(prometheus_cap).max(1),
    };
    let prometheus_task = (!listeners.prometheus.is_empty()).then(|| {
        tokio::spawn(prometheus::serve(
            listeners.prometheus,
            broker.clone(),
            shutdown.clone(),
            prometheus_cap,
        ))
    });
    let admin_task = (!listeners.admin.is_empty() || admin_https.is_some()).then(|| {
        tokio::spawn(admin::server::serve(
            listeners.admin,
            admin_https,
            broker.clone(),
            shutdown.clone(),
            admin_cap,
        ))
    });
    let mqtt_task = if listeners.mqtt.is_empty() {
        None
    } else {
        let mqtt = mqtt::Mqtt::open(&broker)?;
        Some(tokio::spawn(mqtt::run(
            listeners.mqtt,
            broker.clone(),
            mqtt,
            shutdown.clone(),
            caps.amqp,
        )))
    };
    let stomp_task = (!listeners.stomp.is_empty())
        .then(|| tokio::spawn(stomp::run(listeners.stomp, broker.clone(), shutdown.clone(), caps.amqp)));
    let result = server::run(listeners.amqp, amqps, broker, shutdown, caps.amqp).await;
    for (name, task) in [("MQTT", mqtt_task), ("STOMP", stomp_task)] {
        let Some(t) = task else { continue };
        match t.await {
            Ok(Err(e)) => tracing::error!(error = %e, "{name} listener failed"),
            Err(e) => tracing::error!(error = %e, "{name} listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(t) = admin_task {
        match t.await {
            Ok(Err(e)) => tracing::error!(error = %e, "admin API failed"),
            Err(e) => tracing::error!(error = %e, "admin API task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(t) = prometheus_task {
        match t.await {
            Ok(Err(e)) => tracing::error!(error = %e, "Prometheus listener failed"),
            Err(e) => tracing::error!(error = %e, "Prometheus listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    Ok(result?)
}
