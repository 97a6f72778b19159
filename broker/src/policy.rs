//! Operator policies: queue settings applied by queue-name pattern without redeclaring queues, as in RabbitMQ.
//!
//! Policies come from the config file (`[[policies]]`) and from the admin API (`PUT /api/policies/{vhost}/{name}`,
//! kept in `definitions.log`; an API policy replaces a config policy of the same name). A change applies to live
//! queues at once. Of the policies whose
//! vhost and pattern match a queue, the one with the highest priority applies. Against the queue's own arguments
//! RabbitMQ's precedence holds: for `max-length`, `max-length-bytes`, `message-ttl`, `expires`, `delivery-limit`,
//! and streams' `max-age` and `stream-max-segment-size-bytes` the lower value wins; for `overflow`,
//! `dead-letter-exchange` and `dead-letter-routing-key` the argument wins. A stream uses only `max-length-bytes`,
//! `max-age` and `stream-max-segment-size-bytes`, as RabbitMQ's streams do.
//!
//! One key is Warren's own and is no queue argument: `trace` (true or false) switches message journeys on for
//! the queues the policy applies to (`crate::trace`).

use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use regex::Regex;
use serde::Deserialize;

use crate::args;

/// The keys a policy may set, and the queue argument each stands for.
const KEYS: &[(&str, &str)] = &[
    ("max-length", "x-max-length"),
    ("max-length-bytes", "x-max-length-bytes"),
    ("overflow", "x-overflow"),
    ("message-ttl", "x-message-ttl"),
    ("expires", "x-expires"),
    ("dead-letter-exchange", "x-dead-letter-exchange"),
    ("dead-letter-routing-key", "x-dead-letter-routing-key"),
    ("delivery-limit", "x-delivery-limit"),
    // Streams' (other queues ignore them).
    ("max-age", "x-max-age"),
    ("stream-max-segment-size-bytes", "x-stream-max-segment-size-bytes"),
];

/// Where the lower of policy and argument applies.
const LOWER_WINS: &[&str] = &[
    "x-max-length",
    "x-max-length-bytes",
    "x-message-ttl",
    "x-expires",
    "x-delivery-limit",
    "x-stream-max-segment-size-bytes",
];

/// A policy as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// A regular expression matched against queue names.
    pub pattern: String,
    /// `queues` (the default) or `all`.
    #[serde(default = "default_apply_to", rename = "apply-to", alias = "apply_to")]
    pub apply_to: String,
    #[serde(default)]
    pub priority: i64,
    pub definition: toml::Table,
}

fn default_vhost() -> String {
    "/".to_string()
}
fn default_apply_to() -> String {
    "queues".to_string()
}

/// A checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub vhost: String,
    pub pattern: Regex,
    pub priority: i64,
    /// The definition as queue arguments (`x-max-length`, ...).
    pub arguments: FieldTable,
    /// The definition as written (`max-length`, ...), for the API and `definitions.log`.
    pub definition: serde_json::Map<String, serde_json::Value>,
    /// Set through the admin API (saved in `definitions.log`), rather than read from the config file.
    pub from_api: bool,
    /// `trace: true`: the queues it applies to are traced (`crate::trace`).
    pub trace: bool,
}

impl Policy {
    pub fn from_config(c: &PolicyConfig) -> Result<Self, String> {
        let pattern = Regex::new(&c.pattern).map_err(|e| format!("policy '{}': invalid pattern: {e}", c.name))?;
        if !matches!(c.apply_to.as_str(), "queues" | "all") {
            return Err(format!("policy '{}': apply-to must be 'queues' or 'all'", c.name));
        }
        let mut arguments = FieldTable::default();
        let mut definition = serde_json::Map::new();
        let mut trace = false;
        for (k, v) in &c.definition {
            if k == "trace" {
                trace = match v {
                    toml::Value::Boolean(b) => *b,
                    toml::Value::String(s) if s == "true" || s == "false" => s == "true",
                    _ => return Err(format!("policy '{}': 'trace' must be true or false", c.name)),
                };
                definition.insert(k.clone(), trace.into());
                continue;
            }
            let Some((_, arg)) = KEYS.iter().find(|(key, _)| key == k) else {
                let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).chain(["trace"]).collect();
                return Err(format!(
                    "policy '{}': unknown key '{k}' (known: {})",
                    c.name,
                    known.join(", ")
                ));
            };
            let numeric = LOWER_WINS.contains(arg);
            match (k.as_str(), v) {
                (_, toml::Value::Integer(_)) if numeric => {}
                (_, _) if numeric => {
                    return Err(format!("policy '{}': '{k}' must be a whole number", c.name));
                }
                ("overflow", toml::Value::String(s))
                    if !matches!(s.as_str(), "drop-head" | "reject-publish" | "reject-publish-dlx") =>
                {
                    return Err(format!(
                        "policy '{}': overflow must be drop-head, reject-publish or reject-publish-dlx",
                        c.name
                    ));
                }
                ("max-age", toml::Value::String(s)) if crate::stream::args::parse_age(s).is_none() => {
                    return Err(format!(
                        "policy '{}': max-age must be a number and a unit (Y, M, D, h, m or s), like 7D",
                        c.name
                    ));
                }
                (_, toml::Value::String(_)) => {}
                (_, _) => return Err(format!("policy '{}': '{k}' must be a string", c.name)),
            }
            let value = match v {
                toml::Value::Integer(n) if *n >= 0 => {
                    definition.insert(k.clone(), (*n).into());
                    AMQPValue::LongLongInt(*n)
                }
                toml::Value::String(s) => {
                    definition.insert(k.clone(), s.as_str().into());
                    AMQPValue::LongString(LongString::from(s.as_str()))
                }
                other => return Err(format!("policy '{}': invalid value for '{k}': {other}", c.name)),
            };
            arguments.insert((*arg).into(), value);
        }
        Ok(Policy {
            name: c.name.clone(),
            vhost: c.vhost.clone(),
            pattern,
            priority: c.priority,
            arguments,
            definition,
            from_api: false,
            trace,
        })
    }

    /// A policy from the admin API (or `definitions.log`): the definition is JSON, values integers or strings.
    pub fn from_json(
        name: &str,
        vhost: &str,
        pattern: &str,
        priority: i64,
        definition: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, String> {
        let mut table = toml::Table::new();
        for (k, v) in definition {
            let value = match v {
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => toml::Value::Integer(i),
                    None => return Err(format!("policy '{name}': '{k}' must be a whole number, not {n}")),
                },
                serde_json::Value::String(s) => toml::Value::String(s.clone()),
                serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
                other => return Err(format!("policy '{name}': invalid value for '{k}': {other}")),
            };
            table.insert(k.clone(), value);
        }
        if table.is_empty() {
            return Err(format!("policy '{name}': the definition is empty"));
        }
        let mut p = Self::from_config(&PolicyConfig {
            name: name.to_string(),
            vhost: vhost.to_string(),
            pattern: pattern.to_string(),
            apply_to: default_apply_to(),
            priority,
            definition: table,
        })?;
        p.from_api = true;
        Ok(p)
    }

    pub fn matches(&self, vhost: &str, queue: &str) -> bool {
        self.vhost == vhost && self.pattern.is_match(queue)
    }
}

/// The policy that applies to a queue: the highest priority among those that match.
pub fn select<'a>(policies: impl IntoIterator<Item = &'a Policy>, vhost: &str, queue: &str) -> Option<&'a Policy> {
    policies
        .into_iter()
        .filter(|p| p.matches(vhost, queue))
        .max_by_key(|p| p.priority)
}

/// A queue's arguments with a policy applied, by RabbitMQ's precedence.
pub fn effective_arguments(arguments: &FieldTable, policy: Option<&Policy>) -> FieldTable {
    let mut out = arguments.clone();
    let Some(p) = policy else { return out };
    for (k, v) in p.arguments.inner() {
        let key = k.as_str();
        match arguments.inner().get(key) {
            None => {
                out.insert(k.clone(), v.clone());
            }
            // Ages are strings ("7D", "12h"): the shorter wins.
            Some(arg) if key == "x-max-age" => {
                let age = |v: &AMQPValue| args::as_str(v).and_then(crate::stream::args::parse_age);
                if let (Some(a), Some(b)) = (age(arg), age(v)) {
                    if b < a {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(arg) if LOWER_WINS.contains(&key) => {
                if let (Some(a), Some(b)) = (args::as_i64(arg), args::as_i64(v)) {
                    out.insert(k.clone(), AMQPValue::LongLongInt(a.min(b)));
                }
            }
            Some(_) => {} // the argument wins
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(def: &str, priority: i64) -> Policy {
        let c: PolicyConfig = toml::from_str(&format!(
            "name = \"p{priority}\"\npattern = \"^orders\\\\.\"\npriority = {priority}\n[definition]\n{def}"
        ))
        .expect("parses");
        Policy::from_config(&c).expect("valid")
    }

    #[test]
    fn precedence_follows_rabbitmq() {
        let p = policy(
            "max-length = 10\ndead-letter-exchange = \"pol-dlx\"\nmessage-ttl = 5000",
            0,
        );
        let mut a = FieldTable::default();
        a.insert("x-max-length".into(), AMQPValue::LongInt(100));
        a.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("arg-dlx".into()));
        let e = effective_arguments(&a, Some(&p));
        assert_eq!(args::get_i64(&e, "x-max-length"), Some(10), "lower wins");
        assert_eq!(
            args::get_str(&e, "x-dead-letter-exchange"),
            Some("arg-dlx"),
            "argument wins"
        );
        assert_eq!(args::get_i64(&e, "x-message-ttl"), Some(5000), "policy fills in");
    }

    #[test]
    fn highest_priority_match_and_bad_policies() {
        let ps = vec![policy("max-length = 1", 1), policy("max-length = 2", 5)];
        assert_eq!(select(&ps, "/", "orders.eu").map(|p| p.priority), Some(5));
        assert!(select(&ps, "/", "billing").is_none());
        assert!(select(&ps, "other", "orders.eu").is_none());
        let bad: PolicyConfig =
            toml::from_str("name = \"x\"\npattern = \"(\"\n[definition]\nmax-length = 1").expect("toml");
        assert!(Policy::from_config(&bad).is_err());
        let traced = policy("trace = true", 0);
        assert!(
            traced.trace && traced.arguments.inner().is_empty(),
            "trace is no queue argument"
        );
        let json = Policy::from_json("t", "/", ".*", 0, &traced.definition).expect("from json");
        assert!(json.trace);
        let bad: PolicyConfig = toml::from_str("name = \"x\"\npattern = \"a\"\n[definition]\ntrace = 1").expect("toml");
        assert!(Policy::from_config(&bad).is_err());
        let bad: PolicyConfig = toml::from_str("name = \"x\"\npattern = \"a\"\n[definition]\nspeed = 1").expect("toml");
        assert!(Policy::from_config(&bad)
            .expect_err("unknown key")
            .contains("unknown key"));
    }
}
