//! Test harness: a real Warren broker on port 0 with a temporary data directory, stopped on `Drop`.
//!
//! The broker runs on its own thread and runtime, so a test's runtime (and its `tokio::time::pause`) cannot
//! starve or freeze it. `restart` stops it and starts a new one on the same data directory (and port).

pub mod client;
pub mod http;
pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use warren_broker::store::DiskBudget;
use warren_broker::{Broker, CancellationToken, Config};

pub struct TestBroker {
    pub addr: SocketAddr,
    /// The admin HTTP API.
    pub admin_addr: SocketAddr,
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
        let mut config = Config {
            data_dir: self.data_dir.clone(),
            ..Config::default()
        };
        (self.adjust)(&mut config);
        let bind = if self.addr.port() == 0 {
            "127.0.0.1:0".to_string()
        } else {
            self.addr.to_string()
        };
        let std_listener = std::net::TcpListener::bind(bind).expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        self.addr = std_listener.local_addr().expect("local addr");
        config.listen = self.addr;
        let admin_bind = if self.admin_addr.port() == 0 {
            "127.0.0.1:0".to_string()
        } else {
            self.admin_addr.to_string()
        };
        let admin_listener = std::net::TcpListener::bind(admin_bind).expect("bind admin");
        admin_listener.set_nonblocking(true).expect("nonblocking");
        self.admin_addr = admin_listener.local_addr().expect("admin addr");
        config.admin_listen = self.admin_addr;
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
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let admin = tokio::net::TcpListener::from_std(admin_listener).expect("admin listener");
                warren_broker::serve_all(listener, Some(admin), broker, token)
                    .await
                    .expect("broker run");
            });
        }));
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Stops the broker and waits for it (connections get connection.close 320); the data directory stays.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.broker = None;
    }

    /// Stops, then starts a new broker on the same data directory and port, as after a clean restart.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for TestBroker {
    /// Cancels without waiting: a test's clients may live on the (blocked) test runtime and could not answer the
    /// broker's connection.close. Call `stop` to wait.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
