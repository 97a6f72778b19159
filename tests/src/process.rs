//! Brokers as child processes, for the tests that `kill -9` one (`crash.rs`, `mqtt.rs`, `stomp.rs`, `tls.rs`): a
//! free port, and a child that is SIGKILLed when dropped, so a failing assertion never leaves a broker running.
//!
//! The binary is `warren-test-broker` (built in this crate, so its path is `env!("CARGO_BIN_EXE_warren-test-broker")`
//! in an integration test: each test passes it in).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A broker child process, SIGKILLed when dropped.
pub struct BrokerProcess(pub Child);

impl BrokerProcess {
    /// Spawns `command` and waits (up to 20 s) until `port` on loopback accepts connections.
    pub fn spawn(command: Command, port: u16) -> Self {
        Self::spawn_at(command, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Spawns `command` and waits (up to 20 s) until `addr` accepts connections (a broker in a network namespace is
    /// reached on its namespace's address).
    pub fn spawn_at(mut command: Command, addr: std::net::SocketAddr) -> Self {
        let child = BrokerProcess(command.spawn().expect("spawn the broker"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "broker did not come up on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns the test broker binary `bin` on `data` with AMQP on `amqp` and one more protocol listener (`flag`, e.g.
/// `--mqtt-listen`) on `port`, quiet, and waits until that listener accepts connections.
pub fn spawn_with_listener(bin: &str, amqp: u16, flag: &str, port: u16, data: &Path) -> BrokerProcess {
    let mut cmd = Command::new(bin);
    cmd.args(["--listen", &format!("127.0.0.1:{amqp}")])
        .args([flag, &format!("127.0.0.1:{port}")])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--prometheus-listen",
            "none",
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    BrokerProcess::spawn(cmd, port)
}
