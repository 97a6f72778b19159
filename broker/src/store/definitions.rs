//! Durable definitions as data: each vhost's durable exchanges, queues, bindings and API-set policies, the
//! changes to them (`DefOp`, one record of `definitions.log`, see `definitions_log.rs`), and the model that
//! replaying those changes builds; and the records of live things (`QueueDef::of`, `ExchangeDef::of`,
//! `BindingDef::of`, `PolicyDef::from`), which is how the vhost describes a change it saves.
//!
//! Invariants of the model (`Model`), which the vhost relies on when it writes ops:
//! - deleting a queue also drops every binding to it, and deleting an exchange every binding from or to it, so a
//!   delete needs no unbind records of its own (auto-deleted exchanges get their own `DeleteExchange`);
//! - applying an op twice is the same as applying it once (declares replace, binds are a set), so a snapshot
//!   followed by ops that it already contains replays to the same state.

use std::collections::BTreeMap;

use amq_protocol::types::FieldTable;
use serde::{Deserialize, Serialize};

use super::access_defs::{AccessModel, AccessOp};
use crate::policy::Policy;
use crate::queue::Queue;
use crate::routing::{Binding, Destination, Exchange};

/// Every vhost's definitions, as the broker restores them at start (and as `definitions.json` held them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub vhosts: BTreeMap<String, VHostDefinitions>,
    /// Users, vhosts and permissions (none in a `definitions.json` of earlier versions).
    #[serde(skip)]
    pub access: AccessModel,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VHostDefinitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    /// Policies set through the admin API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub name: String,
    pub pattern: String,
    pub priority: i64,
    pub definition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    pub arguments: FieldTable,
    /// Paused by an operator (older records have no such field: not paused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub destination: String,
    /// true: `destination` is a queue; false: an exchange.
    pub to_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl From<&Policy> for PolicyDef {
    /// An API policy as `definitions.log` stores it.
    fn from(p: &Policy) -> Self {
        PolicyDef {
            name: p.name.clone(),
            pattern: p.pattern.as_str().to_string(),
            priority: p.priority,
            definition: p.definition.clone(),
        }
    }
}

impl ExchangeDef {
    /// The record of a durable exchange.
    pub fn of(x: &Exchange) -> Self {
        ExchangeDef {
            name: x.name.clone(),
            kind: x.type_name().to_string(),
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: x.arguments.clone(),
        }
    }
}

impl QueueDef {
    /// The record of a durable queue.
    pub fn of(q: &Queue) -> Self {
        QueueDef {
            name: q.name().to_string(),
            arguments: q.spec.arguments.clone(),
            paused: q.is_paused(),
        }
    }
}

impl BindingDef {
    /// The record of a binding from exchange `source`.
    pub fn of(source: &str, b: &Binding) -> Self {
        BindingDef {
            source: source.to_string(),
            destination: b.destination.name().to_string(),
            to_queue: matches!(b.destination, Destination::Queue(_)),
            routing_key: b.routing_key.clone(),
            arguments: b.arguments.clone(),
        }
    }
}

/// One change to the durable definitions of a vhost: a record of `definitions.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DefOp {
    DeclareExchange {
        vhost: String,
        exchange: ExchangeDef,
    },
    /// Also drops the bindings from and to the exchange.
    DeleteExchange {
        vhost: String,
        name: String,
    },
    DeclareQueue {
        vhost: String,
        queue: QueueDef,
    },
    /// Also drops the bindings to the queue.
    DeleteQueue {
        vhost: String,
        name: String,
    },
    Bind {
        vhost: String,
        binding: BindingDef,
    },
    Unbind {
        vhost: String,
        binding: BindingDef,
    },
    SetPolicy {
        vhost: String,
        policy: PolicyDef,
    },
    DeletePolicy {
        vhost: String,
        name: String,
    },
    /// An operator paused or resumed a durable queue.
    PauseQueue {
        vhost: String,
        name: String,
        paused: bool,
    },
    /// Users, vhosts and permissions (`access_defs.rs`); their records carry their own `op` names.
    #[serde(untagged)]
    Access(AccessOp),
}

/// The live definitions, keyed for cheap ops: what replaying the log gives, and what a compaction writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    vhosts: BTreeMap<String, VHostModel>,
    access: AccessModel,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct VHostModel {
    exchanges: BTreeMap<String, ExchangeDef>,
    queues: BTreeMap<String, QueueDef>,
    /// In the order they were bound; no two equal.
    bindings: Vec<BindingDef>,
    policies: BTreeMap<String, PolicyDef>,
}

impl Model {
    pub fn apply(&mut self, op: DefOp) {
        match op {
            DefOp::DeclareExchange { vhost, exchange } => {
                self.vhost(vhost).exchanges.insert(exchange.name.clone(), exchange);
            }
            DefOp::DeleteExchange { vhost, name } => {
                let v = self.vhost(vhost);
                v.exchanges.remove(&name);
                v.bindings
                    .retain(|b| b.source != name && (b.to_queue || b.destination != name));
            }
            DefOp::DeclareQueue { vhost, queue } => {
                self.vhost(vhost).queues.insert(queue.name.clone(), queue);
            }
            DefOp::DeleteQueue { vhost, name } => {
                let v = self.vhost(vhost);
                v.queues.remove(&name);
                v.bindings.retain(|b| !(b.to_queue && b.destination == name));
            }
            DefOp::Bind { vhost, binding } => {
                let v = self.vhost(vhost);
                if !v.bindings.contains(&binding) {
                    v.bindings.push(binding);
                }
            }
            DefOp::Unbind { vhost, binding } => self.vhost(vhost).bindings.retain(|b| *b != binding),
            DefOp::SetPolicy { vhost, policy } => {
                self.vhost(vhost).policies.insert(policy.name.clone(), policy);
            }
            DefOp::DeletePolicy { vhost, name } => {
                self.vhost(vhost).policies.remove(&name);
            }
            DefOp::PauseQueue { vhost, name, paused } => {
                if let Some(q) = self.vhost(vhost).queues.get_mut(&name) {
                    q.paused = paused;
                }
            }
            DefOp::Access(op) => {
                if let AccessOp::DeleteVHost { name, .. } = &op {
                    self.vhosts.remove(name);
                }
                self.access.apply(op);
            }
        }
    }

    fn vhost(&mut self, name: String) -> &mut VHostModel {
        self.vhosts.entry(name).or_default()
    }

    /// How many records a snapshot of the model takes.
    pub fn len(&self) -> usize {
        self.vhosts
            .values()
            .map(|v| v.exchanges.len() + v.queues.len() + v.bindings.len() + v.policies.len())
            .sum::<usize>()
            + self.access.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a queue of this vhost is defined.
    pub fn has_queue(&self, vhost: &str, queue: &str) -> bool {
        self.vhosts.get(vhost).is_some_and(|v| v.queues.contains_key(queue))
    }

    /// The ops that rebuild the model from nothing: exchanges and queues before the bindings between them.
    pub fn snapshot(&self) -> Vec<DefOp> {
        let mut ops = Vec::with_capacity(self.len());
        ops.extend(self.access.snapshot().into_iter().map(DefOp::Access));
        for (name, v) in &self.vhosts {
            let vhost = || name.clone();
            ops.extend(v.policies.values().map(|p| DefOp::SetPolicy {
                vhost: vhost(),
                policy: p.clone(),
            }));
            ops.extend(v.exchanges.values().map(|x| DefOp::DeclareExchange {
                vhost: vhost(),
                exchange: x.clone(),
            }));
            ops.extend(v.queues.values().map(|q| DefOp::DeclareQueue {
                vhost: vhost(),
                queue: q.clone(),
            }));
            ops.extend(v.bindings.iter().map(|b| DefOp::Bind {
                vhost: vhost(),
                binding: b.clone(),
            }));
        }
        ops
    }

    /// The definitions to restore, by vhost (exchanges, queues and policies by name; bindings in bind order).
    pub fn definitions(&self) -> Definitions {
        let vhosts = self
            .vhosts
            .iter()
            .map(|(name, v)| {
                let defs = VHostDefinitions {
                    exchanges: v.exchanges.values().cloned().collect(),
                    queues: v.queues.values().cloned().collect(),
                    bindings: v.bindings.clone(),
                    policies: v.policies.values().cloned().collect(),
                };
                (name.clone(), defs)
            })
            .collect();
        Definitions {
            vhosts,
            access: self.access.clone(),
        }
    }

    /// The model of definitions read from the old `definitions.json`.
    pub fn from_definitions(defs: &Definitions) -> Self {
        let mut m = Model::default();
        for (vhost, v) in &defs.vhosts {
            let ops = v
                .policies
                .iter()
                .map(|p| DefOp::SetPolicy {
                    vhost: vhost.clone(),
                    policy: p.clone(),
                })
                .chain(v.exchanges.iter().map(|x| DefOp::DeclareExchange {
                    vhost: vhost.clone(),
                    exchange: x.clone(),
                }))
                .chain(v.queues.iter().map(|q| DefOp::DeclareQueue {
                    vhost: vhost.clone(),
                    queue: q.clone(),
                }))
                .chain(v.bindings.iter().map(|b| DefOp::Bind {
                    vhost: vhost.clone(),
                    binding: b.clone(),
                }));
            for op in ops {
                m.apply(op);
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(source: &str, destination: &str, to_queue: bool) -> BindingDef {
        BindingDef {
            source: source.into(),
            destination: destination.into(),
            to_queue,
            routing_key: "k".into(),
            arguments: FieldTable::default(),
        }
    }

    fn exchange(name: &str) -> ExchangeDef {
        ExchangeDef {
            name: name.into(),
            kind: "direct".into(),
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        }
    }

    fn queue(name: &str) -> QueueDef {
        QueueDef {
            name: name.into(),
            arguments: FieldTable::default(),
            paused: false,
        }
    }

    #[test]
    fn deletes_take_their_bindings_and_ops_are_idempotent() {
        let v = || "/".to_string();
        let mut m = Model::default();
        let ops = [
            DefOp::DeclareExchange {
                vhost: v(),
                exchange: exchange("x"),
            },
            DefOp::DeclareExchange {
                vhost: v(),
                exchange: exchange("y"),
            },
            DefOp::DeclareQueue {
                vhost: v(),
                queue: queue("q"),
            },
            DefOp::Bind {
                vhost: v(),
                binding: binding("x", "q", true),
            },
            DefOp::Bind {
                vhost: v(),
                binding: binding("x", "q", true),
            },
            DefOp::Bind {
                vhost: v(),
                binding: binding("y", "x", false),
            },
            DefOp::Bind {
                vhost: v(),
                binding: binding("amq.direct", "q", true),
            },
        ];
        for op in ops.iter().cloned() {
            m.apply(op);
        }
        assert_eq!(m.len(), 6, "the repeated bind counts once");
        let again = m.clone();
        for op in m.snapshot() {
            m.apply(op);
        }
        assert_eq!(m, again, "replaying a snapshot over itself changes nothing");

        m.apply(DefOp::DeleteQueue {
            vhost: v(),
            name: "q".into(),
        });
        assert_eq!(m.definitions().vhosts["/"].bindings, vec![binding("y", "x", false)]);
        m.apply(DefOp::DeleteExchange {
            vhost: v(),
            name: "x".into(),
        });
        let left = &m.definitions().vhosts["/"];
        assert!(left.bindings.is_empty(), "bindings to a deleted exchange go too");
        assert_eq!(left.exchanges, vec![exchange("y")]);
    }

    #[test]
    fn old_json_definitions_convert_whole() {
        let mut defs = Definitions::default();
        defs.vhosts.insert(
            "/".into(),
            VHostDefinitions {
                exchanges: vec![exchange("x")],
                queues: vec![queue("a"), queue("b")],
                bindings: vec![binding("x", "b", true), binding("x", "a", true)],
                policies: Vec::new(),
            },
        );
        assert_eq!(Model::from_definitions(&defs).definitions(), defs);
    }
}
