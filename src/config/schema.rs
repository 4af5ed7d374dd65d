//! The typed configuration schema with its defaults and semantic validation.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::calls::{CallsConfig, InboundConfig, MediaConfig};
use super::carrier::CarrierConfig;
use super::cluster::ClusterConfig;
use super::numbers::{NumbersConfig, NumbersOverride};
use super::ops::{CdrConfig, StatusConfig};
use super::security::SecurityConfig;

/// The whole configuration file, as loaded and validated (`conf/trunkgate.toml` describes every
/// key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Log level and line format.
    #[serde(default)]
    pub log: LogConfig,
    /// The SIP side toward the PBXs: socket, digest realm, registrations, timers.
    pub sip: SipConfig,
    /// The PBXs allowed to register and call, one per `[[trunks]]` table.
    #[serde(default)]
    pub trunks: Vec<TrunkConfig>,
    /// Dialled-number normalisation and the destination policy (UAE by default).
    #[serde(default)]
    pub numbers: NumbersConfig,
    /// The Kandy Link carrier; absent: no calls can leave (INVITEs get 503).
    #[serde(default)]
    pub carrier: Option<CarrierConfig>,
    /// RTP toward the PBX and the WebRTC leg's sockets.
    #[serde(default)]
    pub media: MediaConfig,
    /// Call limits and timers.
    #[serde(default)]
    pub calls: CallsConfig,
    /// Routing of carrier calls to trunks.
    #[serde(default)]
    pub inbound: InboundConfig,
    /// Call records.
    #[serde(default)]
    pub cdr: CdrConfig,
    /// Status, metrics and health endpoints.
    #[serde(default)]
    pub status: StatusConfig,
    /// Bans, rate limits and scanner filtering at the SIP edge.
    #[serde(default)]
    pub security: SecurityConfig,
    /// Instances behind a SIP proxy, and the state they share in Redis.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// The `[log]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
    /// Line format on stderr: human-readable text or one JSON object per line.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `[log] format`: `"text"` (default) or `"json"`; anything else is a config error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[sip]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// The UDP address the PBXs send to.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Address written into Via/Contact/SDP when it differs from the bound one (NAT, 0.0.0.0).
    #[serde(default)]
    pub advertise: Option<IpAddr>,
    /// Digest realm of our challenges; part of every HA1.
    pub realm: String,
    /// Shortest registration (seconds) accepted; a shorter non-zero one gets 423 with Min-Expires.
    #[serde(default = "defaults::min_expires")]
    pub min_expires: u32,
    /// Longest registration (seconds) granted; longer requests are shortened to it.
    #[serde(default = "defaults::max_expires")]
    pub max_expires: u32,
    /// Registration time (seconds) when the REGISTER asks for none.
    #[serde(default = "defaults::default_expires")]
    pub default_expires: u32,
    /// Challenge algorithms, most preferred first (RFC 8760): "MD5", "SHA-256".
    #[serde(default = "defaults::digest_algorithms")]
    pub digest_algorithms: Vec<String>,
    /// Offer qop="auth" in challenges (clients that answer without qop, like 3CX, still work).
    #[serde(default = "defaults::yes")]
    pub digest_qop: bool,
    /// How long a nonce stays valid; after it the client is re-challenged with `stale=true`.
    #[serde(default = "defaults::nonce_lifetime", with = "humantime_serde")]
    pub nonce_lifetime: Duration,
    /// Reply to the source address and port even when the top Via has no `rport` (NAT).
    #[serde(default = "defaults::yes")]
    pub force_rport: bool,
    /// Datagrams larger than this are dropped and counted.
    #[serde(default = "defaults::max_message_size")]
    pub max_message_size: usize,
    /// How often each registered contact is sent an OPTIONS (keeps NAT bindings open, finds a
    /// PBX that is gone); 0s: never.
    #[serde(default = "defaults::qualify_interval", with = "humantime_serde")]
    pub qualify_interval: Duration,
    /// Contacts kept per trunk; beyond it the least recently refreshed binding goes.
    #[serde(default = "defaults::max_contacts")]
    pub max_contacts_per_trunk: usize,
    /// RFC 3261 T1, the round-trip estimate every retransmission timer derives from.
    #[serde(default = "defaults::t1", with = "humantime_serde")]
    pub t1: Duration,
    /// RFC 3261 T2, the cap on non-INVITE request and INVITE response retransmission intervals.
    #[serde(default = "defaults::t2", with = "humantime_serde")]
    pub t2: Duration,
    /// RFC 3261 T4, how long a message may stay in the network.
    #[serde(default = "defaults::t4", with = "humantime_serde")]
    pub t4: Duration,
    /// Value of the Server / User-Agent header.
    #[serde(default = "defaults::server_header")]
    pub server_header: String,
}

/// A secret from the config file: its Debug form never shows the value, so it cannot leak
/// through a `{:?}` in a log line.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value itself, for the code that must use it (never for logging).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// One `[[trunks]]` table: a PBX trunk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// A name for logs, status and metrics.
    pub name: String,
    /// The digest username the PBX sends (3CX: "Authentication ID").
    pub auth_username: String,
    /// The shared secret; instead, `ha1` or `ha1_sha256` may be given.
    #[serde(default)]
    pub password: Option<Secret>,
    /// MD5 HA1 = md5(auth_username:realm:password), hex: no plaintext stored.
    #[serde(default)]
    pub ha1: Option<Secret>,
    /// SHA-256 HA1, hex, for trunks that authenticate with SHA-256 without a plaintext password.
    #[serde(default)]
    pub ha1_sha256: Option<Secret>,
    /// Requests from other addresses are refused with 403. Empty: any source.
    #[serde(default)]
    pub allowed_sources: Vec<ipnet::IpNet>,
    /// Caller ID used toward the carrier when the PBX sends no usable one.
    #[serde(default)]
    pub default_caller_id: Option<String>,
    /// Per-trunk changes to `[numbers]` (any of its keys).
    #[serde(default)]
    pub numbers: NumbersOverride,
    /// Concurrent calls on this trunk (both directions); none: only `calls.max_calls` applies.
    #[serde(default)]
    pub max_calls: Option<usize>,
    /// Credentials we answer with when the PBX challenges our INVITE (3CX can, when it cannot
    /// tell which trunk a call is for).
    #[serde(default)]
    pub outbound_username: Option<String>,
    /// Password for those credentials.
    #[serde(default)]
    pub outbound_password: Option<Secret>,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 5060))
    }
    pub fn min_expires() -> u32 {
        60
    }
    pub fn max_expires() -> u32 {
        3600
    }
    pub fn default_expires() -> u32 {
        3600
    }
    pub fn digest_algorithms() -> Vec<String> {
        vec!["MD5".into()]
    }
    pub fn yes() -> bool {
        true
    }
    pub fn qualify_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn nonce_lifetime() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_message_size() -> usize {
        16 * 1024
    }
    pub fn max_contacts() -> usize {
        5
    }
    pub fn t1() -> Duration {
        Duration::from_millis(500)
    }
    pub fn t2() -> Duration {
        Duration::from_secs(4)
    }
    pub fn t4() -> Duration {
        Duration::from_secs(5)
    }
    pub fn server_header() -> String {
        concat!("trunkgate/", env!("CARGO_PKG_VERSION")).into()
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The digest algorithms `sip.digest_algorithms` may name (RFC 7616 tokens, any case), each
/// with the trunk key that holds its precomputed HA1.
const DIGEST_ALGORITHMS: [(&str, &str); 2] = [("MD5", "ha1"), ("SHA-256", "ha1_sha256")];

/// The `DIGEST_ALGORITHMS` entry `name` means.
fn digest_algorithm(name: &str) -> Option<(&'static str, &'static str)> {
    DIGEST_ALGORITHMS
        .into_iter()
        .find(|(token, _)| token.eq_ignore_ascii_case(name))
}

impl Config {
    /// The effective number policy configuration of trunk `i` (global plus its override).
    pub fn trunk_numbers(&self, i: usize) -> NumbersConfig {
        self.numbers.with_override(&self.trunks[i].numbers)
    }

    /// Semantic checks across the whole file: (key path, message) for every problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs: Vec<(String, String)> = Vec::new();
        let mut e = |k: &str, m: String| errs.push((k.to_string(), m));
        let sip = &self.sip;
        if sip.realm.trim().is_empty() || sip.realm.contains(['"', '\\', '\r', '\n']) {
            e(
                "sip.realm",
                "must be a non-empty name without quotes or backslashes".into(),
            );
        }
        if sip.min_expires == 0 {
            e("sip.min_expires", "must be at least 1 second".into());
        }
        if sip.min_expires > sip.max_expires {
            e(
                "sip.min_expires",
                format!("is larger than sip.max_expires ({})", sip.max_expires),
            );
        }
        if sip.default_expires < sip.min_expires || sip.default_expires > sip.max_expires {
            e(
                "sip.default_expires",
                format!(
                    "must lie between min_expires ({}) and max_expires ({})",
                    sip.min_expires, sip.max_expires
                ),
            );
        }
        if sip.digest_algorithms.is_empty() {
            e(
                "sip.digest_algorithms",
                "must list at least one algorithm".into(),
            );
        }
        let mut seen_alg = Vec::new();
        for (i, a) in sip.digest_algorithms.iter().enumerate() {
            match digest_algorithm(a) {
                None => e(
                    &format!("sip.digest_algorithms[{i}]"),
                    format!("unknown algorithm {a:?} (use \"MD5\" or \"SHA-256\")"),
                ),
                Some(alg) if seen_alg.contains(&alg) => e(
                    &format!("sip.digest_algorithms[{i}]"),
                    format!("{a:?} is listed twice"),
                ),
                Some(alg) => seen_alg.push(alg),
            }
        }
        if sip.nonce_lifetime < Duration::from_secs(10) {
            e("sip.nonce_lifetime", "must be at least 10s".into());
        }
        if !(1500..=65535).contains(&sip.max_message_size) {
            e(
                "sip.max_message_size",
                "must be between 1500 and 65535 bytes".into(),
            );
        }
        if sip.max_contacts_per_trunk == 0 {
            e("sip.max_contacts_per_trunk", "must be at least 1".into());
        }
        if sip.t1.is_zero() {
            e("sip.t1", "must be greater than zero".into());
        }
        if sip.t2 < sip.t1 {
            e("sip.t2", "must not be smaller than sip.t1".into());
        }
        if sip.server_header.trim().is_empty() || sip.server_header.contains(['\r', '\n']) {
            e("sip.server_header", "must be one non-empty line".into());
        }
        if let Some(c) = &self.carrier {
            for (k, m) in c.validate() {
                e(&k, m);
            }
        }
        for (k, m) in self.numbers.validate() {
            e(&format!("numbers.{k}"), m);
        }
        if self.cdr.path.as_os_str().is_empty() || self.cdr.path.is_dir() {
            e("cdr.path", "must name a file".into());
        }
        if let Err(m) = self.media.port_range() {
            e("media.rtp_ports", m.to_string());
        }
        for (k, m) in self.calls.validate() {
            e(&k, m);
        }
        for (k, m) in self.cluster.validate() {
            e(&k, m);
        }
        if let Some(m) = self.cluster.validate_node(sip.listen, sip.advertise) {
            e("cluster.node", m);
        }
        for (k, m) in self.security.validate() {
            e(&k, m);
        }
        let trunk_known = |n: &str| self.trunks.iter().any(|t| t.name == n);
        for (i, r) in self.inbound.routes.iter().enumerate() {
            if !trunk_known(&r.trunk) {
                e(
                    &format!("inbound.routes[{i}].trunk"),
                    format!("names no trunk ({:?})", r.trunk),
                );
            }
            let digits = r.did.trim_start_matches('+').trim_end_matches('*');
            if !r.did.starts_with('+') || !digits.chars().all(|c| c.is_ascii_digit()) {
                e(
                    &format!("inbound.routes[{i}].did"),
                    "must be +E.164 digits, optionally ending in '*'".into(),
                );
            }
        }
        if let Some(t) = &self.inbound.default_trunk {
            if !trunk_known(t) {
                e("inbound.default_trunk", format!("names no trunk ({t:?})"));
            }
        }
        if self.trunks.is_empty() {
            e(
                "trunks",
                "no [[trunks]] configured: no PBX could register".into(),
            );
        }
        for (i, t) in self.trunks.iter().enumerate() {
            let k = |f: &str| format!("trunks[{i}].{f}");
            if t.name.trim().is_empty() {
                e(&k("name"), "must not be empty".into());
            }
            if t.auth_username.trim().is_empty() || t.auth_username.contains(['"', '\\']) {
                e(
                    &k("auth_username"),
                    "must be non-empty, without quotes or backslashes".into(),
                );
            }
            for (j, other) in self.trunks[..i].iter().enumerate() {
                if other.name == t.name {
                    e(&k("name"), format!("duplicates trunks[{j}].name"));
                }
                if other.auth_username == t.auth_username {
                    e(
                        &k("auth_username"),
                        format!("duplicates trunks[{j}].auth_username"),
                    );
                }
            }
            match (&t.password, &t.ha1, &t.ha1_sha256) {
                (None, None, None) => e(
                    &format!("trunks[{i}]"),
                    "needs `password`, or `ha1` / `ha1_sha256`".into(),
                ),
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => e(
                    &k("password"),
                    "give either `password` or `ha1`/`ha1_sha256`, not both".into(),
                ),
                _ => {}
            }
            if t.max_calls == Some(0) {
                e(
                    &k("max_calls"),
                    "must be at least 1 (leave it out for no limit)".into(),
                );
            }
            if t.outbound_username.is_some() != t.outbound_password.is_some() {
                e(
                    &k("outbound_password"),
                    "outbound_username and outbound_password go together".into(),
                );
            }
            if t.numbers != NumbersOverride::default() {
                for (key, m) in self.trunk_numbers(i).validate() {
                    e(&k(&format!("numbers.{key}")), m);
                }
            }
            if let Some(p) = &t.password {
                if p.expose().is_empty() {
                    e(&k("password"), "must not be empty".into());
                }
            }
            if let Some(h) = &t.ha1 {
                if !is_hex(h.expose(), 32) {
                    e(&k("ha1"), "must be 32 hex digits (an MD5 HA1)".into());
                }
            }
            if let Some(h) = &t.ha1_sha256 {
                if !is_hex(h.expose(), 64) {
                    e(
                        &k("ha1_sha256"),
                        "must be 64 hex digits (a SHA-256 HA1)".into(),
                    );
                }
            }
            if t.password.is_none() {
                for alg in &seen_alg {
                    let (token, key) = *alg;
                    let has = match key {
                        "ha1" => t.ha1.is_some(),
                        _ => t.ha1_sha256.is_some(),
                    };
                    if !has {
                        e(
                            &format!("trunks[{i}]"),
                            format!(
                                "sip.digest_algorithms offers {token} but this trunk has no \
                                 `{key}`: add it or give `password`"
                            ),
                        );
                    }
                }
            }
        }
        errs
    }
}
