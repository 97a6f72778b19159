//! The Prometheus listener (issue 13, item 3): RabbitMQ's `rabbitmq_prometheus` names on their own port, read back
//! with a real exposition-format parser (`prometheus-parse`), and every metric the Grafana "RabbitMQ-Overview"
//! dashboard queries (tests/fixtures/grafana-rabbitmq-overview-metrics.txt, made by scripts/grafana-metrics from the
//! dashboard's JSON) present; the per-queue latency histograms well formed; no auth unless asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use prometheus_parse::{Sample, Scrape, Value};
use warren_tests::client::*;
use warren_tests::http::{get_text, TextResponse};
use warren_tests::TestBroker;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn dashboard_metrics() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/grafana-rabbitmq-overview-metrics.txt");
    std::fs::read_to_string(path)
        .expect("fixture")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn scrape(b: &TestBroker, path: &str) -> TextResponse {
    let r = get_text(b.prometheus_addr.expect("Prometheus listener"), path, None, None);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("a valid exposition")
}

/// The value of an unlabelled series (or of the first series) named `name`.
fn value(s: &Scrape, name: &str) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name)
        .unwrap_or_else(|| panic!("no {name}"));
    number(sample)
}

fn number(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a number: {other:?}", s.metric),
    }
}

/// Every family has HELP and TYPE lines: each sample's name has a HELP, and a TYPE the parser recognised (a
/// histogram's `_sum` and `_count` belong to the histogram's TYPE line).
fn assert_documented(text: &str, s: &Scrape) {
    let types: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for sample in &s.samples {
        let family = match &sample.value {
            Value::Untyped(_) => {
                let base = sample
                    .metric
                    .strip_suffix("_sum")
                    .or_else(|| sample.metric.strip_suffix("_count"))
                    .unwrap_or_else(|| panic!("{} has no TYPE line", sample.metric));
                assert_eq!(types.get(base), Some(&"histogram"), "{}", sample.metric);
                base
            }
            _ => sample.metric.as_str(),
        };
        assert!(s.docs.contains_key(family), "{family} has no HELP line");
        assert!(types.contains_key(family), "{family} has no TYPE line");
    }
    for (name, kind) in &types {
        if *kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} must end in _total");
        }
    }
}

/// Traffic: 10 confirmed publishes to `a`, 4 consumed and acked, 4 more delivered and left unacknowledged (2 stay
/// ready), 1 returned and 1 dropped unroutable, and a basic.get on `b`, which stays empty.
async fn traffic(b: &TestBroker) -> (lapin::Connection, String, String) {
    let conn = connect(&b.url()).await;
    let ch = channel(&conn).await;
    let (qa, qb) = (unique("prom-a"), unique("prom-b"));
    for q in [&qa, &qb] {
        ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("declare");
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    for i in 0..10u32 {
        let c = ch
            .basic_publish(
                "".into(),
                qa.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(matches!(c, Confirmation::Ack(None)));
    }
    for mandatory in [true, false] {
        ch.basic_publish(
            "".into(),
            "no-such-queue".into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    let consumer_ch = channel(&conn).await;
    consumer_ch.basic_qos(4, BasicQosOptions::default()).await.expect("qos");
    let mut consumer = consumer_ch
        .basic_consume(
            qa.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for _ in 0..4 {
        let d = next(&mut consumer, Duration::from_secs(5)).await.expect("a delivery");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    sync(&consumer_ch).await;
    // The prefetch of 4 is refilled: 4 more are delivered and stay unacknowledged.
    for _ in 0..4 {
        next(&mut consumer, Duration::from_secs(5)).await.expect("a delivery");
    }
    let got = ch
        .basic_get(qb.as_str().into(), BasicGetOptions::default())
        .await
        .expect("get");
    assert!(got.is_none(), "b is empty");
    sync(&ch).await;
    sync(&consumer_ch).await;
    (conn, qa, qb)
}

#[tokio::test]
async fn both_endpoints_parse_and_serve_every_dashboard_metric() {
    let b = TestBroker::start();
    let (_conn, qa, qb) = traffic(&b).await;

    let r = scrape(&b, "/metrics");
    assert_eq!(r.content_type, TEXT_FORMAT);
    assert!(!r.body.contains("# EOF"), "the 0.0.4 format has no EOF line");
    let agg = parse(&r.body);
    assert_documented(&r.body, &agg);
    let names: BTreeSet<&str> = agg.samples.iter().map(|s| s.metric.as_str()).collect();
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|m| !names.contains(m.as_str()))
        .collect();
    assert!(missing.is_empty(), "the dashboard queries {missing:?}, not in /metrics");

    let identity = agg
        .samples
        .iter()
        .find(|s| s.metric == "rabbitmq_identity_info")
        .expect("identity");
    let node = identity.labels.get("rabbitmq_node").expect("rabbitmq_node");
    assert!(node.starts_with("warren@"), "{node}");
    assert_eq!(identity.labels.get("rabbitmq_cluster"), Some(node));
    assert!(identity.labels.get("rabbitmq_cluster_permanent_id").is_some());
    let build = agg
        .samples
        .iter()
        .find(|s| s.metric == "rabbitmq_build_info")
        .expect("build");
    assert_eq!(build.labels.get("product"), Some("Warren"));
    assert_eq!(build.labels.get("rabbitmq_version"), Some("3.10.8"));

    // Aggregated: one series per name, summed over the queues.
    for (name, want) in [
        ("rabbitmq_queue_messages_ready", 2.0),
        ("rabbitmq_queue_messages_unacked", 4.0),
        ("rabbitmq_queue_messages", 6.0),
        ("rabbitmq_queue_messages_published_total", 10.0),
        ("rabbitmq_queue_consumers", 1.0),
        ("rabbitmq_queues", 2.0),
        ("rabbitmq_connections", 1.0),
        ("rabbitmq_channels", 2.0),
        ("rabbitmq_consumers", 1.0),
        ("rabbitmq_connections_opened_total", 1.0),
        ("rabbitmq_channels_opened_total", 2.0),
        ("rabbitmq_queues_declared_total", 2.0),
        ("rabbitmq_queues_created_total", 2.0),
        ("rabbitmq_channel_messages_published_total", 12.0),
        ("rabbitmq_channel_messages_confirmed_total", 12.0),
        ("rabbitmq_channel_messages_unconfirmed", 0.0),
        ("rabbitmq_channel_messages_unroutable_returned_total", 1.0),
        ("rabbitmq_channel_messages_unroutable_dropped_total", 1.0),
        ("rabbitmq_channel_messages_delivered_ack_total", 8.0),
        ("rabbitmq_channel_messages_delivered_total", 0.0),
        ("rabbitmq_channel_messages_acked_total", 4.0),
        ("rabbitmq_channel_get_empty_total", 1.0),
        ("rabbitmq_global_messages_received_total", 12.0),
        ("rabbitmq_global_messages_routed_total", 10.0),
        ("rabbitmq_global_messages_delivered_total", 8.0),
        ("rabbitmq_global_messages_acknowledged_total", 4.0),
    ] {
        assert_eq!(agg.samples.iter().filter(|s| s.metric == name).count(), 1, "{name}");
        assert_eq!(value(&agg, name), want, "{name}");
    }
    assert!(value(&agg, "rabbitmq_process_resident_memory_bytes") > 0.0);
    assert!(value(&agg, "rabbitmq_process_open_fds") > 0.0);
    assert!(value(&agg, "rabbitmq_process_max_fds") >= value(&agg, "rabbitmq_process_open_fds"));

    let r = scrape(&b, "/metrics/per-object");
    assert_eq!(r.content_type, TEXT_FORMAT);
    let per = parse(&r.body);
    assert_documented(&r.body, &per);
    let of = |name: &str, q: &str| {
        per.samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("queue") == Some(q))
            .map(number)
            .unwrap_or_else(|| panic!("no {name} for {q}"))
    };
    for sample in per.samples.iter().filter(|s| s.metric.starts_with("rabbitmq_queue_")) {
        assert_eq!(sample.labels.get("vhost"), Some("/"), "{}", sample.metric);
    }
    assert_eq!(of("rabbitmq_queue_messages_ready", &qa), 2.0);
    assert_eq!(of("rabbitmq_queue_messages_unacked", &qa), 4.0);
    assert_eq!(of("rabbitmq_queue_messages_published_total", &qa), 10.0);
    assert_eq!(of("rabbitmq_queue_consumers", &qa), 1.0);
    assert_eq!(of("rabbitmq_queue_messages", &qb), 0.0);
    assert_eq!(of("warren_queue_messages_acked_total", &qa), 4.0);
    // The node-wide figures are in the per-object view too.
    assert_eq!(value(&per, "rabbitmq_connections"), 1.0);

    // After the connection closes, its channels' counters stay in the totals.
    drop(_conn);
    let mut closed = 0.0;
    for _ in 0..100 {
        let agg = parse(&scrape(&b, "/metrics").body);
        closed = value(&agg, "rabbitmq_connections_closed_total");
        if closed == 1.0 {
            assert_eq!(value(&agg, "rabbitmq_channel_messages_published_total"), 12.0);
            assert_eq!(value(&agg, "rabbitmq_channels_closed_total"), 2.0);
            assert_eq!(value(&agg, "rabbitmq_connections"), 0.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closed, 1.0, "the connection was not seen closing");
}

/// The latency histograms on /metrics/per-object: buckets cumulative (never decreasing with `le`), ending in `+Inf`,
/// whose count is `_count`; as many deliveries as were made.
#[tokio::test]
async fn latency_histograms_are_cumulative_and_counted() {
    let b = TestBroker::start();
    let (_conn, qa, _) = traffic(&b).await;
    let text = scrape(&b, "/metrics/per-object").body;
    let per = parse(&text);
    for (name, want) in [
        ("warren_queue_deliver_latency_seconds", 8.0),
        ("warren_queue_ack_latency_seconds", 4.0),
    ] {
        let h = per
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("queue") == Some(qa.as_str()))
            .unwrap_or_else(|| panic!("no {name}"));
        let Value::Histogram(buckets) = &h.value else {
            panic!("{name} is not a histogram: {:?}", h.value)
        };
        assert!(buckets.len() > 2, "{buckets:?}");
        for pair in buckets.windows(2) {
            assert!(pair[0].less_than < pair[1].less_than, "bounds ascend: {buckets:?}");
            assert!(pair[0].count <= pair[1].count, "cumulative: {buckets:?}");
        }
        let last = buckets.last().expect("a bucket");
        assert!(last.less_than.is_infinite(), "the last bucket is +Inf");
        let count = per
            .samples
            .iter()
            .find(|s| s.metric == format!("{name}_count") && s.labels.get("queue") == Some(qa.as_str()))
            .map(number)
            .expect("_count");
        let sum = per
            .samples
            .iter()
            .find(|s| s.metric == format!("{name}_sum") && s.labels.get("queue") == Some(qa.as_str()))
            .map(number)
            .expect("_sum");
        assert_eq!(last.count, count, "+Inf is _count");
        let inf = format!("{name}_bucket{{vhost=\"/\",queue=\"{qa}\",le=\"+Inf\"}}");
        assert_eq!(text.matches(&inf).count(), 1, "one +Inf bucket: {inf}");
        assert_eq!(count, want, "{name}");
        assert!(sum >= count * 0.001, "at least 1 ms each: {sum}");
        assert!(sum < 60.0, "and well under a minute: {sum}");
    }
}

#[tokio::test]
async fn openmetrics_when_the_scraper_asks_for_it() {
    let b = TestBroker::start();
    let addr = b.prometheus_addr.expect("listener");
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                  text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = get_text(addr, "/metrics", None, Some(accept));
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("application/openmetrics-text"),
        "{}",
        r.content_type
    );
    assert!(r.body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(r.body.contains("# TYPE rabbitmq_connections_opened counter\n"));
    assert!(r.body.contains("\nrabbitmq_connections_opened_total "));
}

#[test]
fn no_auth_by_default_and_basic_auth_when_asked() {
    let open = TestBroker::start();
    let r = get_text(open.prometheus_addr.expect("listener"), "/metrics", None, None);
    assert_eq!(r.status, 200, "RabbitMQ's plugin asks for no credentials");

    let guarded = TestBroker::start_with(|c| c.prometheus_auth = true);
    let addr = guarded.prometheus_addr.expect("listener");
    for path in ["/metrics", "/metrics/per-object"] {
        let r = get_text(addr, path, None, None);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        let err: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON error");
        assert_eq!(err["error"], "not_authorised");
        assert!(err["reason"].is_string());
        let r = get_text(addr, path, Some("guest:wrong"), None);
        assert_eq!(r.status, 401);
        let r = get_text(addr, path, Some("guest:guest"), None);
        assert_eq!(r.status, 200, "a management user");
        assert!(r.body.contains("rabbitmq_identity_info"));
    }
    let r = get_text(addr, "/metrics/detailed", Some("guest:guest"), None);
    assert_eq!(r.status, 404, "not offered: {}", r.body);
}

#[test]
fn an_empty_listen_list_turns_the_listener_off() {
    let b = TestBroker::start_with(|c| c.prometheus_listen.clear());
    assert_eq!(b.prometheus_addr, None);
    // The broker still runs.
    let (status, _) = warren_tests::http::request(b.admin_addr, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(status, 200);
}

/// A second, grammar-based parser (`openmetrics-parser`, pest grammars of both formats) accepts both endpoints in
/// both formats, and finds every dashboard metric as a family with its HELP text.
#[tokio::test]
async fn a_strict_grammar_accepts_both_formats() {
    let b = TestBroker::start();
    let (_conn, _, _) = traffic(&b).await;
    let addr = b.prometheus_addr.expect("listener");
    for path in ["/metrics", "/metrics/per-object"] {
        let text = get_text(addr, path, None, None);
        let classic = openmetrics_parser::prometheus::parse_prometheus(&text.body)
            .unwrap_or_else(|e| panic!("{path} (text 0.0.4): {e:?}"));
        let om = get_text(addr, path, None, Some("application/openmetrics-text; version=1.0.0"));
        let open = openmetrics_parser::openmetrics::parse_openmetrics(&om.body)
            .unwrap_or_else(|e| panic!("{path} (OpenMetrics): {e:?}"));
        let helps = classic
            .families
            .values()
            .map(|f| (&f.family_name, &f.help))
            .chain(open.families.values().map(|f| (&f.family_name, &f.help)));
        for (name, help) in helps {
            assert!(!help.is_empty(), "{path}: {name} has no HELP");
        }
        for name in dashboard_metrics() {
            assert!(classic.families.contains_key(&name), "{path} (text 0.0.4): no {name}");
            // OpenMetrics names a counter's family without `_total`.
            let family = name.strip_suffix("_total").unwrap_or(&name);
            assert!(open.families.contains_key(family), "{path} (OpenMetrics): no {family}");
        }
    }
}
