//! Crash safety: a broker child process is killed with SIGKILL while producers publish persistent messages with
//! confirms and a consumer acks. After every restart, each confirmed message is either still queued exactly once
//! or was acked before the crash; a message that comes back after its ack was sent is flagged redelivered.
//!
//! `WARREN_CRASH_CYCLES` sets the number of kill/restart cycles (default 20; the README documents a longer run).

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

const QUEUE: &str = "crash-test";

/// A broker child process, SIGKILLed when dropped (so a failing assertion never leaves it running).
struct BrokerProcess(Child);

impl BrokerProcess {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_broker(port: u16, data: &Path) -> BrokerProcess {
    spawn_broker_with_admin(port, 0, data)
}

fn spawn_broker_with_admin(port: u16, admin_port: u16, data: &Path) -> BrokerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
            // Not RabbitMQ's default port: brokers of parallel tests would fight over it.
            "--prometheus-listen",
            "127.0.0.1:0",
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the broker");
    let child = BrokerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

async fn connect(port: u16) -> Connection {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect")
}

/// What the test knows: ids confirmed by the broker, and ids whose ack the consumer sent.
#[derive(Default)]
struct Ledger {
    confirmed: HashSet<u64>,
    acked: HashSet<u64>,
}

/// Drains the queue after a restart and checks it against the ledger; everything drained is acked.
async fn verify(port: u16, ledger: &mut Ledger, published: u64, cycle: usize) -> usize {
    let conn = connect(port).await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.basic_qos(500, BasicQosOptions::default()).await.expect("qos");
    let mut c = ch
        .basic_consume(
            QUEUE.into(),
            "verify".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut seen: HashMap<u64, bool> = HashMap::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(500), c.next()).await {
        let id = u64::from_be_bytes(d.data[..8].try_into().expect("8-byte id"));
        assert!(id < published, "cycle {cycle}: message {id} was never published");
        assert!(
            seen.insert(id, d.redelivered).is_none(),
            "cycle {cycle}: message {id} is queued twice"
        );
        if ledger.acked.contains(&id) {
            assert!(
                d.redelivered,
                "cycle {cycle}: message {id} came back after its ack without the redelivered flag"
            );
        }
        ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .expect("ack");
    }
    for id in &ledger.confirmed {
        assert!(
            ledger.acked.contains(id) || seen.contains_key(id),
            "cycle {cycle}: confirmed message {id} is lost (neither acked nor queued)"
        );
    }
    // Make sure our acks reached the broker before it is killed again.
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("round trip");
    conn.close(200, "verified".into()).await.ok();
    ledger.acked.extend(seen.keys());
    seen.len()
}

/// Publishes with confirms and consumes with acks until the broker dies.
async fn load(port: u16, ledger: Arc<Mutex<Ledger>>, next_id: Arc<Mutex<u64>>) {
    let producer = {
        let ledger = ledger.clone();
        async move {
            let conn = connect(port).await;
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            loop {
                let mut batch = Vec::new();
                for _ in 0..20 {
                    let id = {
                        let mut n = next_id.lock().expect("lock");
                        *n += 1;
                        *n - 1
                    };
                    let props = BasicProperties::default().with_delivery_mode(2);
                    match ch
                        .basic_publish(
                            "".into(),
                            QUEUE.into(),
                            BasicPublishOptions::default(),
                            &id.to_be_bytes(),
                            props,
                        )
                        .await
                    {
                        Ok(c) => batch.push((id, c)),
                        Err(_) => return,
                    }
                }
                for (id, c) in batch {
                    match c.await {
                        Ok(conf) if conf.is_ack() => {
                            ledger.lock().expect("lock").confirmed.insert(id);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
        }
    };
    let consumer = async move {
        let conn = connect(port).await;
        let ch = conn.create_channel().await.expect("channel");
        ch.basic_qos(50, BasicQosOptions::default()).await.expect("qos");
        let Ok(mut c) = ch
            .basic_consume(
                QUEUE.into(),
                "load".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        else {
            return;
        };
        while let Some(Ok(d)) = c.next().await {
            let id = u64::from_be_bytes(d.data[..8].try_into().expect("8-byte id"));
            // Record the ack as sent before sending it: if the broker dies in between, the message must come back
            // flagged redelivered, which `verify` checks.
            ledger.lock().expect("lock").acked.insert(id);
            if ch.basic_ack(d.delivery_tag, BasicAckOptions::default()).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(producer, consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_repeated_kill_9() {
    let cycles: usize = std::env::var("WARREN_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let data = tempfile::tempdir().expect("data dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next_id = Arc::new(Mutex::new(0u64));
    let (mut total_requeued, started) = (0, Instant::now());
    for cycle in 0..cycles {
        let mut child = spawn_broker(port, data.path());
        {
            let published = *next_id.lock().expect("lock");
            let mut l = std::mem::take(&mut *ledger.lock().expect("lock"));
            total_requeued += verify(port, &mut l, published, cycle).await;
            *ledger.lock().expect("lock") = l;
        }
        let run_for = Duration::from_millis(150 + (cycle as u64 * 37) % 300);
        let task = tokio::spawn(load(port, ledger.clone(), next_id.clone()));
        tokio::time::sleep(run_for).await;
        child.kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let mut child = spawn_broker(port, data.path());
    let published = *next_id.lock().expect("lock");
    let mut l = std::mem::take(&mut *ledger.lock().expect("lock"));
    total_requeued += verify(port, &mut l, published, cycles).await;
    child.kill();
    println!(
        "{cycles} kill -9 cycles in {:?}: {published} published, {} confirmed, {total_requeued} found queued after restarts, none lost",
        started.elapsed(),
        l.confirmed.len()
    );
    assert!(l.confirmed.len() > 100, "the load actually ran");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Ids in a queue, read with the admin API's peek (which changes nothing).
fn ids_in(admin: std::net::SocketAddr, queue: &str) -> Vec<u64> {
    let (status, page) = warren_tests::http::request(
        admin,
        "POST",
        &format!("/api/queues/%2F/{queue}/peek"),
        "guest:guest",
        r#"{"count":1000}"#,
    );
    assert_eq!(status, 200, "peek {queue}: {page}");
    page.as_array()
        .expect("array")
        .iter()
        .map(|m| m["body"].as_str().and_then(|b| b.parse().ok()).expect("numeric body"))
        .collect()
}

/// A worker that, in one transaction each, takes a job from "jobs", publishes its result to "results" and acks the
/// job, is killed with SIGKILL at random points. After every restart each job is either still queued (not done) or
/// has exactly one result (done): never both, never neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_atomic_across_kill_9() {
    const JOBS: u64 = 1000;
    let data = tempfile::tempdir().expect("data dir");
    let (port, admin_port) = (free_port(), free_port());
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    {
        let _b = spawn_broker_with_admin(port, admin_port, data.path());
        let conn = connect(port).await;
        let ch = conn.create_channel().await.expect("channel");
        for q in ["jobs", "results"] {
            ch.queue_declare(
                q.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare");
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for id in 0..JOBS {
            let props = BasicProperties::default().with_delivery_mode(2);
            ch.basic_publish(
                "".into(),
                "jobs".into(),
                BasicPublishOptions::default(),
                id.to_string().as_bytes(),
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        }
    }
    let mut done_total = 0;
    for cycle in 0..12u64 {
        let mut b = spawn_broker_with_admin(port, admin_port, data.path());
        let jobs = ids_in(admin, "jobs");
        let results = ids_in(admin, "results");
        let job_set: HashSet<u64> = jobs.iter().copied().collect();
        let result_set: HashSet<u64> = results.iter().copied().collect();
        assert_eq!(results.len(), result_set.len(), "cycle {cycle}: a job has two results");
        assert_eq!(jobs.len(), job_set.len(), "cycle {cycle}: a job is queued twice");
        for id in 0..JOBS {
            assert!(
                job_set.contains(&id) != result_set.contains(&id),
                "cycle {cycle}: job {id} is {} (a transaction was applied in part)",
                if job_set.contains(&id) {
                    "both queued and done"
                } else {
                    "neither queued nor done"
                }
            );
        }
        done_total = result_set.len();
        if job_set.is_empty() {
            break;
        }
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = commits.clone();
        let worker = tokio::spawn(async move {
            let conn = connect(port).await;
            let Ok(ch) = conn.create_channel().await else { return };
            if ch.tx_select().await.is_err() {
                return;
            }
            loop {
                let Ok(Some(m)) = ch.basic_get("jobs".into(), BasicGetOptions::default()).await else {
                    return;
                };
                let props = BasicProperties::default().with_delivery_mode(2);
                let publish = ch.basic_publish(
                    "".into(),
                    "results".into(),
                    BasicPublishOptions::default(),
                    &m.delivery.data,
                    props,
                );
                if publish.await.is_err()
                    || ch
                        .basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                        .await
                        .is_err()
                {
                    return;
                }
                if ch.tx_commit().await.is_err() {
                    return;
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        tokio::time::sleep(Duration::from_millis(30 + cycle * 17 % 60)).await;
        // On a loaded machine the worker may not have committed anything yet: give it its first commit (bounded),
        // so that every cycle kills a worker in the middle of real work.
        let waited = std::time::Instant::now();
        while commits.load(std::sync::atomic::Ordering::Relaxed) == 0 && waited.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b.kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    println!("transactions survived 12 kill -9 cycles; {done_total} of {JOBS} jobs done, none half-applied");
    assert!(done_total > 0, "the worker made progress");
}

/// A redrive from a dead-letter queue back to its source runs while the broker is killed with SIGKILL, again and
/// again. After every restart each message is in the source, the dead-letter queue, or both (a move writes the
/// destination durably before it lets go of the source: a message may be duplicated, never lost). A last
/// uninterrupted redrive empties the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_killed_midway_loses_nothing() {
    const N: u64 = 400;
    let data = tempfile::tempdir().expect("data dir");
    let (port, admin_port) = (free_port(), free_port());
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    {
        let _b = spawn_broker_with_admin(port, admin_port, data.path());
        let conn = connect(port).await;
        let ch = conn.create_channel().await.expect("channel");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            lapin::types::AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            lapin::types::AMQPValue::LongString("work.dlq".into()),
        );
        ch.queue_declare("work.dlq".into(), durable, FieldTable::default())
            .await
            .expect("dlq");
        ch.queue_declare("work".into(), durable, args).await.expect("work");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for id in 0..N {
            ch.basic_publish(
                "".into(),
                "work".into(),
                BasicPublishOptions::default(),
                id.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        }
        while let Some(m) = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .expect("get")
        {
            ch.basic_reject(m.delivery.delivery_tag, BasicRejectOptions { requeue: false })
                .await
                .expect("reject");
        }
        // The dead letters are on disk before the broker goes.
        warren_tests::client::depth(&ch, "work.dlq").await;
    }
    let mut duplicated = 0;
    for cycle in 0..8u64 {
        let mut b = spawn_broker_with_admin(port, admin_port, data.path());
        let work = ids_in(admin, "work");
        let dlq = ids_in(admin, "work.dlq");
        let everywhere: HashSet<u64> = work.iter().chain(&dlq).copied().collect();
        let missing: Vec<u64> = (0..N).filter(|id| !everywhere.contains(id)).collect();
        assert!(missing.is_empty(), "cycle {cycle}: lost {missing:?}");
        duplicated = work.len() + dlq.len() - N as usize;
        if dlq.is_empty() {
            break;
        }
        let (s, t) = warren_tests::http::request(
            admin,
            "POST",
            "/api/queues/%2F/work.dlq/move",
            "guest:guest",
            r#"{"to":"source","rate":400}"#,
        );
        assert_eq!(s, 202, "{t}");
        tokio::time::sleep(Duration::from_millis(40 + cycle * 37 % 120)).await;
        b.kill();
    }
    // One last, uninterrupted redrive takes what is left.
    let _b = spawn_broker_with_admin(port, admin_port, data.path());
    let (s, t) = warren_tests::http::request(
        admin,
        "POST",
        "/api/queues/%2F/work.dlq/move",
        "guest:guest",
        r#"{"to":"source","wait":true}"#,
    );
    assert_eq!((s, t["state"].as_str()), (200, Some("done")), "{t}");
    let work: HashSet<u64> = ids_in(admin, "work").into_iter().collect();
    assert_eq!(work.len() as u64, N, "every message is back on its source");
    assert!(ids_in(admin, "work.dlq").is_empty());
    println!("redrive survived kill -9 cycles: {N} messages, none lost, {duplicated} duplicated at the last kill");
}
