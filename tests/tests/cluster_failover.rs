//! What issue 17 must show, on a real etcd: three broker processes, a publisher with confirms and a consumer
//! running throughout, and the leader killed with `kill -9` ten times in a row (each time restarted, to rejoin as a
//! follower). Every confirmed message is delivered: none lost; duplicates (redeliveries of messages whose acks died
//! with a leader) are allowed, counted and reported, as is the time from each kill to the first confirm on the new
//! leader. Also: a follower paused with SIGSTOP leaves the in-sync set and publishing goes on; resumed, it catches
//! up and rejoins.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_tests::cluster::{await_in_sync, await_leader, connect_leader, start_nodes, Node};
use warren_tests::etcd::Etcd;

const TTL_S: u64 = 2;
const QUEUE: &str = "ledger";
const KILLS: usize = 10;

#[derive(Default)]
struct Ledger {
    confirmed: BTreeSet<u64>,
    /// Per publisher connection: when it was opened, and its first confirm.
    connections: Vec<(Instant, Option<Instant>)>,
    received: BTreeMap<u64, u32>,
    /// What the publisher is doing, for a failing round to report.
    phase: &'static str,
}

fn phase(ledger: &Mutex<Ledger>, phase: &'static str) {
    ledger.lock().expect("ledger").phase = phase;
}

async fn declare(ch: &lapin::Channel) -> bool {
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .is_ok()
}

/// Publishes ids in batches of 20, each batch confirmed before the next; reconnects to whichever node leads.
async fn publisher(urls: Vec<String>, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        phase(&ledger, "connecting");
        let Some(conn) = connect_leader(&urls, Duration::from_secs(60)).await else {
            phase(&ledger, "gave up connecting");
            return;
        };
        let opened = Instant::now();
        phase(&ledger, "opening a channel");
        let Ok(ch) = conn.create_channel().await else { continue };
        phase(&ledger, "declaring");
        if !declare(&ch).await {
            continue;
        }
        phase(&ledger, "confirm.select");
        if ch.confirm_select(ConfirmSelectOptions::default()).await.is_err() {
            continue;
        }
        ledger.lock().expect("ledger").connections.push((opened, None));
        'batches: while !stop.load(Ordering::Relaxed) {
            let mut pending = Vec::new();
            phase(&ledger, "publishing");
            for _ in 0..20 {
                let id = next;
                next += 1;
                match ch
                    .basic_publish(
                        "".into(),
                        QUEUE.into(),
                        BasicPublishOptions::default(),
                        id.to_string().as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                {
                    Ok(c) => pending.push((id, c)),
                    Err(_) => break 'batches,
                }
            }
            phase(&ledger, "awaiting confirms");
            for (id, c) in pending {
                match c.await {
                    Ok(lapin::Confirmation::Ack(_)) => {
                        let mut l = ledger.lock().expect("ledger");
                        l.confirmed.insert(id);
                        if let Some((_, first @ None)) = l.connections.last_mut() {
                            *first = Some(Instant::now());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break 'batches,
                }
            }
        }
        // Bounded: lapin's close of a connection whose broker was just SIGKILLed can wait for a close-ok forever.
        phase(&ledger, "closing");
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye".into())).await;
    }
}

/// Consumes and acks (each ack on its own, with `Channel::basic_ack`); reconnects to whichever node leads.
async fn consumer(urls: Vec<String>, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(conn) = connect_leader(&urls, Duration::from_secs(60)).await else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else { continue };
        if !declare(&ch).await || ch.basic_qos(100, BasicQosOptions::default()).await.is_err() {
            continue;
        }
        let Ok(mut deliveries) = ch
            .basic_consume(
                QUEUE.into(),
                "ledger-consumer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        else {
            continue;
        };
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), deliveries.next()).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let d = match next {
                Err(_) => continue,
                Ok(Some(Ok(d))) => d,
                Ok(_) => break,
            };
            if let Ok(id) = std::str::from_utf8(&d.data).unwrap_or("").parse::<u64>() {
                *ledger.lock().expect("ledger").received.entry(id).or_default() += 1;
            }
            if ch.basic_ack(d.delivery_tag, BasicAckOptions::default()).await.is_err() {
                break;
            }
        }
    }
}

fn in_sync_count(leader: &Node) -> usize {
    leader
        .try_cluster()
        .and_then(|c| c["in_sync"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_kill_9s_of_the_leader_lose_no_confirmed_message() {
    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let mut nodes = start_nodes(bin, &["n1", "n2", "n3"], &etcd, data.path(), TTL_S);
    let urls: Vec<String> = nodes.iter().map(Node::amqp_url).collect();
    let mut leader = await_leader(&nodes, Duration::from_secs(10));

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (stop_publishing, stop_consuming) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let p = tokio::spawn(publisher(urls.clone(), ledger.clone(), stop_publishing.clone()));
    let c = tokio::spawn(consumer(urls.clone(), ledger.clone(), stop_consuming.clone()));

    let mut failovers = Vec::new();
    for round in 0..KILLS {
        // At least one follower in sync, and confirms flowing, before the kill.
        let deadline = Instant::now() + Duration::from_secs(30);
        while in_sync_count(&nodes[leader]) < 2 {
            assert!(Instant::now() < deadline, "round {round}: no follower in sync");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let before = ledger.lock().expect("ledger").confirmed.len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ledger.lock().expect("ledger").confirmed.len() < before + 20 {
            assert!(Instant::now() < deadline, "round {round}: no confirms");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let killed = Instant::now();
        nodes[leader].kill();
        let next = await_leader(&nodes, Duration::from_secs(TTL_S + 20));
        let deadline = Instant::now() + Duration::from_secs(60);
        let took = loop {
            // The first confirm on a connection opened after the kill (so, to the new leader).
            let first = ledger
                .lock()
                .expect("ledger")
                .connections
                .iter()
                .filter(|c| c.0 > killed)
                .find_map(|c| c.1);
            if let Some(t) = first {
                break t - killed;
            }
            if Instant::now() > deadline {
                for n in &nodes {
                    eprintln!("--- {} (last 40 lines of its log)\n{}", n.name, n.log_tail(40));
                }
                let l = ledger.lock().expect("ledger");
                eprintln!(
                    "publisher: {}; connections (opened, first confirm) since the kill: {:?}",
                    l.phase,
                    l.connections
                        .iter()
                        .filter(|c| c.0 > killed)
                        .map(|c| (c.0 - killed, c.1.map(|t| t - killed)))
                        .collect::<Vec<_>>()
                );
                panic!("round {round}: no confirm on the new leader");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        failovers.push(took);
        eprintln!(
            "round {round}: killed {}, {} leads; first confirm after {took:?}",
            nodes[leader].name, nodes[next].name
        );
        nodes[leader].restart();
        leader = next;
    }

    // Stop publishing; the consumer drains until it has every confirmed message.
    stop_publishing.store(true, Ordering::Relaxed);
    let _ = p.await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let l = ledger.lock().expect("ledger");
            l.confirmed.iter().filter(|id| !l.received.contains_key(id)).count()
        };
        if missing == 0 {
            break;
        }
        if Instant::now() > deadline {
            let l = ledger.lock().expect("ledger");
            let lost: Vec<&u64> = l
                .confirmed
                .iter()
                .filter(|id| !l.received.contains_key(id))
                .take(20)
                .collect();
            panic!("{missing} confirmed messages lost, e.g. {lost:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_consuming.store(true, Ordering::Relaxed);
    let _ = c.await;
    let l = ledger.lock().expect("ledger");
    let duplicates: u32 = l.received.values().map(|n| n - 1).sum();
    failovers.sort();
    eprintln!(
        "{KILLS} kill -9s: {} confirmed, 0 lost, {} received, {duplicates} duplicates; kill to first confirm: min {:?}, median {:?}, max {:?}",
        l.confirmed.len(),
        l.received.len(),
        failovers[0],
        failovers[failovers.len() / 2],
        failovers[failovers.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_leaves_the_in_sync_set_and_rejoins_when_resumed() {
    let etcd = Etcd::start();
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_warren-test-broker");
    let args = ["--cluster-replication-deadline", "1"];
    let mut nodes = vec![Node::start_with(bin, "n1", &etcd, data.path(), TTL_S, &args)];
    assert_eq!(await_leader(&nodes, Duration::from_secs(10)), 0);
    for n in ["n2", "n3"] {
        nodes.push(Node::start_with(bin, n, &etcd, data.path(), TTL_S, &args));
        await_in_sync(&nodes[0], n, Duration::from_secs(20));
    }
    let conn = connect_leader(&[nodes[0].amqp_url()], Duration::from_secs(5))
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    assert!(declare(&ch).await);
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let publish = |n: u32| {
        let ch = ch.clone();
        async move {
            for i in 0..n {
                ch.basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    i.to_string().as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            }
        }
    };
    publish(10).await;

    // SIGSTOP n3: once the deadline passes it leaves the in-sync set, and confirms go on (n2 still acks).
    let pid = nodes[2].pid().expect("n3 runs").to_string();
    Command::new("kill").args(["-STOP", &pid]).status().expect("kill -STOP");
    let stopped = Instant::now();
    let publishing = tokio::spawn(publish(200));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = nodes[0].cluster();
        if c["in_sync"] == serde_json::json!(["n1", "n2"]) {
            eprintln!("a paused follower left the in-sync set after {:?}", stopped.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "n3 still in sync: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .expect("confirms go on without the paused follower")
        .expect("publisher");

    // SIGCONT: it catches up and is named again.
    Command::new("kill").args(["-CONT", &pid]).status().expect("kill -CONT");
    let c = await_in_sync(&nodes[0], "n3", Duration::from_secs(30));
    assert_eq!(c["in_sync"], serde_json::json!(["n1", "n2", "n3"]), "{c}");
    publish(10).await;
    let _ = conn.close(200, "bye".into()).await;
}
