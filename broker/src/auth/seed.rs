//! What the config file contributes to access control at each start: its vhosts, users (and the default
//! `guest`/`guest` administrator unless it defines its own `guest`) and permissions (and guest's `.*` on `/`), as
//! changes to the stored model.
//!
//! Rules, so that an API change wins over the file and the file never silently undoes it:
//! - a definition the file adds is stored with origin `config`; when the file changes it, the stored one follows;
//!   when the file drops a user or a permission, the stored one goes too (vhosts are never deleted this way: that
//!   would delete their queues);
//! - a definition last set through the admin API (origin `api`) is left as it is, with a warning when the file
//!   says otherwise;
//! - a definition deleted through the admin API (a tombstone) is not brought back, with a warning.

use crate::config::Config;
use crate::store::access_defs::{AccessModel, AccessOp, Origin, PermissionDef, UserDef, VHostDef};

use super::password;

/// A user as the file gives it.
struct FileUser<'a> {
    name: &'a str,
    password: Option<&'a str>,
    hash: Option<&'a str>,
    tags: Vec<String>,
}

/// The changes that bring `model` in line with the config file (see the module doc). `legacy_vhosts` are vhosts
/// that have definitions from before vhosts were stored in their own right.
pub fn ops(model: &AccessModel, config: &Config, legacy_vhosts: &[String]) -> Vec<AccessOp> {
    let mut ops = Vec::new();
    let mut vhosts: Vec<&str> = vec!["/"];
    vhosts.extend(config.vhosts.iter().map(String::as_str));
    for name in vhosts.iter().copied().chain(legacy_vhosts.iter().map(String::as_str)) {
        if model.vhosts.contains_key(name)
            || ops
                .iter()
                .any(|o| matches!(o, AccessOp::PutVHost { vhost } if vhost.name == name))
        {
            continue;
        }
        if model.deleted_vhosts.contains(name) {
            if vhosts.contains(&name) && name != "/" {
                tracing::warn!(
                    vhost = name,
                    "the config file names a vhost that was deleted through the admin API: it stays deleted"
                );
            }
            continue;
        }
        ops.push(AccessOp::PutVHost {
            vhost: VHostDef::new(name, Origin::Config),
        });
    }

    let mut users: Vec<FileUser<'_>> = config
        .users
        .iter()
        .map(|u| FileUser {
            name: &u.name,
            password: u.password.as_deref(),
            hash: u.password_hash.as_deref(),
            tags: u.tags.clone(),
        })
        .collect();
    let default_guest = !users.iter().any(|u| u.name == "guest");
    if default_guest {
        users.push(FileUser {
            name: "guest",
            password: Some("guest"),
            hash: None,
            tags: vec!["administrator".into()],
        });
    }
    for u in &users {
        if model.deleted_users.contains(u.name) {
            tracing::warn!(
                user = u.name,
                "the config file names a user that was deleted through the admin API: it stays deleted"
            );
            continue;
        }
        let stored = model.users.get(u.name);
        let same = stored.is_some_and(|s| {
            s.tags == u.tags
                && match (u.password, u.hash) {
                    (Some(p), _) => password::verify(&s.password_hash, &s.hashing_algorithm, p),
                    (None, Some(h)) => s.password_hash == h,
                    (None, None) => true,
                }
        });
        match stored {
            Some(_) if same => {}
            Some(s) if s.origin == Origin::Api => {
                tracing::warn!(
                    user = u.name,
                    "the config file's user differs from the one set through the admin API: the API's is kept"
                );
            }
            _ => {
                let (password_hash, hashing_algorithm) = match (u.password, u.hash) {
                    (Some(p), _) => {
                        let (h, a) = password::hash(p);
                        (h, a.to_string())
                    }
                    (None, Some(h)) => match password::detect(h) {
                        Some(a) => (h.to_string(), a.to_string()),
                        None => {
                            tracing::error!(
                                user = u.name,
                                "password_hash in the config file is in no known format: the user cannot log in"
                            );
                            (String::new(), password::ARGON2ID.to_string())
                        }
                    },
                    (None, None) => {
                        tracing::warn!(
                            user = u.name,
                            "user in the config file has neither password nor password_hash: skipped"
                        );
                        continue;
                    }
                };
                ops.push(AccessOp::PutUser {
                    user: UserDef {
                        name: u.name.to_string(),
                        password_hash,
                        hashing_algorithm,
                        tags: u.tags.clone(),
                        limits: stored.map(|s| s.limits).unwrap_or_default(),
                        origin: Origin::Config,
                    },
                });
            }
        }
    }
    for (name, u) in &model.users {
        if u.origin == Origin::Config && !users.iter().any(|f| f.name == name) {
            ops.push(AccessOp::DeleteUser {
                name: name.clone(),
                by_api: false,
            });
        }
    }

    let mut perms: Vec<PermissionDef> = config
        .permissions
        .iter()
        .map(|p| PermissionDef {
            user: p.user.clone(),
            vhost: p.vhost.clone(),
            configure: p.configure.clone(),
            write: p.write.clone(),
            read: p.read.clone(),
            origin: Origin::Config,
        })
        .collect();
    if default_guest && !perms.iter().any(|p| p.user == "guest" && p.vhost == "/") {
        perms.push(PermissionDef {
            user: "guest".into(),
            vhost: "/".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
            origin: Origin::Config,
        });
    }
    let user_exists = |name: &str| {
        model.users.contains_key(name)
            || ops
                .iter()
                .any(|o| matches!(o, AccessOp::PutUser { user } if user.name == name))
    };
    let vhost_exists = |name: &str| {
        model.vhosts.contains_key(name)
            || ops
                .iter()
                .any(|o| matches!(o, AccessOp::PutVHost { vhost } if vhost.name == name))
    };
    let mut perm_ops = Vec::new();
    for p in &perms {
        let key = (p.vhost.clone(), p.user.clone());
        if let Err(e) = super::permissions::validate(p) {
            tracing::error!(user = %p.user, vhost = %p.vhost, error = %e, "permission in the config file skipped");
            continue;
        }
        if !user_exists(&p.user) || !vhost_exists(&p.vhost) {
            tracing::warn!(user = %p.user, vhost = %p.vhost, "permission in the config file names a user or vhost that does not exist: skipped");
            continue;
        }
        if model.deleted_permissions.contains(&key) {
            tracing::warn!(user = %p.user, vhost = %p.vhost, "the config file grants a permission that was cleared through the admin API: it stays cleared");
            continue;
        }
        match model.permissions.get(&key) {
            Some(s) if s.configure == p.configure && s.write == p.write && s.read == p.read => {}
            Some(s) if s.origin == Origin::Api => {
                tracing::warn!(user = %p.user, vhost = %p.vhost, "the config file's permission differs from the one set through the admin API: the API's is kept");
            }
            _ => perm_ops.push(AccessOp::SetPermission { permission: p.clone() }),
        }
    }
    for ((vhost, user), p) in &model.permissions {
        if p.origin == Origin::Config && !perms.iter().any(|f| f.vhost == *vhost && f.user == *user) {
            perm_ops.push(AccessOp::ClearPermission {
                vhost: vhost.clone(),
                user: user.clone(),
                by_api: false,
            });
        }
    }
    ops.extend(perm_ops);
    ops
}
