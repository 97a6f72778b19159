//! The admin HTTP server under abuse: idle and half-sent connections are closed, the connection cap holds, and the
//! AMQP port stays usable meanwhile; several listeners, and IPv4-mapped loopback peers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use warren_tests::client::{channel, connect};
use warren_tests::http::request;
use warren_tests::raw::RawClient;
use warren_tests::TestBroker;

/// Reads until the server closes the connection (or `limit` passes); returns what was read and whether it closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into(), false);
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&out).into(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

/// A broker whose admin connections time out after one second.
fn start() -> TestBroker {
    TestBroker::start_with(|c| c.admin_idle_timeout = Duration::from_secs(1))
}

/// Issue 10 #4: a connection that sends nothing, one that stops halfway through its headers, and one that stops
/// halfway through its body are all closed after the idle timeout.
#[test]
fn idle_and_half_sent_connections_are_closed() {
    let broker = start();
    let admin: SocketAddr = broker.admin_addr;
    let mut silent = TcpStream::connect(admin).expect("connect");
    let mut half_head = TcpStream::connect(admin).expect("connect");
    half_head
        .write_all(b"GET /api/overview HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut half_body = TcpStream::connect(admin).expect("connect");
    half_body
        .write_all(
            b"POST /api/queues/%2F/q/peek HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"count\"",
        )
        .expect("write");
    for (name, s) in [("silent", &mut silent), ("half head", &mut half_head)] {
        let (_, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed, "{name}: the server still holds the connection open");
    }
    let (text, closed) = read_until_closed(&mut half_body, Duration::from_secs(5));
    assert!(closed, "half body: the server still holds the connection open");
    assert!(text.starts_with("HTTP/1.1 408"), "half body: {text}");
    let (s, _) = request(admin, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(s, 200, "the API still answers");
}

/// Issue 10 #4: beyond the admin connection cap, connections wait in the backlog (no descriptor of ours) until idle
/// ones are reaped; meanwhile the AMQP port serves, and afterwards a fresh admin request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cap_holds_and_amqp_stays_usable() {
    let broker = TestBroker::start_with(|c| {
        c.admin_idle_timeout = Duration::from_secs(2);
        c.admin_max_connections = 2;
    });
    let admin = broker.admin_addr;
    let mut silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(admin).expect("connect")).collect();

    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "still-works".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("AMQP serves while the admin API is at its cap");

    let t0 = Instant::now();
    let (s, _) = tokio::task::spawn_blocking(move || request(admin, "GET", "/api/overview", "guest:guest", ""))
        .await
        .expect("request");
    assert_eq!(s, 200, "a fresh request is answered once idle connections are reaped");
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "the request waited for a place under the cap ({:?})",
        t0.elapsed()
    );
    for (i, s) in silent.iter_mut().enumerate() {
        let (_, closed) = read_until_closed(s, Duration::from_secs(10));
        assert!(closed, "idle connection {i} was reaped");
    }
}

/// Issue 10 #11: several AMQP and admin listeners (127.0.0.1 twice, and [::1] where IPv6 loopback exists), each
/// serving. (The raw client: lapin's URL parser does not take an IPv6 literal.)
#[test]
fn every_listener_serves() {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ipv6 {
        eprintln!("no IPv6 loopback here: testing two IPv4 listeners only");
    }
    let broker = TestBroker::start_with(move |c| {
        c.listen.push("127.0.0.1:0".parse().expect("addr"));
        c.admin_listen.push("127.0.0.1:0".parse().expect("addr"));
        if ipv6 {
            c.listen.push("[::1]:0".parse().expect("addr"));
            c.admin_listen.push("[::1]:0".parse().expect("addr"));
        }
    });
    let n = if ipv6 { 3 } else { 2 };
    assert_eq!((broker.addrs.len(), broker.admin_addrs.len()), (n, n));
    let clients: Vec<RawClient> = broker.addrs.iter().map(|a| RawClient::handshake(*a, 0)).collect();
    for addr in &broker.admin_addrs {
        let (s, c) = request(*addr, "GET", "/api/connections", "guest:guest", "");
        assert_eq!(s, 200, "{addr}");
        assert_eq!(
            c.as_array().map(|a| a.len()),
            Some(n),
            "{addr}: one connection per listener: {c}"
        );
    }
    drop(clients);
}

/// Issue 10 #11: on a dual-stack listener (`[::]`), an IPv4 client on this host arrives as `::ffff:127.0.0.1`, and
/// `guest` may log in (AMQP and admin API) as from any other loopback address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_over_a_dual_stack_listener_from_ipv4_loopback() {
    let probe = std::net::TcpListener::bind("[::]:0").ok();
    let dual_stack = probe
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .is_some_and(|a| std::net::TcpStream::connect(("127.0.0.1", a.port())).is_ok());
    drop(probe);
    if !dual_stack {
        eprintln!("no dual-stack IPv6 here: skipped");
        return;
    }
    let broker = TestBroker::start_with(|c| {
        c.listen = vec!["[::]:0".parse().expect("addr")];
        c.admin_listen = vec!["[::]:0".parse().expect("addr")];
    });
    let amqp = SocketAddr::from(([127, 0, 0, 1], broker.addr.port()));
    let conn = connect(&format!("amqp://guest:guest@{amqp}/%2f")).await;
    let (s, c) = request(
        SocketAddr::from(([127, 0, 0, 1], broker.admin_addr.port())),
        "GET",
        "/api/connections",
        "guest:guest",
        "",
    );
    assert_eq!(s, 200, "guest over the admin API: {c}");
    assert!(
        c.to_string().contains("::ffff:127.0.0.1"),
        "the peer was IPv4-mapped: {c}"
    );
    drop(conn);
}
