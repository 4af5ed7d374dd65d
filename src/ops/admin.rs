//! Admin commands: issuing a trunk's credentials (`trunkgate credentials`) and printing what to
//! enter on the PBX side (`trunkgate pbx-config 3cx|asterisk`).
//!
//! Everything here turns a validated [`Config`] into text; reading files, choosing streams and
//! exit codes is `main.rs`'s job. Secrets are printed only where the target needs them: the
//! issued password once (to hand to the PBX), a configured `password` in the 3CX password field
//! and the Asterisk `auth` section, and an HA1 only inside the `[[trunks]]` block it belongs in.

use std::fmt::Write as _;
use std::net::IpAddr;

use rand::RngCore;

use crate::config::{Config, TrunkConfig};
use crate::numbers::OutputFormat;
use crate::sip::digest::{ha1, Algorithm};

/// A fresh password: 16 bytes from the operating system's RNG as 32 lowercase hex characters
/// (128 bits, beyond any online or offline guessing against the HA1).
pub fn random_password() -> Result<String, rand::Error> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Why an admin command cannot do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// A name, username or realm is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// Which value.
        what: &'static str,
    },
    /// A name, username or realm carries what a TOML string or a header cannot.
    #[error("{what} {value:?} must not contain quotes, backslashes or control characters")]
    Unquotable {
        /// Which value.
        what: &'static str,
        /// As given.
        value: String,
    },
    /// The trunk name is taken.
    #[error("a trunk named {0:?} exists already: choose another --name")]
    TrunkExists(String),
    /// The username is taken.
    #[error("auth_username {0:?} is used by another trunk: choose another --username")]
    UsernameTaken(String),
    /// No trunk has this name.
    #[error("no trunk named {name:?}; configured trunks: {known}")]
    NoSuchTrunk {
        /// As asked.
        name: String,
        /// The configured names, quoted and comma-separated.
        known: String,
    },
}

/// Why a name, username or realm cannot go into the config file as given.
fn check_token(what: &'static str, value: &str) -> Result<(), AdminError> {
    if value.trim().is_empty() {
        return Err(AdminError::Empty { what });
    }
    if value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(AdminError::Unquotable {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The digest username derived from a trunk name: lowercase ASCII letters, digits, `-`, `_`,
/// `.`; anything else becomes `_`.
pub fn default_username(name: &str) -> String {
    let user: String = name
        .trim()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if user.trim_matches('_').is_empty() {
        "pbx".to_string()
    } else {
        user
    }
}

/// A newly issued trunk credential: the password for the PBX and the hashes trunkgate keeps.
#[derive(Clone)]
pub struct Issued {
    name: String,
    username: String,
    realm: String,
    password: String,
    ha1_md5: String,
    ha1_sha256: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// Hashes `password` for `username` in `realm`. Checks that the three strings can be
    /// written into the config file and used in a digest exchange, and, when `config` is
    /// given, that the trunk name and username are not taken yet.
    pub fn new(
        name: &str,
        username: &str,
        realm: &str,
        password: String,
        config: Option<&Config>,
    ) -> Result<Issued, AdminError> {
        check_token("the trunk name", name)?;
        check_token("the username", username)?;
        check_token("the realm", realm)?;
        if let Some(cfg) = config {
            if cfg.trunks.iter().any(|t| t.name == name) {
                return Err(AdminError::TrunkExists(name.to_string()));
            }
            if cfg.trunks.iter().any(|t| t.auth_username == username) {
                return Err(AdminError::UsernameTaken(username.to_string()));
            }
        }
        Ok(Issued {
            name: name.to_string(),
            username: username.to_string(),
            realm: realm.to_string(),
            ha1_md5: ha1(Algorithm::Md5, username, realm, &password),
            ha1_sha256: ha1(Algorithm::Sha256, username, realm, &password),
            password,
        })
    }

    /// The `[[trunks]]` block for the config file: hashes only, no plaintext.
    fn trunk_block(&self) -> String {
        format!(
            "[[trunks]]\n\
             name = \"{}\"\n\
             auth_username = \"{}\"\n\
             # hashes of the password issued by `trunkgate credentials` for realm \"{}\";\n\
             # they stop matching if sip.realm or auth_username changes: issue new ones then\n\
             ha1 = \"{}\"\n\
             ha1_sha256 = \"{}\"\n",
            self.name, self.username, self.realm, self.ha1_md5, self.ha1_sha256
        )
    }

    /// The whole output of `trunkgate credentials`: the facts as TOML comments, then the block,
    /// so that the output as a whole can also be appended to a config file unchanged apart from
    /// the password line the comments ask to delete.
    pub fn render(&self, realm_source: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Credentials for trunk {:?}", self.name);
        let _ = writeln!(s, "# realm:            {} ({realm_source})", self.realm);
        let _ = writeln!(
            s,
            "# username:         {}   (3CX: Authentication ID; Asterisk: auth username)",
            self.username
        );
        let _ = writeln!(
            s,
            "# password:         {}   (give it to the PBX; trunkgate keeps only its hashes)",
            self.password
        );
        let _ = writeln!(s, "# HA1 MD5:          {}", self.ha1_md5);
        let _ = writeln!(s, "# HA1 SHA-256:      {}", self.ha1_sha256);
        let _ = writeln!(
            s,
            "# Paste the block below into the config (without the password line above), then"
        );
        let _ = writeln!(
            s,
            "# `trunkgate check-config` and `trunkgate pbx-config 3cx|asterisk --trunk {}`.",
            self.name
        );
        s.push('\n');
        s.push_str(&self.trunk_block());
        s
    }
}

/// Where the PBX sends its REGISTERs and calls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The host as written in a SIP URI (IPv6 in brackets), or a placeholder.
    pub host: String,
    pub port: u16,
    /// The listen address is a wildcard and no `sip.advertise` names the real one: `host` is a
    /// placeholder the admin must replace.
    pub placeholder: bool,
}

/// The placeholder written when trunkgate cannot know its own address.
const HOST_PLACEHOLDER: &str = "TRUNKGATE_IP";

impl Target {
    fn of(cfg: &Config) -> Target {
        let port = cfg.sip.listen.port();
        let ip = cfg.sip.advertise.unwrap_or(cfg.sip.listen.ip());
        if ip.is_unspecified() {
            return Target {
                host: HOST_PLACEHOLDER.to_string(),
                port,
                placeholder: true,
            };
        }
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Target {
            host,
            port,
            placeholder: false,
        }
    }

    /// The warning printed when `placeholder` is set.
    fn warning(&self, cfg: &Config) -> Option<String> {
        self.placeholder.then(|| {
            format!(
                "sip.listen is {} and sip.advertise is not set: replace {HOST_PLACEHOLDER} with the \
                 address the PBX reaches this server at (or set sip.advertise in the config)",
                cfg.sip.listen
            )
        })
    }
}

/// The trunk named `name`, or a message naming the configured trunks.
fn find_trunk<'a>(cfg: &'a Config, name: &str) -> Result<(usize, &'a TrunkConfig), AdminError> {
    cfg.trunks
        .iter()
        .enumerate()
        .find(|(_, t)| t.name == name)
        .ok_or_else(|| {
            let names: Vec<String> = cfg.trunks.iter().map(|t| format!("{:?}", t.name)).collect();
            AdminError::NoSuchTrunk {
                name: name.to_string(),
                known: names.join(", "),
            }
        })
}

/// The re-register interval to give the PBX: `default_expires`, inside the accepted range.
fn reregister_interval(cfg: &Config) -> u32 {
    let sip = &cfg.sip;
    sip.default_expires
        .clamp(sip.min_expires, sip.max_expires.max(sip.min_expires))
}

/// How a UAE number looks in a format, for examples.
fn example(format: OutputFormat, e164: &str, national: &str) -> String {
    match format {
        OutputFormat::E164 => e164.to_string(),
        OutputFormat::Digits => e164.trim_start_matches('+').to_string(),
        OutputFormat::National => national.to_string(),
    }
}

fn format_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::E164 => "e164",
        OutputFormat::Digits => "digits",
        OutputFormat::National => "national",
    }
}

/// The output of `pbx-config`: the text (stdout) and warnings (stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxConfig {
    /// The configuration to enter in the PBX.
    pub text: String,
    /// What the admin must fix or check first (an address trunkgate cannot know, for one).
    pub warnings: Vec<String>,
}

/// The concurrent calls the trunk may carry.
fn call_limit(cfg: &Config, trunk: &TrunkConfig) -> usize {
    trunk
        .max_calls
        .map_or(cfg.calls.max_calls, |m| m.min(cfg.calls.max_calls))
}

/// What to type into 3CX's "Generic SIP Trunk" form for `trunk`.
pub fn three_cx(cfg: &Config, trunk_name: &str) -> Result<PbxConfig, AdminError> {
    let (i, trunk) = find_trunk(cfg, trunk_name)?;
    let target = Target::of(cfg);
    let warnings: Vec<String> = target.warning(cfg).into_iter().collect();
    let field = |s: &mut String, name: &str, value: &str| {
        let _ = writeln!(s, "  {:<42}{value}", format!("{name}:"));
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "3CX: Admin > Voice & Chat > Add Trunk > Generic SIP Trunk, for trunkgate trunk {:?}",
        trunk.name
    );
    if let Some(w) = warnings.first() {
        let _ = writeln!(s, "NOTE: {w}");
    }
    s.push('\n');
    let _ = writeln!(s, "General");
    field(
        &mut s,
        "Registrar/Server/Gateway Hostname or IP",
        &target.host,
    );
    field(&mut s, "Registrar/Server Port", &target.port.to_string());
    field(&mut s, "Outbound Proxy Hostname or IP", &target.host);
    field(&mut s, "Outbound Proxy Port", &target.port.to_string());
    field(&mut s, "SIP Transport", "UDP");
    field(
        &mut s,
        "Number of SIM Calls",
        &call_limit(cfg, trunk).to_string(),
    );
    s.push('\n');
    let _ = writeln!(s, "Authentication");
    field(&mut s, "Type of Authentication", "Register/Account based");
    field(
        &mut s,
        "Authentication ID (aka SIP User ID)",
        &trunk.auth_username,
    );
    match &trunk.password {
        Some(p) => field(&mut s, "Authentication Password", p.expose()),
        None => field(
            &mut s,
            "Authentication Password",
            "(not stored in trunkgate, which keeps only its hash: type the password \
             issued with `trunkgate credentials` for this trunk)",
        ),
    }
    field(
        &mut s,
        "Registration",
        "Register/Re-register (registration on)",
    );
    field(
        &mut s,
        "Re-register interval (seconds)",
        &format!(
            "{} (trunkgate accepts {} to {})",
            reregister_interval(cfg),
            cfg.sip.min_expires,
            cfg.sip.max_expires
        ),
    );
    s.push('\n');
    let _ = writeln!(s, "Codecs and DTMF");
    field(
        &mut s,
        "Codec priority",
        "G.711 A-law, G.711 U-law (remove the others)",
    );
    field(&mut s, "DTMF", "RFC 2833");
    s.push('\n');
    let numbers = cfg.trunk_numbers(i);
    let did = cfg.inbound.did_format;
    let caller = cfg.inbound.caller_format;
    let _ = writeln!(s, "Numbers");
    field(
        &mut s,
        "Outbound (dialled) numbers",
        &format!(
            "UAE numbers as 0501234567, 971501234567 or +971501234567 (05x / 9715x / +9715x); \
             trunkgate normalises them and sends {} (numbers.output_format = \"{}\")",
            example(numbers.output_format, "+971501234567", "0501234567"),
            format_name(numbers.output_format)
        ),
    );
    field(
        &mut s,
        "Inbound DID (DID/DDI mask)",
        &format!(
            "{} (inbound.did_format = \"{}\"): write the inbound rules' DIDs this way",
            example(did, "+97145551234", "045551234"),
            format_name(did)
        ),
    );
    field(
        &mut s,
        "Inbound caller ID",
        &format!(
            "{} (inbound.caller_format = \"{}\")",
            example(caller, "+971501234567", "0501234567"),
            format_name(caller)
        ),
    );
    if !trunk.allowed_sources.is_empty() {
        s.push('\n');
        let sources: Vec<String> = trunk
            .allowed_sources
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            s,
            "trunkgate accepts this trunk only from {}: the PBX must reach it from there.",
            sources.join(", ")
        );
    }
    Ok(PbxConfig { text: s, warnings })
}

/// The `pjsip.conf` sections base name for a trunk: `trunkgate-<name>` with characters that are
/// awkward in a section name replaced.
fn section_name(trunk: &TrunkConfig) -> String {
    let safe: String = trunk
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("trunkgate-{safe}")
}

/// A ready `pjsip.conf` section set (registration, auth, aor, endpoint, identify) for `trunk`.
pub fn asterisk(cfg: &Config, trunk_name: &str) -> Result<PbxConfig, AdminError> {
    let (_, trunk) = find_trunk(cfg, trunk_name)?;
    let target = Target::of(cfg);
    let warnings: Vec<String> = target.warning(cfg).into_iter().collect();
    let base = section_name(trunk);
    let auth = format!("{base}-auth");
    let (host, port, user) = (&target.host, target.port, &trunk.auth_username);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "; pjsip.conf for trunkgate trunk {:?} (generated by `trunkgate pbx-config asterisk`)",
        trunk.name
    );
    if let Some(w) = warnings.first() {
        let _ = writeln!(s, "; NOTE: {w}");
    }
    let _ = writeln!(
        s,
        "; Inbound calls arrive in context from-trunkgate with the DID as extension ({}, inbound.did_format = \"{}\").",
        example(cfg.inbound.did_format, "+97145551234", "045551234"),
        format_name(cfg.inbound.did_format)
    );
    let _ = writeln!(
        s,
        "; Dial UAE numbers as 05x, 9715x or +9715x: Dial(PJSIP/0501234567@{base})."
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "[{base}]");
    let _ = writeln!(s, "type = registration");
    let _ = writeln!(s, "outbound_auth = {auth}");
    let _ = writeln!(s, "server_uri = sip:{host}:{port}");
    let _ = writeln!(s, "client_uri = sip:{user}@{host}:{port}");
    let _ = writeln!(s, "retry_interval = 60");
    let _ = writeln!(s, "expiration = {}", reregister_interval(cfg));
    let _ = writeln!(s);
    let _ = writeln!(s, "[{auth}]");
    let _ = writeln!(s, "type = auth");
    let _ = writeln!(s, "auth_type = userpass");
    let _ = writeln!(s, "username = {user}");
    match &trunk.password {
        Some(p) => {
            let _ = writeln!(s, "password = {}", p.expose());
        }
        None => {
            let _ = writeln!(
                s,
                "; trunkgate stores only this trunk's hash: put the password issued with `trunkgate credentials` here"
            );
            let _ = writeln!(s, "password = THE_ISSUED_PASSWORD");
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "[{base}]");
    let _ = writeln!(s, "type = aor");
    let _ = writeln!(s, "contact = sip:{host}:{port}");
    let _ = writeln!(s, "qualify_frequency = 60");
    let _ = writeln!(s);
    let _ = writeln!(s, "[{base}]");
    let _ = writeln!(s, "type = endpoint");
    let _ = writeln!(s, "aors = {base}");
    let _ = writeln!(s, "outbound_auth = {auth}");
    let _ = writeln!(s, "context = from-trunkgate");
    let _ = writeln!(s, "disallow = all");
    let _ = writeln!(s, "allow = alaw,ulaw");
    let _ = writeln!(s, "dtmf_mode = rfc4733");
    let _ = writeln!(s, "timers = yes");
    let _ = writeln!(s, "direct_media = no");
    let _ = writeln!(s, "rtp_symmetric = yes");
    let _ = writeln!(s, "force_rport = yes");
    let _ = writeln!(s);
    let _ = writeln!(s, "[{base}]");
    let _ = writeln!(s, "type = identify");
    let _ = writeln!(s, "endpoint = {base}");
    let _ = writeln!(
        s,
        "match = {}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    Ok(PbxConfig { text: s, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra_sip: &str, trunk: &str) -> Config {
        Config::from_toml(&format!(
            "[sip]\nrealm = \"r.test\"\n{extra_sip}\n[[trunks]]\nname = \"pbx\"\nauth_username = \"u\"\n{trunk}\n"
        ))
        .expect("valid config")
    }

    #[test]
    fn password_is_32_lowercase_hex_and_fresh() {
        let a = random_password().expect("rng");
        let b = random_password().expect("rng");
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn issued_block_parses_and_checks_collisions() {
        let base = cfg("", "password = \"p\"");
        assert!(Issued::new("pbx", "x", "r.test", "pw".into(), Some(&base)).is_err());
        assert!(Issued::new("other", "u", "r.test", "pw".into(), Some(&base)).is_err());
        assert!(Issued::new("a\"b", "x", "r.test", "pw".into(), None).is_err());
        let issued = Issued::new("other", "x", "r.test", "pw".into(), Some(&base)).unwrap();
        assert!(!issued.trunk_block().contains("pw\""));
        let text = format!(
            "[sip]\nrealm = \"r.test\"\ndigest_algorithms = [\"SHA-256\", \"MD5\"]\n{}",
            issued.render("given")
        );
        let parsed = Config::from_toml(&text).expect("block parses");
        assert_eq!(
            crate::sip::auth::stored_ha1(&parsed.trunks[0], Algorithm::Md5, "r.test"),
            Some(ha1(Algorithm::Md5, "x", "r.test", "pw"))
        );
    }

    #[test]
    fn target_uses_advertise_and_flags_wildcards() {
        let c = cfg("listen = \"0.0.0.0:5070\"", "password = \"p\"");
        let t = Target::of(&c);
        assert!(t.placeholder && t.port == 5070 && t.host == HOST_PLACEHOLDER);
        let c = cfg(
            "listen = \"0.0.0.0:5060\"\nadvertise = \"2001:db8::1\"",
            "password = \"p\"",
        );
        assert_eq!(Target::of(&c).host, "[2001:db8::1]");
        let a = asterisk(&c, "pbx").unwrap().text;
        assert!(a.contains("match = 2001:db8::1\n"), "{a}");
    }

    #[test]
    fn default_username_is_sanitised() {
        assert_eq!(default_username("PBX Main"), "pbx_main");
        assert_eq!(default_username("***"), "pbx");
    }
}
