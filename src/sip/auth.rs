//! Digest authentication of requests against the configured trunks (RFC 3261 22, RFC 8760):
//! which trunk a request's credentials name, whether they are valid, and what to challenge with.
//!
//! The digest username identifies the trunk (it may differ from the From/To user, as with 3CX).
//! Credentials are accepted in either Authorization or Proxy-Authorization. Failures are logged
//! with the source address and the username, never with a password or response hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::digest::{self, Algorithm, Credentials, DigestError};
use super::grammar::{Scheme, Uri};
use super::message::Request;
use super::nonce::{NcTracker, NonceFactory, NonceStatus};
use super::security::FailureKind;
use super::shared::NonceUse;
use crate::config::{Config, TrunkConfig};
use sha2::Sha256;

/// Why a request was not authenticated. The username, where one was given, is for the debug
/// log; what is counted and summarised is its [`FailureKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No Digest credentials at all: the normal first request, not a failure.
    NoCredentials,
    /// The nonce is ours but expired: re-challenge with stale=true.
    StaleNonce,
    UnknownUser(String),
    BadNonce(String),
    UnsupportedAlgorithm(String),
    WrongPassword(String),
    /// A no-qop nonce answered a second time, or an nc that did not grow.
    ReplayedNonce(String),
    /// Credentials for another realm than ours.
    WrongRealm,
    EmptyResponse,
    /// The digest `uri` is not the Request-URI: credentials lifted from another request.
    UriMismatch(String),
    /// A Digest header that does not parse.
    Malformed,
}

impl AuthFailure {
    /// What it counts as; `None` for the first, credential-less request.
    pub fn kind(&self) -> Option<FailureKind> {
        Some(match self {
            AuthFailure::NoCredentials => return None,
            AuthFailure::StaleNonce => FailureKind::Stale,
            AuthFailure::UnknownUser(_) => FailureKind::UnknownUser,
            AuthFailure::BadNonce(_) => FailureKind::InvalidNonce,
            AuthFailure::UnsupportedAlgorithm(_) => FailureKind::Algorithm,
            AuthFailure::WrongPassword(_) => FailureKind::WrongPassword,
            AuthFailure::ReplayedNonce(_) => FailureKind::Replay,
            AuthFailure::WrongRealm => FailureKind::WrongRealm,
            AuthFailure::EmptyResponse => FailureKind::EmptyResponse,
            AuthFailure::UriMismatch(_) => FailureKind::UriMismatch,
            AuthFailure::Malformed => FailureKind::Malformed,
        })
    }
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::NoCredentials => write!(f, "no credentials"),
            AuthFailure::StaleNonce => write!(f, "stale nonce"),
            AuthFailure::UnknownUser(u) => write!(f, "unknown digest username {u:?}"),
            AuthFailure::BadNonce(u) => write!(f, "invalid nonce from user {u:?}"),
            AuthFailure::UnsupportedAlgorithm(u) => {
                write!(f, "algorithm not offered, user {u:?}")
            }
            AuthFailure::WrongPassword(u) => write!(f, "wrong password for user {u:?}"),
            AuthFailure::ReplayedNonce(u) => {
                write!(
                    f,
                    "replayed nonce count (or a no-qop nonce used again), user {u:?}"
                )
            }
            AuthFailure::WrongRealm => write!(f, "credentials for another realm"),
            AuthFailure::EmptyResponse => write!(f, "empty digest response"),
            AuthFailure::UriMismatch(u) => {
                write!(f, "digest uri is not the Request-URI, user {u:?}")
            }
            AuthFailure::Malformed => write!(f, "malformed digest credentials"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated as trunk number `trunk` (index into the config's trunks).
    Authenticated { trunk: usize },
    /// Challenge again (401/407); `stale` goes into the challenge.
    Challenge { failure: AuthFailure, stale: bool },
    /// Refuse without a challenge (400: the credentials were made for another request).
    Refuse { failure: AuthFailure, code: u16 },
}

pub struct Authenticator {
    realm: String,
    algorithms: Vec<Algorithm>,
    offer_qop: bool,
    trunks: Vec<TrunkConfig>,
    /// Digest username to trunk index: one hash per request, however many trunks.
    by_username: HashMap<String, usize>,
    /// Some trunk accepts any source, so no source can be refused before authentication.
    any_source: bool,
    nonces: NonceFactory,
    nc: NcTracker,
    /// Set by a successful `check`, taken by the endpoint.
    last_use: Option<NonceUse>,
}

/// The nonce key from `[cluster] secret`: a hash of it, so any length of secret gives the
/// HMAC a full key, kept apart from any other use of the same text.
fn nonce_key(secret: &crate::config::Secret) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = Sha256::new();
    h.update(b"trunkgate digest nonce key v1\0");
    h.update(secret.expose().as_bytes());
    h.finalize().into()
}

/// The challenge algorithms `sip.digest_algorithms` lists (validation refused any other).
fn configured_algorithms(config: &Config) -> Vec<Algorithm> {
    config
        .sip
        .digest_algorithms
        .iter()
        .filter_map(|a| Algorithm::parse(a))
        .collect()
}

/// The HA1 `trunk` accepts for `alg`: derived from its password, or the one stored for `alg`.
pub fn stored_ha1(trunk: &TrunkConfig, alg: Algorithm, realm: &str) -> Option<String> {
    if let Some(p) = &trunk.password {
        return Some(digest::ha1(alg, &trunk.auth_username, realm, p.expose()));
    }
    let stored = match alg {
        Algorithm::Md5 => trunk.ha1.as_ref(),
        Algorithm::Sha256 => trunk.ha1_sha256.as_ref(),
    };
    stored.map(|h| h.expose().to_ascii_lowercase())
}

impl Authenticator {
    pub fn new(config: &Config, epoch: Instant) -> Self {
        Authenticator {
            realm: config.sip.realm.clone(),
            algorithms: configured_algorithms(config),
            offer_qop: config.sip.digest_qop,
            trunks: config.trunks.clone(),
            by_username: config
                .trunks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.auth_username.clone(), i))
                .collect(),
            any_source: config.trunks.iter().any(|t| t.allowed_sources.is_empty()),
            nonces: match &config.cluster.secret {
                Some(secret) => {
                    NonceFactory::with_secret(epoch, config.sip.nonce_lifetime, nonce_key(secret))
                }
                None => NonceFactory::new(epoch, config.sip.nonce_lifetime),
            },
            nc: NcTracker::new(100_000),
            last_use: None,
        }
    }

    /// The nonce use of the latest request that authenticated, for refusing its replay on the
    /// other instances of a cluster.
    pub fn take_nonce_use(&mut self) -> Option<NonceUse> {
        self.last_use.take()
    }

    /// A reloaded configuration: new trunks, secrets and challenge settings. Nonces already
    /// handed out stay valid (their secret is kept), so no PBX sees a spurious stale.
    pub fn reload(&mut self, config: &Config) {
        self.realm = config.sip.realm.clone();
        self.algorithms = configured_algorithms(config);
        self.offer_qop = config.sip.digest_qop;
        self.trunks = config.trunks.clone();
        self.by_username = config
            .trunks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.auth_username.clone(), i))
            .collect();
        self.any_source = config.trunks.iter().any(|t| t.allowed_sources.is_empty());
    }

    pub fn trunks(&self) -> &[TrunkConfig] {
        &self.trunks
    }

    /// The challenge header values, one per configured algorithm, most preferred first.
    pub fn challenges(&self, now: Instant, client: IpAddr, stale: bool) -> Vec<String> {
        let nonce = self.nonces.issue(now, client);
        self.algorithms
            .iter()
            .map(|alg| digest::challenge(*alg, &self.realm, &nonce, self.offer_qop, stale))
            .collect()
    }

    /// Checks the request's credentials against the request they came on: its method and its
    /// Request-URI (`request_uri`, with `uri_text` as written).
    pub fn check(
        &mut self,
        req: &Request,
        request_uri: &Uri,
        client: IpAddr,
        now: Instant,
    ) -> AuthOutcome {
        self.last_use = None;
        let mut unusable = AuthFailure::NoCredentials;
        let mut creds = None;
        for value in req
            .headers
            .get_all("Authorization")
            .chain(req.headers.get_all("Proxy-Authorization"))
        {
            match digest::parse_credentials(value) {
                Ok(c) if c.realm == self.realm => {
                    creds = Some(c);
                    break;
                }
                Ok(_) => unusable = AuthFailure::WrongRealm,
                Err(DigestError::NotDigest) => {}
                Err(DigestError::EmptyResponse) => unusable = AuthFailure::EmptyResponse,
                Err(DigestError::UnsupportedAlgorithm) => {
                    unusable = AuthFailure::UnsupportedAlgorithm(String::new())
                }
                Err(DigestError::Malformed(_)) => unusable = AuthFailure::Malformed,
            }
        }
        let Some(creds) = creds else {
            return challenge(unusable, false);
        };
        if !same_resource(&creds.uri, request_uri, &req.uri) {
            return AuthOutcome::Refuse {
                failure: AuthFailure::UriMismatch(creds.username.clone()),
                code: 400,
            };
        }
        self.verify(&creds, req.method.as_str(), client, now)
    }

    fn verify(
        &mut self,
        creds: &Credentials,
        method: &str,
        client: IpAddr,
        now: Instant,
    ) -> AuthOutcome {
        let user = || creds.username.clone();
        let Some(&trunk) = self.by_username.get(&creds.username) else {
            return challenge(AuthFailure::UnknownUser(user()), false);
        };
        if !self.algorithms.contains(&creds.algorithm) {
            return challenge(AuthFailure::UnsupportedAlgorithm(user()), false);
        }
        match self.nonces.check(&creds.nonce, now, client) {
            NonceStatus::Valid => {}
            NonceStatus::Stale => return challenge(AuthFailure::StaleNonce, true),
            NonceStatus::Invalid => return challenge(AuthFailure::BadNonce(user()), false),
        }
        let Some(ha1) = stored_ha1(&self.trunks[trunk], creds.algorithm, &self.realm) else {
            return challenge(AuthFailure::UnsupportedAlgorithm(user()), false);
        };
        if !digest::verify(creds, method, &ha1) {
            return challenge(AuthFailure::WrongPassword(user()), false);
        }
        let Some(until) = self.nonces.valid_until(&creds.nonce) else {
            return challenge(AuthFailure::BadNonce(user()), false);
        };
        // Without qop nothing but the nonce tells one request from another, so a no-qop nonce
        // answers one request: a copied header is refused, and a PBX that re-uses its last
        // nonce is told it is stale and retries with a fresh one, without prompting anyone.
        let (nc, stale) = match creds.qop {
            Some(_) => match creds.nc_value() {
                Some(nc) => (nc, false),
                None => return challenge(AuthFailure::ReplayedNonce(user()), false),
            },
            None => (1, true),
        };
        if !self.nc.accept(&creds.nonce, nc, now, until) {
            return challenge(AuthFailure::ReplayedNonce(user()), stale);
        }
        let valid_for = until.saturating_duration_since(now);
        self.last_use = Some(NonceUse {
            nonce: creds.nonce.clone(),
            nc,
            valid_until_unix_ms: self
                .nonces
                .wall_ms(now)
                .saturating_add(u64::try_from(valid_for.as_millis()).unwrap_or(u64::MAX)),
        });
        AuthOutcome::Authenticated { trunk }
    }

    /// True when `ip` may belong to some trunk (no restriction, or inside one's allowed_sources).
    pub fn source_possible(&self, ip: IpAddr) -> bool {
        self.any_source || self.trunks.iter().any(|t| source_allowed(t, ip))
    }
}

pub fn source_allowed(trunk: &TrunkConfig, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trunk.allowed_sources.is_empty() || trunk.allowed_sources.iter().any(|n| n.contains(&ip))
}

/// Whether the digest `uri` names the request's own resource (RFC 3261 22.4, RFC 7616 3.4.6),
/// compared as URIs (RFC 3261 19.1.4); text that is no SIP or tel URI must match exactly.
fn same_resource(digest_uri: &str, request_uri: &Uri, request_uri_text: &str) -> bool {
    match Uri::parse(digest_uri) {
        Ok(u) if !matches!(u.scheme, Scheme::Other(_)) => u.equivalent(request_uri),
        _ => digest_uri == request_uri_text,
    }
}

fn challenge(failure: AuthFailure, stale: bool) -> AuthOutcome {
    AuthOutcome::Challenge { failure, stale }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod auth_tests;
