//! TLS end to end: AMQPS and the admin API over HTTPS, against a test PKI that each test generates with rcgen
//! (`warren_tests::certs`). AMQPS is driven by the raw AMQP client over a rustls client stream (lapin's rustls
//! support would pull in PKCS#12 and platform-verifier crates, about 40 more packages); pika covers AMQPS with a
//! real client library in `tests/python/test_tls.py`, and curl the admin API here.
//!
//! What is shown: guest logs in over AMQPS and bulk deliveries arrive whole (the TLS writer's flush path); clients
//! that stall their handshakes do not stop others from being served; EXTERNAL
//! logs in as a verified certificate's CN and refuses an unknown CN; a client that trusts another CA, or presents a
//! certificate from another CA, fails the handshake; `fail_if_no_peer_cert` refuses clients without a certificate;
//! `reload_tls` (what SIGHUP calls) serves new certificates to new handshakes, keeps open connections, and survives a
//! bad file; a real `kill -HUP` reloads a broker process; bad files stop the binary with a one-line error; curl and
//! the console's client speak HTTPS to the admin API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, queue, AMQPClass};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use warren_broker::tls::TlsConfig;
use warren_tests::certs::{CertFiles, TestCa};
use warren_tests::raw::{Closed, RawClient};
use warren_tests::TestBroker;

type TlsClient = RawClient<StreamOwned<ClientConnection, TcpStream>>;

/// A CA, the broker's certificate from it, and the directory holding them.
struct Pki {
    dir: tempfile::TempDir,
    ca: TestCa,
    server: CertFiles,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(dir.path(), "ca").expect("CA");
    let server = ca.server("server").expect("server certificate");
    Pki { dir, ca, server }
}

fn tls_config(pki: &Pki, verify_peer: bool, fail_if_no_peer_cert: bool) -> TlsConfig {
    TlsConfig {
        cert: pki.server.cert.clone(),
        key: pki.server.key.clone(),
        ca: Some(pki.ca.cert.clone()),
        verify_peer,
        fail_if_no_peer_cert,
    }
}

/// A broker with plain AMQP, AMQPS and admin HTTP and HTTPS listeners on fresh ports.
fn tls_broker(tls: TlsConfig) -> TestBroker {
    TestBroker::start_with(move |c| {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        c.tls = Some(tls.clone());
        c.amqps_listen = vec![any];
        c.admin_https_listen = vec![any];
    })
}

fn certificates(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("read PEM")
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// A client configuration that trusts `ca` and presents `identity` if given.
fn client_config(ca: &Path, identity: Option<&CertFiles>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in certificates(ca) {
        roots.add(c).expect("CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(id) => builder
            .with_client_auth_cert(
                certificates(&id.cert),
                PrivateKeyDer::from_pem_file(&id.key).expect("client key"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    })
}

/// Connects and completes the TLS handshake (client side); Err if it fails.
fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsClient> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(RawClient::from_stream(StreamOwned::new(conn, tcp)))
}

/// Declares a queue on channel 1 and waits for declare-ok.
fn declare<S: Read + Write>(c: &mut RawClient<S>, name: &str) {
    c.send_method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            ..Default::default()
        })),
    );
    match c.recv_method() {
        Some((1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
}

#[test]
fn guest_over_amqps_gets_bulk_deliveries_whole() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, false, false));
    let mut c = connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, None)).expect("TLS handshake");
    let offered = c
        .open_as(0, &[], "PLAIN", "\0guest\0guest")
        .expect("guest logs in over AMQPS");
    assert!(
        !offered.contains("EXTERNAL"),
        "no client certificate, no EXTERNAL: {offered}"
    );

    // 12 MB back to a client: more than the socket buffers hold, so the broker's TLS writer fills up and must
    // flush what rustls kept once its own buffer is empty.
    declare(&mut c, "tls-bulk");
    let body = vec![7u8; 60_000];
    const N: usize = 200;
    for _ in 0..N {
        c.publish("tls-bulk", &body);
    }
    c.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "tls-bulk".into(),
            no_ack: true,
            ..Default::default()
        })),
    );
    let mut bytes = 0;
    while bytes < N * body.len() {
        match c.recv() {
            Some(AMQPFrame::Body(1, b)) => bytes += b.len(),
            Some(_) => {}
            None => panic!("the connection ended after {bytes} bytes"),
        }
    }
    assert_eq!(bytes, N * body.len());

    // Plain AMQP still works beside AMQPS.
    let mut plain = RawClient::handshake(broker.addr, 0);
    declare(&mut plain, "plain-too");
}

#[test]
fn external_logs_in_as_the_certificate_cn() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, true, false));
    let guest = pki.ca.client("guest", "client-guest").expect("client certificate");
    let mut c = connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, Some(&guest))).expect("handshake");
    let offered = c.open_as(0, &[], "EXTERNAL", "").expect("EXTERNAL login as guest");
    assert!(offered.split(' ').any(|m| m == "EXTERNAL"), "{offered}");
    declare(&mut c, "external");
    let users: Vec<String> = broker
        .broker
        .as_ref()
        .expect("running")
        .connection_entries()
        .iter()
        .map(|e| e.user.lock().expect("lock").clone())
        .collect();
    assert_eq!(users, ["guest"], "the connection runs as the certificate's CN");

    // A verified certificate whose CN is no user: refused like a bad password.
    let stranger = pki.ca.client("nobody", "client-nobody").expect("client certificate");
    let mut c = connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, Some(&stranger))).expect("handshake");
    match c.open_as(0, &[], "EXTERNAL", "") {
        Err(Closed::Connection(403, text)) => {
            assert!(
                text.starts_with("ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL"),
                "{text}"
            )
        }
        other => panic!("expected 403, got {other:?}"),
    }

    // verify_peer without fail_if_no_peer_cert: a client without a certificate uses PLAIN, and is not offered
    // EXTERNAL.
    let mut c = connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, None)).expect("handshake");
    let offered = c
        .open_as(0, &[], "PLAIN", "\0guest\0guest")
        .expect("PLAIN without a certificate");
    assert!(!offered.contains("EXTERNAL"), "{offered}");

    // EXTERNAL over plain AMQP: no certificate, so an unknown mechanism.
    let mut c = RawClient::connect(broker.addr);
    assert!(c.open_as(0, &[], "EXTERNAL", "").is_err(), "EXTERNAL needs TLS");
}

#[test]
fn a_wrong_ca_fails_the_handshake() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, true, false));
    let other = TestCa::new(pki.dir.path(), "other-ca").expect("another CA");

    // The client trusts another CA: it rejects the broker's certificate.
    let err = connect_tls(broker.amqps_addr(), client_config(&other.cert, None))
        .err()
        .expect("the handshake must fail");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");

    // The client presents a certificate from another CA: the broker rejects it.
    let forged = other.client("guest", "forged-guest").expect("client certificate");
    let refused = match connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, Some(&forged))) {
        Err(_) => true,
        // TLS 1.3: the client finishes before the server has checked its certificate; the alert comes next.
        Ok(mut c) => c.open_as(0, &[], "EXTERNAL", "").is_err(),
    };
    assert!(refused, "a certificate from another CA must not log in");
}

#[test]
fn fail_if_no_peer_cert_refuses_clients_without_one() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, true, true));
    let refused = match connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, None)) {
        Err(_) => true,
        Ok(mut c) => c.open_as(0, &[], "PLAIN", "\0guest\0guest").is_err(),
    };
    assert!(refused, "a client without a certificate must be refused");
    let guest = pki.ca.client("guest", "client-guest").expect("client certificate");
    let mut c = connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, Some(&guest))).expect("handshake");
    c.open_as(0, &[], "EXTERNAL", "").expect("with a certificate");
}

#[test]
fn a_stalled_handshake_does_not_hold_up_accepting() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, false, false));
    // Clients that connect and never send a ClientHello, on AMQPS and admin HTTPS.
    let _silent: Vec<TcpStream> = (0..4)
        .flat_map(|_| [broker.amqps_addr(), broker.admin_https_addr()])
        .map(|a| TcpStream::connect(a).expect("connect"))
        .collect();
    let mut c = connect_tls(broker.amqps_addr(), client_config(&pki.ca.cert, None)).expect("handshake");
    c.open_as(0, &[], "PLAIN", "\0guest\0guest")
        .expect("a new client is served while others stall their handshakes");
}

/// Replaces the broker's certificate and key files with a new pair from `ca`.
fn replace_server_cert(pki: &Pki, ca: &TestCa) {
    let fresh = ca.server("server-next").expect("server certificate");
    std::fs::copy(&fresh.cert, &pki.server.cert).expect("copy cert");
    std::fs::copy(&fresh.key, &pki.server.key).expect("copy key");
}

#[tokio::test]
async fn reload_serves_new_certificates_to_new_handshakes_only() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, false, false));
    let old_ca = client_config(&pki.ca.cert, None);
    let mut open = connect_tls(broker.amqps_addr(), old_ca.clone()).expect("handshake");
    open.open_as(0, &[], "PLAIN", "\0guest\0guest").expect("login");

    let next = TestCa::new(pki.dir.path(), "next-ca").expect("CA");
    let new_ca = client_config(&next.cert, None);
    replace_server_cert(&pki, &next);
    assert!(
        connect_tls(broker.amqps_addr(), new_ca.clone()).is_err(),
        "no reload yet: the old certificate is still served"
    );
    broker.reload_tls().await.expect("reload");
    connect_tls(broker.amqps_addr(), new_ca.clone())
        .expect("new handshakes get the new certificate")
        .open_as(0, &[], "PLAIN", "\0guest\0guest")
        .expect("login");
    assert!(connect_tls(broker.amqps_addr(), old_ca).is_err(), "the old one is gone");
    declare(&mut open, "still-open");

    // A bad file: the reload fails and the certificate in force stays.
    std::fs::write(&pki.server.cert, "garbage\n").expect("write");
    let err = broker.reload_tls().await.expect_err("a bad certificate file");
    assert!(err.to_string().contains("invalid TLS certificate"), "{err}");
    connect_tls(broker.amqps_addr(), new_ca).expect("the previous configuration stays");
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

fn broker_command(tls: &TlsConfig, amqps: u16, data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"));
    cmd.args(["--listen", "none", "--admin-listen", "127.0.0.1:0", "--log", "warn"])
        .args(["--prometheus-listen", "127.0.0.1:0"])
        .args(["--amqps-listen", &format!("127.0.0.1:{amqps}")])
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .arg("--data-dir")
        .arg(data)
        .env("WARREN_DISK_FREE_LIMIT", "50MB")
        // The one-line error is what a user sees; RUST_BACKTRACE asks for the full report instead.
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// Retries `f` every 50 ms until it returns true or 20 s pass (a child process has no in-process hook to await).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_a_broker_process() {
    let pki = pki();
    let data = tempfile::tempdir().expect("data dir");
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = broker_command(&tls_config(&pki, false, false), port, data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the broker");
    let child = BrokerProcess(child);
    let old_ca = client_config(&pki.ca.cert, None);
    eventually("the broker serves AMQPS", || connect_tls(addr, old_ca.clone()).is_ok());

    let next = TestCa::new(pki.dir.path(), "next-ca").expect("CA");
    replace_server_cert(&pki, &next);
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let new_ca = client_config(&next.cert, None);
    eventually("the new certificate is served", || {
        connect_tls(addr, new_ca.clone()).is_ok()
    });
    connect_tls(addr, new_ca)
        .expect("handshake")
        .open_as(0, &[], "PLAIN", "\0guest\0guest")
        .expect("login after the reload");
}

#[test]
fn bad_tls_files_stop_the_binary_with_one_clear_line() {
    let pki = pki();
    let data = tempfile::tempdir().expect("data dir");
    let mut tls = tls_config(&pki, false, false);
    tls.key = pki.dir.path().join("missing.key");
    let out = broker_command(&tls, free_port(), data.path())
        .output()
        .expect("run the broker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the TLS key") && stderr.contains("missing.key"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A key that is not the certificate's.
    let other = pki.ca.server("other").expect("server certificate");
    tls.key = other.key;
    let out = broker_command(&tls, free_port(), data.path())
        .output()
        .expect("run the broker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("do not make a usable pair"), "{stderr}");
}

/// curl, as installed on the machine (scripts/test and .ci/run install it where it is missing).
fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl (install it: apt-get install curl)")
}

#[test]
fn curl_reads_the_admin_api_over_https() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, true, false));
    let url = format!("https://localhost:{}/api/overview", broker.admin_https_addr().port());
    let ca = pki.ca.cert.to_str().expect("utf-8 path");
    let out = curl(&[
        "--cacert",
        ca,
        "-u",
        "guest:guest",
        "--write-out",
        "\n%{http_code}",
        &url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let (body, code) = text.rsplit_once('\n').expect("status line");
    assert_eq!(code, "200", "{text}");
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert!(json.is_object(), "{json}");

    // The loopback-only rule still sees the peer: guest from 127.0.0.1 is fine, and no credentials is 401.
    let out = curl(&["--cacert", ca, "--write-out", "%{http_code}", "-o", "/dev/null", &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    // Without the CA curl refuses the certificate (exit 60: peer certificate cannot be authenticated).
    let out = curl(&[&url]);
    assert_eq!(out.status.code(), Some(60), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_console_client_speaks_https_with_its_ca() {
    let pki = pki();
    let broker = tls_broker(tls_config(&pki, false, false));
    let url = format!("https://127.0.0.1:{}", broker.admin_https_addr().port());
    let tls = warren_console::client::TlsOptions {
        ca: Some(PathBuf::from(&pki.ca.cert)),
        insecure: false,
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let client = warren_console::client::Client::with_tls(&url, "guest", "guest", &tls, tx).expect("client");
    client
        .check()
        .await
        .expect("the console reaches the admin API over HTTPS");

    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let no_ca = warren_console::client::TlsOptions::default();
    let client = warren_console::client::Client::with_tls(&url, "guest", "guest", &no_ca, tx).expect("client");
    assert!(client.check().await.is_err(), "without --ca the test CA is not trusted");

    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let insecure = warren_console::client::TlsOptions {
        ca: None,
        insecure: true,
    };
    let client = warren_console::client::Client::with_tls(&url, "guest", "guest", &insecure, tx).expect("client");
    client.check().await.expect("--insecure skips verification");
}
