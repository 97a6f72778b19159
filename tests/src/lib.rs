//! Test harness: a real Warren broker on port 0 with a temporary data directory, stopped on `Drop`.
//!
//! The broker runs on its own thread and runtime, so a test's runtime (and its `tokio::time::pause`) cannot
//! starve or freeze it. `restart` stops it and starts a new one on the same data directory (and ports).
//!
//! Time: each broker reads its own clock (`warren_broker::clock`); `advance` moves it and runs a full expiry sweep,
//! so TTL, `x-expires` and delay tests never sleep. Without `advance` the broker's timer acts at each deadline in
//! real time (`tests/deadlines.rs`). The broker's runtime itself keeps real time (its sockets,
//! handshake and heartbeat timeouts would misfire under tokio's auto-advancing paused time).
//!
//! Listeners: the harness sets `config.listen`, `config.admin_listen` and `config.prometheus_listen` to
//! `[127.0.0.1:0]` before the caller's adjustment; a test that wants several listeners adds addresses there (port 0
//! for a fresh port), and one that wants no Prometheus listener empties its list. Each is bound before the broker
//! starts; `addrs` / `admin_addrs` / `prometheus_addrs` list them all, `addr` / `admin_addr` / `prometheus_addr` are
//! the first.
//!
//! TLS: a caller that sets `config.tls` and `config.amqps_listen` / `config.admin_https_listen` (port 0) gets those
//! listeners too (`amqps_addrs`, `admin_https_addrs`); the TLS files are read when the broker starts, and
//! `reload_tls` does what SIGHUP does in the binary. With `config.listen` emptied (plain AMQP off), `addr` is the
//! first AMQPS listener.

pub mod certs;
pub mod client;
pub mod cluster;
pub mod etcd;
pub mod http;
pub mod netns;
pub mod process;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use warren_broker::store::DiskBudget;
use warren_broker::tls::Tls;
use warren_broker::{Broker, CancellationToken, Config, Listeners};

pub struct TestBroker {
    /// The first AMQP listener.
    pub addr: SocketAddr,
    /// The admin HTTP API (its first listener).
    pub admin_addr: SocketAddr,
    /// Every AMQP listener (bound again on these ports after a restart).
    pub addrs: Vec<SocketAddr>,
    /// Every admin listener.
    pub admin_addrs: Vec<SocketAddr>,
    /// The Prometheus listener (its first; `None` when the test turned it off).
    pub prometheus_addr: Option<SocketAddr>,
    /// Every Prometheus listener.
    pub prometheus_addrs: Vec<SocketAddr>,
    /// The MQTT listener (its first; `None` when the test turned it off).
    pub mqtt_addr: Option<SocketAddr>,
    /// Every MQTT listener.
    pub mqtt_addrs: Vec<SocketAddr>,
    /// The STOMP listener (its first; `None` when the test turned it off).
    pub stomp_addr: Option<SocketAddr>,
    /// Every STOMP listener.
    pub stomp_addrs: Vec<SocketAddr>,
    /// Every AMQPS listener (empty without TLS).
    pub amqps_addrs: Vec<SocketAddr>,
    /// Every admin HTTPS listener (empty without TLS).
    pub admin_https_addrs: Vec<SocketAddr>,
    /// The broker's TLS state, when `config.tls` is set.
    pub tls: Option<Arc<Tls>>,
    pub broker: Option<Arc<Broker>>,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
    data_dir: PathBuf,
    adjust: Arc<dyn Fn(&mut Config) + Send + Sync>,
    budget: DiskBudget,
    _temp: Option<tempfile::TempDir>,
}

impl TestBroker {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a broker after letting the caller adjust the configuration (kept for restarts).
    pub fn start_with(adjust: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        Self::start_full(adjust, DiskBudget::default())
    }

    /// Starts a broker whose store may write at most what `budget` allows (a full disk on demand).
    pub fn start_full(adjust: impl Fn(&mut Config) + Send + Sync + 'static, budget: DiskBudget) -> Self {
        let temp = tempfile::tempdir().expect("temp data dir");
        let data_dir = temp.path().to_path_buf();
        let mut b = TestBroker {
            addr: "127.0.0.1:0".parse().expect("addr"),
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            addrs: Vec::new(),
            admin_addrs: Vec::new(),
            prometheus_addr: None,
            prometheus_addrs: Vec::new(),
            mqtt_addr: None,
            mqtt_addrs: Vec::new(),
            stomp_addr: None,
            stomp_addrs: Vec::new(),
            amqps_addrs: Vec::new(),
            admin_https_addrs: Vec::new(),
            tls: None,
            broker: None,
            shutdown: CancellationToken::new(),
            thread: None,
            data_dir,
            adjust: Arc::new(adjust),
            budget,
            _temp: Some(temp),
        };
        b.launch();
        b
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn launch(&mut self) {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut config = Config {
            data_dir: self.data_dir.clone(),
            listen: vec![any],
            admin_listen: vec![any],
            prometheus_listen: vec![any],
            mqtt_listen: vec![any],
            stomp_listen: vec![any],
            // RabbitMQ's default (50 MB), not Warren's 1 GiB: a test machine with little free disk must still run the
            // suite (the alarm tests set their own limits).
            disk_free_limit: 50 * 1000 * 1000,
            ..Config::default()
        };
        (self.adjust)(&mut config);
        assert!(
            !(config.listen.is_empty() && config.amqps_listen.is_empty()),
            "a broker needs at least one AMQP listener"
        );
        // After a restart, the same ports as before.
        let again = |before: &[SocketAddr], configured: &[SocketAddr]| -> Vec<std::net::TcpListener> {
            bind_all(if before.is_empty() { configured } else { before })
        };
        let amqp = again(&self.addrs, &config.listen);
        let admin = again(&self.admin_addrs, &config.admin_listen);
        let amqps = again(&self.amqps_addrs, &config.amqps_listen);
        let admin_https = again(&self.admin_https_addrs, &config.admin_https_listen);
        let prometheus = again(&self.prometheus_addrs, &config.prometheus_listen);
        let mqtt = again(&self.mqtt_addrs, &config.mqtt_listen);
        self.mqtt_addrs = local_addrs(&mqtt);
        self.mqtt_addr = self.mqtt_addrs.first().copied();
        config.mqtt_listen = self.mqtt_addrs.clone();
        let stomp = again(&self.stomp_addrs, &config.stomp_listen);
        self.stomp_addrs = local_addrs(&stomp);
        self.stomp_addr = self.stomp_addrs.first().copied();
        config.stomp_listen = self.stomp_addrs.clone();
        self.addrs = local_addrs(&amqp);
        self.admin_addrs = local_addrs(&admin);
        self.amqps_addrs = local_addrs(&amqps);
        self.admin_https_addrs = local_addrs(&admin_https);
        self.addr = *self
            .addrs
            .first()
            .or(self.amqps_addrs.first())
            .expect("an AMQP listener");
        self.admin_addr = *self
            .admin_addrs
            .first()
            .or(self.admin_https_addrs.first())
            .expect("an admin listener");
        config.listen = self.addrs.clone();
        config.admin_listen = self.admin_addrs.clone();
        config.amqps_listen = self.amqps_addrs.clone();
        config.admin_https_listen = self.admin_https_addrs.clone();
        self.prometheus_addrs = local_addrs(&prometheus);
        self.prometheus_addr = self.prometheus_addrs.first().copied();
        config.prometheus_listen = self.prometheus_addrs.clone();
        self.tls = config
            .tls
            .as_ref()
            .map(|t| Tls::load(t).map(Arc::new).expect("the TLS files load"));
        let tls = self.tls.clone();
        let broker = Broker::with_budget(config, self.budget.clone()).expect("open the data directory");
        self.broker = Some(broker.clone());
        self.shutdown = CancellationToken::new();
        let token = self.shutdown.clone();
        self.thread = Some(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let from_std = |ls: Vec<std::net::TcpListener>| -> Vec<tokio::net::TcpListener> {
                    ls.into_iter()
                        .map(|l| tokio::net::TcpListener::from_std(l).expect("listener"))
                        .collect()
                };
                let listeners = Listeners {
                    amqp: from_std(amqp),
                    amqps: from_std(amqps),
                    admin: from_std(admin),
                    admin_https: from_std(admin_https),
                    prometheus: from_std(prometheus),
                    mqtt: from_std(mqtt),
                    stomp: from_std(stomp),
                };
                warren_broker::serve_listeners(listeners, tls, broker, token)
                    .await
                    .expect("broker run");
            });
        }));
    }

    /// The Prometheus listener's base URL.
    pub fn prometheus_url(&self) -> String {
        format!(
            "http://{}",
            self.prometheus_addr.expect("the Prometheus listener is on")
        )
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Reads the TLS files again, as SIGHUP makes the binary do: the next handshakes use them.
    pub async fn reload_tls(&self) -> Result<(), warren_broker::tls::TlsError> {
        self.tls.as_ref().expect("a broker started with TLS").reload().await
    }

    /// The first AMQPS listener.
    pub fn amqps_addr(&self) -> SocketAddr {
        *self
            .amqps_addrs
            .first()
            .expect("a broker started with an AMQPS listener")
    }

    /// The first admin HTTPS listener.
    pub fn admin_https_addr(&self) -> SocketAddr {
        *self
            .admin_https_addrs
            .first()
            .expect("a broker started with an admin HTTPS listener")
    }

    /// Stops the broker and waits for it (connections get connection.close 320); the data directory stays.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.broker = None;
    }

    /// Lets `by` pass on the broker's clock and runs a full expiry sweep at once (message TTL, `x-expires`, delayed
    /// messages): everything that became due happens now, as the broker's timer would make it happen at each
    /// deadline: what a test does instead of sleeping for a deadline. What the test sent over AMQP must have reached
    /// the broker first (`client::sync`); `Duration::ZERO` only sweeps.
    pub fn advance(&self, by: std::time::Duration) {
        self.broker.as_ref().expect("the broker is running").advance_time(by);
    }

    /// Stops, then starts a new broker on the same data directory and port, as after a clean restart.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

/// Binds every address (non-blocking, for tokio), panicking with the address that failed.
fn bind_all(addrs: &[SocketAddr]) -> Vec<std::net::TcpListener> {
    addrs
        .iter()
        .map(|a| {
            let l = std::net::TcpListener::bind(a).unwrap_or_else(|e| panic!("bind {a}: {e}"));
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .collect()
}

fn local_addrs(listeners: &[std::net::TcpListener]) -> Vec<SocketAddr> {
    listeners.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

impl Drop for TestBroker {
    /// Cancels without waiting: a test's clients may live on the (blocked) test runtime and could not answer the
    /// broker's connection.close. Call `stop` to wait.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
