//! Digest authentication of requests against the configured trunks (RFC 3261 22, RFC 8760):
//! which trunk a request's credentials name, whether they are valid, and what to challenge with.
//!
//! The digest username identifies the trunk (it may differ from the From/To user, as with 3CX).
//! Credentials are accepted in either Authorization or Proxy-Authorization. Failures are logged
//! with the source address and the username, never with a password or response hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::digest::{self, Algorithm, Credentials};
use super::message::Request;
use super::nonce::{NcTracker, NonceFactory, NonceStatus};
use crate::config::{Config, TrunkConfig};

/// Why a request was not authenticated, for the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No usable Digest credentials for our realm: the normal first request, not a failure.
    NoCredentials,
    /// The nonce is ours but expired: re-challenge with stale=true, not a failure.
    StaleNonce,
    UnknownUser(String),
    BadNonce(String),
    UnsupportedAlgorithm(String),
    WrongPassword(String),
    ReplayedNonceCount(String),
}

impl AuthFailure {
    /// Failures worth counting and logging (the first unauthenticated request and stale nonces
    /// are ordinary protocol flow).
    pub fn is_failure(&self) -> bool {
        !matches!(self, AuthFailure::NoCredentials | AuthFailure::StaleNonce)
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
            AuthFailure::ReplayedNonceCount(u) => write!(f, "replayed nonce count, user {u:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated as trunk number `trunk` (index into the config's trunks).
    Authenticated { trunk: usize },
    /// Challenge again (401/407); `stale` goes into the challenge.
    Challenge { failure: AuthFailure, stale: bool },
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
}

impl Authenticator {
    pub fn new(config: &Config, epoch: Instant) -> Self {
        Authenticator {
            realm: config.sip.realm.clone(),
            algorithms: config.sip.algorithms(),
            offer_qop: config.sip.digest_qop,
            trunks: config.trunks.clone(),
            by_username: config
                .trunks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.auth_username.clone(), i))
                .collect(),
            any_source: config.trunks.iter().any(|t| t.allowed_sources.is_empty()),
            nonces: NonceFactory::new(epoch, config.sip.nonce_lifetime),
            nc: NcTracker::new(100_000),
        }
    }

    /// A reloaded configuration: new trunks, secrets and challenge settings. Nonces already
    /// handed out stay valid (their secret is kept), so no PBX sees a spurious stale.
    pub fn reload(&mut self, config: &Config) {
        self.realm = config.sip.realm.clone();
        self.algorithms = config.sip.algorithms();
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

    /// Checks the request's credentials.
    pub fn check(&mut self, req: &Request, client: IpAddr, now: Instant) -> AuthOutcome {
        let creds = req
            .headers
            .get_all("Authorization")
            .chain(req.headers.get_all("Proxy-Authorization"))
            .filter_map(|v| digest::parse_credentials(v).ok())
            .find(|c| c.realm == self.realm);
        let Some(creds) = creds else {
            return challenge(AuthFailure::NoCredentials, false);
        };
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
        let Some(ha1) = self.trunks[trunk].ha1_for(creds.algorithm, &self.realm) else {
            return challenge(AuthFailure::UnsupportedAlgorithm(user()), false);
        };
        if !digest::verify(creds, method, &ha1) {
            return challenge(AuthFailure::WrongPassword(user()), false);
        }
        if creds.qop.is_some() {
            let (Some(nc), Some(until)) = (creds.nc_value(), self.nonces.valid_until(&creds.nonce))
            else {
                return challenge(AuthFailure::ReplayedNonceCount(user()), false);
            };
            if !self.nc.accept(&creds.nonce, nc, now, until) {
                return challenge(AuthFailure::ReplayedNonceCount(user()), false);
            }
        }
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

fn challenge(failure: AuthFailure, stale: bool) -> AuthOutcome {
    AuthOutcome::Challenge { failure, stale }
}
