//! Users, vhosts and permissions end to end (issue 12): real lapin clients and the admin API against a real broker.
//! Each test that names a bug of the issue ("any user may open any vhost", "monitoring can delete over AMQP") failed
//! on the code before permissions existed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren_broker::config::{PermissionConfig, UserConfig};
use warren_tests::client::*;
use warren_tests::http::request;
use warren_tests::TestBroker;

fn user(name: &str, password: &str, tags: &[&str]) -> UserConfig {
    UserConfig {
        name: name.into(),
        password: Some(password.into()),
        password_hash: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn permission(user: &str, vhost: &str, configure: &str, write: &str, read: &str) -> PermissionConfig {
    PermissionConfig {
        user: user.into(),
        vhost: vhost.into(),
        configure: configure.into(),
        write: write.into(),
        read: read.into(),
    }
}

fn url(b: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    let vhost = if vhost == "/" { "%2f" } else { vhost };
    format!("amqp://{user}:{password}@{}/{vhost}", b.addr)
}

async fn try_connect(url: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(url, ConnectionProperties::default()).await
}

async fn declare(ch: &lapin::Channel, name: &str) -> Result<lapin::Queue, lapin::Error> {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
}

#[tokio::test]
async fn write_without_read_publishes_but_cannot_consume() {
    let b = TestBroker::start_with(|c| {
        c.users = vec![user("app", "pw", &[])];
        c.permissions = vec![permission("app", "/", ".*", ".*", "")];
    });
    let admin = connect(&b.url()).await;
    declare(&channel(&admin).await, "jobs").await.expect("declare as guest");

    let conn = connect(&url(&b, "app", "pw", "/")).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = ch
        .basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack(), "write permission: the publish is accepted");
    assert_eq!(depth(&channel(&admin).await, "jobs").await, 1);

    let err = ch
        .basic_consume(
            "jobs".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("no read permission");
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("ACCESS_REFUSED - read access to queue 'jobs' in vhost '/' refused for user 'app'")
    );
    let ch = channel(&conn).await;
    let err = ch
        .basic_get("jobs".into(), BasicGetOptions::default())
        .await
        .expect_err("no read permission for basic.get either");
    assert_eq!(reply_code(&err), Some(403));
}

#[tokio::test]
async fn without_configure_a_user_cannot_declare_or_delete() {
    let b = TestBroker::start_with(|c| {
        c.users = vec![user("app", "pw", &[])];
        c.permissions = vec![permission("app", "/", "^app\\.", ".*", ".*")];
    });
    let conn = connect(&url(&b, "app", "pw", "/")).await;
    let ch = channel(&conn).await;
    declare(&ch, "app.mine").await.expect("configure matches app.*");
    let err = declare(&ch, "theirs").await.expect_err("configure does not match");
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("ACCESS_REFUSED - configure access to queue 'theirs' in vhost '/' refused for user 'app'")
    );
    let admin = connect(&b.url()).await;
    declare(&channel(&admin).await, "theirs").await.expect("guest declares");
    let ch = channel(&conn).await;
    let err = ch
        .queue_delete("theirs".into(), QueueDeleteOptions::default())
        .await
        .expect_err("no configure, no delete");
    assert_eq!(reply_code(&err), Some(403));
    let ch = channel(&conn).await;
    let err = ch
        .exchange_declare(
            "events".into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("no configure on the exchange");
    assert_eq!(reply_code(&err), Some(403));
    // A passive declare needs no permission (as in RabbitMQ).
    let ch = channel(&conn).await;
    ch.queue_declare(
        "theirs".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare");
}

#[tokio::test]
async fn a_user_without_permissions_on_a_vhost_is_refused_at_open() {
    let b = TestBroker::start_with(|c| {
        c.vhosts = vec!["team".into()];
        c.users = vec![user("app", "pw", &[])];
        c.permissions = vec![permission("app", "/", ".*", ".*", ".*")];
    });
    connect(&url(&b, "app", "pw", "/")).await;
    let err = try_connect(&url(&b, "app", "pw", "team"))
        .await
        .expect_err("no permissions on team");
    assert_eq!(reply_code(&err), Some(530));
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("NOT_ALLOWED - access to vhost 'team' refused for user 'app'")
    );
    let err = try_connect(&url(&b, "app", "pw", "nowhere"))
        .await
        .expect_err("no such vhost");
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("NOT_ALLOWED - vhost nowhere not found")
    );
    // guest, too, has permissions on / only.
    let err = try_connect(&url(&b, "guest", "guest", "team"))
        .await
        .expect_err("guest on team");
    assert_eq!(reply_code(&err), Some(530));
}

#[tokio::test]
async fn a_monitoring_user_cannot_purge_over_amqp_or_http() {
    let b = TestBroker::start_with(|c| {
        c.users = vec![user("watcher", "pw", &["monitoring"])];
        c.permissions = vec![permission("watcher", "/", "", "", "^watch\\.")];
    });
    let admin = connect(&b.url()).await;
    let ach = channel(&admin).await;
    declare(&ach, "jobs").await.expect("declare");
    ach.basic_publish(
        "".into(),
        "jobs".into(),
        BasicPublishOptions::default(),
        b"keep me",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    sync(&ach).await;

    let conn = connect(&url(&b, "watcher", "pw", "/")).await;
    let ch = channel(&conn).await;
    let err = ch
        .queue_purge("jobs".into(), QueuePurgeOptions::default())
        .await
        .expect_err("no read permission on jobs");
    assert_eq!(reply_code(&err), Some(403));
    let ch = channel(&conn).await;
    let err = ch
        .queue_delete("jobs".into(), QueueDeleteOptions::default())
        .await
        .expect_err("no configure permission");
    assert_eq!(reply_code(&err), Some(403));

    let (status, body) = request(
        b.admin_addr,
        "DELETE",
        "/api/queues/%2F/jobs/contents",
        "watcher:pw",
        "",
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = request(b.admin_addr, "DELETE", "/api/queues/%2F/jobs", "watcher:pw", "");
    assert_eq!(status, 403);
    let (status, _) = request(b.admin_addr, "GET", "/api/queues/%2F/jobs", "watcher:pw", "");
    assert_eq!(status, 200, "monitoring reads");
    assert_eq!(depth(&ach, "jobs").await, 1, "nothing was purged");
}

#[tokio::test]
async fn a_management_user_sees_only_its_vhosts_and_acts_with_its_permissions() {
    let b = TestBroker::start_with(|c| {
        c.vhosts = vec!["team".into()];
        c.users = vec![user("mgr", "pw", &["management"])];
        c.permissions = vec![permission("mgr", "team", "^team\\.", ".*", ".*")];
    });
    let put = |path: &str| request(b.admin_addr, "PUT", path, "guest:guest", r#"{"durable":true}"#);
    assert_eq!(put("/api/queues/%2F/secret").0, 201);
    assert_eq!(put("/api/queues/team/team.jobs").0, 201);
    assert_eq!(put("/api/queues/team/other").0, 201, "administrators may do everything");

    let (status, body) = request(b.admin_addr, "GET", "/api/queues", "mgr:pw", "");
    assert_eq!(status, 200);
    let names: Vec<&str> = body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["other", "team.jobs"],
        "only the vhost mgr has permissions on"
    );
    let (status, _) = request(b.admin_addr, "GET", "/api/queues/%2F", "mgr:pw", "");
    assert_eq!(status, 403);
    let (status, _) = request(b.admin_addr, "GET", "/api/queues/%2F/secret", "mgr:pw", "");
    assert_eq!(status, 403);
    let (_, vhosts) = request(b.admin_addr, "GET", "/api/vhosts", "mgr:pw", "");
    assert_eq!(vhosts.as_array().map(Vec::len), Some(1), "{vhosts}");
    let (_, exchanges) = request(b.admin_addr, "GET", "/api/exchanges", "mgr:pw", "");
    assert!(
        exchanges.as_array().expect("list").iter().all(|x| x["vhost"] == "team"),
        "{exchanges}"
    );

    // Acting needs the AMQP permission the client operation would: purge is read (granted), delete is configure
    // (only on team.*).
    let (status, _) = request(b.admin_addr, "DELETE", "/api/queues/team/other/contents", "mgr:pw", "");
    assert_eq!(status, 200);
    let (status, body) = request(b.admin_addr, "DELETE", "/api/queues/team/other", "mgr:pw", "");
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["reason"],
        "configure access to queue 'other' in vhost 'team' refused for user 'mgr'"
    );
    let (status, _) = request(b.admin_addr, "DELETE", "/api/queues/team/team.jobs", "mgr:pw", "");
    assert_eq!(status, 200);
    // Managing users is for administrators.
    let (status, _) = request(
        b.admin_addr,
        "PUT",
        "/api/users/eve",
        "mgr:pw",
        r#"{"password":"x","tags":""}"#,
    );
    assert_eq!(status, 403);
    let (status, _) = request(b.admin_addr, "GET", "/api/users", "mgr:pw", "");
    assert_eq!(status, 403);
}

#[tokio::test]
async fn users_vhosts_and_permissions_are_managed_through_the_api_and_apply_to_open_connections() {
    let b = TestBroker::start();
    let g = "guest:guest";
    let (s, _) = request(b.admin_addr, "PUT", "/api/vhosts/orders", g, "");
    assert_eq!(s, 201);
    let (s, _) = request(b.admin_addr, "PUT", "/api/vhosts/orders", g, r#"{"description":"d"}"#);
    assert_eq!(s, 204);
    let (s, _) = request(
        b.admin_addr,
        "PUT",
        "/api/users/app",
        g,
        r#"{"password":"pw1","tags":""}"#,
    );
    assert_eq!(s, 201);
    let (s, body) = request(
        b.admin_addr,
        "PUT",
        "/api/permissions/orders/nobody",
        g,
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_eq!(s, 400, "{body}");
    let (s, body) = request(
        b.admin_addr,
        "PUT",
        "/api/permissions/orders/app",
        g,
        r#"{"configure":"(","write":"","read":""}"#,
    );
    assert_eq!(s, 400, "a bad expression is refused when set: {body}");
    let (s, _) = request(
        b.admin_addr,
        "PUT",
        "/api/permissions/orders/app",
        g,
        r#"{"configure":".*","write":".*","read":".*"}"#,
    );
    assert_eq!(s, 201);
    let (_, me) = request(b.admin_addr, "GET", "/api/whoami", g, "");
    assert_eq!(me["name"], "guest");

    let conn = connect(&url(&b, "app", "pw1", "orders")).await;
    let ch = channel(&conn).await;
    declare(&ch, "q").await.expect("declare in orders");
    // In confirm mode the refusal (a channel.close) fails the publish's confirm with its reply code.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    // Narrow write to nothing: the open channel is refused from its next publish on.
    let (s, _) = request(
        b.admin_addr,
        "PUT",
        "/api/permissions/orders/app",
        g,
        r#"{"configure":".*","write":"","read":".*"}"#,
    );
    assert_eq!(s, 204);
    let err = ch
        .basic_publish(
            "".into(),
            "q".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("the publish frame is sent")
        .await
        .expect_err("the channel was closed");
    assert_eq!(reply_code(&err), Some(403), "{err}");

    // A password change applies to the next login; deleting the vhost closes its connections with 320.
    let (s, _) = request(
        b.admin_addr,
        "PUT",
        "/api/users/app",
        g,
        r#"{"password":"pw2","tags":""}"#,
    );
    assert_eq!(s, 204);
    assert!(try_connect(&url(&b, "app", "pw1", "orders")).await.is_err());
    let conn2 = connect(&url(&b, "app", "pw2", "orders")).await;
    let (s, _) = request(b.admin_addr, "DELETE", "/api/vhosts/orders", g, "");
    assert_eq!(s, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn2.status().connected() {
        assert!(
            Instant::now() < deadline,
            "the connection to the deleted vhost is still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (s, _) = request(b.admin_addr, "GET", "/api/vhosts/orders", g, "");
    assert_eq!(s, 404);
    let (s, _) = request(b.admin_addr, "DELETE", "/api/users/nobody", g, "");
    assert_eq!(s, 404);
}

#[tokio::test]
async fn vhost_and_user_limits_refuse_with_rabbitmqs_errors() {
    let b = TestBroker::start_with(|c| {
        c.users = vec![user("app", "pw", &[])];
        c.permissions = vec![permission("app", "/", ".*", ".*", ".*")];
    });
    let g = "guest:guest";
    assert_eq!(
        request(
            b.admin_addr,
            "PUT",
            "/api/vhost-limits/%2F/max-queues",
            g,
            r#"{"value":1}"#
        )
        .0,
        204
    );
    assert_eq!(
        request(
            b.admin_addr,
            "PUT",
            "/api/user-limits/app/max-connections",
            g,
            r#"{"value":1}"#
        )
        .0,
        204
    );
    let (_, limits) = request(b.admin_addr, "GET", "/api/vhost-limits", g, "");
    assert_eq!(limits[0]["value"]["max-queues"], 1, "{limits}");

    let conn = connect(&url(&b, "app", "pw", "/")).await;
    let ch = channel(&conn).await;
    declare(&ch, "one").await.expect("the first queue");
    declare(&ch, "one").await.expect("declaring it again is no new queue");
    let err = declare(&ch, "two").await.expect_err("the vhost's queue limit");
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("PRECONDITION_FAILED - cannot declare queue 'two': queue limit in vhost '/' (1) is reached")
    );
    let err = try_connect(&url(&b, "app", "pw", "/"))
        .await
        .expect_err("the user's connection limit");
    assert_eq!(reply_code(&err), Some(530));
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("NOT_ALLOWED - connection refused for user 'app': user connection limit (1) is reached")
    );
    assert_eq!(
        request(b.admin_addr, "DELETE", "/api/user-limits/app/max-connections", g, "").0,
        204
    );
    connect(&url(&b, "app", "pw", "/")).await;
}

#[tokio::test]
async fn failed_logins_from_one_address_are_refused_for_a_while() {
    let b = TestBroker::start();
    for _ in 0..10 {
        assert!(try_connect(&url(&b, "guest", "wrong", "/")).await.is_err());
    }
    let err = try_connect(&b.url())
        .await
        .expect_err("even the right password is refused now");
    let text = reply_text(&err).unwrap_or_default();
    assert!(text.contains("too many failed logins"), "{err}");
    let (s, body) = request(b.admin_addr, "GET", "/api/overview", "guest:guest", "");
    assert_eq!(s, 429, "the admin API counts the same failures: {body}");
}

/// A definitions file that RabbitMQ 3.10.8 exported (`tests/fixtures/make_rabbitmq_definitions.sh`): its users log
/// in with their RabbitMQ-hashed passwords, with the permissions, topic permissions and limits it gave them.
#[tokio::test]
async fn a_rabbitmq_definitions_export_imports_and_its_users_log_in() {
    let b = TestBroker::start();
    let fixture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rabbitmq-3.10-definitions.json"))
            .expect("fixture");
    let (s, body) = request(b.admin_addr, "POST", "/api/definitions", "guest:guest", &fixture);
    assert_eq!(s, 204, "{body}");

    connect(&url(&b, "ops", "ops-pass-1", "orders")).await; // sha256
    let (s, _) = request(b.admin_addr, "GET", "/api/overview", "watcher:watch-pass-2", "");
    assert_eq!(s, 200, "a monitoring user from the export reads the API");
    assert!(try_connect(&url(&b, "ops", "wrong", "orders")).await.is_err());

    let conn = connect(&url(&b, "app", "app-pass-3", "orders")).await; // sha512
    let ch = channel(&conn).await;
    declare(&ch, "app.jobs").await.expect("configure ^app\\.");
    let err = declare(&ch, "jobs").await.expect_err("configure does not match");
    assert_eq!(reply_code(&err), Some(403));
    // The export lets app write to amq.default only; topic permissions apply once it may write to amq.topic.
    let (s, _) = request(
        b.admin_addr,
        "PUT",
        "/api/permissions/orders/app",
        "guest:guest",
        r#"{"configure":"^app\\.","write":"^(app\\.|amq\\.(default|topic)$)","read":"^app\\."}"#,
    );
    assert_eq!(s, 204);
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let ok = ch
        .basic_publish(
            "amq.topic".into(),
            "orders.new".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("sent")
        .await
        .expect("confirm");
    assert!(ok.is_ack(), "orders.* matches the topic permission");
    // The refusal closes the channel, which fails the pending confirm with the reply.
    let err = ch
        .basic_publish(
            "amq.topic".into(),
            "other.x".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("sent")
        .await
        .expect_err("closed");
    assert_eq!(reply_code(&err), Some(403));
    assert_eq!(
        reply_text(&err).as_deref(),
        Some("ACCESS_REFUSED - write access to topic 'other.x' in exchange 'amq.topic' in vhost 'orders' refused for user 'app'")
    );
    let (_, limits) = request(b.admin_addr, "GET", "/api/vhost-limits/analytics", "guest:guest", "");
    assert_eq!(limits[0]["value"]["max-connections"], 10, "{limits}");
    assert!(
        try_connect(&url(&b, "mgr", "mgr-pass-4", "analytics")).await.is_err(),
        "mgr has no permissions on analytics"
    );
}

struct Child9(Child);

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(data: &Path, port: u16, admin: u16) -> Child9 {
    let child = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--prometheus-listen", "127.0.0.1:0"])
        .args(["--log", "warn", "--disk-free-limit", "1MB"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the broker");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(Instant::now() < deadline, "broker did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Child9(child)
}

#[tokio::test]
async fn users_and_permissions_survive_kill_9() {
    let data = tempfile::tempdir().expect("temp dir");
    let (port, admin_port) = (free_port(), free_port());
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let mut child = spawn(data.path(), port, admin_port);
    let g = "guest:guest";
    assert_eq!(request(admin, "PUT", "/api/vhosts/orders", g, "").0, 201);
    assert_eq!(
        request(
            admin,
            "PUT",
            "/api/users/app",
            g,
            r#"{"password":"pw","tags":["management"]}"#
        )
        .0,
        201
    );
    assert_eq!(
        request(
            admin,
            "PUT",
            "/api/permissions/orders/app",
            g,
            r#"{"configure":"","write":"","read":"^app\\."}"#
        )
        .0,
        201
    );
    assert_eq!(request(admin, "DELETE", "/api/users/guest", g, "").0, 204);
    // An answer means stored: kill at once.
    let _ = child.0.kill();
    let _ = child.0.wait();
    drop(child);
    let _child = spawn(data.path(), port, admin_port);

    let app = format!("amqp://app:pw@127.0.0.1:{port}/orders");
    let conn = connect(&app).await;
    let ch = channel(&conn).await;
    let err = declare(&ch, "app.q").await.expect_err("configure is empty");
    assert_eq!(reply_code(&err), Some(403));
    let (s, who) = request(admin, "GET", "/api/whoami", "app:pw", "");
    assert_eq!((s, who["tags"][0].as_str()), (200, Some("management")));
    assert!(
        try_connect(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
            .await
            .is_err(),
        "guest was deleted through the API: the built-in default does not bring it back"
    );
}

#[test]
fn hash_password_reads_stdin_and_its_hash_logs_in() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren-test-broker"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("utf8");
    let hash = hash.trim();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let alg = warren_broker::auth::password::detect(hash).expect("a known format");
    assert!(warren_broker::auth::password::verify(hash, alg, "s3cret"));
    assert!(!warren_broker::auth::password::verify(hash, alg, "s3cret\n"));
}

#[tokio::test]
async fn admin_actions_access_changes_and_failed_logins_are_audited() {
    let b = TestBroker::start_with(|c| {
        c.users = vec![user("watcher", "pw", &["monitoring"])];
        c.permissions = vec![permission("watcher", "/", "", "", "")];
    });
    let g = "guest:guest";
    let conn = connect(&b.url()).await;
    let ch = channel(&conn).await;
    declare(&ch, "jobs").await.expect("declare");
    for _ in 0..3 {
        ch.basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    sync(&ch).await;
    assert_eq!(
        request(b.admin_addr, "DELETE", "/api/queues/%2F/jobs/contents", g, "").0,
        200
    );
    assert_eq!(
        request(
            b.admin_addr,
            "PUT",
            "/api/users/app",
            g,
            r#"{"password":"x","tags":""}"#
        )
        .0,
        201
    );
    assert!(try_connect(&url(&b, "app", "nope", "/")).await.is_err());
    assert_eq!(request(b.admin_addr, "GET", "/api/overview", "app:wrong", "").0, 401);
    assert_eq!(
        request(b.admin_addr, "DELETE", "/api/queues/%2F/jobs", "watcher:pw", "").0,
        403
    );

    let (s, page) = request(b.admin_addr, "GET", "/api/audit?page_size=10", "watcher:pw", "");
    assert_eq!(s, 200, "monitoring reads the audit trail");
    let entries = page.as_array().expect("list");
    let find = |action: &str| entries.iter().find(|e| e["action"] == action).cloned();
    let purge = find("purge").expect("the purge");
    assert_eq!(
        (
            purge["user"].as_str(),
            purge["object"].as_str(),
            purge["messages"].as_u64()
        ),
        (Some("guest"), Some("jobs"), Some(3))
    );
    assert!(purge["peer"].as_str().is_some_and(|p| p.starts_with("127.")), "{purge}");
    assert_eq!(find("put_user").expect("put_user")["object"], "app");
    let failed: Vec<_> = entries.iter().filter(|e| e["action"] == "login_failed").collect();
    assert_eq!(failed.len(), 2, "AMQP and HTTP: {page}");
    assert!(failed.iter().all(|e| e["user"] == "app"));
    let refused = find("refused").expect("the refused delete");
    assert_eq!(refused["user"], "watcher");
    let ids: Vec<u64> = entries.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let (_, older) = request(b.admin_addr, "GET", &format!("/api/audit?before={}", ids[1]), g, "");
    assert!(older
        .as_array()
        .expect("list")
        .iter()
        .all(|e| e["id"].as_u64() < Some(ids[1])));
    let (s, _) = request(b.admin_addr, "GET", "/api/audit?page_size=0", g, "");
    assert_eq!(s, 400);
}
