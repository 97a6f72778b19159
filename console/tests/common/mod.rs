//! What the CLI tests share: the built `warren-console` run as a user would (stdin not a terminal, no `WARREN_*`
//! variables, an empty config dir), and a few admin API calls to set a broker up.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use warren_tests::http::request;
use warren_tests::TestBroker;

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts a success and returns the JSON it printed.
    pub fn ok_json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "{self:?}");
        self.json()
    }
}

/// Runs `warren-console ARGS` with `stdin` (none: stdin is /dev/null, not a terminal) and `config_home` as
/// `XDG_CONFIG_HOME`.
pub fn run_in(config_home: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren-console"));
    for var in [
        "WARREN_URL",
        "WARREN_USER",
        "WARREN_PASSWORD",
        "WARREN_READ_ONLY",
        "WARREN_CA",
        "WARREN_INSECURE",
        "WARREN_CONSOLE_CONFIG",
        "WARREN_CONTEXT",
        "WARREN_VHOST",
        "RUST_BACKTRACE",
    ] {
        command.env_remove(var);
    }
    command
        .env("XDG_CONFIG_HOME", config_home)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start warren-console");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("warren-console ends");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// A broker and a console pointed at it.
pub struct Setup {
    pub broker: TestBroker,
    pub config_home: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Self {
        Setup {
            broker: TestBroker::start(),
            config_home: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `warren-console ARGS --url <the broker>`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let url = self.broker.admin_url();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &url]);
        run_in(self.config_home.path(), &all, stdin)
    }

    /// Declares a durable queue with `arguments` (JSON object text).
    pub fn declare(&self, name: &str, arguments: &str) {
        let (status, body) = request(
            self.broker.admin_addr,
            "PUT",
            &format!("/api/queues/%2F/{name}"),
            "guest:guest",
            &format!(r#"{{"durable":true,"arguments":{arguments}}}"#),
        );
        assert!(status == 201 || status == 204, "declare {name}: {status} {body}");
    }

    /// Publishes `body` to queue `name` through the admin API.
    pub fn publish(&self, name: &str, body: &str, extra: &str) {
        let (status, answer) = request(
            self.broker.admin_addr,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            "guest:guest",
            &serde_json::json!({"routing_key": name, "payload": body})
                .to_string()
                .replacen('{', &format!("{{{extra}"), 1),
        );
        assert_eq!(
            (status, answer["routed"].as_bool()),
            (200, Some(true)),
            "publish to {name}"
        );
    }

    /// The queue's ready count, from the admin API.
    pub fn ready(&self, name: &str) -> u64 {
        let (status, q) = request(
            self.broker.admin_addr,
            "GET",
            &format!("/api/queues/%2F/{name}"),
            "guest:guest",
            "",
        );
        assert_eq!(status, 200, "{q}");
        q["messages_ready"].as_u64().unwrap_or(u64::MAX)
    }
}
