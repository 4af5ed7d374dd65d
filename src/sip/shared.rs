//! What the SIP core shares with the other instances of a cluster, and takes from them: each
//! trunk's registration (bindings with their Path and wall-clock expiry) and bans. The core
//! emits these as plain data and imports them the same way; carrying them (Redis) is the
//! cluster room's business, so the core stays free of I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One binding as another instance needs it to reach the PBX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedBinding {
    /// The Contact URI exactly as registered (`rinstance` and all).
    pub uri: String,
    /// The REGISTER's Path header values, in order (RFC 3327): the route toward the PBX.
    pub path: Vec<String>,
    /// Where the REGISTER came from (the proxy, or the PBX itself).
    pub source: SocketAddr,
    /// The PBX's own address (the same as `source` without a proxy).
    pub pbx: SocketAddr,
    /// The registration's Call-ID and CSeq, for RFC 3261 10.3 ordering on any instance.
    pub call_id: String,
    /// The REGISTER's CSeq number.
    pub cseq: u32,
    /// When the binding expires, in milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
}

/// A trunk's whole registration as one instance last saw it; the newest `updated_unix_ms` wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRegistration {
    /// The trunk's name.
    pub trunk: String,
    /// The instance that wrote it.
    pub node: String,
    /// When it was written, in milliseconds since the Unix epoch.
    pub updated_unix_ms: u64,
    /// Every live binding (empty: unregistered).
    pub bindings: Vec<SharedBinding>,
}

/// A fact the core shares, or takes from another instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedFact {
    /// A trunk's registration changed (REGISTER, or expiry).
    Registration(SharedRegistration),
    /// A REGISTER for `trunk` spent this nonce use (shared only, never imported): should another
    /// instance have seen it, the REGISTER was a replay, and its registration is reverted.
    NonceSpent {
        /// The trunk the REGISTER was for.
        trunk: String,
        /// What it spent.
        nonce: NonceUse,
    },
    /// A trunk's registration as it was before a replayed REGISTER changed it here (imported
    /// only, whatever its age).
    Revert(SharedRegistration),
    /// An address was banned until a wall-clock time (milliseconds since the Unix epoch).
    Ban {
        /// The banned address (the PBX's, never a trusted proxy's).
        ip: IpAddr,
        /// When the ban ends.
        until_unix_ms: u64,
    },
}

/// Milliseconds since the Unix epoch of a wall-clock time (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One use of a digest nonce (its nonce count), for refusing its replay on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceUse {
    /// The nonce the request answered.
    pub nonce: String,
    /// Its nonce count (1 for a request without qop, whose nonce may be used once).
    pub nc: u32,
    /// When the nonce stops being valid, in milliseconds since the Unix epoch: how long its
    /// use must be remembered.
    pub valid_until_unix_ms: u64,
}
