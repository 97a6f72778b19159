//! SIGHUP reloads the config file's users, permissions, vhosts and policies (issue 13: "SIGHUP reloads the file's
//! policies, users and TLS material"), and the binary's conventions: one-line start-up errors, JSON logs, no ANSI
//! colour when stdout is not a terminal. Before this, SIGHUP reloaded only TLS files, and a changed config file took
//! a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren_broker::config::{Cli, Config};
use warren_tests::client::*;
use warren_tests::TestBroker;

const BEFORE: &str = r#"
[[users]]
name = "alice"
password = "alice-pw"
tags = ["management"]

[[permissions]]
user = "alice"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"

[[policies]]
name = "cap"
pattern = "^capped$"
definition = { max-length = 1 }
"#;

const AFTER: &str = r#"
vhosts = ["extra"]

[[users]]
name = "bob"
password = "bob-pw"
tags = []

[[permissions]]
user = "bob"
vhost = "extra"
configure = ".*"
write = ".*"
read = ".*"

[[policies]]
name = "cap"
pattern = "^capped$"
definition = { max-length = 2 }
"#;

/// The config file's definitions, as `Config::load` reads them from `path`.
fn from_file(path: &Path) -> Config {
    Config::load(Cli {
        config: Some(path.to_path_buf()),
        ..Cli::default()
    })
    .expect("the config file loads")
}

fn url(b: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    let vhost = if vhost == "/" { "%2f" } else { vhost };
    format!("amqp://{user}:{password}@{}/{vhost}", b.addr)
}

async fn try_connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(url, ConnectionProperties::default()).await
}

async fn publish(ch: &lapin::Channel, queue: &str, n: usize) {
    for _ in 0..n {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

#[tokio::test]
async fn reload_applies_the_files_users_permissions_vhosts_and_policies() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("warren.toml");
    std::fs::write(&file, BEFORE).expect("write");
    let path = file.clone();
    let b = TestBroker::start_with(move |c| {
        let f = from_file(&path);
        c.config_file = f.config_file;
        c.users = f.users;
        c.permissions = f.permissions;
        c.vhosts = f.vhosts;
        c.policies = f.policies;
    });
    let broker = b.broker.clone().expect("broker");

    let alice = connect(&url(&b, "alice", "alice-pw", "/")).await;
    let ch = channel(&alice).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare("capped".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    publish(&ch, "capped", 3).await;
    assert_eq!(depth(&ch, "capped").await, 1, "the file's policy caps the queue at 1");
    try_connect(&url(&b, "bob", "bob-pw", "extra"))
        .await
        .expect_err("bob is not in the file yet");

    std::fs::write(&file, AFTER).expect("rewrite");
    let done = tokio::task::spawn_blocking(move || broker.reload_config())
        .await
        .expect("join")
        .expect("reload");
    assert_eq!(done.vhosts_added, vec!["extra".to_string()]);
    assert_eq!(done.users_removed, vec!["alice".to_string()]);
    assert_eq!(done.policy_changes, 1);

    // alice is gone: her open connection is closed, as when the admin API deletes a user, and she cannot log in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.status().connected() {
        assert!(Instant::now() < deadline, "alice's connection is closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    try_connect(&url(&b, "alice", "alice-pw", "/"))
        .await
        .expect_err("alice was removed from the file");

    // bob logs in on the new vhost and works there.
    let bob = connect(&url(&b, "bob", "bob-pw", "extra")).await;
    let ch = channel(&bob).await;
    ch.queue_declare("work".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("bob declares on extra");

    // The changed policy applies to the live queue.
    let guest = connect(&b.url()).await;
    let ch = channel(&guest).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    publish(&ch, "capped", 3).await;
    assert_eq!(depth(&ch, "capped").await, 2, "the reloaded policy caps the queue at 2");

    // A file that does not parse changes nothing.
    std::fs::write(&file, "[[users]\nname = ").expect("garbage");
    let broker = b.broker.clone().expect("broker");
    let err = tokio::task::spawn_blocking(move || broker.reload_config())
        .await
        .expect("join")
        .expect_err("a broken file");
    assert!(err.to_string().contains("invalid config file"), "{err}");
    connect(&url(&b, "bob", "bob-pw", "extra")).await;
}

/// A broker binary child process, killed when dropped.
struct BrokerProcess(Child);

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn broker_command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"));
    cmd.args(["--admin-listen", "127.0.0.1:0", "--prometheus-listen", "none"])
        .arg("--data-dir")
        .arg(data)
        .env("WARREN_DISK_FREE_LIMIT", "50MB")
        .env_remove("RUST_BACKTRACE")
        .env_remove("NO_COLOR");
    cmd
}

/// Lines of a child's stdout, read on a thread of their own.
fn log_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (up to 20 s) for a log line containing `text`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with '{text}': {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_of_a_broker_process() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("warren.toml");
    std::fs::write(&file, BEFORE).expect("write");
    let port = free_port();
    let mut child = broker_command(&dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log", "info", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the broker");
    let lines = log_lines(&mut child);
    let child = BrokerProcess(child);
    wait_for_line(&lines, "AMQP listener ready");
    // Each failed login counts against the address's limit (10 a minute), so logins are tried only when they should
    // work, and once each otherwise.
    let bob = format!("amqp://bob:bob-pw@127.0.0.1:{port}/extra");
    let alice = format!("amqp://alice:alice-pw@127.0.0.1:{port}/%2f");
    try_connect(&alice).await.expect("alice logs in");
    try_connect(&bob).await.expect_err("bob is not in the file yet");

    std::fs::write(&file, AFTER).expect("rewrite");
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let line = wait_for_line(&lines, "SIGHUP: config file reloaded");
    assert!(line.contains("1 vhosts added"), "{line}");
    try_connect(&bob).await.expect("bob logs in after SIGHUP");
    try_connect(&alice).await.expect_err("alice was removed");
}

#[test]
fn a_failed_start_is_one_readable_line() {
    let dir = tempfile::tempdir().expect("dir");
    let out = broker_command(&dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .expect("run the broker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot read config file") && stderr.contains("missing.toml"),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "no colour: {stderr:?}");
}

/// Starts the binary with `args`, reads its stdout until the admin API is ready, and returns those lines.
fn first_log_lines(dir: &Path, args: &[&str]) -> Vec<String> {
    use std::io::BufRead;
    let mut child = broker_command(&dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--log", "info"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the broker");
    let stdout = child.stdout.take().expect("stdout");
    let child = BrokerProcess(child);
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("a log line");
        let ready = line.contains("admin API") && line.contains("ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    drop(child);
    assert!(!lines.is_empty(), "the broker logged");
    lines
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_on_request() {
    let dir = tempfile::tempdir().expect("dir");
    let text = first_log_lines(dir.path(), &[]);
    assert!(
        text.iter().all(|l| !l.contains('\x1b')),
        "no ANSI colour in a pipe: {text:?}"
    );
    assert!(text.iter().any(|l| l.contains("INFO")), "{text:?}");

    let dir = tempfile::tempdir().expect("dir");
    let json = first_log_lines(dir.path(), &["--log-format", "json"]);
    for line in &json {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
