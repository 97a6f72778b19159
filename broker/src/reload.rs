//! SIGHUP's second job (the first is TLS, `tls::Tls::reload`): the config file's vhosts, users, permissions and
//! policies are read again and applied while the broker runs.
//!
//! The rules are those of a start (`auth::seed`): what the file adds or changes follows the file, a user or
//! permission the file no longer names goes (the user's connections are closed, as when the admin API deletes
//! one), vhosts are only ever added, and whatever the admin API set or deleted stays as the API left it. A file
//! that does not parse or check changes nothing. Every other setting (listeners, limits, loopback users) needs a
//! restart. Reloading verifies clear-text passwords against their stored hashes (argon2id), so callers on the
//! runtime run it with `spawn_blocking`.

use crate::auth::AccessError;
use crate::broker::Broker;
use crate::config::ConfigError;
use crate::store::access_defs::AccessOp;

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub vhosts_added: Vec<String>,
    pub users_removed: Vec<String>,
    /// Users and permissions added, changed or removed.
    pub access_changes: usize,
    /// Vhosts whose file policies changed.
    pub policy_changes: usize,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vhosts added, {} user and permission changes ({} users removed), policies changed on {} vhosts",
            self.vhosts_added.len(),
            self.access_changes,
            self.users_removed.len(),
            self.policy_changes
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl Broker {
    /// Reads the config file again and applies its vhosts, users, permissions and policies (see the module doc).
    pub fn reload_config(&self) -> Result<Reloaded, ReloadError> {
        let file = self.config.reread_definitions()?;
        let mut done = Reloaded::default();
        let (vhosts, rest): (Vec<AccessOp>, Vec<AccessOp>) = self
            .access
            .seed_ops(&file)
            .into_iter()
            .partition(|op| matches!(op, AccessOp::PutVHost { .. }));
        for op in vhosts {
            if let AccessOp::PutVHost { vhost } = op {
                let name = vhost.name.clone();
                if self.put_vhost(vhost)? {
                    done.vhosts_added.push(name);
                }
            }
        }
        done.users_removed = rest
            .iter()
            .filter_map(|op| match op {
                AccessOp::DeleteUser { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        done.access_changes = rest.len();
        if !rest.is_empty() {
            self.access.change(rest)?;
        }
        for user in &done.users_removed {
            self.close_connections(
                |c| *c.user.lock().unwrap_or_else(|e| e.into_inner()) == *user,
                &format!("user '{user}' is deleted"),
            );
        }
        *self.file_policies.write().unwrap_or_else(|e| e.into_inner()) = file.policies.clone();
        for vhost in self.vhosts() {
            let mine = file
                .policies
                .iter()
                .filter(|p| p.vhost == vhost.name)
                .cloned()
                .collect();
            if vhost.set_file_policies(mine) {
                done.policy_changes += 1;
            }
        }
        self.audit.record(crate::audit::Event {
            user: "(SIGHUP)",
            action: "reload config file",
            object: &self
                .config
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            result: &format!("ok, {done}"),
            ..Default::default()
        });
        Ok(done)
    }
}
