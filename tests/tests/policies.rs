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
