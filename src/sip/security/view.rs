//! What the guard shows the outside (status, metrics, the `bans` command): counters read
//! lock-free, and the table of live bans, written only when a ban starts or ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::failure::FailureKind;
use super::source::Source;

/// Why an address was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanReason {
    AuthFailures,
    Scanner,
    /// Banned by another instance of the cluster.
    Shared,
}

impl BanReason {
    pub fn label(self) -> &'static str {
        match self {
            BanReason::AuthFailures => "auth_failures",
            BanReason::Scanner => "scanner",
            BanReason::Shared => "shared",
        }
    }
}

/// Why a datagram was dropped unanswered by the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Banned,
    Scanner,
    RateLimited,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::Banned,
        DropReason::Scanner,
        DropReason::RateLimited,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Banned => "banned",
            DropReason::Scanner => "scanner",
            DropReason::RateLimited => "rate_limited",
        }
    }
}

/// One live ban as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanView {
    pub source: Source,
    pub reason: BanReason,
    /// Failures counted in the window that led to it (0 for a scanner).
    pub failures: u32,
    /// 1 for a first ban; each repeat doubles the time.
    pub offences: u32,
    pub since: Instant,
    pub until: Instant,
}

/// Shared between the SIP loop (writer) and the status endpoint (reader).
#[derive(Debug, Default)]
pub struct SecurityView {
    dropped: [AtomicU64; DropReason::ALL.len()],
    failures: [AtomicU64; FailureKind::ALL.len()],
    bans_total: AtomicU64,
    bans: Mutex<HashMap<Source, BanView>>,
    max_transactions: AtomicUsize,
}

impl SecurityView {
    pub(super) fn count_drop(&self, r: DropReason) {
        self.dropped[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_failure(&self, k: FailureKind) {
        self.failures[k.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn ban_started(&self, b: BanView) {
        self.bans_total.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(b.source, b);
    }

    pub(super) fn ban_ended(&self, s: Source) {
        self.lock().remove(&s);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, BanView>> {
        self.bans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Datagrams dropped by reason.
    pub fn dropped(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.dropped[*r as usize].load(Ordering::Relaxed)))
            .collect()
    }

    /// Authentication failures by kind, every kind present.
    pub fn failures(&self) -> Vec<(FailureKind, u64)> {
        FailureKind::ALL
            .iter()
            .map(|k| (*k, self.failures[k.index()].load(Ordering::Relaxed)))
            .collect()
    }

    pub(super) fn set_max_transactions(&self, n: usize) {
        self.max_transactions.store(n, Ordering::Relaxed);
    }

    /// The ceiling on server transactions now in force.
    pub fn max_transactions(&self) -> usize {
        self.max_transactions.load(Ordering::Relaxed)
    }

    pub fn bans_total(&self) -> u64 {
        self.bans_total.load(Ordering::Relaxed)
    }

    /// Live bans, longest-standing first.
    pub fn bans(&self) -> Vec<BanView> {
        let mut v: Vec<BanView> = self.lock().values().cloned().collect();
        v.sort_by_key(|b| (b.since, b.source));
        v
    }
}
