//! Cluster nodes as child processes on a real etcd (`cluster*.rs`): each node gets its own loopback ports (or its
//! own network namespace, `netns.rs`) and data directory under a common parent, and is SIGKILLed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::etcd::Etcd;
use crate::http::try_request;
use crate::process::{free_port, BrokerProcess};

pub struct Node {
    pub name: String,
    pub amqp: u16,
    pub admin: u16,
    pub stomp: u16,
    pub mqtt: u16,
    pub replication: u16,
    pub data: PathBuf,
    pub process: Option<BrokerProcess>,
    bin: String,
    cluster_url: String,
    ttl_s: u64,
    extra: Vec<String>,
    /// Where clients and the test reach it (loopback, or its namespace's client address).
    pub host: String,
    /// In a network namespace: its name, and the address its replication listens on.
    netns: Option<(String, String)>,
}

impl Node {
    /// Starts node `name` of the cluster on `etcd` with a lease of `ttl_s` seconds, its data in `parent/name`.
    /// `bin` is the broker binary (`env!("CARGO_BIN_EXE_warren-test-broker")` in a test).
    pub fn start(bin: &str, name: &str, etcd: &Etcd, parent: &Path, ttl_s: u64) -> Node {
        Self::start_with(bin, name, etcd, parent, ttl_s, &[])
    }

    /// [`Node::start`], with `extra` arguments (kept for restarts).
    pub fn start_with(bin: &str, name: &str, etcd: &Etcd, parent: &Path, ttl_s: u64, extra: &[&str]) -> Node {
        let mut node = Node {
            name: name.to_string(),
            amqp: free_port(),
            admin: free_port(),
            stomp: free_port(),
            mqtt: free_port(),
            replication: free_port(),
            data: parent.join(name),
            process: None,
            bin: bin.to_string(),
            cluster_url: etcd.cluster_url(),
            ttl_s,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            host: "127.0.0.1".into(),
            netns: None,
        };
        node.restart();
        node
    }

    /// Starts node `name` inside network namespace `ns`, which reaches etcd at `etcd_url` (`etcd://…`): clients
    /// and the test reach it at `client_ip`, other nodes replicate from `cluster_ip`.
    pub fn start_in_netns(
        bin: &str,
        name: &str,
        (ns, client_ip, cluster_ip): (&str, &str, &str),
        etcd_url: &str,
        parent: &Path,
        ttl_s: u64,
    ) -> Node {
        // The test reaches the node from outside its namespace, so guest may log in from there; replication
        // beyond loopback needs the cluster's secret.
        let (config, secret) = (parent.join(format!("{name}.toml")), parent.join("cluster-secret"));
        std::fs::write(&secret, "netns cluster\n").expect("write the cluster's secret");
        std::fs::write(
            &config,
            format!(
                "loopback_users = []\ncluster_secret_file = {:?}\n",
                secret.display().to_string()
            ),
        )
        .expect("write the node's config");
        let mut node = Node {
            name: name.to_string(),
            amqp: 5672,
            admin: 15672,
            stomp: 61613,
            mqtt: 1883,
            replication: 5679,
            data: parent.join(name),
            process: None,
            bin: bin.to_string(),
            cluster_url: etcd_url.to_string(),
            ttl_s,
            extra: vec!["--config".into(), config.display().to_string()],
            host: client_ip.to_string(),
            netns: Some((ns.to_string(), cluster_ip.to_string())),
        };
        node.restart();
        node
    }

    /// Starts the node's process again (after a kill), on the same ports and data directory.
    pub fn restart(&mut self) {
        let (mut cmd, bind, cluster) = match &self.netns {
            Some((ns, cluster_ip)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &self.bin]);
                c.args(["--cluster-advertise", &format!("{}:{}", self.host, self.amqp)]);
                (c, "0.0.0.0".to_string(), cluster_ip.clone())
            }
            None => (Command::new(&self.bin), self.host.clone(), self.host.clone()),
        };
        cmd.args(["--cluster", &self.cluster_url, "--node-name", &self.name])
            .args(["--cluster-lease-ttl", &self.ttl_s.to_string()])
            .args(["--cluster-listen", &format!("{cluster}:{}", self.replication)])
            .args(["--listen", &format!("{bind}:{}", self.amqp)])
            .args(["--admin-listen", &format!("{bind}:{}", self.admin)])
            .args(["--stomp-listen", &format!("{bind}:{}", self.stomp)])
            .args(["--mqtt-listen", &format!("{bind}:{}", self.mqtt)])
            .args([
                "--prometheus-listen",
                "none",
                "--log",
                "warn,warren_broker::cluster=info",
            ])
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.extra)
            .stdout(self.log_file())
            .stderr(self.log_file());
        self.process = Some(BrokerProcess::spawn_at(cmd, self.admin_addr()));
    }

    /// The node's log (every run of it, appended), beside its data directory.
    pub fn log_path(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// The last `lines` lines of the node's log, for a failing test to print.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.0.id())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host.parse().expect("an IP address"), self.admin)
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}:{}/%2f", self.host, self.amqp)
    }

    /// `GET /api/cluster` on this node; `None` while its admin port is closed (a node being promoted closes its
    /// follower listeners and opens the leader's).
    pub fn try_cluster(&self) -> Option<serde_json::Value> {
        let (status, body) = try_request(self.admin_addr(), "GET", "/api/cluster", "guest:guest", "")?;
        (status == 200).then_some(body)
    }

    pub fn cluster(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(c) = self.try_cluster() {
                return c;
            }
            assert!(Instant::now() < deadline, "{}: no /api/cluster", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts one node per name ([`Node::start`]), each with its data in `parent/<name>`.
pub fn start_nodes(bin: &str, names: &[&str], etcd: &Etcd, parent: &Path, ttl_s: u64) -> Vec<Node> {
    names.iter().map(|n| Node::start(bin, n, etcd, parent, ttl_s)).collect()
}

/// Waits until `leader` lists `count` registered nodes (it reads them from etcd about every lease/5).
pub fn await_registered(leader: &Node, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while leader.cluster()["nodes"].as_array().map(Vec::len) != Some(count) {
        assert!(Instant::now() < deadline, "every node registers: {}", leader.cluster());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until exactly one of the live `nodes` says it leads and every live node names it; returns its index.
pub fn await_leader(nodes: &[Node], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let live: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].process.is_some()).collect();
        let views: Vec<Option<serde_json::Value>> = live.iter().map(|&i| nodes[i].try_cluster()).collect();
        let leaders: Vec<usize> = live
            .iter()
            .zip(&views)
            .filter(|(_, v)| v.as_ref().is_some_and(|v| v["role"] == "leader"))
            .map(|(&i, _)| i)
            .collect();
        if let [l] = leaders[..] {
            let name = nodes[l].name.as_str();
            if views
                .iter()
                .all(|v| v.as_ref().is_some_and(|v| v["leader"]["name"] == name))
            {
                return l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no single agreed leader within {within:?}: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the leader reports `follower` streaming with nothing left to ack (the leader idle meanwhile), and
/// names it in the in-sync set it wrote to etcd.
pub fn await_in_sync(leader: &Node, follower: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let c = leader.cluster();
        let caught_up = c["replicas"].as_array().is_some_and(|rs| {
            rs.iter()
                .any(|r| r["node"] == follower && r["state"] == "streaming" && r["lag_ops"] == 0)
        });
        let named = c["in_sync"].as_array().is_some_and(|m| m.iter().any(|n| n == follower));
        if caught_up && named {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{follower} not in sync within {within:?}: {c}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects to whichever of `urls` leads (followers refuse), retrying for up to `within`.
pub async fn connect_leader(urls: &[String], within: Duration) -> Option<lapin::Connection> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for url in urls {
            if let Ok(c) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await {
                return Some(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The replicated files of a data directory: (path, length, sha256).
pub fn files_of(dir: &Path) -> Vec<(String, u64, [u8; 32])> {
    warren_broker::cluster::files::list(dir)
        .expect("list")
        .into_iter()
        .map(|e| (e.path, e.len, e.sha256))
        .collect()
}

/// Waits until the two data directories hold the same replicated files; returns them.
pub fn await_equal(a: &Path, b: &Path, within: Duration) -> Vec<(String, u64, [u8; 32])> {
    let deadline = Instant::now() + within;
    loop {
        let (fa, fb) = (files_of(a), files_of(b));
        if fa == fb {
            return fa;
        }
        if Instant::now() > deadline {
            let names =
                |f: &[(String, u64, [u8; 32])]| f.iter().map(|x| format!("{} {}", x.0, x.1)).collect::<Vec<_>>();
            panic!("the copies differ:\n{:#?}\n{:#?}", names(&fa), names(&fb));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
