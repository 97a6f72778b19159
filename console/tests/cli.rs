//! The scriptable twin against a real broker (issue 15, item 8): each subcommand's output (`--json`, and the
//! table of `queues`) and exit code, `--yes` refused without a terminal, usage errors, and a broker's refusal.

mod common;

use common::Setup;
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use warren_tests::client::{channel, connect};

#[test]
fn queues_as_a_table_and_as_json() {
    let s = Setup::new();
    s.declare("orders", "{}");
    s.declare("orders.dlq", "{}");
    s.publish("orders", "a", "");
    s.publish("orders", "b", "");
    let run = s.run(&["queues"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "VHOST  NAME        TYPE     READY  UNACKED  CONSUMERS  STATE\n\
         /      orders      classic      2        0          0  idle\n\
         /      orders.dlq  classic      0        0          0  idle\n"
    );
    let json = s.run(&["queues", "--json"]).ok_json();
    let names: Vec<&str> = json
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["orders", "orders.dlq"]);
    assert_eq!(json[0]["messages_ready"], 2);
    let only = s.run(&["queues", "--vhost", "/", "--json"]).ok_json();
    assert_eq!(only.as_array().map(Vec::len), Some(2));
}

#[test]
fn peek_shows_messages_and_consumes_nothing() {
    let s = Setup::new();
    s.declare("orders", "{}");
    for body in ["one", "two {\"tenant\":\"b\"}", "three"] {
        s.publish("orders", body, "");
    }
    let json = s.run(&["peek", "orders", "--json"]).ok_json();
    let bodies: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["one", "two {\"tenant\":\"b\"}", "three"]);
    let json = s
        .run(&["peek", "orders", "--json", "--filter", "tenant", "--count", "5"])
        .ok_json();
    assert_eq!(json.as_array().map(Vec::len), Some(1));
    let table = s.run(&["peek", "orders", "--from", "2"]);
    assert_eq!(table.code, 0);
    assert!(
        table
            .stdout
            .starts_with("ID  ROUTING KEY  PRIO  DELIVERIES  DEATH  BODY\n"),
        "{table:?}"
    );
    assert!(table.stdout.contains("three"));
    assert_eq!(s.ready("orders"), 3, "peek consumed nothing");
}

#[test]
fn purge_needs_yes_without_a_terminal_and_undo_puts_it_back() {
    let s = Setup::new();
    s.declare("junk", "{}");
    for i in 0..3 {
        s.publish("junk", &format!("m{i}"), "");
    }
    let refused = s.run(&["purge", "junk"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("purge needs --yes when stdin is not a terminal"),
        "{refused:?}"
    );
    assert_eq!(s.ready("junk"), 3, "nothing was purged");

    let purged = s.run(&["purge", "junk", "--yes", "--json"]).ok_json();
    assert_eq!(purged["purged"], 3);
    let ticket = purged["undo"]["id"].as_u64().expect("an undo ticket");
    assert_eq!(s.ready("junk"), 0);

    let list = s.run(&["undo", "--json"]).ok_json();
    assert_eq!(list[0]["id"].as_u64(), Some(ticket));
    assert_eq!(
        (list[0]["queue"].as_str(), list[0]["messages"].as_u64()),
        (Some("junk"), Some(3))
    );
    let table = s.run(&["undo"]);
    assert!(
        table
            .stdout
            .starts_with("ID  VHOST  QUEUE  ACTION  MESSAGES  USER   UNTIL"),
        "{table:?}"
    );

    let id = ticket.to_string();
    assert_eq!(s.run(&["undo", &id]).code, 2, "undo is destructive too");
    let restored = s.run(&["undo", &id, "--yes", "--json"]).ok_json();
    assert_eq!(
        (restored["queue"].as_str(), restored["restored"].as_u64()),
        (Some("junk"), Some(3))
    );
    assert_eq!(s.ready("junk"), 3);

    // Human output.
    let text = s.run(&["purge", "junk", "-y"]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout
            .starts_with("Purged 3 messages from junk. Undo with: warren-console undo "),
        "{text:?}"
    );
}

#[test]
fn a_broker_refusal_exits_1_with_its_reason() {
    let s = Setup::new();
    let run = s.run(&["purge", "nowhere", "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: purge nowhere: no queue 'nowhere' in vhost '/' (404)\n"
    );
    assert!(run.stdout.is_empty());
    let run = s.run(&["undo", "999", "--yes"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("nothing to undo with id 999"), "{run:?}");
    // Wrong credentials are the broker's refusal too.
    let run = s.run(&["queues", "--password", "wrong"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("(401)"), "{run:?}");
    // No broker at all.
    let run = common::run_in(s.config_home.path(), &["queues", "--url", "http://127.0.0.1:9"], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("cannot connect"), "{run:?}");
}

#[test]
fn bad_arguments_exit_2() {
    let s = Setup::new();
    for args in [
        &["peek"][..],
        &["purge", "q", "--frobnicate"],
        &["priority", "q", "--set", "1"],
        &["priority", "q", "--id", "1"],
        &["move", "q", "--yes"],
        &["publish", "--body", "x"],
        &["peek", "q", "--count", "5000"],
        &["completions", "tcsh"],
        &["nonsense"],
    ] {
        let run = s.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("error:"), "{run:?}");
    }
    let help = s.run(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"), "{help:?}");
}

#[test]
fn pause_and_resume() {
    let s = Setup::new();
    s.declare("work", "{}");
    let paused = s.run(&["pause", "work", "--json"]).ok_json();
    assert_eq!(
        (paused["paused"].as_bool(), paused["changed"].as_bool()),
        (Some(true), Some(true))
    );
    let again = s.run(&["pause", "work"]);
    assert_eq!(again.stdout, "work was already paused.\n");
    let table = s.run(&["queues"]);
    assert!(table.stdout.contains("paused"), "{table:?}");
    let resumed = s.run(&["resume", "work", "--json"]).ok_json();
    assert_eq!(
        (resumed["paused"].as_bool(), resumed["changed"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(s.run(&["pause", "nowhere"]).code, 1);
}

#[test]
fn publish_to_a_queue_or_an_exchange() {
    let s = Setup::new();
    s.declare("inbox", "{}");
    let r = s
        .run(&[
            "publish",
            "inbox",
            "--body",
            "hello",
            "--header",
            "tenant=a",
            "--message-id",
            "m-1",
            "--json",
        ])
        .ok_json();
    assert_eq!(r["routed"], true);
    let r = s.run_stdin(
        &[
            "publish",
            "--exchange",
            "amq.direct",
            "--routing-key",
            "nowhere",
            "--body",
            "-",
        ],
        Some("x"),
    );
    assert_eq!(r.code, 1, "unroutable: {r:?}");
    assert!(r.stderr.contains("no queue took it"), "{r:?}");
    let r = s.run_stdin(&["publish", "inbox", "--body", "-"], Some("from stdin"));
    assert_eq!(r.stdout, "Published to queue inbox.\n");
    let peeked = s.run(&["peek", "inbox", "--json"]).ok_json();
    assert_eq!(peeked[0]["properties"]["message_id"], "m-1");
    assert_eq!(peeked[0]["properties"]["headers"]["tenant"], "a");
    assert_eq!(peeked[1]["body"], "from stdin");
}

/// Dead-letters `n` messages of `work` into `work.dlq` with a real AMQP client (reject, no requeue).
async fn dead_letter(s: &Setup, n: usize) {
    s.declare("work.dlq", "{}");
    s.declare(
        "work",
        r#"{"x-dead-letter-exchange":"","x-dead-letter-routing-key":"work.dlq"}"#,
    );
    for i in 0..n {
        s.publish("work", &format!("order-{i}"), "");
    }
    let conn = connect(&s.broker.url()).await;
    let ch = channel(&conn).await;
    for _ in 0..n {
        let m = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .expect("a message");
        ch.basic_reject(m.delivery.delivery_tag, BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    }
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_moves_dead_letters_back_and_move_takes_them_elsewhere() {
    let s = Setup::new();
    dead_letter(&s, 5).await;
    assert_eq!(s.ready("work.dlq"), 5);
    let table = s.run(&["peek", "work.dlq"]);
    assert!(table.stdout.contains("rejected from work"), "{table:?}");
    assert_eq!(s.run(&["redrive", "work.dlq"]).code, 2, "no --yes, no terminal");

    let ids: Vec<u64> = s
        .run(&["peek", "work.dlq", "--json"])
        .ok_json()
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    let two = format!("{},{}", ids[0], ids[1]);
    let task = s
        .run(&["redrive", "work.dlq", "--id", &two, "--yes", "--json"])
        .ok_json();
    assert_eq!(
        (task["state"].as_str(), task["moved"].as_u64()),
        (Some("done"), Some(2))
    );
    assert_eq!((s.ready("work"), s.ready("work.dlq")), (2, 3));

    let text = s.run(&["redrive", "work.dlq", "--yes"]);
    assert_eq!(text.stdout, "done: moved 3 of 3 from work.dlq.\n", "{text:?}");
    assert_eq!((s.ready("work"), s.ready("work.dlq")), (5, 0));

    // A message that never died has no x-death source: it stays, and the redrive says so with exit 1.
    s.publish("work.dlq", "never died", "");
    let partial = s.run(&["redrive", "work.dlq", "--yes"]);
    assert_eq!(partial.code, 1, "{partial:?}");
    assert!(partial.stdout.contains("1 not moved"), "{partial:?}");
    assert_eq!(partial.stderr, "error: redrive from work.dlq: 1 message not moved\n");
    assert_eq!(s.ready("work.dlq"), 1);
    let missing = s.run(&["move", "work", "--to", "nowhere", "--yes"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no queue 'nowhere'"), "{missing:?}");

    s.declare("archive", "{}");
    let task = s
        .run(&["move", "work", "--to", "archive", "--limit", "4", "--yes", "--json"])
        .ok_json();
    assert_eq!(
        (task["state"].as_str(), task["moved"].as_u64()),
        (Some("done"), Some(4))
    );
    assert_eq!((s.ready("work"), s.ready("archive")), (1, 4));
}

#[test]
fn priority_changes_the_messages_named() {
    let s = Setup::new();
    s.declare("jobs", r#"{"x-max-priority":5}"#);
    for i in 0..3 {
        s.publish("jobs", &format!("job-{i}"), "");
    }
    let peeked = s.run(&["peek", "jobs", "--json"]).ok_json();
    let last = peeked[2]["id"].as_u64().expect("id").to_string();
    assert_eq!(
        s.run(&["priority", "jobs", "--set", "4", "--id", &last]).code,
        2,
        "needs --yes"
    );
    let r = s
        .run(&["priority", "jobs", "--set", "4", "--id", &last, "--yes", "--json"])
        .ok_json();
    assert_eq!(r["changed"], 1);
    let r = s.run(&["priority", "jobs", "--step", "2", "--filter", "job-0", "--yes"]);
    assert_eq!(r.stdout, "Changed the priority of 1 message.\n", "{r:?}");
    let peeked = s.run(&["peek", "jobs", "--json"]).ok_json();
    let order: Vec<(&str, u64)> = peeked
        .as_array()
        .expect("array")
        .iter()
        .map(|m| (m["body"].as_str().unwrap_or(""), m["priority"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(order, [("job-2", 4), ("job-0", 2), ("job-1", 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_json_lines_that_import_publishes_again() {
    let s = Setup::new();
    dead_letter(&s, 3).await;
    s.publish(
        "work.dlq",
        "{\"binary\":false}",
        r#""properties":{"content_type":"application/json","priority":1},"#,
    );
    let export = s.run(&["export", "work.dlq"]);
    assert_eq!(export.code, 0, "{export:?}");
    assert_eq!(export.stderr, "exported 4 messages from work.dlq\n");
    let lines: Vec<serde_json::Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["properties"]["headers"]["x-death"][0]["queue"], "work");
    assert_eq!(s.ready("work.dlq"), 4, "export consumed nothing");
    let two = s.run(&["export", "work.dlq", "--count", "2"]);
    assert_eq!(two.stdout.lines().count(), 2);

    s.declare("replay", "{}");
    let imported = s.run_stdin(&["import", "replay", "--json"], Some(&export.stdout));
    assert_eq!(imported.code, 0, "{imported:?}");
    assert_eq!(
        imported.json(),
        serde_json::json!({"published": 4, "unroutable": 0, "left_out": 3})
    );
    assert!(
        imported
            .stderr
            .contains("left out 3 timestamp or non-scalar header values"),
        "{imported:?}"
    );
    let peeked = s.run(&["peek", "replay", "--json"]).ok_json();
    let bodies: Vec<&str> = peeked
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["order-0", "order-1", "order-2", "{\"binary\":false}"]);
    assert_eq!(peeked[3]["properties"]["content_type"], "application/json");

    // Through an exchange, with each line's routing key (the dead letters were routed with "work.dlq"), from a file.
    let file = s.config_home.path().join("export.jsonl");
    std::fs::write(&file, &export.stdout).expect("write the export");
    let file = file.to_string_lossy().to_string();
    let r = s.run(&["import", "--exchange", "amq.default", "--file", &file]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "Published 4 messages.\n"), "{r:?}");
    assert_eq!(s.ready("work.dlq"), 8);

    let bad = s.run_stdin(&["import", "replay"], Some("{\"body\":\"ok\"}\nnot json\n"));
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("stdin line 2: not a message"), "{bad:?}");
    assert_eq!(s.ready("replay"), 4, "a bad file publishes nothing");
}

#[test]
fn trace_says_when_there_is_no_journey() {
    let s = Setup::new();
    let run = s.run(&["trace", "order-17"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: no journey for 'order-17' in vhost '/'"),
        "{run:?}"
    );
}

#[test]
fn completions_for_each_shell() {
    let s = Setup::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = s.run(&["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("redrive"), "{shell}");
    }
}

/// A stand-in for a broker with journeys (`GET /api/trace/...`, built on another branch): answers every request
/// with `body`, and hands back the request lines it got.
fn journey_server(body: &'static str, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for _ in 0..requests {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(socket.try_clone().expect("clone"));
            let mut first = String::new();
            reader.read_line(&mut first).expect("read");
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            lines.push(first.trim().to_string());
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).expect("write");
        }
        lines
    });
    (url, server)
}

#[test]
fn trace_prints_a_journey_as_a_timeline() {
    let journey = r#"{"vhost":"/","id":"order-17","truncated":false,"events":[
        {"at_ms":1764583200000,"kind":"published","connection":3,"user":"app","exchange":"","routing_key":"work"},
        {"at_ms":1764583200250,"kind":"rejected","queue":"work","requeue":false,"nack":false},
        {"at_ms":1764583201250,"kind":"dead_lettered","queue":"work","reason":"rejected","exchange":"","to":["work.dlq"]}]}"#;
    let (url, server) = journey_server(journey, 2);
    let home = tempfile::tempdir().expect("temp dir");
    let run = common::run_in(
        home.path(),
        &["trace", "order-17", "--vhost", "shop", "--url", &url],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "journey of order-17 in shop: 3 events");
    assert!(
        lines[1].ends_with("  published  connection=3  exchange=  routing_key=work  user=app"),
        "{run:?}"
    );
    assert!(
        lines[2].contains("(+250ms)  rejected  nack=false  queue=work  requeue=false"),
        "{run:?}"
    );
    assert!(lines[3].contains("(+1.0s)  dead_lettered"), "{run:?}");
    assert!(lines[3].ends_with("to=work.dlq"), "{run:?}");
    let json = common::run_in(home.path(), &["trace", "order-17", "--json", "--url", &url], None).ok_json();
    assert_eq!(json["events"][2]["to"][0], "work.dlq");
    assert_eq!(
        server.join().expect("server"),
        [
            "GET /api/trace/shop/order-17 HTTP/1.1",
            "GET /api/trace/%2F/order-17 HTTP/1.1"
        ]
    );
}
