//! The simulator's configuration (`trunkgate sim --config FILE`, or built in code by the demo
//! and the tests): where it listens, its certificate, the accounts it accepts and the scripted
//! behaviour per dialled number. Every key is documented in `conf/sim.toml`.
//!
//! This module only parses and validates; it never opens a socket.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::config::Secret;

/// Why a simulator configuration could not be used.
#[derive(Debug, Error)]
pub enum SimConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file given.
        path: PathBuf,
        /// The I/O error reading it.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("{path}: {message}")]
    Parse {
        /// The file given (`<text>` when the text did not come from a file).
        path: PathBuf,
        /// The TOML parser's message.
        message: String,
    },
    /// The configuration parsed but breaks the simulator's rules: every problem found.
    #[error("invalid simulator configuration: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The simulator's configuration (`conf/sim.toml` describes every key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// REST + WSS (TLS) listener; port 0 picks an ephemeral port.
    pub listen: SocketAddr,
    /// Plain-HTTP control API; must be a loopback address.
    pub control_listen: SocketAddr,
    /// Where the PEM certificate the simulator serves is written (for the daemon's `ca_file`).
    pub cert_out: Option<PathBuf>,
    /// Serve this certificate (PEM) instead of generating one; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Address written into the SDP the simulator produces.
    pub media_ip: IpAddr,
    /// The media engine's batch window (see the daemon's `[media] batch_window`); "0s" wakes
    /// for every packet, for measuring a relay's own latency against it.
    #[serde(with = "humantime_serde")]
    pub media_batch_window: Duration,
    /// Interval of the server's `connCheck`; 0 = never sent.
    #[serde(with = "humantime_serde")]
    pub conn_check_interval: Duration,
    /// Cap on the `expires` granted to a subscription, in seconds.
    pub subscription_expires: u32,
    /// A call with no audit for this long is ended by the simulator (`callEnd`, then forgotten).
    #[serde(with = "humantime_serde")]
    pub audit_timeout: Duration,
    /// Returned in `turnCredentials`.
    pub turn_username: String,
    /// Returned in `turnCredentials` with `turn_username`.
    pub turn_password: Secret,
    /// The Basic credentials accepted.
    pub users: Vec<SimUser>,
    /// What the simulated far end does per dialled number.
    pub behaviour: BehaviourConfig,
}

/// A login the simulator accepts (Basic authentication; REST paths name the user).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl SimUser {
    /// A login with these credentials.
    pub fn new(username: &str, password: &str) -> Self {
        SimUser {
            username: username.into(),
            password: Secret::new(password),
        }
    }
}

/// The per-number script. A number absent from every list gets the default: ring, answer, echo.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    /// From `trying` to `ringing`.
    #[serde(with = "humantime_serde")]
    pub ring_delay: Duration,
    /// From `ringing` to the answer (or to the busy `callEnd`).
    #[serde(with = "humantime_serde")]
    pub answer_delay: Duration,
    /// Ring, then `callEnd` 486 Busy Here.
    pub busy: Vec<String>,
    /// Ring until the caller cancels.
    pub no_answer: Vec<String>,
    /// `callEnd` 603 Decline.
    pub reject: Vec<String>,
    /// Answer and send a known tone.
    pub tone: Vec<String>,
    /// `sessionProgress` with SDP, then answer.
    pub early_media: Vec<String>,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            ring_delay: Duration::from_millis(500),
            answer_delay: Duration::from_millis(500),
            busy: Vec::new(),
            no_answer: Vec::new(),
            reject: Vec::new(),
            tone: Vec::new(),
            early_media: Vec::new(),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        SimConfig {
            listen: SocketAddr::new(lo, 8443),
            control_listen: SocketAddr::new(lo, 8444),
            cert_out: None,
            cert_file: None,
            key_file: None,
            media_ip: lo,
            media_batch_window: Duration::from_micros(500),
            conn_check_interval: Duration::ZERO,
            subscription_expires: 3600,
            audit_timeout: Duration::from_secs(75),
            turn_username: "sim-turn".into(),
            turn_password: Secret::new("sim-turn-password"),
            users: Vec::new(),
            behaviour: BehaviourConfig::default(),
        }
    }
}

impl SimConfig {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<SimConfig, SimConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Self::from_toml_str(&text).map_err(|e| match e {
            SimConfigError::Parse { message, .. } => SimConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Parses and validates TOML text.
    pub fn from_toml_str(text: &str) -> Result<SimConfig, SimConfigError> {
        let cfg: SimConfig = toml::from_str(text).map_err(|e| SimConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the whole configuration and reports every problem at once.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let mut issues = Vec::new();
        if !self.control_listen.ip().is_loopback() {
            issues.push(format!(
                "control_listen: {} is not a loopback address (the control API has no authentication)",
                self.control_listen
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            issues.push("cert_file and key_file must be given together".into());
        }
        if self.subscription_expires == 0 {
            issues.push("subscription_expires: must be at least 1 second".into());
        }
        if self.audit_timeout.is_zero() {
            issues.push("audit_timeout: must be more than 0".into());
        }
        if self.users.is_empty() {
            issues.push("users: at least one [[users]] entry is needed".into());
        }
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() || u.username.contains(['/', ':', '?', '#']) {
                issues.push(format!(
                    "users[{i}].username: {:?} must be non-empty without '/', ':', '?' or '#'",
                    u.username
                ));
            }
            if !names.insert(u.username.as_str()) {
                issues.push(format!("users[{i}].username: {:?} repeated", u.username));
            }
        }
        let b = &self.behaviour;
        let mut seen: HashSet<String> = HashSet::new();
        for (list, numbers) in [
            ("busy", &b.busy),
            ("no_answer", &b.no_answer),
            ("reject", &b.reject),
            ("tone", &b.tone),
            ("early_media", &b.early_media),
        ] {
            for (i, n) in numbers.iter().enumerate() {
                match super::script::normalise_number(n) {
                    Some(e164) if is_e164(&e164) => {
                        if !seen.insert(e164.clone()) {
                            issues.push(format!(
                                "behaviour.{list}[{i}]: {n:?} is already in another list"
                            ));
                        }
                    }
                    _ => issues.push(format!(
                        "behaviour.{list}[{i}]: {n:?} is not an E.164 number (+ and 6-15 digits)"
                    )),
                }
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(SimConfigError::Invalid(issues))
        }
    }
}

fn is_e164(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or("");
    (6..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "[[users]]\nusername = \"gw\"\npassword = \"pw\"\n";

    #[test]
    fn defaults_apply_to_a_minimal_file() {
        let cfg = SimConfig::from_toml_str(USERS).unwrap();
        assert_eq!(
            cfg.listen,
            "127.0.0.1:8443".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(
            cfg.control_listen,
            "127.0.0.1:8444".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(cfg.conn_check_interval, Duration::ZERO);
        assert_eq!(cfg.subscription_expires, 3600);
        assert_eq!(cfg.audit_timeout, Duration::from_secs(75));
        assert_eq!(cfg.behaviour.ring_delay, Duration::from_millis(500));
        assert_eq!(cfg.users[0].password.expose(), "pw");
    }

    #[test]
    fn a_full_file_parses() {
        let text = format!(
            "listen = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n\
             cert_out = \"/tmp/x.pem\"\nmedia_ip = \"127.0.0.2\"\n\
             conn_check_interval = \"20s\"\nsubscription_expires = 600\n\
             audit_timeout = \"2s\"\nturn_username = \"t\"\nturn_password = \"tp\"\n{USERS}\
             [behaviour]\nring_delay = \"5ms\"\nanswer_delay = \"1ms\"\n\
             busy = [\"+971500000486\"]\nno_answer = [\"+971500000480\"]\n\
             reject = [\"+971500000603\"]\ntone = [\"+971500000777\"]\n\
             early_media = [\"+971500000183\"]\n"
        );
        let cfg = SimConfig::from_toml_str(&text).unwrap();
        assert_eq!(cfg.conn_check_interval, Duration::from_secs(20));
        assert_eq!(cfg.audit_timeout, Duration::from_secs(2));
        assert_eq!(cfg.behaviour.ring_delay, Duration::from_millis(5));
        assert_eq!(cfg.behaviour.early_media, vec!["+971500000183"]);
        assert_eq!(cfg.turn_password.expose(), "tp");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = SimConfig::from_toml_str(&format!("{USERS}lisen = \"127.0.0.1:1\"\n")).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = SimConfig::from_toml_str(&format!("{USERS}[behaviour]\nbussy = []\n")).unwrap_err();
        assert!(e.to_string().contains("bussy"), "{e}");
    }

    #[test]
    fn control_listen_must_be_loopback() {
        let e = SimConfig::from_toml_str(&format!("control_listen = \"0.0.0.0:8444\"\n{USERS}"))
            .unwrap_err();
        assert!(e.to_string().contains("control_listen"), "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "cert_file = \"/c.pem\"\nsubscription_expires = 0\n\
                    [behaviour]\nbusy = [\"12ab\", \"+971500000486\"]\nreject = [\"+971500000486\"]\n";
        let SimConfigError::Invalid(issues) = SimConfig::from_toml_str(text).unwrap_err() else {
            panic!("expected Invalid");
        };
        let all = issues.join("\n");
        for needle in [
            "cert_file and key_file",
            "subscription_expires",
            "users",
            "behaviour.busy[0]",
            "behaviour.reject[0]",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(issues.len(), 5, "{all}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let cfg = SimConfig::from_toml_str(include_str!("../../conf/sim.toml")).unwrap();
        assert_eq!(cfg.users[0].username, "trunkgate");
        assert_eq!(cfg.behaviour.busy, vec!["+971500000486"]);
    }

    #[test]
    fn duplicate_users_are_refused() {
        let e = SimConfig::from_toml_str(&format!("{USERS}{USERS}")).unwrap_err();
        assert!(e.to_string().contains("repeated"), "{e}");
    }

    #[test]
    fn passwords_do_not_show_in_debug() {
        let cfg = SimConfig::from_toml_str(USERS).unwrap();
        let text = format!("{cfg:?}");
        assert!(!text.contains("\"pw\""), "{text}");
        assert!(!text.contains("sim-turn-password"), "{text}");
    }
}
