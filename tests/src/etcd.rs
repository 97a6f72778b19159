//! A real etcd for the cluster tests: Debian's `etcd-server` (`scripts/test` installs it where missing), started on
//! free loopback ports with a temporary data directory, killed when dropped. Nothing is mocked.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits (up to 20 s) until its client port accepts connections.
    pub fn start() -> Self {
        Self::start_on(Command::new("etcd"), "127.0.0.1", free_port(), free_port())
    }

    /// Starts etcd inside network namespace `ns`, on `ip` (the namespace's address), ports 2379 and 2380.
    pub fn start_in_netns(ns: &str, ip: &str) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "etcd"]);
        Self::start_on(cmd, ip, 2379, 2380)
    }

    fn start_on(mut cmd: Command, ip: &str, client: u16, peer: u16) -> Self {
        let dir = tempfile::tempdir().expect("etcd data dir");
        let url = format!("http://{ip}:{client}");
        let peer_url = format!("http://{ip}:{peer}");
        let child = cmd
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (Debian's etcd-server package; scripts/test installs it)");
        let etcd = Etcd { child, url, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = std::net::SocketAddr::new(ip.parse().expect("an IP address"), client);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        etcd
    }

    /// The `--cluster` value for a Warren node.
    pub fn cluster_url(&self) -> String {
        self.url.replacen("http://", "etcd://", 1)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
