//! Password hashes: the formats a stored hash may be in, how new ones are made, and how a password is checked.
//!
//! - New passwords are hashed with argon2id (the PHC string `$argon2id$v=19$m=…`), `hashing_algorithm`
//!   [`ARGON2ID`], with OWASP's 7 MiB / 5 passes variant (as strong as its 19 MiB / 2 passes, with a third of the
//!   memory for a moment per check: this broker idles in a few MB). A hash carries its parameters, so hashes made
//!   with others (the `argon2` crate's defaults, say) verify too.
//! - RabbitMQ's `rabbit_password_hashing_sha256` and `rabbit_password_hashing_sha512` hashes (base64 of a 4-byte
//!   salt followed by `SHA(salt || password)`) are kept as they are, so RabbitMQ definitions import unchanged and
//!   their users log in with their old passwords.
//! - Warren's earlier `hex(salt):hex(sha256(salt || password))` (config files written for earlier versions) is
//!   still accepted.
//! - In definitions files an argon2id hash travels in RabbitMQ's shape ([`to_definitions`]): base64 of the PHC
//!   string, `hashing_algorithm` [`DEFINITIONS_ARGON2ID`]. RabbitMQ 3.10 then imports the file (its import fails on
//!   a `password_hash` that is not base64) and refuses that user's logins until the password is set there again;
//!   Warren reads it back as argon2id ([`from_definitions`]).
//!
//! Invariant: checks compare without an early exit, so their timing says nothing about where two hashes differ.
//! A hash that cannot be parsed matches no password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};

pub const ARGON2ID: &str = "argon2id";
pub const RABBIT_SHA256: &str = "rabbit_password_hashing_sha256";
pub const RABBIT_SHA512: &str = "rabbit_password_hashing_sha512";
/// An argon2id hash in a definitions file: base64 of its PHC string.
pub const DEFINITIONS_ARGON2ID: &str = "warren_password_hashing_argon2id";
/// Warren's format before argon2id (`hex(salt):hex(sha256)`).
pub const WARREN_SHA256: &str = "warren_salted_sha256";

/// A stored hash and its algorithm as a definitions export writes them (see the module doc).
pub fn to_definitions(hash: &str, algorithm: &str) -> (String, String) {
    match algorithm {
        ARGON2ID => (
            base64::engine::general_purpose::STANDARD.encode(hash),
            DEFINITIONS_ARGON2ID.to_string(),
        ),
        _ => (hash.to_string(), algorithm.to_string()),
    }
}

/// A hash and algorithm from a definitions file as they are stored: the inverse of [`to_definitions`]; other
/// algorithms (and an argon2id PHC string as such) pass unchanged.
pub fn from_definitions(hash: &str, algorithm: &str) -> Result<(String, String), HashError> {
    match algorithm {
        DEFINITIONS_ARGON2ID => base64::engine::general_purpose::STANDARD
            .decode(hash)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|phc| (phc, ARGON2ID.to_string()))
            .ok_or(HashError::Malformed(
                "warren_password_hashing_argon2id (base64 of an argon2id PHC string)",
            )),
        _ => Ok((hash.to_string(), algorithm.to_string())),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("unknown hashing_algorithm '{0}' (known: argon2id, rabbit_password_hashing_sha256, rabbit_password_hashing_sha512)")]
    UnknownAlgorithm(String),
    #[error("password_hash is not a valid {0} hash")]
    Malformed(&'static str),
}

/// Hashes a new password with argon2id and a fresh 16-byte salt; returns the hash and its `hashing_algorithm`.
pub fn hash(password: &str) -> (String, &'static str) {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    // Both steps fail only on parameters out of range; ours are argon2's defaults and a 16-byte salt.
    let hashed = match SaltString::encode_b64(&salt) {
        Ok(salt) => hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    (hashed, ARGON2ID)
}

/// `hash-password`: the first line of `input` (without its line ending) hashed; the error is one readable line.
pub fn hash_line(mut input: impl std::io::BufRead) -> Result<String, String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("no password on standard input (try: echo -n 's3cret' | warren-broker hash-password)".into());
    }
    Ok(hash(password).0)
}

/// argon2id with OWASP's m = 7 MiB, t = 5, p = 1.
fn hasher() -> Argon2<'static> {
    match argon2::Params::new(7 * 1024, 5, 1, None) {
        Ok(params) => Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        Err(_) => Argon2::default(),
    }
}

/// The algorithm of a hash given without one (a config file's `password_hash`), told from its shape.
pub fn detect(hash: &str) -> Option<&'static str> {
    if hash.starts_with("$argon2") {
        return Some(ARGON2ID);
    }
    if let Some((salt, digest)) = hash.split_once(':') {
        return (unhex(salt).is_some() && unhex(digest).is_some_and(|d| d.len() == 32)).then_some(WARREN_SHA256);
    }
    match base64::engine::general_purpose::STANDARD.decode(hash).ok()?.len() {
        36 => Some(RABBIT_SHA256),
        68 => Some(RABBIT_SHA512),
        _ => None,
    }
}

/// Checks that `hash` is a well-formed hash of `algorithm` (before it is stored).
pub fn validate(hash: &str, algorithm: &str) -> Result<(), HashError> {
    let ok = match algorithm {
        ARGON2ID => PasswordHash::new(hash).is_ok(),
        RABBIT_SHA256 => rabbit_parts(hash, 32).is_some(),
        RABBIT_SHA512 => rabbit_parts(hash, 64).is_some(),
        WARREN_SHA256 => detect(hash) == Some(WARREN_SHA256),
        other => return Err(HashError::UnknownAlgorithm(other.to_string())),
    };
    if ok {
        Ok(())
    } else {
        Err(HashError::Malformed(match algorithm {
            ARGON2ID => ARGON2ID,
            RABBIT_SHA256 => RABBIT_SHA256,
            RABBIT_SHA512 => RABBIT_SHA512,
            _ => WARREN_SHA256,
        }))
    }
}

/// Whether `password` is the one `hash` (of `algorithm`) was made from. An empty hash matches nothing (RabbitMQ's
/// passwordless users cannot log in with a password either).
pub fn verify(hash: &str, algorithm: &str, password: &str) -> bool {
    match algorithm {
        ARGON2ID => {
            PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        }
        RABBIT_SHA256 => rabbit_parts(hash, 32).is_some_and(|(salt, digest)| {
            let mut h = Sha256::new();
            h.update(salt);
            h.update(password.as_bytes());
            same(&h.finalize(), &digest)
        }),
        RABBIT_SHA512 => rabbit_parts(hash, 64).is_some_and(|(salt, digest)| {
            let mut h = Sha512::new();
            h.update(salt);
            h.update(password.as_bytes());
            same(&h.finalize(), &digest)
        }),
        WARREN_SHA256 => hash.split_once(':').is_some_and(|(salt, digest)| {
            let (Some(salt), Some(digest)) = (unhex(salt), unhex(digest)) else {
                return false;
            };
            let mut h = Sha256::new();
            h.update(&salt);
            h.update(password.as_bytes());
            same(&h.finalize(), &digest)
        }),
        _ => false,
    }
}

/// A RabbitMQ hash's 4-byte salt and its digest of `len` bytes.
fn rabbit_parts(hash: &str, len: usize) -> Option<([u8; 4], Vec<u8>)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(hash).ok()?;
    if raw.len() != 4 + len {
        return None;
    }
    let salt: [u8; 4] = raw.get(..4)?.try_into().ok()?;
    Some((salt, raw.get(4..)?.to_vec()))
}

/// Equal bytes, compared without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An argon2id hash goes out as base64 (RabbitMQ's import needs base64) and comes back as the same PHC string;
    /// RabbitMQ's own hashes pass both ways unchanged.
    #[test]
    fn definitions_form_round_trips() {
        let (h, alg) = hash("s3cret");
        let (out, out_alg) = to_definitions(&h, alg);
        assert_eq!(out_alg, DEFINITIONS_ARGON2ID);
        assert!(base64::engine::general_purpose::STANDARD.decode(&out).is_ok());
        assert_eq!(from_definitions(&out, &out_alg), Ok((h.clone(), ARGON2ID.to_string())));
        assert_eq!(
            from_definitions(&h, ARGON2ID),
            Ok((h, ARGON2ID.to_string())),
            "older exports"
        );
        let rabbit = ("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", RABBIT_SHA256);
        assert_eq!(
            to_definitions(rabbit.0, rabbit.1),
            (rabbit.0.to_string(), rabbit.1.to_string())
        );
        assert!(from_definitions("not base64!", DEFINITIONS_ARGON2ID).is_err());
    }

    #[test]
    fn argon2id_round_trip() {
        let (h, alg) = hash("s3cret");
        assert_eq!(alg, ARGON2ID);
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, alg, "s3cret"));
        assert!(!verify(&h, alg, "s3cre"));
        assert_eq!(detect(&h), Some(ARGON2ID));
        assert_eq!(validate(&h, alg), Ok(()));
    }

    /// Hashes RabbitMQ 3.10.8 made (in tests/fixtures/rabbitmq-3.10-definitions.json), checked with their passwords.
    #[test]
    fn rabbitmq_hashes_verify() {
        let sha256 = "QTurrNkXVIyxAku3PubGK7v4yqrHbAbcEcj8LM3GHwJRBDt3";
        assert!(verify(sha256, RABBIT_SHA256, "ops-pass-1"));
        assert!(!verify(sha256, RABBIT_SHA256, "ops-pass-2"));
        assert_eq!(detect(sha256), Some(RABBIT_SHA256));
        let sha512 = "AxXxDnJQ4cZXFXoze48OB6xgFUOs7n+2sjfjMJ8++kYlE+4HzRh1g2+tOjNcmf/oGUfG5Dzxd9pUXxgBXw2NW/ZjE4g=";
        assert!(verify(sha512, RABBIT_SHA512, "app-pass-3"));
        assert!(
            !verify(sha512, RABBIT_SHA256, "app-pass-3"),
            "the algorithm must match the hash"
        );
        assert_eq!(detect(sha512), Some(RABBIT_SHA512));
    }

    #[test]
    fn bad_hashes_match_nothing_and_are_refused() {
        for (h, alg) in [
            ("", ARGON2ID),
            ("nope", RABBIT_SHA256),
            ("zz:zz", WARREN_SHA256),
            ("$argon2id$x", ARGON2ID),
        ] {
            assert!(!verify(h, alg, ""), "{h}");
            assert!(validate(h, alg).is_err(), "{h}");
        }
        assert!(matches!(validate("x", "md5"), Err(HashError::UnknownAlgorithm(_))));
        assert_eq!(detect("garbage!"), None);
    }

    #[test]
    fn earlier_warren_hashes_still_verify() {
        let mut h = Sha256::new();
        h.update([1u8, 2, 3]);
        h.update(b"pw");
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let stored = format!("010203:{digest}");
        assert_eq!(detect(&stored), Some(WARREN_SHA256));
        assert!(verify(&stored, WARREN_SHA256, "pw"));
        assert!(!verify(&stored, WARREN_SHA256, "px"));
    }
}
