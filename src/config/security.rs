//! The `[security]` section: how the SIP edge treats sources that fail to authenticate, flood
//! it or announce themselves as scanners, and the ceiling on server transactions.

use serde::Deserialize;
use std::time::Duration;

/// `[security]`: bans, the per-address budget of unauthenticated requests, scanner user agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Failed authentications within `ban_window` that ban an address; 0 never bans.
    pub ban_after: u32,
    /// The window failures are counted in, and of the per-address failure summary line.
    #[serde(with = "humantime_serde")]
    pub ban_window: Duration,
    /// A first ban's length; each repeat offence doubles it, up to `ban_time_max`.
    #[serde(with = "humantime_serde")]
    pub ban_time: Duration,
    /// The longest a repeat offender's ban grows to; offences older than this are forgotten.
    #[serde(with = "humantime_serde")]
    pub ban_time_max: Duration,
    /// Unauthenticated requests per second an address may send (refill rate of its budget).
    pub unauthenticated_rate: u32,
    /// How many it may send at once (the budget's size); the excess is dropped unanswered.
    pub unauthenticated_burst: u32,
    /// Case-insensitive fragments of User-Agent that mark a scanner: dropped, source banned.
    pub scanner_user_agents: Vec<String>,
    /// Sources never banned nor rate limited (every trunk's `allowed_sources` are, too).
    pub never_ban: Vec<ipnet::IpNet>,
    /// Live server transactions at most; past it, new requests get a stateless 503. Each
    /// authenticated request's transaction lives 32 s (Timer J) in about 1.2 KiB: 50,000 carry
    /// some 1,500 authenticated requests a second, in at most ~60 MiB.
    pub max_transactions: usize,
    /// Addresses whose failures and budget are remembered; bounds the memory an attack can use.
    pub max_tracked_addresses: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            ban_after: 10,
            ban_window: Duration::from_secs(60),
            ban_time: Duration::from_secs(3600),
            ban_time_max: Duration::from_secs(24 * 3600),
            unauthenticated_rate: 20,
            unauthenticated_burst: 50,
            scanner_user_agents: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "VaxSIPUserAgent",
                "sundayddr",
                "iWar",
                "SIVuS",
                "pplsip",
                "Ozeki",
                "smap",
                "sip-scan",
                "SIPScan",
                "sipsscan",
                "PortSIP VoIP SDK",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            never_ban: Vec::new(),
            max_transactions: 50_000,
            max_tracked_addresses: 65_536,
        }
    }
}

impl SecurityConfig {
    /// (key, message) for every value out of range.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut e = |k: &str, m: &str| errs.push((format!("security.{k}"), m.to_string()));
        if self.ban_window < Duration::from_secs(1) {
            e("ban_window", "must be at least 1s");
        }
        if self.ban_time < Duration::from_secs(1) {
            e("ban_time", "must be at least 1s");
        }
        if self.ban_time_max < self.ban_time {
            e("ban_time_max", "must not be shorter than security.ban_time");
        }
        if self.unauthenticated_rate == 0 {
            e(
                "unauthenticated_rate",
                "must be at least 1 (every PBX sends unauthenticated requests first)",
            );
        }
        if self.unauthenticated_burst < self.unauthenticated_rate.max(1) {
            e(
                "unauthenticated_burst",
                "must be at least security.unauthenticated_rate",
            );
        }
        for (i, ua) in self.scanner_user_agents.iter().enumerate() {
            if ua.trim().is_empty() {
                errs.push((
                    format!("security.scanner_user_agents[{i}]"),
                    "must not be empty (it would match every request)".into(),
                ));
            }
        }
        if self.max_transactions < 10 {
            errs.push((
                "security.max_transactions".into(),
                "must be at least 10".into(),
            ));
        }
        if self.max_tracked_addresses < 16 {
            errs.push((
                "security.max_tracked_addresses".into(),
                "must be at least 16".into(),
            ));
        }
        errs
    }
}
