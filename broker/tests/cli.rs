//! The `warren-broker` binary: its flags, its data directory, and a clean exit on SIGTERM.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_warren-broker");

#[test]
fn help_lists_the_stable_flags() {
    let out = Command::new(BIN).arg("--help").output().expect("run --help");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--admin-listen",
        "--data-dir",
        "--config",
        "--log",
        "--fsync",
        "--force-empty-definitions",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}:\n{text}");
    }
}

/// Queue directories without definitions stop the binary with the way out in the message; the environment
/// variable gets it past that check (to the next one here: the AMQP port is taken).
#[test]
fn missing_definitions_stop_the_binary_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("queues").join("2f").join("71")).expect("a queue directory");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let run = |force: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            "127.0.0.1:0",
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WARREN_FORCE_EMPTY_DEFINITIONS");
        if let Some(v) = force {
            c.env("WARREN_FORCE_EMPTY_DEFINITIONS", v);
        }
        let out = c.output().expect("run");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = run(None);
    assert!(
        !ok && err.contains("no definitions") && err.contains("--force-empty-definitions"),
        "{err}"
    );
    let (ok, err) = run(Some("false"));
    assert!(!ok && err.contains("no definitions"), "{err}");
    let (ok, err) = run(Some("true"));
    assert!(
        !ok && err.contains("cannot listen") && !err.contains("no definitions"),
        "{err}"
    );
    assert!(data.join("queues").join("2f").join("71").is_dir(), "left alone");
}

#[test]
fn bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "no_such_setting = 1\n").expect("write");
    let out = Command::new(BIN).arg("--config").arg(&cfg).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid config file"), "{err}");
}

#[test]
fn starts_creates_its_data_dir_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            "127.0.0.1:0",
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "broker did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(data.is_dir(), "data directory created");
    std::io::Write::write_all(&mut stream, b"AMQP\x00\x00\x09\x01").expect("header");
    let mut start = [0u8; 7];
    stream.read_exact(&mut start).expect("connection.start");
    assert_eq!(start[0], 1, "a method frame");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "broker did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
