//! Replication of the data directory (issue 17, second stage) on a real etcd: a follower that joins takes a full
//! sync and then the live stream, so that its copy equals the leader's files (by path and sha256); after `kill -9`
//! of the leader it takes over with the leader's queues and messages (acked ones stay acked, deleted queues stay
//! deleted); and the old leader, restarted, rejoins as a follower, setting aside what the new leader lacks.

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use warren_tests::client::*;
use warren_tests::cluster::{await_equal, await_in_sync, await_leader, connect_leader, Node};
use warren_tests::etcd::Etcd;
use warren_tests::http::request;

const TTL_S: u64 = 2;

async fn publish_confirmed(ch: &lapin::Channel, queue: &str, n: u32) {
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            format!("{queue}-{i}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_mirrors_the_leader_takes_over_with_its_messages_and_the_old_leader_rejoins() {
    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let mut nodes = vec![Node::start(bin, "n1", &etcd, data.path(), TTL_S)];
    assert_eq!(await_leader(&nodes, Duration::from_secs(10)), 0);

    // With no follower in sync (the default --cluster-min-in-sync is 1) the leader answers no declaration and no
    // confirm, and blocks publishers (`connection.blocked`, "not enough in-sync replicas"). A follower that joins
    // takes the full sync (the definitions, users and vhosts written at start), and then everything is released.
    // The leader's listeners open as it is promoted: a connection in that moment is refused, so retry.
    let conn = connect_leader(&[nodes[0].amqp_url()], Duration::from_secs(20))
        .await
        .expect("connect to n1");
    let ch = channel(&conn).await;
    let publishing = {
        let ch = ch.clone();
        tokio::spawn(async move {
            ch.queue_declare("before".into(), durable(), FieldTable::default())
                .await
                .expect("declare");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            publish_confirmed(&ch, "before", 200).await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !publishing.is_finished(),
        "no declare-ok and no confirm while no follower is in sync"
    );
    let (_, alarms) = request(
        nodes[0].admin_addr(),
        "GET",
        "/api/health/checks/alarms",
        "guest:guest",
        "",
    );
    assert!(alarms.to_string().contains("not enough in-sync replicas"), "{alarms}");

    nodes.push(Node::start(bin, "n2", &etcd, data.path(), TTL_S));
    tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .expect("confirmed once the follower is in sync")
        .expect("publisher");
    assert_eq!(depth(&ch, "before").await, 200);
    let view = await_in_sync(&nodes[0], "n2", Duration::from_secs(20));
    assert_eq!(view["in_sync"], serde_json::json!(["n1", "n2"]), "{view}");
    let (_, listed) = request(nodes[0].admin_addr(), "GET", "/api/nodes", "guest:guest", "");
    let names: Vec<&str> = listed
        .as_array()
        .map_or(vec![], |a| a.iter().filter_map(|n| n["name"].as_str()).collect());
    assert_eq!(names, ["n1", "n2"], "RabbitMQ's node list names every node");
    let metrics = warren_tests::http::get_text(nodes[0].admin_addr(), "/metrics", Some("guest:guest"), None).body;
    for line in [
        "warren_cluster_in_sync_followers{node=\"n1\"} 1",
        "warren_cluster_replication_lag_ops{node=\"n1\",follower=\"n2\"} 0",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }

    // Written after: it gets these by the live stream. Messages, acks, a deleted queue, a stream.
    for q in ["orders", "gone"] {
        ch.queue_declare(q.into(), durable(), FieldTable::default())
            .await
            .expect("declare");
    }
    publish_confirmed(&ch, "orders", 1000).await;
    publish_confirmed(&ch, "gone", 10).await;
    for _ in 0..300 {
        let m = ch
            .basic_get("orders".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("a message");
        ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
    }
    ch.queue_delete("gone".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("stream".into()),
    );
    ch.queue_declare("events".into(), durable(), args)
        .await
        .expect("declare a stream");
    publish_confirmed(&ch, "events", 50).await;
    sync(&ch).await;
    drop(conn);
    // A declaration through the admin API is replicated before it is answered, as an AMQP one is.
    let (status, body) = request(
        nodes[0].admin_addr(),
        "PUT",
        "/api/queues/%2F/made-by-admin",
        "guest:guest",
        r#"{"durable": true}"#,
    );
    assert!(status < 300, "{status} {body}");

    let view = await_in_sync(&nodes[0], "n2", Duration::from_secs(20));
    assert!(view["head_lsn"].as_u64().unwrap_or_default() > 0, "{view}");
    let copied = await_equal(&nodes[0].data, &nodes[1].data, Duration::from_secs(20));
    assert!(
        copied.iter().any(|f| f.0.ends_with(".seg")),
        "segments are replicated: {copied:?}"
    );
    let follower_view = nodes[1].cluster();
    assert_eq!(follower_view["following"]["in_sync"], true, "{follower_view}");

    // kill -9 of the leader: the follower takes over with everything.
    nodes[0].kill();
    assert_eq!(await_leader(&nodes, Duration::from_secs(TTL_S + 10)), 1);
    let conn = connect_leader(&[nodes[1].amqp_url()], Duration::from_secs(20))
        .await
        .expect("connect to n2");
    let ch = channel(&conn).await;
    assert_eq!(depth(&ch, "before").await, 200);
    assert_eq!(depth(&ch, "orders").await, 700, "acked messages stay acked");
    assert_eq!(depth(&ch, "events").await, 50);
    assert_eq!(depth(&ch, "made-by-admin").await, 0);
    let gone = ch
        .queue_declare(
            "gone".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("a deleted queue stays deleted");
    assert_eq!(reply_code(&gone), Some(404), "{gone}");
    let ch = channel(&conn).await;
    let first = ch
        .basic_get("orders".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("a message");
    assert_eq!(
        &first.delivery.data[..],
        b"orders-300",
        "in order, from the first unacked"
    );

    // The old leader comes back as a follower and converges on the new leader's files; then the new leader
    // confirms again.
    nodes[0].restart();
    await_in_sync(&nodes[1], "n1", Duration::from_secs(20));
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    publish_confirmed(&ch, "orders", 5).await;
    // A transaction's commit-ok, too, waits for the in-sync follower.
    let tx = channel(&conn).await;
    tx.tx_select().await.expect("tx.select");
    for i in 0..3 {
        tx.basic_publish(
            "".into(),
            "orders".into(),
            BasicPublishOptions::default(),
            format!("tx-{i}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish");
    }
    tx.tx_commit().await.expect("tx.commit");
    assert_eq!(depth(&ch, "orders").await, 699 + 5 + 3);
    sync(&ch).await;
    drop(conn);
    await_in_sync(&nodes[1], "n1", Duration::from_secs(20));
    await_equal(&nodes[1].data, &nodes[0].data, Duration::from_secs(20));
    let view = nodes[0].cluster();
    assert_eq!(
        (view["role"].as_str(), view["leader"]["name"].as_str()),
        (Some("follower"), Some("n2")),
        "{view}"
    );
}

/// The replication link is authenticated with the cluster's secret (`--cluster-secret-file`): a node with another
/// secret never gets a file, and neither does a client that speaks the protocol without the secret; nodes with the
/// same secret replicate as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_holding_the_clusters_secret_replicate() {
    use bytes::BytesMut;
    use std::io::{Read, Write};
    use warren_broker::cluster::wire::{decode, encode, Frame};

    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let (ours, theirs) = (data.path().join("secret"), data.path().join("other-secret"));
    std::fs::write(&ours, "correct horse battery staple\n").expect("write");
    std::fs::write(&theirs, "another cluster\n").expect("write");
    let args = |p: &std::path::Path| ["--cluster-secret-file".to_string(), p.display().to_string()];
    let a = args(&ours);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut nodes = vec![Node::start_with(bin, "n1", &etcd, data.path(), TTL_S, &a)];
    assert_eq!(await_leader(&nodes, Duration::from_secs(10)), 0);
    nodes.push(Node::start_with(bin, "n2", &etcd, data.path(), TTL_S, &a));
    await_in_sync(&nodes[0], "n2", Duration::from_secs(20));
    let b = args(&theirs);
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    nodes.push(Node::start_with(bin, "n3", &etcd, data.path(), TTL_S, &b));

    // A client that speaks the protocol but cannot prove the secret: a challenge, then a refusal, never a file.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", nodes[0].replication)).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let send = |raw: &mut std::net::TcpStream, f: &Frame| {
        let mut out = BytesMut::new();
        encode(f, &mut out);
        raw.write_all(&out).expect("write");
    };
    let mut buf = BytesMut::new();
    let mut next = |raw: &mut std::net::TcpStream| loop {
        if let Some((f, used)) = decode(&buf).expect("a frame") {
            let _ = buf.split_to(used);
            return Some(f);
        }
        let mut chunk = [0u8; 4096];
        match raw.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    send(
        &mut raw,
        &Frame::Hello {
            node: "intruder".into(),
            nonce: [1; 32],
        },
    );
    assert!(matches!(next(&mut raw), Some(Frame::Challenge { .. })));
    send(&mut raw, &Frame::Auth { proof: [0; 32] });
    match next(&mut raw) {
        Some(Frame::Refused { reason }) => assert!(reason.contains("secret"), "{reason}"),
        other => panic!("refused, not {other:?}"),
    }
    assert_eq!(next(&mut raw), None, "and closed");

    // n3, with another secret, is never sent a file and never counted in sync; it says why in its log.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !nodes[2]
        .log_tail(200)
        .contains("did not prove it holds the cluster's secret")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "n3 says why: {}",
            nodes[2].log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = nodes[0].cluster();
    assert_eq!(c["in_sync"], serde_json::json!(["n1", "n2"]), "{c}");
    let replicas: Vec<&str> = c["replicas"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["node"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(replicas, vec!["n2"], "{c}");
    assert!(
        !nodes[2].data.join("cluster/synced").exists(),
        "n3 holds no copy of the leader's data"
    );
}

/// `--cluster-tls`: the replication link runs over TLS with the brokers' certificates (the follower verifies the
/// leader's against the CA file); a follower syncs as usual, and a peer speaking the protocol in the clear gets no
/// challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_runs_over_tls_with_cluster_tls() {
    use bytes::BytesMut;
    use std::io::{Read, Write};
    use warren_broker::cluster::wire::{decode, encode, Frame};
    use warren_tests::certs::TestCa;

    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let ca = TestCa::new(data.path(), "cluster-ca").expect("ca");
    let server = ca.server("node").expect("server certificate");
    // With TLS files a node also serves AMQPS (default 127.0.0.1:5671): each gets a port of its own.
    let start = |name: &str| {
        let args = [
            "--cluster-tls".to_string(),
            "--tls-cert".into(),
            server.cert.display().to_string(),
            "--tls-key".into(),
            server.key.display().to_string(),
            "--tls-ca".into(),
            ca.cert.display().to_string(),
            "--amqps-listen".into(),
            format!("127.0.0.1:{}", warren_tests::process::free_port()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Node::start_with(bin, name, &etcd, data.path(), TTL_S, &args)
    };
    let mut nodes = vec![start("n1")];
    assert_eq!(await_leader(&nodes, Duration::from_secs(10)), 0);
    nodes.push(start("n2"));
    await_in_sync(&nodes[0], "n2", Duration::from_secs(20));
    let conn = connect_leader(&[nodes[0].amqp_url()], Duration::from_secs(20))
        .await
        .expect("connect to n1");
    let ch = channel(&conn).await;
    ch.queue_declare("over-tls".into(), durable(), FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    publish_confirmed(&ch, "over-tls", 50).await;
    await_equal(&nodes[0].data, &nodes[1].data, Duration::from_secs(20));

    // In the clear, a Hello meets a TLS server: no challenge comes back, only a TLS alert or the end.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", nodes[0].replication)).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut out = BytesMut::new();
    encode(
        &Frame::Hello {
            node: "clear".into(),
            nonce: [1; 32],
        },
        &mut out,
    );
    raw.write_all(&out).expect("write");
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    assert!(
        !matches!(decode(&got), Ok(Some((Frame::Challenge { .. }, _)))),
        "a plaintext peer is not answered in the protocol: {got:?}"
    );
    conn.close(200, "bye".into()).await.expect("close");
}
