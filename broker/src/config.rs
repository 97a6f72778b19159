//! Broker configuration: command-line flags, `WARREN_*` environment variables, and an optional TOML file.
//!
//! Precedence, highest first: flag, environment variable, config file, built-in default. The flag names
//! (`--listen`, `--data-dir`, `--config`, `--log`) are a stable interface that scripts and operators depend on.
//!
//! Listeners: `listen`, `admin_listen`, `amqps_listen`, `admin_https_listen` and `prometheus_listen` may each be
//! given several times (`--listen A --listen B`), as a comma-separated list in its environment variable, or as a
//! string or a list in the file; a list from a higher-precedence source replaces a lower one rather than adding to
//! it. `none` (as RabbitMQ's `listeners.tcp = none`) turns plain AMQP, the plain admin API or the Prometheus
//! listener off; the Prometheus listener also takes an empty value (`--prometheus-listen ''`,
//! `WARREN_PROMETHEUS_LISTEN=`, `prometheus_listen = ""` or `[]`), its first spelling for off.
//!
//! Invariants: the broker has at least one AMQP listener (plain or TLS) and at least one admin listener (HTTP or
//! HTTPS), while `prometheus_listen` may be empty (no Prometheus listener); `none` or an empty value is never given
//! beside addresses; TLS listeners exist only with a TLS configuration (`tls`), and `amqps_listen` defaults to
//! 127.0.0.1:5671 when a certificate is given; `tls_fail_if_no_peer_cert` needs `tls_verify_peer`, which needs
//! `tls_ca`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::alarm::{ByteCount, Watermark, DEFAULT_DISK_FREE_LIMIT};
use crate::policy::{Policy, PolicyConfig};
use crate::store::FsyncMode;
use crate::tls::TlsConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5672";
/// RabbitMQ's `rabbitmq_prometheus` port.
pub const DEFAULT_PROMETHEUS_LISTEN: &str = "127.0.0.1:15692";
/// The AMQPS listener when a certificate is given and no `--amqps-listen` (RabbitMQ's port).
pub const DEFAULT_AMQPS_LISTEN: &str = "127.0.0.1:5671";

/// One `--listen` / `--admin-listen` value: an address, or `none` for no plain listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    Addr(SocketAddr),
    None,
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(ListenAddr::None);
        }
        s.trim()
            .parse()
            .map(ListenAddr::Addr)
            .map_err(|e| format!("'{s}' is not an address like 127.0.0.1:5672 or none: {e}"))
    }
}

/// One `--prometheus-listen` value: as a `ListenAddr`, where an empty value is `none` too.
fn parse_prometheus_listen(s: &str) -> Result<ListenAddr, String> {
    if s.trim().is_empty() {
        Ok(ListenAddr::None)
    } else {
        s.parse()
    }
}

/// The addresses of a flag's values; `none` (alone) gives no address.
fn listen_addrs(what: &'static str, values: Vec<ListenAddr>) -> Result<Vec<SocketAddr>, ConfigError> {
    let addrs: Vec<SocketAddr> = values
        .iter()
        .filter_map(|v| match v {
            ListenAddr::Addr(a) => Some(*a),
            ListenAddr::None => None,
        })
        .collect();
    if addrs.len() != values.len() && !addrs.is_empty() {
        return Err(ConfigError::NoneWithAddresses(what));
    }
    Ok(addrs)
}
/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stdout is a terminal (and `NO_COLOR` is unset).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`), for log shippers.
    Json,
}

pub const DEFAULT_DATA_DIR: &str = "./warren-data";

/// Command-line flags; each can also come from its `WARREN_*` environment variable.
#[derive(Debug, Parser, Default)]
#[command(
    name = "warren-broker",
    version,
    about = "Warren: a lightweight, persistent AMQP 0-9-1 message broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// AMQP listen address; repeat the flag (or comma-separate the variable) for several; `none` turns plain AMQP
    /// off (AMQPS only) [default: 127.0.0.1:5672]
    #[arg(long, env = "WARREN_LISTEN", value_name = "ADDR|none", value_delimiter = ',')]
    pub listen: Vec<ListenAddr>,
    /// Admin HTTP API listen address; repeatable like --listen; `none` turns plain HTTP off [default: 127.0.0.1:15672]
    #[arg(long, env = "WARREN_ADMIN_LISTEN", value_name = "ADDR|none", value_delimiter = ',')]
    pub admin_listen: Vec<ListenAddr>,
    /// Prometheus metrics listen address (GET /metrics, /metrics/per-object); repeatable like --listen; `none` or
    /// an empty value turns it off [default: 127.0.0.1:15692]
    #[arg(
        long,
        env = "WARREN_PROMETHEUS_LISTEN",
        value_name = "ADDR|none",
        value_delimiter = ',',
        value_parser = parse_prometheus_listen
    )]
    pub prometheus_listen: Vec<ListenAddr>,
    /// MQTT 3.1.1 / 5.0 listen address; repeatable like --listen; `none` or an empty value turns it off
    /// [default: 127.0.0.1:1883]
    #[arg(
        long,
        env = "WARREN_MQTT_LISTEN",
        value_name = "ADDR|none",
        value_delimiter = ',',
        value_parser = parse_prometheus_listen
    )]
    pub mqtt_listen: Vec<ListenAddr>,
    /// The exchange MQTT publishes go to and MQTT subscriptions bind to (a topic exchange) [default: amq.topic]
    #[arg(long, env = "WARREN_MQTT_EXCHANGE", value_name = "EXCHANGE")]
    pub mqtt_exchange: Option<String>,
    /// STOMP 1.0-1.2 listen address; repeatable like --listen; `none` or an empty value turns it off
    /// [default: 127.0.0.1:61613]
    #[arg(
        long,
        env = "WARREN_STOMP_LISTEN",
        value_name = "ADDR|none",
        value_delimiter = ',',
        value_parser = parse_prometheus_listen
    )]
    pub stomp_listen: Vec<ListenAddr>,
    /// AMQPS (AMQP over TLS) listen address; repeatable like --listen [default: 127.0.0.1:5671 when --tls-cert is
    /// given, none otherwise]
    #[arg(long, env = "WARREN_AMQPS_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub amqps_listen: Vec<SocketAddr>,
    /// Admin API over HTTPS listen address; repeatable like --listen [default: none]
    #[arg(long, env = "WARREN_ADMIN_HTTPS_LISTEN", value_name = "ADDR", value_delimiter = ',')]
    pub admin_https_listen: Vec<SocketAddr>,
    /// The server's TLS certificate chain (PEM, leaf first); turns TLS on
    #[arg(long, env = "WARREN_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "WARREN_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that AMQPS client certificates must chain to
    #[arg(long, env = "WARREN_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Ask AMQPS clients for a certificate and verify it against --tls-ca (RabbitMQ's verify_peer); a verified
    /// certificate allows the EXTERNAL mechanism [default: false]
    #[arg(
        long,
        env = "WARREN_TLS_VERIFY_PEER",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub tls_verify_peer: Option<bool>,
    /// Refuse AMQPS clients without a certificate (RabbitMQ's fail_if_no_peer_cert; needs --tls-verify-peer)
    /// [default: false]
    #[arg(
        long,
        env = "WARREN_TLS_FAIL_IF_NO_PEER_CERT",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub tls_fail_if_no_peer_cert: Option<bool>,
    /// Require HTTP basic auth (a user with a management tag) on the Prometheus listener, which RabbitMQ's plugin
    /// does not by default [default: false]
    #[arg(
        long,
        env = "WARREN_PROMETHEUS_AUTH",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub prometheus_auth: Option<bool>,
    /// Most AMQP connections served at once; more wait in the listen backlog [default: 10000]
    #[arg(long, env = "WARREN_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most admin API connections served at once; more wait in the listen backlog [default: 256]
    #[arg(long, env = "WARREN_ADMIN_MAX_CONNECTIONS", value_name = "N")]
    pub admin_max_connections: Option<usize>,
    /// Seconds an admin API connection may sit without a complete request (idle keep-alive, slow headers or body)
    /// before it is closed [default: 30]
    #[arg(long, env = "WARREN_ADMIN_IDLE_TIMEOUT", value_name = "SECS")]
    pub admin_idle_timeout: Option<u64>,
    /// Open files kept back from connections for data files and the like [default: 1024]
    #[arg(long, env = "WARREN_FD_RESERVE", value_name = "N")]
    pub fd_reserve: Option<u64>,
    /// Data directory, created if missing [default: ./warren-data]
    #[arg(long, env = "WARREN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Optional TOML configuration file
    #[arg(long, env = "WARREN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. info, debug, warren_broker=trace [default: info]
    #[arg(long, env = "WARREN_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
    /// Log lines as text (colour only on a terminal) or as one JSON object per line [default: text]
    #[arg(long, env = "WARREN_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<LogFormat>,
    /// When confirms for persistent messages are sent: always, batch (group commit) or never [default: batch]
    #[arg(long, env = "WARREN_FSYNC", value_name = "MODE")]
    pub fsync: Option<FsyncMode>,
    /// Runtime worker threads: 0 = one per core, 1 = a single-threaded runtime [default: 0]
    #[arg(long, env = "WARREN_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Block publishers above this much resident memory: a fraction of the memory available (RAM, cgroup limit,
    /// RLIMIT_AS/DATA, whichever is smallest) or a size such as 1GiB [default: 0.4]
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK", value_name = "FRACTION|SIZE")]
    pub memory_high_watermark: Option<Watermark>,
    /// Block publishers when the data directory's filesystem has less free space than this [default: 1GiB]
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", value_name = "SIZE")]
    pub disk_free_limit: Option<ByteCount>,
    /// Memory each queue may give its transient messages (bodies, properties and about 256 bytes of bookkeeping
    /// each) before it pages the next ones to disk, like persistent ones [default: 16MiB]
    #[arg(long, env = "WARREN_QUEUE_RAM", value_name = "SIZE")]
    pub queue_ram: Option<ByteCount>,
    /// Memory all queues together may give their messages (counted as for --queue-ram) before every queue pages
    /// its next transient ones to disk [default: 256MiB]
    #[arg(long, env = "WARREN_TOTAL_QUEUE_RAM", value_name = "SIZE")]
    pub total_queue_ram: Option<ByteCount>,
    /// Start even though the data directory has queue directories but no definitions file (they would stay
    /// hidden; they are left alone) [default: false]
    #[arg(
        long,
        env = "WARREN_FORCE_EMPTY_DEFINITIONS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub force_empty_definitions: Option<bool>,
    /// A definitions file in RabbitMQ's format (an export) to import at every start, as RabbitMQ's
    /// `load_definitions` [default: none]
    #[arg(long, env = "WARREN_LOAD_DEFINITIONS", value_name = "FILE")]
    pub load_definitions: Option<PathBuf>,
    /// How long what an operator purges or deletes through the admin API can be put back: a number and a unit (s,
    /// m, h, D), or 0 for no undo [default: 10m]
    #[arg(long, env = "WARREN_UNDO_WINDOW", value_name = "DURATION")]
    pub undo_window: Option<String>,
    /// At most this much (bodies and properties) is kept for undo; older removals give way [default: 64MiB]
    #[arg(long, env = "WARREN_UNDO_MAX_BYTES", value_name = "SIZE")]
    pub undo_max_bytes: Option<ByteCount>,
    /// Message journeys kept in memory; the oldest go first [default: 10000]
    #[arg(long, env = "WARREN_TRACE_JOURNEYS", value_name = "N")]
    pub trace_journeys: Option<usize>,
    /// Events kept per journey (its first and its latest) [default: 64]
    #[arg(long, env = "WARREN_TRACE_EVENTS", value_name = "N")]
    pub trace_events: Option<usize>,
    /// The journeys' log under the data directory takes at most this much (two rotated files); 0 keeps them in
    /// memory only [default: 64MiB]
    #[arg(long, env = "WARREN_TRACE_MAX_BYTES", value_name = "SIZE")]
    pub trace_max_bytes: Option<ByteCount>,
    /// Export journeys as OpenTelemetry spans to this OTLP/HTTP endpoint (protobuf), e.g. http://127.0.0.1:4318
    /// [default: none]
    #[arg(long, env = "WARREN_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Run as a node of a cluster coordinated by etcd (experimental: leader election, replication of the data
    /// directory to followers, confirms once the in-sync followers hold a write, failover; see docs/cluster.md)
    /// [default: none, a single node]
    #[arg(long, env = "WARREN_CLUSTER", value_name = "etcd://HOST:PORT[,HOST:PORT...]")]
    pub cluster: Option<String>,
    /// This node's name in the cluster, unique among its nodes [default: warren@HOSTNAME]
    #[arg(long, env = "WARREN_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The prefix of the cluster's keys in etcd (several clusters can share one etcd) [default: warren]
    #[arg(long, env = "WARREN_CLUSTER_PREFIX", value_name = "PREFIX")]
    pub cluster_prefix: Option<String>,
    /// The leadership lease's time to live in seconds: a leader that is gone is replaced about this long after
    /// [default: 10]
    #[arg(long, env = "WARREN_CLUSTER_LEASE_TTL", value_name = "SECONDS")]
    pub cluster_lease_ttl: Option<u64>,
    /// The AMQP address (HOST:PORT) other nodes tell clients to use for this node when it leads [default: the
    /// first --listen address]
    #[arg(long, env = "WARREN_CLUSTER_ADVERTISE", value_name = "HOST:PORT")]
    pub cluster_advertise: Option<String>,
    /// Where this node accepts followers' replication connections when it leads; followers connect to the
    /// address it advertises (this one, or the --cluster-advertise host with this port when it listens on all
    /// interfaces) [default: 127.0.0.1:5679]
    #[arg(long, env = "WARREN_CLUSTER_LISTEN", value_name = "HOST:PORT")]
    pub cluster_listen: Option<String>,
    /// How many followers must hold a write before the leader confirms it; with fewer in sync, confirms wait
    /// [default: 1]
    #[arg(long, env = "WARREN_CLUSTER_MIN_IN_SYNC", value_name = "N")]
    pub cluster_min_in_sync: Option<usize>,
    /// Seconds a follower may go without acking while behind before it leaves the in-sync set (and confirms stop
    /// waiting for it) [default: 5]
    #[arg(long, env = "WARREN_CLUSTER_REPLICATION_DEADLINE", value_name = "SECONDS")]
    pub cluster_replication_deadline: Option<u64>,
    /// A file holding the cluster's shared secret (the same on every node; surrounding whitespace is ignored):
    /// leader and followers prove they hold it before anything is replicated. Needed when --cluster-listen is not
    /// a loopback address [default: none]
    #[arg(long, env = "WARREN_CLUSTER_SECRET_FILE", value_name = "PATH")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Replicate over TLS: the leader offers --tls-cert, followers verify it against --tls-ca for the host the
    /// leader advertises (every node needs the three files) [default: false]
    #[arg(long, env = "WARREN_CLUSTER_TLS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cluster_tls: Option<bool>,
}

/// What the binary does instead of running the broker.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Reads a password from standard input (one line) and prints its argon2id hash, for `password_hash` in the
    /// config file or `PUT /api/users/{name}`
    HashPassword,
}

/// A user as written in the config file. Give either `password` (hashed at load, never kept in clear) or
/// `password_hash` (as printed by `warren-broker hash-password`, see README).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A user's permissions on a vhost, as written in the config file (`[[permissions]]`), with RabbitMQ's
/// semantics: each is a regular expression searched for in the names of the queues and exchanges it applies to;
/// `""` grants nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    pub user: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

fn default_vhost() -> String {
    "/".to_string()
}

/// Listen addresses in the config file: one (`listen = "127.0.0.1:5672"`, as before), several, or `"none"`
/// (and for `prometheus_listen` also `""`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Addrs {
    One(SocketAddr),
    Many(Vec<SocketAddr>),
    Word(String),
}

impl Addrs {
    fn into_vec(self, what: &'static str, empty_is_none: bool) -> Result<Vec<SocketAddr>, ConfigError> {
        match self {
            Addrs::One(a) => Ok(vec![a]),
            Addrs::Many(v) => Ok(v),
            Addrs::Word(w) if w.trim().eq_ignore_ascii_case("none") => Ok(Vec::new()),
            Addrs::Word(w) if empty_is_none && w.trim().is_empty() => Ok(Vec::new()),
            Addrs::Word(w) => Err(ConfigError::BadAddress(what, w)),
        }
    }
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Addrs>,
    pub admin_listen: Option<Addrs>,
    pub amqps_listen: Option<Addrs>,
    pub admin_https_listen: Option<Addrs>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub tls_verify_peer: Option<bool>,
    pub tls_fail_if_no_peer_cert: Option<bool>,
    /// `"none"`, `""` or `[]` for no Prometheus listener.
    pub prometheus_listen: Option<Addrs>,
    pub prometheus_auth: Option<bool>,
    /// `"none"`, `""` or `[]` for no MQTT listener.
    pub mqtt_listen: Option<Addrs>,
    pub mqtt_exchange: Option<String>,
    /// `"none"`, `""` or `[]` for no STOMP listener.
    pub stomp_listen: Option<Addrs>,
    pub max_connections: Option<usize>,
    pub admin_max_connections: Option<usize>,
    /// Seconds.
    pub admin_idle_timeout: Option<u64>,
    pub fd_reserve: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub threads: Option<usize>,
    pub fsync: Option<FsyncMode>,
    /// A fraction (0.4) or a size ("2GiB").
    pub memory_high_watermark: Option<Watermark>,
    /// A size ("1GiB") or a number of bytes.
    pub disk_free_limit: Option<ByteCount>,
    /// A size ("16MiB") or a number of bytes.
    pub queue_ram: Option<ByteCount>,
    /// A size ("256MiB") or a number of bytes.
    pub total_queue_ram: Option<ByteCount>,
    /// Start without definitions although queue directories exist (see `--force-empty-definitions`).
    pub force_empty_definitions: Option<bool>,
    /// A definitions file to import at every start (see `--load-definitions`).
    pub load_definitions: Option<PathBuf>,
    /// How long a purge or delete can be undone ("10m"; "0": never).
    pub undo_window: Option<String>,
    /// A size ("64MiB") or a number of bytes.
    pub undo_max_bytes: Option<ByteCount>,
    /// Message journeys kept in memory, and events per journey.
    pub trace_journeys: Option<usize>,
    pub trace_events: Option<usize>,
    /// A size ("64MiB") or a number of bytes; 0: journeys in memory only.
    pub trace_max_bytes: Option<ByteCount>,
    /// Where journeys are exported as OTLP spans (OTLP/HTTP, protobuf).
    pub otlp_endpoint: Option<String>,
    pub cluster: Option<String>,
    pub node_name: Option<String>,
    pub cluster_prefix: Option<String>,
    pub cluster_lease_ttl: Option<u64>,
    pub cluster_advertise: Option<String>,
    pub cluster_listen: Option<String>,
    pub cluster_min_in_sync: Option<usize>,
    pub cluster_replication_deadline: Option<u64>,
    /// See `--cluster-secret-file`.
    pub cluster_secret_file: Option<PathBuf>,
    /// See `--cluster-tls`.
    pub cluster_tls: Option<bool>,
    /// Extra vhosts besides `/`.
    #[serde(default)]
    pub vhosts: Vec<String>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub permissions: Vec<PermissionConfig>,
    /// Users that may only connect from loopback [default: ["guest"]].
    pub loopback_users: Option<Vec<String>>,
    /// Heartbeat offered to clients, in seconds [default: 60].
    pub heartbeat: Option<u16>,
    /// Queue policies (see docs/queues.md).
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

/// The resolved configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plain AMQP listeners (empty only when `amqps_listen` is not).
    pub listen: Vec<SocketAddr>,
    /// The admin HTTP API's listeners (empty only when `admin_https_listen` is not).
    pub admin_listen: Vec<SocketAddr>,
    /// The Prometheus listeners (`/metrics`, `/metrics/per-object`); empty: none.
    pub prometheus_listen: Vec<SocketAddr>,
    /// Whether the Prometheus listener asks for HTTP basic auth (off, as in RabbitMQ's plugin).
    pub prometheus_auth: bool,
    /// MQTT listeners; empty: none.
    pub mqtt_listen: Vec<SocketAddr>,
    /// The topic exchange MQTT publishes and subscriptions use.
    pub mqtt_exchange: String,
    /// STOMP listeners; empty: none.
    pub stomp_listen: Vec<SocketAddr>,
    /// AMQPS listeners (only with `tls`).
    pub amqps_listen: Vec<SocketAddr>,
    /// The admin API's HTTPS listeners (only with `tls`).
    pub admin_https_listen: Vec<SocketAddr>,
    /// Certificate, key and client-certificate settings; None: no TLS.
    pub tls: Option<TlsConfig>,
    /// The most AMQP connections served at once (lowered at start if the open-file limit cannot hold them).
    pub max_connections: usize,
    /// The most admin API connections served at once, so idle HTTP clients cannot use up the descriptors the
    /// AMQP listener and the data files need.
    pub admin_max_connections: usize,
    /// How long an admin connection may go without a complete request: header-read, keep-alive idle and
    /// request-body timeout in one.
    pub admin_idle_timeout: Duration,
    /// Open files never given to connections: room for segment files, the definitions file and accept itself.
    pub fd_reserve: u64,
    pub data_dir: PathBuf,
    /// The config file it was loaded from (`--config`), read again on SIGHUP.
    pub config_file: Option<PathBuf>,
    pub log: String,
    pub log_format: LogFormat,
    /// Runtime worker threads (0 = one per core, 1 = single-threaded runtime).
    pub threads: usize,
    /// When persistent messages are synced before their confirm.
    pub fsync: FsyncMode,
    /// Start although the data directory has queue directories and no definitions: only an operator who knows
    /// the definitions are lost for good sets it, since those queues then stay hidden.
    pub force_empty_definitions: bool,
    /// A RabbitMQ-format definitions file imported at every start.
    pub load_definitions: Option<PathBuf>,
    pub vhosts: Vec<String>,
    pub users: Vec<UserConfig>,
    /// Permissions seeded from the file (guest gets `.*` on `/` when the file does not define guest).
    pub permissions: Vec<PermissionConfig>,
    pub loopback_users: Vec<String>,
    pub heartbeat: u16,
    pub policies: Vec<Policy>,
    pub frame_max: u32,
    pub channel_max: u16,
    /// Publishers are blocked above this much resident memory (see `alarm.rs`).
    pub memory_high_watermark: Watermark,
    /// Publishers are blocked when the data directory's filesystem has less free space than this (bytes).
    pub disk_free_limit: u64,
    /// Memory each queue may give its transient messages before it pages the next ones to disk (bytes).
    pub queue_ram: usize,
    /// Memory all queues together may give their messages before every queue pages (bytes).
    pub total_queue_ram: usize,
    /// How long an operator's purge or delete can be undone (ms; 0: no undo), and how much is kept for it.
    pub undo_window_ms: u64,
    pub undo_max_bytes: u64,
    /// Message journeys: memory and disk bounds, OTLP export.
    pub trace: crate::trace::TraceSettings,
    /// Clustering on etcd (`--cluster`); `None`: a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid default address: {0}")]
    Addr(#[from] std::net::AddrParseError),
    #[error("user '{0}' needs exactly one of password or password_hash")]
    UserPassword(String),
    #[error("invalid policy: {0}")]
    Policy(String),
    #[error("{0}")]
    Cluster(String),
    #[error("{0} needs at least one address (\"none\" only with a TLS listener beside it)")]
    NoAddress(&'static str),
    #[error("{0}: 'none' cannot be given with addresses")]
    NoneWithAddresses(&'static str),
    #[error("{0}: '{1}' is not an address like 127.0.0.1:5672, a list of them, or \"none\"")]
    BadAddress(&'static str, String),
    #[error("invalid TLS settings: {0}")]
    Tls(&'static str),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("undo_window: '{0}' is not a duration like 10m, 1h or 0")]
    UndoWindow(String),
    #[error("the broker was started without a config file (--config): there is nothing to reload")]
    NoConfigFile,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![([127, 0, 0, 1], 5672).into()],
            admin_listen: vec![([127, 0, 0, 1], 15672).into()],
            prometheus_listen: vec![([127, 0, 0, 1], 15692).into()],
            prometheus_auth: false,
            mqtt_listen: vec![([127, 0, 0, 1], 1883).into()],
            mqtt_exchange: "amq.topic".into(),
            stomp_listen: vec![([127, 0, 0, 1], 61613).into()],
            amqps_listen: Vec::new(),
            admin_https_listen: Vec::new(),
            tls: None,
            max_connections: 10_000,
            admin_max_connections: 256,
            admin_idle_timeout: Duration::from_secs(30),
            fd_reserve: 1024,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            config_file: None,
            log: "info".to_string(),
            log_format: LogFormat::Text,
            threads: 0,
            fsync: FsyncMode::Batch,
            force_empty_definitions: false,
            load_definitions: None,
            vhosts: Vec::new(),
            users: Vec::new(),
            permissions: Vec::new(),
            loopback_users: vec!["guest".to_string()],
            heartbeat: 60,
            policies: Vec::new(),
            frame_max: 131_072,
            channel_max: 2047,
            memory_high_watermark: Watermark::default(),
            disk_free_limit: DEFAULT_DISK_FREE_LIMIT,
            queue_ram: crate::store::DEFAULT_QUEUE_RAM,
            total_queue_ram: crate::store::DEFAULT_TOTAL_QUEUE_RAM,
            undo_window_ms: crate::quarantine::DEFAULT_WINDOW_MS,
            undo_max_bytes: crate::quarantine::DEFAULT_MAX_BYTES,
            trace: crate::trace::TraceSettings::default(),
            cluster: None,
        }
    }
}

impl Config {
    /// Merges flags/environment over the config file over the defaults.
    pub fn load(cli: Cli) -> Result<Self, ConfigError> {
        let mut file = match &cli.config {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        let mut c = Config::default();
        c.listen = match (cli.listen, file.listen) {
            (flag, _) if !flag.is_empty() => listen_addrs("listen", flag)?,
            (_, Some(file)) => file.into_vec("listen", false)?,
            (_, None) => vec![DEFAULT_LISTEN.parse()?],
        };
        c.admin_listen = match (cli.admin_listen, file.admin_listen) {
            (flag, _) if !flag.is_empty() => listen_addrs("admin_listen", flag)?,
            (_, Some(file)) => file.into_vec("admin_listen", false)?,
            (_, None) => c.admin_listen,
        };
        c.prometheus_listen = match (cli.prometheus_listen, file.prometheus_listen) {
            (flag, _) if !flag.is_empty() => listen_addrs("prometheus_listen", flag)?,
            (_, Some(file)) => file.into_vec("prometheus_listen", true)?,
            (_, None) => c.prometheus_listen,
        };
        c.mqtt_listen = match (cli.mqtt_listen, file.mqtt_listen) {
            (flag, _) if !flag.is_empty() => listen_addrs("mqtt_listen", flag)?,
            (_, Some(file)) => file.into_vec("mqtt_listen", true)?,
            (_, None) => c.mqtt_listen,
        };
        c.stomp_listen = match (cli.stomp_listen, file.stomp_listen) {
            (flag, _) if !flag.is_empty() => listen_addrs("stomp_listen", flag)?,
            (_, Some(file)) => file.into_vec("stomp_listen", true)?,
            (_, None) => c.stomp_listen,
        };
        if let Some(x) = cli.mqtt_exchange.or(file.mqtt_exchange) {
            c.mqtt_exchange = x;
        }
        c.prometheus_auth = cli
            .prometheus_auth
            .or(file.prometheus_auth)
            .unwrap_or(c.prometheus_auth);
        c.tls = Self::tls(
            cli.tls_cert.or(file.tls_cert),
            cli.tls_key.or(file.tls_key),
            cli.tls_ca.or(file.tls_ca),
        )?
        .map(|(cert, key, ca)| -> Result<TlsConfig, ConfigError> {
            let verify_peer = cli.tls_verify_peer.or(file.tls_verify_peer).unwrap_or(false);
            let fail_if_no_peer_cert = cli
                .tls_fail_if_no_peer_cert
                .or(file.tls_fail_if_no_peer_cert)
                .unwrap_or(false);
            if verify_peer && ca.is_none() {
                return Err(ConfigError::Tls(
                    "tls_verify_peer needs tls_ca (the CA of client certificates)",
                ));
            }
            if fail_if_no_peer_cert && !verify_peer {
                return Err(ConfigError::Tls("tls_fail_if_no_peer_cert needs tls_verify_peer"));
            }
            Ok(TlsConfig {
                cert,
                key,
                ca,
                verify_peer,
                fail_if_no_peer_cert,
            })
        })
        .transpose()?;
        c.amqps_listen = match (cli.amqps_listen, file.amqps_listen) {
            (flag, _) if !flag.is_empty() => flag,
            (_, Some(file)) => file.into_vec("amqps_listen", false)?,
            (_, None) if c.tls.is_some() => vec![DEFAULT_AMQPS_LISTEN.parse()?],
            (_, None) => Vec::new(),
        };
        c.admin_https_listen = match (cli.admin_https_listen, file.admin_https_listen) {
            (flag, _) if !flag.is_empty() => flag,
            (_, Some(file)) => file.into_vec("admin_https_listen", false)?,
            (_, None) => Vec::new(),
        };
        if c.tls.is_none() && !(c.amqps_listen.is_empty() && c.admin_https_listen.is_empty()) {
            return Err(ConfigError::Tls(
                "amqps_listen and admin_https_listen need tls_cert and tls_key",
            ));
        }
        if c.listen.is_empty() && c.amqps_listen.is_empty() {
            return Err(ConfigError::NoAddress("listen"));
        }
        if c.admin_listen.is_empty() && c.admin_https_listen.is_empty() {
            return Err(ConfigError::NoAddress("admin_listen"));
        }
        c.max_connections = cli
            .max_connections
            .or(file.max_connections)
            .unwrap_or(c.max_connections);
        c.admin_max_connections = cli
            .admin_max_connections
            .or(file.admin_max_connections)
            .unwrap_or(c.admin_max_connections);
        if let Some(secs) = cli.admin_idle_timeout.or(file.admin_idle_timeout) {
            c.admin_idle_timeout = Duration::from_secs(secs);
        }
        c.fd_reserve = cli.fd_reserve.or(file.fd_reserve).unwrap_or(c.fd_reserve);
        for (name, v) in [
            ("max_connections", c.max_connections as u64),
            ("admin_max_connections", c.admin_max_connections as u64),
            ("admin_idle_timeout", c.admin_idle_timeout.as_secs()),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        c.data_dir = cli.data_dir.or(file.data_dir).unwrap_or(c.data_dir);
        c.log = cli.log.or(file.log).unwrap_or(c.log);
        c.log_format = cli.log_format.or(file.log_format).unwrap_or(c.log_format);
        c.threads = cli.threads.or(file.threads).unwrap_or(c.threads);
        c.fsync = cli.fsync.or(file.fsync).unwrap_or(c.fsync);
        c.memory_high_watermark = cli
            .memory_high_watermark
            .or(file.memory_high_watermark)
            .unwrap_or(c.memory_high_watermark);
        c.disk_free_limit = cli
            .disk_free_limit
            .or(file.disk_free_limit)
            .map_or(c.disk_free_limit, |b| b.0);
        c.queue_ram = cli
            .queue_ram
            .or(file.queue_ram)
            .map_or(c.queue_ram, |b| usize::try_from(b.0).unwrap_or(usize::MAX));
        c.total_queue_ram = cli
            .total_queue_ram
            .or(file.total_queue_ram)
            .map_or(c.total_queue_ram, |b| usize::try_from(b.0).unwrap_or(usize::MAX));
        c.force_empty_definitions = cli
            .force_empty_definitions
            .or(file.force_empty_definitions)
            .unwrap_or(c.force_empty_definitions);
        c.load_definitions = cli.load_definitions.or(file.load_definitions.take());
        if let Some(w) = cli.undo_window.or(file.undo_window.take()) {
            c.undo_window_ms = match w.trim() {
                "0" => 0,
                w => crate::stream::args::parse_age(w).ok_or(ConfigError::UndoWindow(w.to_string()))?,
            };
        }
        c.undo_max_bytes = cli
            .undo_max_bytes
            .or(file.undo_max_bytes)
            .map_or(c.undo_max_bytes, |b| b.0);
        if let Some(n) = cli.trace_journeys.or(file.trace_journeys) {
            c.trace.journeys = n;
        }
        if let Some(n) = cli.trace_events.or(file.trace_events) {
            c.trace.events = n;
        }
        if let Some(b) = cli.trace_max_bytes.or(file.trace_max_bytes) {
            c.trace.max_bytes = b.0;
        }
        c.trace.otlp_endpoint = cli
            .otlp_endpoint
            .or(file.otlp_endpoint.take())
            .filter(|e| !e.trim().is_empty());
        if let Some(url) = cli.cluster.or(file.cluster.take()).filter(|u| !u.trim().is_empty()) {
            let endpoints = crate::cluster::parse_url(&url).map_err(|e| ConfigError::Cluster(e.to_string()))?;
            let first = c.listen.first().or(c.amqps_listen.first()).copied();
            let admin = c.admin_listen.first().copied();
            let amqp = cli
                .cluster_advertise
                .or(file.cluster_advertise.take())
                .or_else(|| first.map(|a| a.to_string()))
                .unwrap_or_default();
            let listen_text = cli
                .cluster_listen
                .or(file.cluster_listen.take())
                .unwrap_or_else(|| "127.0.0.1:5679".into());
            let listen: std::net::SocketAddr = listen_text.parse().map_err(|_| {
                ConfigError::Cluster(format!("invalid --cluster-listen '{listen_text}': expected HOST:PORT"))
            })?;
            let secret = match cli.cluster_secret_file.or(file.cluster_secret_file.take()) {
                Some(path) => {
                    let text = std::fs::read(&path).map_err(|e| {
                        ConfigError::Cluster(format!("cannot read --cluster-secret-file {}: {e}", path.display()))
                    })?;
                    let secret = text.trim_ascii().to_vec();
                    if secret.is_empty() {
                        return Err(ConfigError::Cluster(format!(
                            "--cluster-secret-file {} is empty",
                            path.display()
                        )));
                    }
                    crate::cluster::auth::Secret::new(secret)
                }
                None if !listen.ip().is_loopback() => {
                    return Err(ConfigError::Cluster(format!(
                        "--cluster-listen {listen} is reachable beyond this machine: give every node the same \
                         --cluster-secret-file, or anyone who reaches the port could copy the data directory"
                    )))
                }
                None => crate::cluster::auth::Secret::default(),
            };
            let replication = if listen.ip().is_unspecified() {
                let host = amqp.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
                format!("{host}:{}", listen.port())
            } else {
                listen.to_string()
            };
            c.cluster = Some(crate::cluster::ClusterConfig {
                listen,
                max_lag_bytes: 256 << 20,
                min_in_sync: cli.cluster_min_in_sync.or(file.cluster_min_in_sync).unwrap_or(1),
                replication_deadline: std::time::Duration::from_secs(
                    cli.cluster_replication_deadline
                        .or(file.cluster_replication_deadline)
                        .unwrap_or(5)
                        .max(1),
                ),
                endpoints,
                node: cli
                    .node_name
                    .or(file.node_name.take())
                    .unwrap_or_else(crate::cluster::host_node_name),
                prefix: cli
                    .cluster_prefix
                    .or(file.cluster_prefix.take())
                    .unwrap_or_else(|| "warren".into()),
                lease_ttl: std::time::Duration::from_secs(
                    cli.cluster_lease_ttl.or(file.cluster_lease_ttl).unwrap_or(10).max(1),
                ),
                advertise: warren_shared::cluster::ClusterNode {
                    name: String::new(),
                    amqp,
                    admin: admin.map(|a| a.to_string()),
                    replication: Some(replication),
                },
                secret,
                tls: cli.cluster_tls.or(file.cluster_tls).unwrap_or(false),
            });
            if let Some(cc) = c.cluster.as_mut() {
                cc.advertise.name = cc.node.clone();
                if cc.tls && c.tls.as_ref().is_none_or(|t| t.ca.is_none()) {
                    return Err(ConfigError::Cluster(
                        "--cluster-tls needs --tls-cert, --tls-key (what this node offers when it leads) and --tls-ca \
                         (what it verifies the leader's certificate with)"
                            .into(),
                    ));
                }
            }
        }
        if c.trace.journeys == 0 || c.trace.events == 0 {
            return Err(ConfigError::Zero("trace_journeys and trace_events"));
        }
        if let Some(l) = file.loopback_users.take() {
            c.loopback_users = l;
        }
        if let Some(h) = file.heartbeat {
            c.heartbeat = h;
        }
        c.config_file = cli.config;
        c.set_definitions(
            std::mem::take(&mut file.vhosts),
            std::mem::take(&mut file.users),
            std::mem::take(&mut file.permissions),
            &file.policies,
        )?;
        Ok(c)
    }

    /// This configuration with the vhosts, users, permissions and policies of its config file as the file says now
    /// (what SIGHUP reloads); everything else as it is. `NoConfigFile` when the broker was started without one.
    pub fn reread_definitions(&self) -> Result<Config, ConfigError> {
        let path = self.config_file.as_ref().ok_or(ConfigError::NoConfigFile)?;
        let file = Self::read_file(path)?;
        let mut c = self.clone();
        c.set_definitions(file.vhosts, file.users, file.permissions, &file.policies)?;
        Ok(c)
    }

    /// The file's vhosts, users, permissions and policies, checked.
    fn set_definitions(
        &mut self,
        vhosts: Vec<String>,
        users: Vec<UserConfig>,
        permissions: Vec<PermissionConfig>,
        policies: &[PolicyConfig],
    ) -> Result<(), ConfigError> {
        for u in &users {
            if u.password.is_some() == u.password_hash.is_some() {
                return Err(ConfigError::UserPassword(u.name.clone()));
            }
        }
        self.policies = policies
            .iter()
            .map(Policy::from_config)
            .collect::<Result<_, _>>()
            .map_err(ConfigError::Policy)?;
        self.vhosts = vhosts;
        self.users = users;
        self.permissions = permissions;
        Ok(())
    }

    /// The certificate, key and CA paths (flag or variable over file); None without a certificate. A key without a
    /// certificate, or a certificate without a key, is an error.
    #[allow(clippy::type_complexity)]
    fn tls(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Option<(PathBuf, PathBuf, Option<PathBuf>)>, ConfigError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key, ca))),
            (Some(_), None) => Err(ConfigError::Tls("tls_cert needs tls_key")),
            (None, Some(_)) => Err(ConfigError::Tls("tls_key needs tls_cert")),
            (None, None) if ca.is_some() => Err(ConfigError::Tls("tls_ca needs tls_cert and tls_key")),
            (None, None) => Ok(None),
        }
    }

    fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\nlog = \"debug\"\nvhosts = [\"prod\"]\n\
             [[users]]\nname = \"app\"\npassword = \"s3cret\"\ntags = [\"administrator\"]\n",
        )
        .expect("write");
        let cli = Cli {
            config: Some(path.clone()),
            log: Some("warn".into()),
            ..Default::default()
        };
        let c = Config::load(cli).expect("load");
        assert_eq!(c.listen, vec!["127.0.0.1:6000".parse().expect("addr")]);
        assert_eq!(c.admin_listen, Config::default().admin_listen);
        assert_eq!(c.log, "warn");
        assert_eq!(c.vhosts, vec!["prod".to_string()]);
        assert_eq!(c.users[0].name, "app");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    /// The replication link's secret: read from its file (whitespace trimmed); an empty or missing file, or a
    /// replication port beyond loopback without one, is refused with a line saying so.
    #[test]
    fn cluster_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "  s3cret\n").expect("write");
        let f = file.to_str().expect("utf-8");
        let load = |args: &[&str]| {
            let mut all = vec!["warren-broker", "--cluster", "etcd://127.0.0.1:2379"];
            all.extend_from_slice(args);
            Config::load(Cli::try_parse_from(all).expect("cli"))
        };
        let c = load(&["--cluster-listen", "0.0.0.0:5679", "--cluster-secret-file", f]).expect("load");
        let cc = c.cluster.expect("clustered");
        assert_eq!(cc.secret, crate::cluster::auth::Secret::new(b"s3cret".to_vec()));
        assert_eq!(format!("{:?}", cc.secret), "Secret(..)", "never printed");
        assert!(!load(&[])
            .expect("loopback needs none")
            .cluster
            .expect("clustered")
            .secret
            .is_set());
        let open = load(&["--cluster-listen", "10.0.0.1:5679"]).expect_err("refused");
        assert!(open.to_string().contains("--cluster-secret-file"), "{open}");
        std::fs::write(&file, " \n").expect("write");
        let empty = load(&["--cluster-secret-file", f]).expect_err("refused");
        assert!(empty.to_string().contains("is empty"), "{empty}");
        let missing = load(&["--cluster-secret-file", "/nonexistent/secret"]).expect_err("refused");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    /// Message journeys: bounds and the OTLP endpoint from the file, a flag over the file, and zero bounds refused.
    #[test]
    fn trace_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        std::fs::write(
            &path,
            "trace_journeys = 50\ntrace_max_bytes = \"1MiB\"\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
        )
        .expect("write");
        let p = path.to_str().expect("utf-8");
        let c =
            Config::load(Cli::try_parse_from(["warren-broker", "--config", p, "--trace-events", "8"]).expect("cli"))
                .expect("load");
        assert_eq!((c.trace.journeys, c.trace.events, c.trace.max_bytes), (50, 8, 1 << 20));
        assert_eq!(c.trace.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert!(
            Config::default().trace.otlp_endpoint.is_none(),
            "no export unless asked"
        );
        let zero = Cli::try_parse_from(["warren-broker", "--trace-journeys", "0"]).expect("cli");
        assert!(matches!(Config::load(zero), Err(ConfigError::Zero(_))));
    }

    /// Issue 10 #11: several listen addresses from the file, the flags and the environment's comma-separated list.
    #[test]
    fn several_listen_addresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        std::fs::write(
            &path,
            "listen = [\"127.0.0.1:5672\", \"[::1]:5672\"]\nadmin_listen = \"127.0.0.1:15999\"\n\
             admin_max_connections = 8\nadmin_idle_timeout = 5\n",
        )
        .expect("write");
        let c = Config::load(Cli {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("load");
        let addrs = |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|a| a.parse().expect("addr")).collect() };
        assert_eq!(c.listen, addrs(&["127.0.0.1:5672", "[::1]:5672"]));
        assert_eq!(c.admin_listen, addrs(&["127.0.0.1:15999"]));
        assert_eq!(
            (c.admin_max_connections, c.admin_idle_timeout),
            (8, Duration::from_secs(5))
        );

        let cli = Cli::try_parse_from([
            "warren-broker",
            "--config",
            path.to_str().expect("utf-8 path"),
            "--admin-listen",
            "127.0.0.1:1",
            "--admin-listen",
            "[::1]:1",
        ])
        .expect("flags");
        let c = Config::load(cli).expect("load");
        assert_eq!(
            c.admin_listen,
            addrs(&["127.0.0.1:1", "[::1]:1"]),
            "flags replace the file's list"
        );

        // What clap does with WARREN_LISTEN=a,b (without touching this process's environment).
        let cli = Cli::try_parse_from(["warren-broker", "--listen", "127.0.0.1:7,[::1]:7"]).expect("list");
        assert_eq!(
            Config::load(cli).expect("load").listen,
            addrs(&["127.0.0.1:7", "[::1]:7"])
        );

        std::fs::write(&path, "listen = []\n").expect("write");
        let err = Config::load(Cli {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("an empty list");
        assert!(err.to_string().contains("at least one address"), "{err}");
    }

    /// The Prometheus listener: on by default, several addresses, off with an empty value or `none` from any source.
    #[test]
    fn prometheus_listen_may_be_turned_off() {
        let addrs = |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|a| a.parse().expect("addr")).collect() };
        let c = Config::load(Cli::default()).expect("load");
        assert_eq!(c.prometheus_listen, addrs(&[DEFAULT_PROMETHEUS_LISTEN]));
        assert!(!c.prometheus_auth);
        let cli = Cli::try_parse_from([
            "warren-broker",
            "--prometheus-listen",
            "127.0.0.1:1,[::1]:1",
            "--prometheus-auth",
        ])
        .expect("flags");
        let c = Config::load(cli).expect("load");
        assert_eq!(c.prometheus_listen, addrs(&["127.0.0.1:1", "[::1]:1"]));
        assert!(c.prometheus_auth);
        // What clap does with WARREN_PROMETHEUS_LISTEN= (an empty value).
        for off in ["", "none", "NONE"] {
            let cli = Cli::try_parse_from(["warren-broker", "--prometheus-listen", off]).expect("off");
            assert!(Config::load(cli).expect("load").prometheus_listen.is_empty(), "{off:?}");
        }
        let cli = Cli::try_parse_from(["warren-broker", "--prometheus-listen", "none,127.0.0.1:1"]).expect("flags");
        let err = Config::load(cli).expect_err("none beside an address");
        assert!(
            err.to_string().contains("'none' cannot be given with addresses"),
            "{err}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        for (text, want) in [
            ("prometheus_listen = \"\"\n", vec![]),
            ("prometheus_listen = \"none\"\n", vec![]),
            ("prometheus_listen = []\n", vec![]),
            (
                "prometheus_listen = \"127.0.0.1:9\"\nprometheus_auth = true\n",
                addrs(&["127.0.0.1:9"]),
            ),
        ] {
            std::fs::write(&path, text).expect("write");
            let c = Config::load(Cli {
                config: Some(path.clone()),
                ..Default::default()
            })
            .expect("load");
            assert_eq!(c.prometheus_listen, want, "{text}");
        }
        assert!(
            Config::load(Cli {
                config: Some(path.clone()),
                ..Default::default()
            })
            .expect("load")
            .prometheus_auth
        );
        std::fs::write(&path, "admin_listen = \"\"\n").expect("write");
        let err = Config::load(Cli {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("only the Prometheus listener takes an empty value for none");
        assert!(err.to_string().contains("'' is not an address"), "{err}");
    }

    /// Issue 12: the TLS settings from flags, the file and their precedence; `none` turns plain listeners off.
    #[test]
    fn tls_settings_and_listeners() {
        let parse = |args: &[&str]| {
            let mut v = vec!["warren-broker"];
            v.extend_from_slice(args);
            Config::load(Cli::try_parse_from(v).expect("flags"))
        };
        let addrs = |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|a| a.parse().expect("addr")).collect() };

        let c = parse(&["--tls-cert", "s.pem", "--tls-key", "s.key"]).expect("load");
        let tls = c.tls.expect("TLS on");
        assert_eq!((tls.cert, tls.key, tls.ca), ("s.pem".into(), "s.key".into(), None));
        assert!(!tls.verify_peer && !tls.fail_if_no_peer_cert);
        assert_eq!(
            c.amqps_listen,
            addrs(&[DEFAULT_AMQPS_LISTEN]),
            "AMQPS on 5671 by default"
        );
        assert_eq!(c.listen, addrs(&[DEFAULT_LISTEN]), "plain AMQP stays");
        assert!(c.admin_https_listen.is_empty(), "no HTTPS unless asked");

        let c = parse(&[
            "--tls-cert",
            "s.pem",
            "--tls-key",
            "s.key",
            "--tls-ca",
            "ca.pem",
            "--tls-verify-peer",
            "--tls-fail-if-no-peer-cert",
            "true",
            "--listen",
            "none",
            "--admin-listen",
            "none",
            "--amqps-listen",
            "0.0.0.0:5671,[::]:5671",
            "--admin-https-listen",
            "127.0.0.1:15671",
        ])
        .expect("load");
        assert!(c.listen.is_empty() && c.admin_listen.is_empty(), "plain listeners off");
        assert_eq!(c.amqps_listen, addrs(&["0.0.0.0:5671", "[::]:5671"]));
        assert_eq!(c.admin_https_listen, addrs(&["127.0.0.1:15671"]));
        let tls = c.tls.expect("TLS on");
        assert!(tls.verify_peer && tls.fail_if_no_peer_cert);

        for (args, says) in [
            (&["--listen", "none"][..], "at least one address"),
            (
                &["--listen", "none,127.0.0.1:1"][..],
                "'none' cannot be given with addresses",
            ),
            (&["--amqps-listen", "127.0.0.1:1"][..], "need tls_cert and tls_key"),
            (&["--tls-cert", "s.pem"][..], "tls_cert needs tls_key"),
            (
                &["--tls-cert", "s.pem", "--tls-key", "k", "--tls-verify-peer"][..],
                "tls_verify_peer needs tls_ca",
            ),
            (
                &["--tls-cert", "s", "--tls-key", "k", "--tls-fail-if-no-peer-cert"][..],
                "needs tls_verify_peer",
            ),
        ] {
            let err = parse(args).expect_err("invalid").to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        std::fs::write(
            &path,
            "listen = \"none\"\namqps_listen = \"127.0.0.1:6671\"\nadmin_https_listen = [\"127.0.0.1:16671\"]\n\
             tls_cert = \"f.pem\"\ntls_key = \"f.key\"\ntls_ca = \"fca.pem\"\ntls_verify_peer = true\n",
        )
        .expect("write");
        let config = path.to_str().expect("utf-8 path");
        let c = parse(&["--config", config]).expect("load");
        assert!(c.listen.is_empty());
        assert_eq!(c.amqps_listen, addrs(&["127.0.0.1:6671"]));
        assert_eq!(c.admin_https_listen, addrs(&["127.0.0.1:16671"]));
        let tls = c.tls.expect("TLS from the file");
        assert_eq!((tls.cert, tls.ca), ("f.pem".into(), Some("fca.pem".into())));
        assert!(tls.verify_peer);
        let c = parse(&[
            "--config",
            config,
            "--tls-cert",
            "flag.pem",
            "--tls-verify-peer",
            "false",
            "--listen",
            "127.0.0.1:5",
        ])
        .expect("load");
        let tls = c.tls.expect("TLS");
        assert_eq!(
            (tls.cert, tls.key),
            ("flag.pem".into(), "f.key".into()),
            "flag over file"
        );
        assert!(!tls.verify_peer, "flag over file");
        assert_eq!(c.listen, addrs(&["127.0.0.1:5"]));
        std::fs::write(&path, "listen = \"nowhere\"\n").expect("write");
        let err = parse(&["--config", config])
            .expect_err("a word that is not none")
            .to_string();
        assert!(err.contains("'nowhere' is not an address"), "{err}");
    }

    #[test]
    fn force_empty_definitions_comes_from_flag_or_file() {
        let cli = Cli::try_parse_from(["warren-broker", "--force-empty-definitions"]).expect("flag");
        assert!(Config::load(cli).expect("load").force_empty_definitions);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        std::fs::write(&path, "force_empty_definitions = true\n").expect("write");
        let from_file = Cli {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert!(Config::load(from_file).expect("load").force_empty_definitions);
        let off = Cli {
            config: Some(path),
            force_empty_definitions: Some(false),
            ..Default::default()
        };
        assert!(
            !Config::load(off).expect("load").force_empty_definitions,
            "the flag wins over the file"
        );
        assert!(!Config::default().force_empty_definitions);
    }

    #[test]
    fn sample_config_in_assets_loads() {
        let sample: FileConfig = toml::from_str(include_str!("../../assets/warren.toml")).expect("sample parses");
        assert_eq!(sample.users[0].name, "app");
    }

    #[test]
    fn bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("warren.toml");
        std::fs::write(&path, "listen = 5\n").expect("write");
        let err = Config::load(Cli {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("must fail");
        assert!(err.to_string().contains("invalid config file"));
    }
}
