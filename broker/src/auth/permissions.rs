//! Permissions as the broker checks them: one user's compiled `configure`/`write`/`read` expressions on one vhost
//! (a [`Grant`]), its topic permissions, and RabbitMQ's refusal texts.
//!
//! Semantics are RabbitMQ's: each expression is searched for (not anchored) in the resource name; the empty
//! expression is a synonym for `^$`; the default exchange is checked under the name `amq.default`. Topic
//! permissions apply to topic exchanges only, and only when the user has some on that exchange: publishing checks
//! the routing key against `write`, binding a queue checks the binding key against `read`. `{username}` and
//! `{vhost}` in a topic expression stand for the user's name and the vhost (regex-escaped).
//!
//! Invariant: an expression is compiled with a size limit, so a hostile pattern costs bounded memory; one that
//! does not compile is refused when it is set, never at check time.

use regex::{Regex, RegexBuilder};

use crate::store::access_defs::{PermissionDef, TopicPermissionDef};

/// The most memory one compiled expression may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Queue,
    Exchange,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Exchange => "exchange",
        }
    }
}

/// The name an exchange is checked and named under (the default exchange is `amq.default`).
pub fn exchange_name(name: &str) -> &str {
    if name.is_empty() {
        "amq.default"
    } else {
        name
    }
}

/// Compiles one permission expression (RabbitMQ's `''` is `^$`); the error names the expression.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    let pattern = if pattern.is_empty() { "^$" } else { pattern };
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}

/// A topic exchange's routing-key permissions for one user.
#[derive(Debug, Clone)]
pub struct TopicGrant {
    pub exchange: String,
    write: Regex,
    read: Regex,
}

/// What one user may do on one vhost: what a connection keeps for its vhost.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: String,
    pub vhost: String,
    configure: Regex,
    write: Regex,
    read: Regex,
    topics: Vec<TopicGrant>,
}

impl Grant {
    /// Compiles a stored permission and the user's topic permissions on the same vhost.
    pub fn compile(p: &PermissionDef, topics: &[&TopicPermissionDef]) -> Result<Self, String> {
        let expand = |pattern: &str| {
            pattern
                .replace("{username}", &regex::escape(&p.user))
                .replace("{vhost}", &regex::escape(&p.vhost))
        };
        Ok(Grant {
            user: p.user.clone(),
            vhost: p.vhost.clone(),
            configure: compile(&p.configure)?,
            write: compile(&p.write)?,
            read: compile(&p.read)?,
            topics: topics
                .iter()
                .map(|t| {
                    Ok(TopicGrant {
                        exchange: t.exchange.clone(),
                        write: compile(&expand(&t.write))?,
                        read: compile(&expand(&t.read))?,
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }

    /// Whether `perm` on the resource `name` (an exchange under [`exchange_name`]) is granted.
    pub fn allows(&self, perm: Perm, name: &str) -> bool {
        match perm {
            Perm::Configure => self.configure.is_match(name),
            Perm::Write => self.write.is_match(name),
            Perm::Read => self.read.is_match(name),
        }
    }

    /// Checks `perm` on a queue or exchange; the error is RabbitMQ's 403 text.
    pub fn check(&self, perm: Perm, kind: Kind, name: &str) -> Result<(), String> {
        let name = match kind {
            Kind::Exchange => exchange_name(name),
            Kind::Queue => name,
        };
        if self.allows(perm, name) {
            Ok(())
        } else {
            Err(refused(perm, kind, name, &self.vhost, &self.user))
        }
    }

    /// Checks a routing key (publish: `Write`) or binding key (bind: `Read`) on a topic exchange against the
    /// user's topic permissions there, if any.
    pub fn check_topic(&self, perm: Perm, exchange: &str, key: &str) -> Result<(), String> {
        let Some(t) = self.topics.iter().find(|t| t.exchange == exchange) else {
            return Ok(());
        };
        let ok = match perm {
            Perm::Write => t.write.is_match(key),
            _ => t.read.is_match(key),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} access to topic '{key}' in exchange '{exchange}' in vhost '{}' refused for user '{}'",
                perm.as_str(),
                self.vhost,
                self.user
            ))
        }
    }

    /// Whether publishing to `exchange` is subject to topic permissions.
    pub fn has_topic_permissions_on(&self, exchange: &str) -> bool {
        self.topics.iter().any(|t| t.exchange == exchange)
    }
}

/// RabbitMQ's text for a refused permission (reply code 403, ACCESS_REFUSED).
pub fn refused(perm: Perm, kind: Kind, name: &str, vhost: &str, user: &str) -> String {
    format!(
        "{} access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
        perm.as_str(),
        kind.as_str()
    )
}

/// Checks that a permission's expressions compile (before it is stored).
pub fn validate(p: &PermissionDef) -> Result<(), String> {
    Grant::compile(p, &[]).map(|_| ())
}

/// Checks that a topic permission's expressions compile (before it is stored).
pub fn validate_topic(t: &TopicPermissionDef) -> Result<(), String> {
    compile(&t.write)?;
    compile(&t.read)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::access_defs::Origin;

    fn grant(configure: &str, write: &str, read: &str) -> Grant {
        let p = PermissionDef {
            user: "app".into(),
            vhost: "orders".into(),
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
            origin: Origin::Api,
        };
        let t = TopicPermissionDef {
            user: "app".into(),
            vhost: "orders".into(),
            exchange: "amq.topic".into(),
            write: "^{username}\\.".into(),
            read: "^orders\\.".into(),
        };
        Grant::compile(&p, &[&t]).expect("compiles")
    }

    #[test]
    fn expressions_search_and_empty_means_nothing() {
        let g = grant("^app\\.", "", ".*");
        assert!(g.check(Perm::Configure, Kind::Queue, "app.jobs").is_ok());
        assert_eq!(
            g.check(Perm::Configure, Kind::Queue, "jobs"),
            Err("configure access to queue 'jobs' in vhost 'orders' refused for user 'app'".into())
        );
        assert_eq!(
            g.check(Perm::Write, Kind::Exchange, ""),
            Err("write access to exchange 'amq.default' in vhost 'orders' refused for user 'app'".into()),
            "the default exchange is checked as amq.default"
        );
        assert!(g.check(Perm::Read, Kind::Queue, "anything").is_ok());
        let unanchored = grant("jobs", "", "");
        assert!(
            unanchored.allows(Perm::Configure, "my-jobs-queue"),
            "RabbitMQ searches, it does not anchor"
        );
    }

    #[test]
    fn topic_permissions_expand_and_apply_to_their_exchange_only() {
        let g = grant(".*", ".*", ".*");
        assert!(
            g.check_topic(Perm::Write, "amq.topic", "app.x").is_ok(),
            "{{username}} is expanded"
        );
        assert_eq!(
            g.check_topic(Perm::Write, "amq.topic", "other.x"),
            Err(
                "write access to topic 'other.x' in exchange 'amq.topic' in vhost 'orders' refused for user 'app'"
                    .into()
            )
        );
        assert!(g.check_topic(Perm::Read, "amq.topic", "orders.#").is_ok());
        assert!(g.check_topic(Perm::Read, "amq.topic", "b.#").is_err());
        assert!(
            g.check_topic(Perm::Write, "events", "other.x").is_ok(),
            "no topic permission there: allowed"
        );
    }

    #[test]
    fn bad_or_huge_expressions_are_refused_when_set() {
        let mut p = PermissionDef {
            user: "u".into(),
            vhost: "/".into(),
            configure: "(".into(),
            write: "".into(),
            read: "".into(),
            origin: Origin::Api,
        };
        assert!(validate(&p).is_err());
        p.configure = "a{1000}{1000}{1000}".into();
        assert!(validate(&p).is_err(), "over the size limit");
    }
}
