//! warren-perf's load generator, run as a library: against a real broker its integrity mode must find every message
//! exactly once and in per-producer order, and against the null sink (which never delivers) it must report the
//! loss instead of passing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warren_bench::perf::{self, AckMode, Config, Limit};
use warren_tests::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_run_against_a_real_broker() {
    let broker = TestBroker::start();
    let config = Config {
        uri: broker.url(),
        producers: 2,
        consumers: 2,
        queues: 2,
        persistent: true,
        confirm: 200,
        prefetch: 100,
        ack: AckMode::Multiple(20),
        integrity: true,
        limit: Limit::Time(Duration::from_secs(2)),
        ..Config::default()
    };
    let report = perf::run(config).await.expect("the run completes");
    let integrity = report.integrity.expect("integrity was checked");
    assert!(integrity.ok, "{:?}", integrity.errors);
    assert!(report.sent > 0);
    assert_eq!(report.received, report.sent);
    assert_eq!(report.confirmed, report.sent);
    assert_eq!(report.latency_us.count, report.received, "every body carried a stamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_count_run_with_channels_sharing_connections() {
    let broker = TestBroker::start();
    let config = Config {
        uri: broker.url(),
        producers: 2,
        consumers: 3,
        queues: 3,
        channels_per_connection: 2,
        exchange_type: Some(perf::ExchangeKind::Fanout),
        ack: AckMode::Each,
        integrity: true,
        limit: Limit::Count(5_000),
        ..Config::default()
    };
    let report = perf::run(config).await.expect("the run completes");
    let integrity = report.integrity.expect("integrity was checked");
    assert!(integrity.ok, "{:?}", integrity.errors);
    assert_eq!(report.sent, 10_000);
    assert_eq!(report.received, 30_000, "every queue gets every message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_confirms_everything_and_integrity_reports_what_never_arrived() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let sink = tokio::spawn(perf::sink::serve(listener, stop.clone()));
    let uri = format!("amqp://guest:guest@{addr}/%2f");

    let publish_only = Config {
        uri: uri.clone(),
        consumers: 0,
        confirm: 1000,
        limit: Limit::Count(50_000),
        ..Config::default()
    };
    let report = perf::run(publish_only).await.expect("publishing to the sink");
    assert_eq!((report.sent, report.confirmed), (50_000, 50_000));

    // The sink accepts the consumer but delivers nothing: every message is lost, and the check must say so.
    let lossy = Config {
        uri,
        integrity: true,
        limit: Limit::Count(1_000),
        drain_idle: Duration::from_millis(200),
        ..Config::default()
    };
    let report = perf::run(lossy).await.expect("the run completes");
    let integrity = report.integrity.expect("integrity was checked");
    assert!(!integrity.ok);
    assert!(
        integrity
            .errors
            .iter()
            .any(|e| e.contains("the last 1000 never arrived")),
        "{:?}",
        integrity.errors
    );
    stop.cancel();
    sink.await.expect("sink task").expect("sink");
}
