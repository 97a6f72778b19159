//! Failed logins per source address: after [`ALLOWED`] failures within [`WINDOW`], an address is refused without
//! its password being checked until the window has passed, over AMQP and the admin API alike. Guessing passwords
//! then costs an attacker a window per few tries, and costs the broker no hashing.
//!
//! Invariants: at most [`MAX_TRACKED`] addresses are kept (the oldest windows go first), so a flood of addresses
//! cannot grow memory without bound; a successful login clears its address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have within a window before it is refused.
pub const ALLOWED: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 16_384;

#[derive(Default)]
pub struct Failures {
    by_addr: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// `Err(wait)` when `addr` has used up its failures in the current window.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&addr.to_canonical()) {
            Some(&(n, start)) if n >= ALLOWED && now.duration_since(start) < WINDOW => {
                Err(WINDOW.saturating_sub(now.duration_since(start)))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (_, start)| now.duration_since(*start) < WINDOW);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(addr.to_canonical()).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, addr: IpAddr) {
        self.by_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr.to_canonical());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_for_the_rest_of_its_window() {
        let f = Failures::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t = Instant::now();
        for _ in 0..ALLOWED {
            assert!(f.check(a, t).is_ok());
            f.failed(a, t);
        }
        assert!(f.check(a, t + Duration::from_secs(1)).is_err());
        assert!(f.check(b, t).is_ok(), "other addresses are not affected");
        assert!(f.check(a, t + WINDOW).is_ok(), "the window passes");
        f.failed(a, t + WINDOW);
        assert!(f.check(a, t + WINDOW).is_ok(), "a new window starts from one failure");
        f.succeeded(a);
        assert!(f.by_addr.lock().expect("lock").is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let f = Failures::default();
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            f.failed(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(f.by_addr.lock().expect("lock").len() <= MAX_TRACKED);
    }
}
