//! Users, vhosts' access records and permissions (RabbitMQ's model), and SASL login (PLAIN and AMQPLAIN).
//!
//! [`Access`] owns them: one `RwLock` over the stored model (`store::access_defs`) and the compiled grants built
//! from it. Every change is written to `definitions.log` first (fdatasync'd) and applied only once stored, so what
//! a client was told matches what survives `kill -9`. Each change bumps [`Access::generation`]: connections keep
//! their [`Grant`] and look again only when the generation moved, so a check on the hot path is one atomic load and
//! one regex match (connections also remember their last allowed exchange).
//!
//! Logins: passwords are checked against the stored hash (`password`); a successful check is remembered as a keyed
//! SHA-256 of the password (a secret drawn at start), so a client that reconnects or an HTTP client that sends basic
//! auth with every request costs one SHA-256, not one argon2id. A user change forgets it. Failed logins are counted
//! per source address (`failures`) and logged under the `warren::audit` target with the address and the user name.
//! `guest` and every name in `loopback_users` may only log in from loopback, over AMQP and the admin API alike (an
//! IPv4-mapped `::ffff:127.x.y.z` peer is loopback too).

pub mod failures;
pub mod password;
pub mod permissions;
pub mod seed;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::args;
use crate::store::access_defs::{AccessModel, AccessOp, Limits, PermissionDef, TopicPermissionDef, UserDef, VHostDef};
use crate::store::definitions::DefOp;
use crate::store::definitions_log::DefinitionsLog;
pub use permissions::{Grant, Kind, Perm};

/// The target under which logins, refusals and access changes are logged.
pub const AUDIT: &str = "warren::audit";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "ACCESS_REFUSED - Login was refused using authentication mechanism {0}. For details see the broker logfile."
    )]
    Refused(String),
    #[error("ACCESS_REFUSED - user '{0}' can only connect via localhost")]
    LoopbackOnly(String),
    #[error("ACCESS_REFUSED - too many failed logins from {addr}; try again in {} s", .wait.as_secs().max(1))]
    TooManyFailures { addr: IpAddr, wait: Duration },
    #[error("unknown authentication mechanism '{0}'")]
    UnknownMechanism(String),
    #[error("malformed {0} login response")]
    Malformed(String),
}

/// Why an access change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the change could not be saved, so it was not made: {0}")]
    NotSaved(#[from] std::io::Error),
}

struct State {
    model: AccessModel,
    /// By (vhost, user).
    grants: HashMap<(String, String), Arc<Grant>>,
}

pub struct Access {
    state: RwLock<State>,
    generation: AtomicU64,
    loopback_only: Vec<String>,
    failures: failures::Failures,
    /// user → keyed SHA-256 of the password last verified for them.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    secret: [u8; 32],
    /// Where changes are stored (`None`: a broker without a data directory, in unit tests).
    log: Option<Arc<DefinitionsLog>>,
    /// Where refused logins are recorded.
    journal: Arc<crate::audit::Journal>,
}

impl Access {
    /// Access control as stored in `model`, with the config file's users, vhosts and permissions seeded into it
    /// (`seed`), the seeding written to `log` first.
    pub fn new(
        mut model: AccessModel,
        config: &crate::config::Config,
        legacy_vhosts: &[String],
        log: Option<Arc<DefinitionsLog>>,
        journal: Arc<crate::audit::Journal>,
    ) -> std::io::Result<Self> {
        let ops = seed::ops(&model, config, legacy_vhosts);
        if let Some(log) = &log {
            let defs: Vec<DefOp> = ops.iter().cloned().map(DefOp::Access).collect();
            log.append(&defs)?;
        }
        for op in ops {
            model.apply(op);
        }
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let grants = compile_grants(&model);
        Ok(Access {
            state: RwLock::new(State { model, grants }),
            generation: AtomicU64::new(1),
            loopback_only: config.loopback_users.clone(),
            failures: failures::Failures::default(),
            verified: Mutex::new(HashMap::new()),
            secret,
            log,
            journal,
        })
    }

    /// The changes that bring the stored model in line with `config`'s file definitions (a reload; see `seed`).
    /// Runs argon2id for clear-text passwords in the file: not on an async worker.
    pub fn seed_ops(&self, config: &crate::config::Config) -> Vec<AccessOp> {
        let model = self.read().model.clone();
        seed::ops(&model, config, &[])
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves on with every access change; a connection whose grant is of an older generation looks it up again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores and applies changes, as one append: none of them is made if they cannot be stored.
    pub fn change(&self, ops: Vec<AccessOp>) -> Result<(), AccessError> {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = &self.log {
            let defs: Vec<DefOp> = ops.iter().cloned().map(DefOp::Access).collect();
            log.append(&defs)?;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            if let AccessOp::PutUser {
                user: UserDef { name, .. },
            }
            | AccessOp::DeleteUser { name, .. } = &op
            {
                verified.remove(name);
            }
            st.model.apply(op);
        }
        drop(verified);
        st.grants = compile_grants(&st.model);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    pub fn user(&self, name: &str) -> Option<UserDef> {
        self.read().model.users.get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<UserDef> {
        self.read().model.users.values().cloned().collect()
    }

    pub fn vhost(&self, name: &str) -> Option<VHostDef> {
        self.read().model.vhosts.get(name).cloned()
    }

    pub fn vhosts(&self) -> Vec<VHostDef> {
        self.read().model.vhosts.values().cloned().collect()
    }

    pub fn permissions(&self) -> Vec<PermissionDef> {
        self.read().model.permissions.values().cloned().collect()
    }

    pub fn permission(&self, vhost: &str, user: &str) -> Option<PermissionDef> {
        self.read()
            .model
            .permissions
            .get(&(vhost.to_string(), user.to_string()))
            .cloned()
    }

    pub fn topic_permissions(&self) -> Vec<TopicPermissionDef> {
        self.read().model.topic_permissions.values().cloned().collect()
    }

    /// What `user` may do on `vhost`; `None` when they have no permissions there (and may not open it).
    pub fn grant(&self, vhost: &str, user: &str) -> Option<Arc<Grant>> {
        self.read().grants.get(&(vhost.to_string(), user.to_string())).cloned()
    }

    /// Whether `user` has any permissions on `vhost` (what the admin API shows a `management` user).
    pub fn has_access(&self, vhost: &str, user: &str) -> bool {
        self.read()
            .model
            .permissions
            .contains_key(&(vhost.to_string(), user.to_string()))
    }

    pub fn vhost_limits(&self, vhost: &str) -> Limits {
        self.read()
            .model
            .vhosts
            .get(vhost)
            .map(|v| v.limits)
            .unwrap_or_default()
    }

    pub fn user_limits(&self, user: &str) -> Limits {
        self.read().model.users.get(user).map(|u| u.limits).unwrap_or_default()
    }

    /// Whether `name` may only log in from loopback (`loopback_users`, by default `guest`).
    pub fn is_loopback_only(&self, name: &str) -> bool {
        self.loopback_only.iter().any(|u| u == name)
    }

    /// Checks a user name and password from `peer` (AMQP PLAIN/AMQPLAIN, HTTP basic auth); returns the user.
    /// `mechanism` names the mechanism in the refusal. Failures are counted per address and logged.
    pub fn authenticate(
        &self,
        mechanism: &str,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<UserDef, AuthError> {
        let now = Instant::now();
        let refused = |why: &str| {
            self.journal.record(crate::audit::Event {
                user,
                peer: Some(peer),
                action: "login_failed",
                object: mechanism,
                result: why,
                ..Default::default()
            })
        };
        if let Err(wait) = self.failures.check(peer, now) {
            refused("too many failed logins from this address");
            return Err(AuthError::TooManyFailures { addr: peer, wait });
        }
        let found = self.user(user);
        let ok = found.as_ref().is_some_and(|u| self.password_matches(u, password));
        let Some(found) = found.filter(|_| ok) else {
            self.failures.failed(peer, now);
            refused("unknown user or wrong password");
            return Err(AuthError::Refused(mechanism.into()));
        };
        if self.is_loopback_only(user) && !is_loopback(peer) {
            refused("the user may only connect via localhost");
            return Err(AuthError::LoopbackOnly(user.into()));
        }
        self.failures.succeeded(peer);
        Ok(found)
    }

    /// Checks a password, through the cache of recently verified ones.
    fn password_matches(&self, u: &UserDef, password: &str) -> bool {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(u.name.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&u.name)
            .copied();
        if let Some(c) = cached {
            if c.iter().zip(key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                return true;
            }
        }
        let ok = password::verify(&u.password_hash, &u.hashing_algorithm, password);
        if ok {
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            // The user may have changed while we hashed: only remember a password for the hash it matched.
            if self
                .read()
                .model
                .users
                .get(&u.name)
                .is_some_and(|now| now.password_hash == u.password_hash)
            {
                v.insert(u.name.clone(), key);
            }
        }
        ok
    }

    /// Checks a connection.start-ok response; returns the user.
    pub fn login(&self, mechanism: &str, response: &[u8], peer: IpAddr) -> Result<UserDef, AuthError> {
        let (user, pass) = match mechanism {
            "PLAIN" => parse_plain(response).ok_or_else(|| AuthError::Malformed("PLAIN".into()))?,
            "AMQPLAIN" => parse_amqplain(response).ok_or_else(|| AuthError::Malformed("AMQPLAIN".into()))?,
            other => return Err(AuthError::UnknownMechanism(other.into())),
        };
        self.authenticate(mechanism, &user, &pass, peer)
    }

    /// The EXTERNAL mechanism: `cn` is the subject CN of a client certificate that the TLS handshake verified
    /// against the configured CA. The user must exist (no password is checked), and the loopback-only rule
    /// applies as for every login; a refusal is audited as a failed login.
    pub fn login_external(&self, cn: &str, peer: IpAddr) -> Result<UserDef, AuthError> {
        let refused = |why: &str| {
            self.journal.record(crate::audit::Event {
                user: cn,
                peer: Some(peer),
                action: "login_failed",
                object: "EXTERNAL",
                result: why,
                ..Default::default()
            })
        };
        let Some(found) = self.user(cn) else {
            refused("no user named by the client certificate's CN");
            return Err(AuthError::Refused("EXTERNAL".into()));
        };
        if self.is_loopback_only(cn) && !is_loopback(peer) {
            refused("the user may only connect via localhost");
            return Err(AuthError::LoopbackOnly(cn.into()));
        }
        Ok(found)
    }
}

/// Every (vhost, user) grant, compiled. A stored expression that no longer compiles (it was checked when set)
/// grants nothing, and says so.
fn compile_grants(model: &AccessModel) -> HashMap<(String, String), Arc<Grant>> {
    let mut grants = HashMap::with_capacity(model.permissions.len());
    for (key, p) in &model.permissions {
        let topics: Vec<&TopicPermissionDef> = model
            .topic_permissions
            .iter()
            .filter(|((v, u, _), _)| *v == key.0 && *u == key.1)
            .map(|(_, t)| t)
            .collect();
        match Grant::compile(p, &topics) {
            Ok(g) => {
                grants.insert(key.clone(), Arc::new(g));
            }
            Err(e) => {
                tracing::error!(vhost = %key.0, user = %key.1, error = %e, "a stored permission does not compile: it grants nothing")
            }
        }
    }
    grants
}

/// Whether a peer is on this host. A listener on `[::]` sees IPv4 clients as IPv4-mapped IPv6 addresses
/// (`::ffff:127.0.0.1`), which `IpAddr::is_loopback` alone does not count as loopback.
pub fn is_loopback(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

/// PLAIN: `[authzid] \0 user \0 password`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let pass = std::str::from_utf8(parts.next()?).ok()?.to_string();
    if parts.next().is_some() {
        return None;
    }
    Some((user, pass))
}

/// AMQPLAIN: a field table with LOGIN and PASSWORD, sent without its 4-byte length prefix.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(response.len() + 4);
    buf.extend_from_slice(&(response.len() as u32).to_be_bytes());
    buf.extend_from_slice(response);
    let table = crate::amqp::nesting::parse_table_bounded(&buf[..]).ok()?;
    let user = args::get_str(&table, "LOGIN")?.to_string();
    let pass = args::get_str(&table, "PASSWORD")?.to_string();
    Some((user, pass))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::access_defs::Origin;

    fn access() -> Access {
        Access::new(AccessModel::default(), &Config::default(), &[], None, Arc::default()).expect("access")
    }

    #[test]
    fn external_needs_an_existing_user_and_keeps_the_loopback_rule() {
        let users = access();
        let lo: IpAddr = [127, 0, 0, 1].into();
        let name = |r: Result<UserDef, AuthError>| r.map(|u| u.name);
        assert_eq!(name(users.login_external("guest", lo)), Ok("guest".into()));
        assert_eq!(
            name(users.login_external("nobody", lo)),
            Err(AuthError::Refused("EXTERNAL".into()))
        );
        assert_eq!(
            name(users.login_external("guest", [10, 0, 0, 1].into())),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
    }

    #[test]
    fn plain_and_amqplain() {
        let users = access();
        let lo: IpAddr = [127, 0, 0, 1].into();
        let name = |r: Result<UserDef, AuthError>| r.map(|u| u.name);
        assert_eq!(name(users.login("PLAIN", b"\0guest\0guest", lo)), Ok("guest".into()));
        assert!(matches!(
            users.login("PLAIN", b"\0guest\0nope", lo),
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(
            users.login("PLAIN", b"garbage", lo),
            Err(AuthError::Malformed(_))
        ));
        let remote: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(
            name(users.login("PLAIN", b"\0guest\0guest", remote)),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
        // LOGIN (S) guest, PASSWORD (S) guest, as py-amqp writes it.
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(name(users.login("AMQPLAIN", &t, lo)), Ok("guest".into()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("addr");
        assert_eq!(
            name(users.login("PLAIN", b"\0guest\0guest", mapped)),
            Ok("guest".into()),
            "an IPv4-mapped loopback address (a dual-stack listener) is loopback"
        );
        let mapped_remote: IpAddr = "::ffff:10.0.0.2".parse().expect("addr");
        assert_eq!(
            name(users.login("PLAIN", b"\0guest\0guest", mapped_remote)),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
        assert!(matches!(
            users.login("EXTERNAL", b"", lo),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    #[test]
    fn the_default_guest_has_everything_on_the_default_vhost_only() {
        let a = access();
        let g = a.grant("/", "guest").expect("guest on /");
        assert!(g.allows(Perm::Configure, "anything"));
        assert!(a.grant("other", "guest").is_none());
        assert_eq!(a.vhosts().len(), 1);
        assert_eq!(
            a.user("guest").map(|u| u.hashing_algorithm),
            Some(password::ARGON2ID.to_string())
        );
    }

    #[test]
    fn repeated_failures_lock_an_address_out_even_with_the_right_password() {
        let a = access();
        let peer: IpAddr = [127, 0, 0, 2].into();
        for _ in 0..failures::ALLOWED {
            assert!(matches!(
                a.authenticate("PLAIN", "guest", "wrong", peer),
                Err(AuthError::Refused(_))
            ));
        }
        assert!(matches!(
            a.authenticate("PLAIN", "guest", "guest", peer),
            Err(AuthError::TooManyFailures { .. })
        ));
        assert!(
            a.authenticate("PLAIN", "guest", "guest", [127, 0, 0, 3].into()).is_ok(),
            "another address is not affected"
        );
    }

    #[test]
    fn a_password_change_forgets_the_remembered_password_and_bumps_the_generation() {
        let a = access();
        let lo: IpAddr = [127, 0, 0, 1].into();
        assert!(a.authenticate("PLAIN", "guest", "guest", lo).is_ok());
        let before = a.generation();
        let (password_hash, alg) = password::hash("new");
        let mut u = a.user("guest").expect("guest");
        u.password_hash = password_hash;
        u.hashing_algorithm = alg.into();
        u.origin = Origin::Api;
        a.change(vec![AccessOp::PutUser { user: u }]).expect("change");
        assert!(a.generation() > before);
        assert!(
            a.authenticate("PLAIN", "guest", "guest", lo).is_err(),
            "the old password is forgotten"
        );
        assert!(a.authenticate("PLAIN", "guest", "new", lo).is_ok());
    }
}
