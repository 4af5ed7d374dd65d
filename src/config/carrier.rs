//! The `[carrier]` section: the Kandy Link accounts calls leave through, the ICE servers of the
//! WebRTC leg, trust anchors, and the timing of keepalive, refresh and reconnect.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::Secret;

/// The `[carrier]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Run the bundled carrier simulator in-process on loopback and use it as the carrier
    /// (the demo). Accounts then need no `base_url`; the simulator accepts their credentials.
    #[serde(default)]
    pub simulate: bool,
    /// The carrier logins (`[[carrier.accounts]]`); a call uses a subscribed one with free
    /// capacity.
    #[serde(default)]
    pub accounts: Vec<CarrierAccount>,
    /// STUN/TURN URLs for the WebRTC leg. TURN credentials come from the subscription.
    #[serde(default)]
    pub ice_servers: Vec<String>,
    /// Which ICE candidates the WebRTC leg may use.
    #[serde(default)]
    pub ice_transport_policy: IceTransportPolicy,
    /// An extra trust anchor (PEM) beside the system's roots, e.g. the simulator's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Keepalive interval on the notification WebSocket.
    #[serde(default = "defaults::ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Requested subscription lifetime in seconds; refreshed at about half of what is granted.
    #[serde(default = "defaults::subscription_expires")]
    pub subscription_expires: u32,
    /// First delay before retrying a failed subscription or connection.
    #[serde(default = "defaults::reconnect_initial", with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// The longest that delay grows to.
    #[serde(default = "defaults::reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Factor the delay grows by after each failure.
    #[serde(default = "defaults::reconnect_multiplier")]
    pub reconnect_multiplier: f64,
    /// Per REST request, connect included.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Period of the per-call `audit` liveness request.
    #[serde(default = "defaults::audit_interval", with = "humantime_serde")]
    pub audit_interval: Duration,
}

/// `[carrier] ice_transport_policy`: which ICE candidates the WebRTC leg may use.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IceTransportPolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// TURN relay candidates only, for strict firewalls.
    Relay,
}

/// One `[[carrier.accounts]]` table: a carrier login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierAccount {
    /// A label for logs and status.
    pub name: String,
    /// `https://host[:port]`; ignored (the simulator's address is used) when `simulate = true`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The login's user name (Basic authentication on REST).
    pub username: String,
    /// The login's password.
    pub password: Secret,
    /// Domain of the `to` URIs: `sip:+971501234567@{domain}`.
    pub domain: String,
    /// Concurrent calls this account may carry (both directions).
    #[serde(default = "defaults::max_calls")]
    pub max_calls: u32,
}

mod defaults {
    use std::time::Duration;
    pub fn ping_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn subscription_expires() -> u32 {
        3600
    }
    pub fn reconnect_initial() -> Duration {
        Duration::from_secs(5)
    }
    pub fn reconnect_max() -> Duration {
        Duration::from_secs(300)
    }
    pub fn reconnect_multiplier() -> f64 {
        2.0
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn audit_interval() -> Duration {
        Duration::from_secs(25)
    }
    pub fn max_calls() -> u32 {
        100
    }
}

impl CarrierConfig {
    /// Semantic checks: (key path below `carrier.`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut e = |k: String, m: &str| errs.push((format!("carrier.{k}"), m.to_string()));
        if self.accounts.is_empty() && !self.simulate {
            e(
                "accounts".into(),
                "no [[carrier.accounts]]: calls could not leave (or set simulate = true)",
            );
        }
        for (i, url) in self.ice_servers.iter().enumerate() {
            let scheme = url.split(':').next().unwrap_or("");
            if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") || !url.contains(':') {
                e(
                    format!("ice_servers[{i}]"),
                    "must be a stun:, stuns:, turn: or turns: URL",
                );
            }
        }
        if self.ice_transport_policy == IceTransportPolicy::Relay
            && !self
                .ice_servers
                .iter()
                .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
        {
            e(
                "ice_transport_policy".into(),
                "is \"relay\" but no turn:/turns: server is listed in ice_servers",
            );
        }
        if self.ping_interval < Duration::from_secs(1) {
            e("ping_interval".into(), "must be at least 1s");
        }
        if self.subscription_expires < 60 {
            e("subscription_expires".into(), "must be at least 60 seconds");
        }
        if self.reconnect_initial.is_zero() {
            e("reconnect_initial".into(), "must be greater than zero");
        }
        if self.reconnect_max < self.reconnect_initial {
            e(
                "reconnect_max".into(),
                "must not be smaller than reconnect_initial",
            );
        }
        if !(1.0..=10.0).contains(&self.reconnect_multiplier) {
            e(
                "reconnect_multiplier".into(),
                "must be between 1.0 and 10.0",
            );
        }
        if self.request_timeout < Duration::from_millis(100) {
            e("request_timeout".into(), "must be at least 100ms");
        }
        if self.audit_interval < Duration::from_secs(1) {
            e("audit_interval".into(), "must be at least 1s");
        }
        for (i, a) in self.accounts.iter().enumerate() {
            let k = |f: &str| format!("accounts[{i}].{f}");
            if a.name.trim().is_empty() {
                e(k("name"), "must not be empty");
            }
            if self.accounts[..i].iter().any(|o| o.name == a.name) {
                e(k("name"), "is used by an earlier account");
            }
            if a.username.is_empty() || a.username.contains(['/', '?', '#', ':', ' ']) {
                e(
                    k("username"),
                    "must be non-empty, without '/', '?', '#', ':' or spaces",
                );
            }
            if a.password.expose().is_empty() {
                e(k("password"), "must not be empty");
            }
            if a.domain.trim().is_empty() || a.domain.contains(['@', ' ', '/']) {
                e(k("domain"), "must be a host name");
            }
            if a.max_calls == 0 {
                e(k("max_calls"), "must be at least 1");
            }
            match (&a.base_url, self.simulate) {
                (None, false) => e(k("base_url"), "is required (https://host[:port])"),
                (Some(u), _) => match url::Url::parse(u) {
                    Ok(p) if p.scheme() == "https" && p.host().is_some() => {}
                    Ok(_) => e(k("base_url"), "must be an https:// URL with a host"),
                    Err(err) => e(k("base_url"), &format!("is not a URL: {err}")),
                },
                _ => {}
            }
        }
        errs
    }
}
