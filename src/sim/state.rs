//! The simulator's shared state: configuration, one lock per concern (subscriptions, calls,
//! faults) and the counters. Locks are `std::sync::Mutex`, never held across an `.await`, and
//! never two at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use rand::Rng;

use super::calls::Calls;
use super::config::SimConfig;
use super::faults::Faults;
use super::stats::Stats;
use super::subscriptions::Subscriptions;

pub struct Sim {
    pub cfg: SimConfig,
    pub started: Instant,
    /// username → password.
    users: HashMap<String, String>,
    pub subs: Mutex<Subscriptions>,
    pub calls: Mutex<Calls>,
    pub faults: Mutex<Faults>,
    pub stats: Stats,
    event_seq: AtomicU64,
    conn_seq: AtomicU64,
}

/// Locks a mutex; a poisoned lock (a panic elsewhere) still yields the data, since every
/// update here leaves the state consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let users = cfg
            .users
            .iter()
            .map(|u| (u.username.clone(), u.password.expose().to_string()))
            .collect();
        Sim {
            cfg,
            started: Instant::now(),
            users,
            subs: Mutex::default(),
            calls: Mutex::default(),
            faults: Mutex::default(),
            stats: Stats::default(),
            event_seq: AtomicU64::new(0),
            conn_seq: AtomicU64::new(0),
        }
    }

    /// True when the credentials are a configured account (constant-time compare).
    pub fn check_password(&self, username: &str, password: &str) -> bool {
        use subtle::ConstantTimeEq;
        match self.users.get(username) {
            Some(p) => bool::from(p.as_bytes().ct_eq(password.as_bytes())),
            None => false,
        }
    }

    pub fn has_user(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// The only configured user, if there is exactly one.
    pub fn sole_user(&self) -> Option<&str> {
        if self.users.len() == 1 {
            self.users.keys().next().map(String::as_str)
        } else {
            None
        }
    }

    /// The next notification `eventId` (increasing across the simulator).
    pub fn next_event_id(&self) -> String {
        (self.event_seq.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A random identifier: `prefix` and 16 hex digits.
pub fn new_id(prefix: &str) -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}{n:016x}")
}
