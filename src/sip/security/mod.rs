//! The edge's guard, without I/O: which sources are banned, which have spent their budget of
//! unauthenticated requests, which announce themselves as scanners, and the log lines an
//! operator reads under attack (one when a ban starts, one when it ends, at most one summary of
//! failures per address per window).
//!
//! Everything it remembers is bounded: `max_tracked_addresses` addresses' budgets and failure
//! windows (least recently seen forgotten first), and as many bans. Time comes in as `Instant`s;
//! `poll_timeout`/`handle_timeout` drive the once-a-second sweep that ends bans and writes
//! summaries. It owns no socket and is read by the status endpoint through [`SecurityView`].

mod budget;
mod failure;
mod source;
mod view;

pub use failure::FailureKind;
pub use source::{Exemptions, Source};
pub use view::{BanReason, BanView, DropReason, SecurityView};

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use tracing::{info, warn};

use crate::config::{Config, SecurityConfig};
use budget::Budget;

/// How often bans are ended and summaries written.
const SWEEP: Duration = Duration::from_secs(1);

/// What one address did in its current window.
#[derive(Debug)]
struct Activity {
    budget: Budget,
    /// Start of the failure window; `None` while nothing was counted.
    window_start: Option<Instant>,
    /// Failures that count toward a ban in this window.
    ban_failures: u32,
    /// Every failure in this window, by kind.
    by_kind: [u32; FailureKind::ALL.len()],
    /// Requests dropped over budget in this window.
    over_budget: u32,
}

impl Activity {
    fn new(burst: u32, now: Instant) -> Activity {
        Activity {
            budget: Budget::full(burst, now),
            window_start: None,
            ban_failures: 0,
            by_kind: [0; FailureKind::ALL.len()],
            over_budget: 0,
        }
    }

    fn reset_window(&mut self) {
        self.window_start = None;
        self.ban_failures = 0;
        self.by_kind = [0; FailureKind::ALL.len()];
        self.over_budget = 0;
    }
}

/// A ban, live or remembered after its end so that a repeat offender's next one is longer.
#[derive(Debug, Clone)]
struct Ban {
    offences: u32,
    until: Instant,
    live: bool,
}

pub struct Guard {
    cfg: SecurityConfig,
    exempt: Exemptions,
    scanners: Vec<String>,
    activity: LruCache<Source, Activity>,
    bans: HashMap<Source, Ban>,
    /// Live bans: lets the common case (none) skip the per-datagram lookup.
    live_bans: usize,
    next_sweep: Option<Instant>,
    view: Arc<SecurityView>,
    /// The ban table was full once: said once in the log.
    table_full_said: bool,
    /// Bans started here since the endpoint last asked, with their end: shared with the other
    /// instances of a cluster.
    started: Vec<(Source, Duration)>,
}

fn exemptions(config: &Config) -> Exemptions {
    Exemptions::new(
        config
            .security
            .never_ban
            .iter()
            .copied()
            .chain(config.cluster.trusted_proxies.iter().copied())
            .chain(
                config
                    .trunks
                    .iter()
                    .flat_map(|t| t.allowed_sources.iter().copied()),
            ),
    )
}

impl Guard {
    pub fn new(config: &Config) -> Guard {
        let cfg = config.security.clone();
        let cap = NonZeroUsize::new(cfg.max_tracked_addresses).unwrap_or(NonZeroUsize::MIN);
        let view = Arc::new(SecurityView::default());
        view.set_max_transactions(cfg.max_transactions);
        Guard {
            scanners: cfg
                .scanner_user_agents
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            exempt: exemptions(config),
            activity: LruCache::new(cap),
            bans: HashMap::new(),
            live_bans: 0,
            next_sweep: None,
            view,
            table_full_said: false,
            started: Vec::new(),
            cfg,
        }
    }

    /// New settings from a reload; bans, budgets and failure windows are kept.
    pub fn reconfigure(&mut self, config: &Config) {
        let cfg = config.security.clone();
        if let Some(cap) = NonZeroUsize::new(cfg.max_tracked_addresses) {
            self.activity.resize(cap);
        }
        self.scanners = cfg
            .scanner_user_agents
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        self.exempt = exemptions(config);
        self.view.set_max_transactions(cfg.max_transactions);
        self.cfg = cfg;
    }

    pub fn view(&self) -> &Arc<SecurityView> {
        &self.view
    }

    pub fn max_transactions(&self) -> usize {
        self.cfg.max_transactions
    }

    /// Checked before a datagram is even parsed: a banned source costs one lookup. Counts the
    /// drop.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        if self.live_bans == 0 {
            return false;
        }
        let banned = self
            .bans
            .get(&Source::of(ip))
            .is_some_and(|b| b.live && b.until > now);
        if banned {
            self.view.count_drop(DropReason::Banned);
        }
        banned
    }

    /// Whether a User-Agent names a known scanner. A scanner's datagram is dropped and, unless
    /// the source is exempt, the source banned.
    pub fn screen_user_agent(
        &mut self,
        ip: IpAddr,
        user_agent: Option<&str>,
        now: Instant,
    ) -> bool {
        let Some(ua) = user_agent else {
            return false;
        };
        if self.scanners.is_empty() {
            return false;
        }
        let ua = ua.to_ascii_lowercase();
        if !self.scanners.iter().any(|s| ua.contains(s.as_str())) {
            return false;
        }
        self.view.count_drop(DropReason::Scanner);
        if !self.exempt.contains(ip) {
            self.ban(Source::of(ip), BanReason::Scanner, 0, now);
        }
        true
    }

    /// Spends one of the source's unauthenticated requests; `false`: over budget, drop it.
    pub fn charge(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.exempt.contains(ip) {
            return true;
        }
        let (rate, burst) = (
            self.cfg.unauthenticated_rate,
            self.cfg.unauthenticated_burst,
        );
        let a = self.activity_of(Source::of(ip), now);
        if a.budget.take(rate, burst, now) {
            return true;
        }
        a.over_budget = a.over_budget.saturating_add(1);
        a.window_start.get_or_insert(now);
        self.view.count_drop(DropReason::RateLimited);
        self.schedule(now);
        false
    }

    /// The charged request authenticated (or belongs to a live dialog): its token comes back.
    pub fn refund(&mut self, ip: IpAddr) {
        if self.exempt.contains(ip) {
            return;
        }
        let burst = self.cfg.unauthenticated_burst;
        if let Some(a) = self.activity.peek_mut(&Source::of(ip)) {
            a.budget.give_back(burst);
        }
    }

    /// An authentication failure from `ip`: counted, summarised, and a ban when it is the
    /// `ban_after`th in the window.
    pub fn failure(&mut self, ip: IpAddr, kind: FailureKind, now: Instant) {
        self.view.count_failure(kind);
        let source = Source::of(ip);
        let exempt = self.exempt.contains(ip);
        let ban_after = self.cfg.ban_after;
        let a = self.activity_of(source, now);
        a.window_start.get_or_insert(now);
        a.by_kind[kind.index()] = a.by_kind[kind.index()].saturating_add(1);
        if kind.counts_toward_ban() {
            a.ban_failures = a.ban_failures.saturating_add(1);
        }
        let failures = a.ban_failures;
        if !exempt && ban_after > 0 && failures >= ban_after {
            // The ban line says what the summary would have.
            a.reset_window();
            self.ban(source, BanReason::AuthFailures, failures, now);
        }
        self.schedule(now);
    }

    /// Lifts a ban (the operator's `unban`); `false` when the source was not banned. The
    /// source's history is forgotten too: the operator has vouched for it.
    pub fn unban(&mut self, source: Source, now: Instant) -> bool {
        let live = self
            .bans
            .get(&source)
            .is_some_and(|b| b.live && b.until > now);
        if let Some(b) = self.bans.remove(&source) {
            if b.live {
                self.live_bans -= 1;
                self.view.ban_ended(source);
            }
        }
        if let Some(a) = self.activity.peek_mut(&source) {
            a.reset_window();
        }
        if live {
            info!(address = %source, "ban lifted by operator");
        }
        live
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Ends bans that are over, forgets old offences, and writes the summary of every window
    /// that closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|t| now < t) {
            return;
        }
        self.next_sweep = None;
        let forget_after = self.cfg.ban_time_max;
        let mut ended = Vec::new();
        self.bans.retain(|source, b| {
            if b.live && b.until <= now {
                b.live = false;
                ended.push(*source);
            }
            b.live || now.saturating_duration_since(b.until) < forget_after
        });
        for source in ended {
            self.live_bans -= 1;
            self.view.ban_ended(source);
            info!(address = %source, "ban ended");
        }
        let window = self.cfg.ban_window;
        for (source, a) in self.activity.iter_mut() {
            let Some(start) = a.window_start else {
                continue;
            };
            if now.saturating_duration_since(start) < window {
                continue;
            }
            summarise(source, a, window);
            a.reset_window();
        }
        let pending =
            !self.bans.is_empty() || self.activity.iter().any(|(_, a)| a.window_start.is_some());
        if pending {
            self.next_sweep = Some(now + SWEEP);
        }
    }

    fn schedule(&mut self, now: Instant) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP);
        }
    }

    fn activity_of(&mut self, source: Source, now: Instant) -> &mut Activity {
        let burst = self.cfg.unauthenticated_burst;
        let window = self.cfg.ban_window;
        let a = self
            .activity
            .get_or_insert_mut(source, || Activity::new(burst, now));
        // A window that closed before the sweep saw it: its summary first, then a new one.
        if a.window_start
            .is_some_and(|s| now.saturating_duration_since(s) >= window)
        {
            summarise(&source, a, window);
            a.reset_window();
        }
        a
    }

    fn ban(&mut self, source: Source, reason: BanReason, failures: u32, now: Instant) {
        let previous = self.bans.get(&source);
        if previous.is_some_and(|b| b.live && b.until > now) {
            return;
        }
        if previous.is_none() && self.bans.len() >= self.cfg.max_tracked_addresses {
            if !self.table_full_said {
                self.table_full_said = true;
                warn!(
                    limit = self.cfg.max_tracked_addresses,
                    "ban table full: further sources are dropped but not banned \
                     (security.max_tracked_addresses)"
                );
            }
            return;
        }
        let offences = previous.map_or(1, |b| b.offences.saturating_add(1));
        let factor = 1u32.checked_shl(offences - 1).unwrap_or(u32::MAX);
        let length = self
            .cfg
            .ban_time
            .saturating_mul(factor)
            .min(self.cfg.ban_time_max);
        let until = now + length;
        self.make_live(BanView {
            source,
            reason,
            failures,
            offences,
            since: now,
            until,
        });
        // The wall clock only for the operator's eyes; every decision runs on `Instant`s.
        let until_wall = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + length);
        warn!(address = %source, reason = reason.label(), failures, ban_s = length.as_secs(),
              until = %until_wall, offence = offences, "address banned");
        self.started.push((source, length));
        self.schedule(now);
    }

    /// Records `ban` as live (counted once however often it is lengthened) and shows it.
    fn make_live(&mut self, ban: BanView) {
        let was_live = self.bans.get(&ban.source).is_some_and(|b| b.live);
        self.bans.insert(
            ban.source,
            Ban {
                offences: ban.offences,
                until: ban.until,
                live: true,
            },
        );
        if !was_live {
            self.live_bans += 1;
        }
        self.view.ban_started(ban);
    }

    /// Bans started here since the last call, each with its length.
    pub fn take_started(&mut self) -> Vec<(Source, Duration)> {
        std::mem::take(&mut self.started)
    }

    /// A ban another instance started: live here too until `until`, unless the address is
    /// exempt here or already banned as long.
    pub fn import_ban(&mut self, ip: IpAddr, until: Instant, now: Instant) {
        let source = Source::of(ip);
        if self.exempt.contains(ip) || until <= now {
            return;
        }
        let previous = self.bans.get(&source);
        if previous.is_some_and(|b| b.live && b.until >= until) {
            return;
        }
        if previous.is_none() && self.bans.len() >= self.cfg.max_tracked_addresses {
            return;
        }
        let offences = previous.map_or(1, |b| b.offences);
        self.make_live(BanView {
            source,
            reason: BanReason::Shared,
            failures: 0,
            offences,
            since: now,
            until,
        });
        info!(address = %source, ban_s = until.saturating_duration_since(now).as_secs(),
              "address banned by another instance");
        self.schedule(now);
    }
}

/// The one line per address and window: how many failures, of which kinds.
fn summarise(source: &Source, a: &Activity, window: Duration) {
    let total: u32 = a.by_kind.iter().sum();
    let reasons: Vec<String> = FailureKind::ALL
        .iter()
        .filter(|k| a.by_kind[k.index()] > 0)
        .map(|k| format!("{} x{}", k.label(), a.by_kind[k.index()]))
        .collect();
    if total > 0 {
        warn!(address = %source, count = total, reasons = %reasons.join(", "),
              over_budget = a.over_budget, window_s = window.as_secs(),
              "authentication failures from address");
    } else if a.over_budget > 0 {
        warn!(address = %source, dropped = a.over_budget, window_s = window.as_secs(),
              "unauthenticated requests over budget from address, dropped");
    }
}

#[cfg(test)]
mod tests;
