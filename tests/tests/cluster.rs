//! Clustering on a real etcd (issue 17, first stage: roles): three broker processes elect one leader; the others
//! refuse AMQP, MQTT, STOMP and admin clients (naming the leader where the protocol can say it); `kill -9` of the
//! leader hands leadership to another node within the lease's time to live; a clean stop hands it over at once. A
//! single node reports `standalone`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::FieldTable;
use warren_tests::client::*;
use warren_tests::cluster::{await_leader, await_registered, start_nodes, Node};
use warren_tests::etcd::Etcd;
use warren_tests::http::request;
use warren_tests::TestBroker;

const TTL_S: u64 = 2;

/// A STOMP CONNECT to `port`: the first frame back, as text.
fn stomp_answer(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.contains(&0) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_the_others_refuse_clients_and_a_killed_leader_is_replaced() {
    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let mut nodes = start_nodes(bin, &["n1", "n2", "n3"], &etcd, data.path(), TTL_S);
    let leader = await_leader(&nodes, Duration::from_secs(10));
    let term = nodes[leader].cluster()["term"].as_i64().unwrap_or_default();
    assert!(term > 0, "a term is the leadership key's create revision");
    await_registered(&nodes[leader], 3, Duration::from_secs(5));
    let leader_amqp = format!("127.0.0.1:{}", nodes[leader].amqp);
    let metrics = warren_tests::http::get_text(nodes[leader].admin_addr(), "/metrics", Some("guest:guest"), None);
    let line = format!("warren_cluster_leader{{node=\"{}\"}} 1", nodes[leader].name);
    assert!(metrics.body.contains(&line), "{line}: {}", metrics.body);

    // The leader serves; a follower refuses every client, naming the leader.
    let conn = connect(&format!("amqp://guest:guest@{leader_amqp}/%2f")).await;
    let ch = channel(&conn).await;
    ch.queue_declare(
        "on-the-leader".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("the leader serves");
    let follower = (leader + 1) % 3;
    let refused = lapin::Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{}/%2f", nodes[follower].amqp),
        lapin::ConnectionProperties::default(),
    )
    .await
    .err()
    .map(|e| format!("{e}"))
    .expect("a follower refuses AMQP");
    assert!(
        refused.contains(&format!("not the leader; leader is {leader_amqp}")),
        "{refused}"
    );
    let stomp = stomp_answer(nodes[follower].stomp);
    assert!(stomp.starts_with("ERROR") && stomp.contains(&leader_amqp), "{stomp}");
    let mut o = rumqttc::MqttOptions::new("sensor-1", "127.0.0.1", nodes[follower].mqtt);
    o.set_keep_alive(Duration::from_secs(5));
    let (_mqtt, mut events) = rumqttc::AsyncClient::new(o, 10);
    let refused = tokio::time::timeout(Duration::from_secs(5), events.poll())
        .await
        .expect("an answer from the follower");
    assert!(
        matches!(
            refused,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::ServiceUnavailable
            ))
        ),
        "MQTT is refused as unavailable: {refused:?}"
    );
    let (status, body) = request(nodes[follower].admin_addr(), "GET", "/api/queues", "guest:guest", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["leader"]["name"], nodes[leader].name.as_str(), "{body}");
    drop(conn);

    // kill -9 of the leader: another node leads within the lease's time to live (and a poll).
    let killed = Instant::now();
    if let Some(mut p) = nodes[leader].process.take() {
        p.kill();
    }
    let next = await_leader(&nodes, Duration::from_secs(TTL_S + 5));
    assert_ne!(next, leader);
    let took = killed.elapsed();
    assert!(
        nodes[next].cluster()["term"].as_i64().unwrap_or_default() > term,
        "a new term"
    );
    eprintln!("failover after kill -9: {took:?} (lease TTL {TTL_S} s)");
    let conn = connect(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", nodes[next].amqp)).await;
    channel(&conn).await;
    drop(conn);

    // A clean stop hands leadership over at once (the key is deleted, not left to expire).
    let stopped = Instant::now();
    if let Some(mut p) = nodes[next].process.take() {
        let _ = Command::new("kill").args(["-TERM", &p.0.id().to_string()]).status();
        let _ = p.0.wait();
    }
    let last = await_leader(&nodes, Duration::from_secs(TTL_S + 5));
    assert!(nodes[last].process.is_some());
    eprintln!("handover after a clean stop: {:?}", stopped.elapsed());
}

#[test]
fn a_single_node_reports_standalone() {
    let broker = TestBroker::start();
    let (status, body) = request(broker.admin_addr, "GET", "/api/cluster", "guest:guest", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["enabled"].as_bool(), body["role"].as_str()),
        (Some(false), Some("standalone"))
    );
}

/// The console follows the leader: started on a follower's admin URL it moves to the leader's; when the leader is
/// killed it finds the new one among the nodes the cluster listed, and its live feed resumes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_follows_the_leader_across_a_failover() {
    use warren_console::event::{ApiEvent, Event};
    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let mut nodes = start_nodes(bin, &["n1", "n2", "n3"], &etcd, data.path(), TTL_S);
    let leader = await_leader(&nodes, Duration::from_secs(10));
    await_registered(&nodes[leader], 3, Duration::from_secs(5));
    let follower = (leader + 1) % 3;
    let url = |n: &Node| format!("http://{}", n.admin_addr());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = warren_console::client::Client::new(&url(&nodes[follower]), "guest", "guest", tx).expect("client");
    let feed = tokio::spawn(client.stream(200));

    // Waits for the console to move to `want` and for a snapshot from there; returns when it moved.
    async fn moved_to(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>, want: &str, want_url: &str) -> Instant {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut moved = None;
        loop {
            let e = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("the console did not follow {want} (moved: {moved:?})"))
                .expect("events");
            match e {
                Event::Api(ApiEvent::LeaderMoved { url, cluster }) => {
                    assert_eq!((cluster.node.as_str(), url.as_str()), (want, want_url));
                    assert_eq!(cluster.role, "leader");
                    moved = Some(Instant::now());
                }
                Event::Api(ApiEvent::Snapshot(_)) if moved.is_some() => return moved.unwrap_or_else(Instant::now),
                _ => {}
            }
        }
    }
    moved_to(&mut rx, &nodes[leader].name, &url(&nodes[leader])).await;

    let killed = Instant::now();
    nodes[leader].kill();
    let next = await_leader(&nodes, Duration::from_secs(TTL_S + 20));
    let moved = moved_to(&mut rx, &nodes[next].name, &url(&nodes[next])).await;
    eprintln!(
        "the console followed {} to {} {:?} after the kill",
        nodes[leader].name,
        nodes[next].name,
        moved - killed
    );
    feed.abort();
}
