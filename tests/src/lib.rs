//! Test harness: a real Warren broker on port 0 with a temporary data directory, stopped on `Drop`.
//!
//! The broker runs on its own thread and runtime, so a test's runtime (and its `tokio::time::pause`) cannot
//! starve or freeze it, and a test that panics still shuts the broker down cleanly.

pub mod client;
pub mod raw;

use std::net::SocketAddr;
use std::thread::JoinHandle;

use warren_broker::{CancellationToken, Config};

pub struct TestBroker {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
    _data_dir: tempfile::TempDir,
}

impl TestBroker {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a broker after letting the caller adjust the configuration.
    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        adjust(&mut config);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        config.listen = addr;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                warren_broker::run(listener, config, token).await.expect("broker run");
            });
        });
        TestBroker {
            addr,
            shutdown,
            thread: Some(thread),
            _data_dir: data_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Stops the broker and waits for it (connections get connection.close 320).
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestBroker {
    /// Cancels without waiting: a test's clients may live on the (blocked) test runtime and could not answer the
    /// broker's connection.close. Call `stop` to wait.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
