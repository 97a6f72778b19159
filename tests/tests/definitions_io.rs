//! Definitions in RabbitMQ's format (issue 13): a RabbitMQ 3.10.8 export imports whole (access, topology and
//! policies), and Warren's export imports into a fresh Warren unchanged.

use std::path::Path;

use lapin::options::*;
use lapin::BasicProperties;
use serde_json::Value;
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

fn fixture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rabbitmq-3.10-definitions.json"))
        .expect("fixture")
}

/// The records of `key`, each without the fields that differ by design, sorted.
fn records(d: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = d[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(o) = r.as_object_mut() {
                        o.remove("limits");
                        o.remove("metadata");
                    }
                    r.to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn a_rabbitmq_export_imports_with_its_topology_and_policies() {
    let b = TestBroker::start();
    let g = "guest:guest";
    let (s, body) = request(b.admin_addr, "POST", "/api/definitions", g, &fixture());
    assert_eq!(s, 204, "{body}");

    let (_, q) = request(b.admin_addr, "GET", "/api/queues/orders/app.orders", g, "");
    assert_eq!(q["policy"], "cap", "{q}");
    assert_eq!(q["arguments"]["x-max-priority"], 5);
    assert!(
        q["arguments"].get("x-queue-type").is_none(),
        "RabbitMQ's implicit classic type is dropped"
    );
    let (_, x) = request(b.admin_addr, "GET", "/api/exchanges/orders", g, "");
    let names: Vec<&str> = x
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for want in ["orders.events", "orders.unrouted", "orders.dlx"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }

    // The imported topology routes: orders.# reaches app.orders.
    let conn = connect(&format!("amqp://ops:ops-pass-1@{}/orders", b.addr)).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.basic_publish(
        "orders.events".into(),
        "orders.new".into(),
        BasicPublishOptions::default(),
        b"o1",
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    assert_eq!(depth(&ch, "app.orders").await, 1);
}

#[tokio::test]
async fn an_export_imports_into_a_fresh_broker_unchanged() {
    let one = TestBroker::start();
    let g = "guest:guest";
    let (s, body) = request(one.admin_addr, "POST", "/api/definitions", g, &fixture());
    assert_eq!(s, 204, "{body}");
    // Something Warren-made too: a user with an argon2id hash, a transient queue (not exported).
    assert_eq!(
        request(
            one.admin_addr,
            "PUT",
            "/api/users/local",
            g,
            r#"{"password":"pw","tags":""}"#
        )
        .0,
        201
    );
    assert_eq!(
        request(
            one.admin_addr,
            "PUT",
            "/api/queues/%2F/scratch",
            g,
            r#"{"durable":false}"#
        )
        .0,
        201
    );
    let (s, exported) = request(one.admin_addr, "GET", "/api/definitions", g, "");
    assert_eq!(s, 200);
    // RabbitMQ 3.10's import fails as a whole on a password_hash that is not base64 (it said
    // `{:not_base64, "$argon2id$v=19$..."}` to the first exports), so an argon2id hash travels as base64 of its PHC
    // string under an algorithm of Warren's name (tests/fixtures/check_export_imports_into_rabbitmq.sh).
    let local = exported["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == "local"))
        .expect("the local user is exported");
    assert_eq!(
        local["hashing_algorithm"], "warren_password_hashing_argon2id",
        "{local}"
    );
    let hash = local["password_hash"].as_str().expect("hash");
    assert!(
        !hash.contains('$') && !hash.is_empty(),
        "base64, not a PHC string: {local}"
    );
    assert!(
        !records(&exported, "queues").iter().any(|q| q.contains("scratch")),
        "transient queues are not exported"
    );
    assert!(
        !records(&exported, "exchanges").iter().any(|x| x.contains("\"amq.")),
        "built-in exchanges are not exported"
    );

    let two = TestBroker::start();
    let (s, body) = request(two.admin_addr, "POST", "/api/definitions", g, &exported.to_string());
    assert_eq!(s, 204, "{body}");
    let (_, again) = request(two.admin_addr, "GET", "/api/definitions", g, "");
    for key in [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert_eq!(records(&again, key), records(&exported, key), "{key}");
    }
    // The users log in on the second broker with their passwords, RabbitMQ-hashed or argon2id alike.
    connect(&format!("amqp://ops:ops-pass-1@{}/orders", two.addr)).await;
    let (s, _) = request(
        two.admin_addr,
        "PUT",
        "/api/permissions/%2F/local",
        g,
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_eq!(s, 201);
    connect(&format!("amqp://local:pw@{}/%2f", two.addr)).await;

    // One vhost's definitions: its topology only.
    let (s, orders) = request(one.admin_addr, "GET", "/api/definitions/orders", g, "");
    assert_eq!(s, 200);
    assert!(orders.get("users").is_none());
    assert_eq!(records(&orders, "queues").len(), 2, "{orders}");
}

#[tokio::test]
async fn a_bad_record_is_a_400_that_names_it() {
    let b = TestBroker::start();
    let g = "guest:guest";
    let bad =
        r#"{"queues": [{"name": "q", "vhost": "nowhere", "durable": true, "auto_delete": false, "arguments": {}}]}"#;
    let (s, body) = request(b.admin_addr, "POST", "/api/definitions", g, bad);
    assert_eq!(s, 400);
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("nowhere")), "{body}");
    let bad = r#"{"users": [{"name": "u", "password_hash": "nope", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}]}"#;
    let (s, body) = request(b.admin_addr, "POST", "/api/definitions", g, bad);
    assert_eq!(s, 400, "{body}");
    let strings =
        r#"{"queues": [{"name": "q", "vhost": "/", "durable": "true", "auto_delete": "false", "arguments": {}}]}"#;
    let (s, body) = request(b.admin_addr, "POST", "/api/definitions", g, strings);
    assert_eq!(s, 204, "booleans as strings, as rabbitmqadmin sends them: {body}");
    let (s, _) = request(b.admin_addr, "GET", "/api/definitions", "nobody:x", "");
    assert_eq!(s, 401);
}

/// `--load-definitions FILE` at start (the binary, as an operator runs it): the fixture's users log in; a bad file
/// stops the start with one line.
#[tokio::test]
async fn load_definitions_at_start() {
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().expect("temp dir");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    };
    let (port, admin) = (free(), free());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rabbitmq-3.10-definitions.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--prometheus-listen",
            "127.0.0.1:0",
        ])
        .args(["--log", "warn", "--disk-free-limit", "1MB", "--load-definitions"])
        .arg(&fixture)
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "broker did not come up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    connect(&format!("amqp://ops:ops-pass-1@127.0.0.1:{port}/orders")).await;
    let _ = child.kill();
    let _ = child.wait();

    let bad = data.path().join("bad.json");
    std::fs::write(&bad, r#"{"queues": [{"name": "q", "vhost": "nowhere"}]}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--prometheus-listen",
            "127.0.0.1:0",
            "--log",
            "off",
            "--load-definitions",
        ])
        .arg(&bad)
        .arg("--data-dir")
        .arg(data.path().join("second"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains("nowhere"), "{err}");
}
