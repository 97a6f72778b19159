//! What a permission check costs a publish (issue 12: under 3% of publish throughput). A connection keeps its
//! `Grant` and checks `write` on the exchange of every `basic.publish` (`amqp/access.rs`); this times that check,
//! in-process, in the three cases a publisher meets:
//! - the same exchange as the last publish, no access change since (one atomic load, one string compare);
//! - publishes alternating between exchanges (a hash lookup in what the connection allowed already);
//! - a miss: the first publish to an exchange, or the first after an access change (a regex match);
//! - a user with topic permissions on the exchange (a hash lookup of the routing key; a regex on a new key).
//!
//! `cargo run --release -p warren-bench --example permission_cost` prints ns per check; `scripts/bench-permissions`
//! sets them against the broker's CPU per published message, measured in the same run.
use std::sync::Arc;
use std::time::Instant;

use warren_broker::amqp::access::ConnAccess;
use warren_broker::auth::{Access, Kind, Perm};
use warren_broker::config::{Config, PermissionConfig, UserConfig};
use warren_broker::store::access_defs::{AccessModel, AccessOp, TopicPermissionDef};

const N: u32 = 5_000_000;

fn time(label: &str, mut f: impl FnMut(u32)) -> f64 {
    for i in 0..N / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..N {
        f(i);
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(N);
    println!("{label:<58} {ns:>7.1} ns/publish");
    ns
}

fn main() {
    let config = Config {
        users: vec![UserConfig {
            name: "app".into(),
            password: Some("pw".into()),
            password_hash: None,
            tags: vec![],
        }],
        permissions: vec![PermissionConfig {
            user: "app".into(),
            vhost: "/".into(),
            configure: "^app\\.".into(),
            write: "^(app\\.|amq\\.(default|topic)$)".into(),
            read: "^app\\.".into(),
        }],
        ..Config::default()
    };
    let access = Access::new(AccessModel::default(), &config, &[], None, Arc::default()).expect("access");
    let mut conn = ConnAccess::open(&access, "app", "/").expect("app may open /");
    let fast = time("same exchange as the last publish (the steady state)", |_| {
        conn.check_publish(&access, "app.events", "k").expect("allowed");
    });
    let slow = time("publishes alternating between two exchanges (hash lookup)", |i| {
        conn.check_publish(&access, if i % 2 == 0 { "app.events" } else { "app.other" }, "k")
            .expect("allowed");
    });
    let grant = access.grant("/", "app").expect("grant");
    let miss = time(
        "a miss: first publish to an exchange, or after a change (regex)",
        |_| {
            grant.check(Perm::Write, Kind::Exchange, "app.events").expect("allowed");
        },
    );
    access
        .change(vec![AccessOp::SetTopicPermission {
            permission: TopicPermissionDef {
                user: "app".into(),
                vhost: "/".into(),
                exchange: "amq.topic".into(),
                write: "^orders\\.".into(),
                read: ".*".into(),
            },
        }])
        .expect("change");
    let keys: Vec<String> = (0..64).map(|i| format!("orders.eu.{i}")).collect();
    let topic = time("topic permissions, 64 routing keys (hash lookup)", |i| {
        conn.check_publish(&access, "amq.topic", &keys[(i % 64) as usize])
            .expect("allowed");
    });
    println!(
        "{{\"steady_ns\": {fast:.1}, \"two_exchanges_ns\": {slow:.1}, \"miss_ns\": {miss:.1}, \"topic_ns\": {topic:.1}}}"
    );
}
