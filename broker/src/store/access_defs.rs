//! Durable access control as data: users, vhosts, permissions, topic permissions and limits, as
//! `definitions.log` stores them (in RabbitMQ's shapes, so that its definitions export maps one to one), and the
//! part of the definitions model (`AccessModel`) that replaying their changes builds.
//!
//! Invariants:
//! - deleting a user drops its permissions and topic permissions; deleting a vhost drops every permission on it
//!   (the vhost's exchanges and queues go with the vhost's part of `Model`);
//! - a deletion made through the admin API leaves a tombstone, so that the config file, which is read again at every
//!   start, never silently brings back what an operator deleted (see `auth::seed`); an API put clears it;
//! - applying an op twice is the same as applying it once, as for every `DefOp`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Where a definition came from: the config file (which may change it at the next start) or the admin API (which
/// the config file never overrides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    Config,
    Api,
}

/// RabbitMQ's per-user and per-vhost limits; `None` is no limit (RabbitMQ's -1 or absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Vhosts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queues: Option<u64>,
    /// Users only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    /// In the format `hashing_algorithm` names (see `auth::password`).
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    #[serde(default)]
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VHostDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    #[serde(default)]
    pub origin: Origin,
}

impl VHostDef {
    pub fn new(name: &str, origin: Origin) -> Self {
        VHostDef {
            name: name.to_string(),
            description: String::new(),
            tags: Vec::new(),
            limits: Limits::default(),
            origin,
        }
    }
}

/// A user's `configure`, `write` and `read` regular expressions on one vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
    #[serde(default)]
    pub origin: Origin,
}

/// A user's `write` and `read` regular expressions on the routing keys of one topic exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// One change to access control: the access part of `DefOp` (see `definitions.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AccessOp {
    PutUser {
        user: UserDef,
    },
    /// Also drops the user's permissions. `by_api` leaves a tombstone.
    DeleteUser {
        name: String,
        by_api: bool,
    },
    PutVHost {
        vhost: VHostDef,
    },
    /// Also drops every permission on the vhost.
    DeleteVHost {
        name: String,
        by_api: bool,
    },
    SetPermission {
        permission: PermissionDef,
    },
    ClearPermission {
        vhost: String,
        user: String,
        by_api: bool,
    },
    SetTopicPermission {
        permission: TopicPermissionDef,
    },
    ClearTopicPermission {
        vhost: String,
        user: String,
        exchange: String,
    },
}

/// Access control as stored: what replaying the log gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessModel {
    pub users: BTreeMap<String, UserDef>,
    pub vhosts: BTreeMap<String, VHostDef>,
    /// By (vhost, user).
    pub permissions: BTreeMap<(String, String), PermissionDef>,
    /// By (vhost, user, exchange).
    pub topic_permissions: BTreeMap<(String, String, String), TopicPermissionDef>,
    /// What the admin API deleted (the config file does not bring these back).
    pub deleted_users: BTreeSet<String>,
    pub deleted_vhosts: BTreeSet<String>,
    pub deleted_permissions: BTreeSet<(String, String)>,
}

impl AccessModel {
    pub fn apply(&mut self, op: AccessOp) {
        match op {
            AccessOp::PutUser { user } => {
                self.deleted_users.remove(&user.name);
                self.users.insert(user.name.clone(), user);
            }
            AccessOp::DeleteUser { name, by_api } => {
                self.users.remove(&name);
                self.permissions.retain(|(_, u), _| *u != name);
                self.topic_permissions.retain(|(_, u, _), _| *u != name);
                if by_api {
                    self.deleted_users.insert(name);
                }
            }
            AccessOp::PutVHost { vhost } => {
                self.deleted_vhosts.remove(&vhost.name);
                self.vhosts.insert(vhost.name.clone(), vhost);
            }
            AccessOp::DeleteVHost { name, by_api } => {
                self.vhosts.remove(&name);
                self.permissions.retain(|(v, _), _| *v != name);
                self.topic_permissions.retain(|(v, _, _), _| *v != name);
                if by_api {
                    self.deleted_vhosts.insert(name);
                }
            }
            AccessOp::SetPermission { permission } => {
                let key = (permission.vhost.clone(), permission.user.clone());
                self.deleted_permissions.remove(&key);
                self.permissions.insert(key, permission);
            }
            AccessOp::ClearPermission { vhost, user, by_api } => {
                let key = (vhost, user);
                self.permissions.remove(&key);
                if by_api {
                    self.deleted_permissions.insert(key);
                }
            }
            AccessOp::SetTopicPermission { permission } => {
                let key = (
                    permission.vhost.clone(),
                    permission.user.clone(),
                    permission.exchange.clone(),
                );
                self.topic_permissions.insert(key, permission);
            }
            AccessOp::ClearTopicPermission { vhost, user, exchange } => {
                self.topic_permissions.remove(&(vhost, user, exchange));
            }
        }
    }

    /// The ops that rebuild this model from nothing: tombstones first, then vhosts and users before the
    /// permissions that name them.
    pub fn snapshot(&self) -> Vec<AccessOp> {
        let mut ops = Vec::with_capacity(self.len());
        ops.extend(self.deleted_vhosts.iter().map(|name| AccessOp::DeleteVHost {
            name: name.clone(),
            by_api: true,
        }));
        ops.extend(self.deleted_users.iter().map(|name| AccessOp::DeleteUser {
            name: name.clone(),
            by_api: true,
        }));
        ops.extend(
            self.deleted_permissions
                .iter()
                .map(|(vhost, user)| AccessOp::ClearPermission {
                    vhost: vhost.clone(),
                    user: user.clone(),
                    by_api: true,
                }),
        );
        ops.extend(self.vhosts.values().map(|v| AccessOp::PutVHost { vhost: v.clone() }));
        ops.extend(self.users.values().map(|u| AccessOp::PutUser { user: u.clone() }));
        ops.extend(
            self.permissions
                .values()
                .map(|p| AccessOp::SetPermission { permission: p.clone() }),
        );
        ops.extend(
            self.topic_permissions
                .values()
                .map(|p| AccessOp::SetTopicPermission { permission: p.clone() }),
        );
        ops
    }

    /// Records a snapshot holds.
    pub fn len(&self) -> usize {
        self.users.len()
            + self.vhosts.len()
            + self.permissions.len()
            + self.topic_permissions.len()
            + self.deleted_users.len()
            + self.deleted_vhosts.len()
            + self.deleted_permissions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserDef {
        UserDef {
            name: name.into(),
            password_hash: "h".into(),
            hashing_algorithm: "rabbit_password_hashing_sha256".into(),
            tags: vec![],
            limits: Limits::default(),
            origin: Origin::Api,
        }
    }

    fn perm(vhost: &str, user: &str) -> PermissionDef {
        PermissionDef {
            user: user.into(),
            vhost: vhost.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
            origin: Origin::Api,
        }
    }

    #[test]
    fn deletes_take_permissions_leave_tombstones_and_snapshots_replay() {
        let mut m = AccessModel::default();
        for op in [
            AccessOp::PutVHost {
                vhost: VHostDef::new("a", Origin::Api),
            },
            AccessOp::PutUser { user: user("u") },
            AccessOp::PutUser { user: user("w") },
            AccessOp::SetPermission {
                permission: perm("a", "u"),
            },
            AccessOp::SetPermission {
                permission: perm("a", "w"),
            },
            AccessOp::SetPermission {
                permission: perm("/", "u"),
            },
        ] {
            m.apply(op);
        }
        let mut again = AccessModel::default();
        for op in m.snapshot() {
            again.apply(op);
        }
        assert_eq!(again, m);

        m.apply(AccessOp::DeleteUser {
            name: "u".into(),
            by_api: true,
        });
        assert_eq!(m.permissions.len(), 1, "the user's permissions went with it");
        assert!(m.deleted_users.contains("u"));
        m.apply(AccessOp::DeleteVHost {
            name: "a".into(),
            by_api: false,
        });
        assert!(m.permissions.is_empty(), "permissions on a deleted vhost go with it");
        assert!(m.deleted_vhosts.is_empty(), "only the API leaves tombstones");
        m.apply(AccessOp::PutUser { user: user("u") });
        assert!(m.deleted_users.is_empty(), "a put clears the tombstone");

        let mut again = AccessModel::default();
        for op in m.snapshot() {
            again.apply(op);
        }
        assert_eq!(again, m);
    }
}
