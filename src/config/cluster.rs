//! The `[cluster]` section: several instances behind a SIP proxy (Kamailio's dispatcher), the
//! proxies whose Via and Path are believed, and the optional Redis that shares registrations,
//! nonce use, bans and call counts between the instances.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::schema::Secret;

/// `[cluster]`: absent or empty, one instance keeps everything in memory (the default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This instance's name in shared state and logs; empty: the SIP listen address.
    pub node: String,
    /// SIP proxies (CIDRs) in front of this instance. For requests from them the PBX's own
    /// address (the `received`/`rport` the proxy stamped on the PBX's Via, or Path's
    /// `received`) is what `allowed_sources`, nonces, bans and records use. A Via or Path from
    /// any other source is never believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `redis://[user:password@]host:port[/db]`: share state with the other instances. It may
    /// hold a password, so it is never logged. Absent: nothing is shared.
    pub redis: Option<Secret>,
    /// The secret every instance signs its digest nonces with, so any instance verifies any
    /// instance's nonce; at least 16 characters, the same on every instance. Required with
    /// `redis`.
    pub secret: Option<Secret>,
    /// Prefix of every Redis key, so two clusters can share one Redis.
    pub key_prefix: String,
    /// How long a call counted against `max_calls` stays counted when its instance stops
    /// refreshing it (killed): the instance refreshes its calls every third of this.
    #[serde(with = "humantime_serde")]
    pub call_lease: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: String::new(),
            trusted_proxies: Vec::new(),
            redis: None,
            secret: None,
            key_prefix: "trunkgate".into(),
            call_lease: Duration::from_secs(30),
        }
    }
}

impl ClusterConfig {
    /// Semantic checks, as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut e = |k: &str, m: &str| errs.push((format!("cluster.{k}"), m.to_string()));
        if let Some(url) = &self.redis {
            let u = url.expose();
            if !(u.starts_with("redis://") || u.starts_with("unix://")) || u.len() <= 8 {
                e("redis", "must be a redis://host:port URL");
            }
            match &self.secret {
                None => e(
                    "secret",
                    "is required with cluster.redis (every instance signs nonces with it)",
                ),
                Some(s) if s.expose().len() < 16 => e("secret", "must be at least 16 characters"),
                Some(_) => {}
            }
        } else if self.secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
            e("secret", "must be at least 16 characters");
        }
        if self.key_prefix.is_empty()
            || !self
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            e("key_prefix", "must be letters, digits, '-', '_' or '.'");
        }
        if self.call_lease < Duration::from_secs(3) {
            e("call_lease", "must be at least 3s");
        }
        if self.node.chars().any(|c| c.is_whitespace() || c == ':') {
            e("node", "must not contain spaces or ':'");
        }
        errs
    }

    /// This instance's name: `node`, else its SIP address (the advertised one when it listens
    /// on every interface).
    pub fn node_name(&self, listen: SocketAddr, advertise: Option<IpAddr>) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        match advertise {
            Some(ip) if listen.ip().is_unspecified() => {
                SocketAddr::new(ip, listen.port()).to_string()
            }
            _ => listen.to_string(),
        }
    }

    /// With Redis, instances must be told apart: a wildcard listen address with nothing
    /// advertised would name every instance alike (and each would ignore the others' news).
    pub fn validate_node(&self, listen: SocketAddr, advertise: Option<IpAddr>) -> Option<String> {
        (self.redis.is_some()
            && self.node.is_empty()
            && listen.ip().is_unspecified()
            && advertise.is_none())
        .then(|| {
            "must name this instance (the listen address 0.0.0.0 does not tell instances apart)"
                .to_string()
        })
    }
}
