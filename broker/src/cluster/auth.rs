//! Mutual authentication of the replication link with the cluster's shared secret (`--cluster-secret-file`), so
//! that nothing but a node holding the secret can pull the data directory from a leader, or feed a follower.
//!
//! The exchange (frames in `wire.rs`): the follower says `Hello` with its node name and a fresh 32-byte nonce `f`;
//! the leader answers `Challenge` with its own nonce `l` and `HMAC-SHA256(secret, "warren-repl leader" | name | f |
//! l)`; the follower checks that proof, then answers `Auth` with `HMAC-SHA256(secret, "warren-repl follower" | name
//! | l | f)`, which the leader checks before it lists a single file. Each side's proof covers the other's fresh
//! nonce, so a recorded exchange cannot be replayed, and the two roles' labels differ, so one side's proof cannot be
//! reflected back as the other's. Proofs are compared in constant time (`hmac`'s `verify_slice`).
//!
//! Without a secret (a cluster whose replication listens on loopback only), the key is empty: the exchange still
//! runs and both sides agree, but it proves nothing; `config` refuses a non-loopback `--cluster-listen` without one.
//! This authenticates the peers; it does not encrypt the stream (run replication on a private network).

use hmac::{Hmac, Mac};
use sha2::Sha256;

const LEADER: &[u8] = b"warren-repl leader";
const FOLLOWER: &[u8] = b"warren-repl follower";

/// The cluster's shared secret (never printed).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(none)"
        } else {
            "Secret(..)"
        })
    }
}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }

    fn mac(&self, label: &[u8], node: &str, first: &[u8; 32], second: &[u8; 32]) -> Hmac<Sha256> {
        // HMAC takes a key of any length (an empty one included).
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        m.update(label);
        m.update(&(node.len() as u64).to_be_bytes());
        m.update(node.as_bytes());
        m.update(first);
        m.update(second);
        m
    }

    /// The leader's proof, for the follower `node` that sent `follower_nonce`.
    pub fn leader_proof(&self, node: &str, follower_nonce: &[u8; 32], leader_nonce: &[u8; 32]) -> [u8; 32] {
        self.mac(LEADER, node, follower_nonce, leader_nonce)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The follower's proof, answering the leader's `leader_nonce`.
    pub fn follower_proof(&self, node: &str, leader_nonce: &[u8; 32], follower_nonce: &[u8; 32]) -> [u8; 32] {
        self.mac(FOLLOWER, node, leader_nonce, follower_nonce)
            .finalize()
            .into_bytes()
            .into()
    }

    pub fn check_leader(
        &self,
        node: &str,
        follower_nonce: &[u8; 32],
        leader_nonce: &[u8; 32],
        proof: &[u8; 32],
    ) -> bool {
        self.mac(LEADER, node, follower_nonce, leader_nonce)
            .verify_slice(proof)
            .is_ok()
    }

    pub fn check_follower(
        &self,
        node: &str,
        leader_nonce: &[u8; 32],
        follower_nonce: &[u8; 32],
        proof: &[u8; 32],
    ) -> bool {
        self.mac(FOLLOWER, node, leader_nonce, follower_nonce)
            .verify_slice(proof)
            .is_ok()
    }
}

/// A fresh nonce.
pub fn nonce() -> [u8; 32] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_with_the_same_secret_only_and_cannot_be_reflected_or_replayed() {
        let (a, b) = (Secret::new(b"one".to_vec()), Secret::new(b"two".to_vec()));
        let (f, l) = (nonce(), nonce());
        let lp = a.leader_proof("n2", &f, &l);
        assert!(a.check_leader("n2", &f, &l, &lp));
        assert!(!b.check_leader("n2", &f, &l, &lp), "another secret");
        assert!(!a.check_leader("n3", &f, &l, &lp), "another node");
        assert!(!a.check_leader("n2", &nonce(), &l, &lp), "another exchange: no replay");
        let fp = a.follower_proof("n2", &l, &f);
        assert!(a.check_follower("n2", &l, &f, &fp));
        assert!(
            !a.check_follower("n2", &f, &l, &lp),
            "the leader's proof is not a follower's"
        );
        assert!(!a.check_follower("n2", &l, &f, &lp));
        // No secret on either side: the exchange runs (and proves nothing).
        let none = Secret::default();
        assert!(none.check_follower("n2", &l, &f, &none.follower_proof("n2", &l, &f)));
        assert!(!a.check_follower("n2", &l, &f, &none.follower_proof("n2", &l, &f)));
        assert_eq!(format!("{a:?}"), "Secret(..)", "never printed");
    }
}
