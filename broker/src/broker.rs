//! The broker's shared state: configuration, users, vhosts, and the direct reply-to registry.
//!
//! Each piece has its own owner and lock: vhosts are created at start and only read afterwards; the reply-to
//! registry is a short `Mutex` section per request-reply message. Per-queue and per-connection state lives in
//! `Queue` and in each connection's task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::auth::Users;
use crate::config::Config;
use crate::outbox::Outbox;
use crate::vhost::VHost;

/// Where replies to an `amq.rabbitmq.reply-to.<key>` address go: one channel's no-ack consumer.
#[derive(Clone)]
pub struct ReplyTarget {
    pub outbox: Arc<Outbox>,
    pub channel: u16,
    pub consumer_tag: Arc<str>,
}

pub struct Broker {
    pub config: Config,
    pub users: Users,
    vhosts: HashMap<String, Arc<VHost>>,
    next_connection_id: AtomicU64,
    reply_to: Mutex<HashMap<String, ReplyTarget>>,
    pub started: Instant,
}

impl Broker {
    pub fn new(config: Config) -> Arc<Self> {
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), Arc::new(VHost::new("/")));
        for v in &config.vhosts {
            vhosts.insert(v.clone(), Arc::new(VHost::new(v)));
        }
        Arc::new(Broker {
            users: Users::from_config(&config),
            config,
            vhosts,
            next_connection_id: AtomicU64::new(1),
            reply_to: Mutex::new(HashMap::new()),
            started: Instant::now(),
        })
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).cloned()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register_reply_to(&self, key: String, target: ReplyTarget) {
        self.reply_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, target);
    }

    pub fn unregister_reply_to(&self, key: &str) {
        self.reply_to.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    pub fn reply_target(&self, key: &str) -> Option<ReplyTarget> {
        self.reply_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }
}
