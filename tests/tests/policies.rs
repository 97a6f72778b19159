//! Operator policies from the config file apply by queue-name pattern, with RabbitMQ's precedence.

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use warren_broker::policy::{Policy, PolicyConfig};
use warren_tests::client::*;
use warren_tests::TestBroker;

fn policy(toml_text: &str) -> Policy {
    let c: PolicyConfig = toml::from_str(toml_text).expect("policy toml");
    Policy::from_config(&c).expect("valid policy")
}

#[tokio::test]
async fn policy_limits_and_dead_letters_queues_by_pattern() {
    let broker = TestBroker::start_with(|c| {
        c.policies = vec![policy(
            "name = \"bounded\"\npattern = \"^bounded\\\\.\"\n[definition]\nmax-length = 2\ndead-letter-exchange = \"\"\ndead-letter-routing-key = \"spill\"",
        )];
    });
    let conn = connect(&broker.url()).await;
    let ch = channel(&conn).await;
    ch.queue_declare("spill".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("spill");
    // No arguments: the policy alone bounds it.
    ch.queue_declare(
        "bounded.a".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    // An argument with a higher limit: the lower (policy) value wins.
    let mut a = FieldTable::default();
    a.insert("x-max-length".into(), AMQPValue::LongInt(5));
    ch.queue_declare("bounded.b".into(), QueueDeclareOptions::default(), a)
        .await
        .expect("declare");
    // Not matched by the pattern.
    ch.queue_declare("free".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("declare");
    for q in ["bounded.a", "bounded.b", "free"] {
        for i in 0..4u8 {
            ch.basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                &[i],
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        }
    }
    let depth = |q: &'static str| {
        let ch = ch.clone();
        async move {
            ch.queue_declare(
                q.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive")
            .message_count()
        }
    };
    assert_eq!(depth("bounded.a").await, 2);
    assert_eq!(depth("bounded.b").await, 2, "min(policy 2, argument 5)");
    assert_eq!(depth("free").await, 4);
    assert_eq!(
        depth("spill").await,
        4,
        "the policy's dead-letter exchange got the overflow of both"
    );
}

/// The depth of `q` through the admin API.
fn ready(admin: std::net::SocketAddr, q: &str) -> serde_json::Value {
    let (_, info) = warren_tests::http::request(admin, "GET", &format!("/api/queues/%2F/{q}"), "guest:guest", "");
    info["messages_ready"].clone()
}

fn publish(admin: std::net::SocketAddr, q: &str, n: usize) {
    for i in 0..n {
        let body = format!(r#"{{"routing_key":"{q}","payload":"{i}","persistent":true}}"#);
        let (s, _) = warren_tests::http::request(
            admin,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            "guest:guest",
            &body,
        );
        assert_eq!(s, 200);
    }
}

#[test]
fn policies_set_through_the_api_apply_to_live_queues_and_survive_a_restart() {
    use warren_tests::http::request;
    let mut broker = TestBroker::start();
    let admin = broker.admin_addr;
    let (s, _) = request(
        admin,
        "PUT",
        "/api/queues/%2F/capped.a",
        "guest:guest",
        r#"{"durable":true}"#,
    );
    assert!(s == 200 || s == 201);
    publish(admin, "capped.a", 3);

    // A policy on an existing queue: the limit applies to the next publish.
    let body = r#"{"pattern":"^capped\\.","definition":{"max-length":2,"overflow":"reject-publish"},"priority":1}"#;
    let (s, p) = request(admin, "PUT", "/api/policies/%2F/cap", "guest:guest", body);
    assert_eq!((s, p["source"].as_str()), (201, Some("api")), "{p}");
    let (_, q) = request(admin, "GET", "/api/queues/%2F/capped.a", "guest:guest", "");
    assert_eq!(q["policy"], "cap");
    publish(admin, "capped.a", 2);
    assert_eq!(ready(admin, "capped.a"), 3, "full: new messages are refused");

    // It is kept in the data directory, and matches queues declared later.
    broker.restart();
    let admin = broker.admin_addr;
    let (_, list) = request(admin, "GET", "/api/policies", "guest:guest", "");
    assert!(
        list.as_array().expect("list").iter().any(|p| p["name"] == "cap"),
        "{list}"
    );
    let (s, _) = request(admin, "PUT", "/api/queues/%2F/capped.b", "guest:guest", "{}");
    assert!(s == 200 || s == 201);
    publish(admin, "capped.b", 5);
    assert_eq!(ready(admin, "capped.b"), 2);

    // A message TTL from a policy.
    let body = r#"{"pattern":"^short$","definition":{"message-ttl":1}}"#;
    assert_eq!(
        request(admin, "PUT", "/api/policies/%2F/ttl", "guest:guest", body).0,
        201
    );
    assert!(request(admin, "PUT", "/api/queues/%2F/short", "guest:guest", "{}").0 < 300);
    publish(admin, "short", 3);
    broker.advance(std::time::Duration::from_millis(1));
    assert_eq!(ready(admin, "short"), 0, "expired by the policy's TTL");

    // Deleting it lifts the limit; bad definitions are 400s; unknown policies 404s.
    let (s, _) = request(admin, "DELETE", "/api/policies/%2F/cap", "guest:guest", "");
    assert_eq!(s, 200);
    publish(admin, "capped.b", 2);
    assert_eq!(ready(admin, "capped.b"), 4);
    for bad in [
        r#"{"pattern":"(","definition":{"max-length":1}}"#,
        r#"{"pattern":"x","definition":{"max-length":"ten"}}"#,
        r#"{"pattern":"x","definition":{"no-such-key":1}}"#,
        r#"{"pattern":"x","definition":{}}"#,
        r#"{"definition":{"max-length":1}}"#,
    ] {
        let (s, r) = request(admin, "PUT", "/api/policies/%2F/bad", "guest:guest", bad);
        assert_eq!((s, r["error"].as_str()), (400, Some("bad_request")), "{bad}: {r}");
    }
    assert_eq!(
        request(admin, "DELETE", "/api/policies/%2F/cap", "guest:guest", "").0,
        404
    );
    assert_eq!(
        request(admin, "PUT", "/api/policies/nope/x", "guest:guest", body).0,
        404
    );
}

#[test]
fn an_api_policy_shadows_a_config_policy_and_a_ttl_policy_reaches_queued_messages() {
    use warren_tests::http::request;
    let broker = TestBroker::start_with(|c| {
        c.policies = vec![policy(
            "name = \"cap\"\npattern = \"^capped$\"\n[definition]\nmax-length = 1\noverflow = \"reject-publish\"",
        )];
    });
    let admin = broker.admin_addr;
    assert!(request(admin, "PUT", "/api/queues/%2F/capped", "guest:guest", "{}").0 < 300);
    publish(admin, "capped", 3);
    assert_eq!(ready(admin, "capped"), 1, "the config policy");

    // The API's "cap" replaces it; deleting the API one brings the config one back.
    let body = r#"{"pattern":"^capped$","definition":{"max-length":3,"overflow":"reject-publish"}}"#;
    let (s, _) = request(admin, "PUT", "/api/policies/%2F/cap", "guest:guest", body);
    assert_eq!(s, 200, "replaced");
    publish(admin, "capped", 3);
    assert_eq!(ready(admin, "capped"), 3);
    assert_eq!(
        request(admin, "DELETE", "/api/policies/%2F/cap", "guest:guest", "").0,
        200
    );
    let (_, list) = request(admin, "GET", "/api/policies/%2F", "guest:guest", "");
    assert_eq!(list[0]["source"], "config", "{list}");
    let (s, r) = request(admin, "DELETE", "/api/policies/%2F/cap", "guest:guest", "");
    assert_eq!(
        (s, r["error"].as_str()),
        (409, Some("conflict")),
        "a config policy is changed in the config"
    );

    // A TTL policy set after messages were queued expires them too, counted from their enqueue time.
    assert!(
        request(
            admin,
            "PUT",
            "/api/queues/%2F/waiting",
            "guest:guest",
            r#"{"durable":false}"#
        )
        .0 < 300
    );
    publish(admin, "waiting", 3);
    broker.advance(std::time::Duration::from_millis(50));
    let body = r#"{"pattern":"^waiting$","definition":{"message-ttl":10}}"#;
    assert_eq!(
        request(admin, "PUT", "/api/policies/%2F/ttl", "guest:guest", body).0,
        201
    );
    // No time passes: they were 50 ms old when the 10 ms TTL came.
    broker.advance(std::time::Duration::ZERO);
    assert_eq!(ready(admin, "waiting"), 0);
}
