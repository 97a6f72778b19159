//! Users and SASL login (PLAIN and AMQPLAIN).
//!
//! Passwords are kept only as salted SHA-256 hashes (`hex(salt) ':' hex(sha256(salt || password))`); the clear
//! text from the config file is hashed at load and dropped. The default `guest`/`guest` user exists unless the
//! config defines its own `guest`, and like every name in `loopback_users` may only log in from loopback (over AMQP
//! and the admin API; an IPv4-mapped `::ffff:127.x.y.z` peer is loopback too).

use std::collections::HashMap;
use std::net::IpAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::args;
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub tags: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "ACCESS_REFUSED - Login was refused using authentication mechanism {0}. For details see the broker logfile."
    )]
    Refused(String),
    #[error("ACCESS_REFUSED - user '{0}' can only connect via localhost")]
    LoopbackOnly(String),
    #[error("unknown authentication mechanism '{0}'")]
    UnknownMechanism(String),
    #[error("malformed {0} login response")]
    Malformed(String),
}

pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut salt);
    hash_with_salt(&salt, password)
}

fn hash_with_salt(salt: &[u8], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    format!("{}:{}", hex(salt), hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    let Some((salt, _)) = hash.split_once(':') else {
        return false;
    };
    let Some(salt) = unhex(salt) else {
        return false;
    };
    // Compare without an early exit, so timing says nothing about where the hashes differ.
    let expected = hash_with_salt(&salt, password);
    expected.len() == hash.len()
        && expected
            .bytes()
            .zip(hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub struct Users {
    users: HashMap<String, User>,
    loopback_only: Vec<String>,
}

impl Users {
    pub fn from_config(config: &Config) -> Self {
        let mut users = HashMap::new();
        users.insert(
            "guest".to_string(),
            User {
                name: "guest".into(),
                password_hash: hash_password("guest"),
                tags: vec!["administrator".into()],
            },
        );
        for u in &config.users {
            let password_hash = match (&u.password, &u.password_hash) {
                (Some(p), _) => hash_password(p),
                (None, Some(h)) => h.clone(),
                (None, None) => continue,
            };
            users.insert(
                u.name.clone(),
                User {
                    name: u.name.clone(),
                    password_hash,
                    tags: u.tags.clone(),
                },
            );
        }
        Users {
            users,
            loopback_only: config.loopback_users.clone(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Checks a user's password (the admin API's basic auth); returns the user's tags.
    pub fn check(&self, name: &str, password: &str) -> Option<&[String]> {
        let u = self.users.get(name)?;
        verify_password(&u.password_hash, password).then_some(u.tags.as_slice())
    }

    /// Whether `name` may only log in from loopback (`loopback_users`, by default `guest`).
    pub fn is_loopback_only(&self, name: &str) -> bool {
        self.loopback_only.iter().any(|u| u == name)
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<&User> {
        let mut v: Vec<&User> = self.users.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Checks a connection.start-ok response; returns the user name.
    pub fn login(&self, mechanism: &str, response: &[u8], peer: IpAddr) -> Result<String, AuthError> {
        let (user, pass) = match mechanism {
            "PLAIN" => parse_plain(response).ok_or_else(|| AuthError::Malformed("PLAIN".into()))?,
            "AMQPLAIN" => parse_amqplain(response).ok_or_else(|| AuthError::Malformed("AMQPLAIN".into()))?,
            other => return Err(AuthError::UnknownMechanism(other.into())),
        };
        let ok = self
            .users
            .get(&user)
            .is_some_and(|u| verify_password(&u.password_hash, &pass));
        if !ok {
            return Err(AuthError::Refused(mechanism.into()));
        }
        if self.is_loopback_only(&user) && !is_loopback(peer) {
            return Err(AuthError::LoopbackOnly(user));
        }
        Ok(user)
    }

    /// The EXTERNAL mechanism: `cn` is the subject CN of a client certificate that the TLS handshake verified
    /// against the configured CA. The user must exist (no password is checked), and the loopback-only rule
    /// applies as for every login.
    pub fn login_external(&self, cn: &str, peer: IpAddr) -> Result<String, AuthError> {
        if self.get(cn).is_none() {
            return Err(AuthError::Refused("EXTERNAL".into()));
        }
        if self.is_loopback_only(cn) && !is_loopback(peer) {
            return Err(AuthError::LoopbackOnly(cn.into()));
        }
        Ok(cn.into())
    }
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

    #[test]
    fn hashes_verify() {
        let h = hash_password("s3cret");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cre"));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn plain_and_amqplain() {
        let users = Users::from_config(&Config::default());
        let lo: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(users.login("PLAIN", b"\0guest\0guest", lo), Ok("guest".into()));
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
            users.login("PLAIN", b"\0guest\0guest", remote),
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
        assert_eq!(users.login("AMQPLAIN", &t, lo), Ok("guest".into()));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("addr");
        assert_eq!(
            users.login("PLAIN", b"\0guest\0guest", mapped),
            Ok("guest".into()),
            "an IPv4-mapped loopback address (a dual-stack listener) is loopback"
        );
        let mapped_remote: IpAddr = "::ffff:10.0.0.1".parse().expect("addr");
        assert_eq!(
            users.login("PLAIN", b"\0guest\0guest", mapped_remote),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
        assert!(matches!(
            users.login("EXTERNAL", b"", lo),
            Err(AuthError::UnknownMechanism(_))
        ));
    }
}

#[cfg(test)]
mod external_tests {
    use super::*;

    #[test]
    fn external_needs_an_existing_user_and_keeps_the_loopback_rule() {
        let users = Users::from_config(&Config::default());
        let lo: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(users.login_external("guest", lo), Ok("guest".into()));
        assert_eq!(
            users.login_external("nobody", lo),
            Err(AuthError::Refused("EXTERNAL".into()))
        );
        assert_eq!(
            users.login_external("guest", [10, 0, 0, 1].into()),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
    }
}
