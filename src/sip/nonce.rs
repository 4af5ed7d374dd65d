//! Digest nonces that need no server-side table, plus the small bounded table that `qop=auth`
//! replay protection does need.
//!
//! A nonce is `base64url(no pad)` of `issued_at_ms (u64 BE, wall clock: since the Unix epoch) ||
//! salt (6 random bytes) || HMAC-SHA256(secret, issued_at_ms || salt || client ip)[..16]`,
//! 40 characters. The salt makes every challenge's nonce unique even when one client is
//! challenged twice in the same millisecond; otherwise its fresh `nc=1` would look replayed.
//! The server can check origin, binding to the client address and age of any nonce it handed
//! out without remembering it, so challenges cost no memory and a flood of unauthenticated
//! requests cannot grow state. The secret is per process unless `[cluster] secret` gives one:
//! then every instance of a cluster verifies every instance's nonces (the stamp is wall-clock
//! time, so their clocks must agree within `CLOCK_SKEW`). Without it a restart makes outstanding
//! nonces `Invalid`, and clients simply get a fresh challenge.
//!
//! Sans-IO: every time-dependent call takes `now`, so tests run on virtual time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const STAMP_LEN: usize = 8;
const SALT_LEN: usize = 6;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = STAMP_LEN + SALT_LEN + MAC_LEN;
/// How far in the future another instance's stamp may be (its wall clock ahead of ours).
const CLOCK_SKEW: Duration = Duration::from_millis(500);
/// base64 of 30 bytes without padding; checked before decoding so oversized input costs nothing.
const ENCODED_LEN: usize = RAW_LEN * 4 / 3;

/// Issues and checks nonces.
pub struct NonceFactory {
    /// Keyed once, cloned per use: saves re-deriving the HMAC pads on every nonce.
    mac: HmacSha256,
    epoch: Instant,
    /// The wall clock at `epoch`, in ms since the Unix epoch: stamps are wall-clock times.
    wall_epoch_ms: u64,
    lifetime: Duration,
}

/// Outcome of [`NonceFactory::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Ours, for this client, and within its lifetime.
    Valid,
    /// Ours and for this client, but older than the lifetime: re-challenge with `stale=true` so
    /// the client retries with the same credentials instead of prompting the user.
    Stale,
    /// Not ours, not for this client, from the future, or not a nonce at all.
    Invalid,
}

impl fmt::Debug for NonceFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keyed HMAC state is as good as the secret; keep it out of logs.
        f.debug_struct("NonceFactory")
            .field("epoch", &self.epoch)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl NonceFactory {
    /// Factory with a fresh random secret from the operating system.
    ///
    /// # Panics
    /// If the OS random source fails, which leaves nothing safe to run with.
    pub fn new(epoch: Instant, lifetime: Duration) -> Self {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::with_secret(epoch, lifetime, secret)
    }

    /// Factory with a fixed secret, for tests and for sharing nonces between processes.
    ///
    /// # Panics
    /// Never: HMAC takes keys of any length.
    pub fn with_secret(epoch: Instant, lifetime: Duration, secret: [u8; 32]) -> Self {
        let mac = HmacSha256::new_from_slice(&secret).expect("HMAC accepts any key length");
        let wall_epoch_ms = super::shared::unix_ms(
            std::time::SystemTime::now() - Instant::now().saturating_duration_since(epoch),
        );
        Self {
            mac,
            epoch,
            wall_epoch_ms,
            lifetime,
        }
    }

    /// How long an issued nonce stays `Valid`.
    #[cfg(test)]
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new nonce for `client`, stamped with `now` (clamped to the epoch if earlier).
    pub fn issue(&self, now: Instant, client: IpAddr) -> String {
        let stamp = self.stamp_of(now);
        let salt: [u8; SALT_LEN] = rand::random();
        let mut raw = [0u8; RAW_LEN];
        raw[..STAMP_LEN].copy_from_slice(&stamp.to_be_bytes());
        raw[STAMP_LEN..STAMP_LEN + SALT_LEN].copy_from_slice(&salt);
        raw[STAMP_LEN + SALT_LEN..].copy_from_slice(&self.tag(stamp, &salt, client));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce sent back by `client` at `now`. The MAC is compared in constant time.
    pub fn check(&self, nonce: &str, now: Instant, client: IpAddr) -> NonceStatus {
        let Some((stamp, salt, tag)) = decode(nonce) else {
            return NonceStatus::Invalid;
        };
        let expected = self.tag(stamp, &salt, client);
        if !bool::from(expected.ct_eq(&tag)) {
            return NonceStatus::Invalid;
        }
        let now_stamp = self.stamp_of(now);
        // A genuine MAC from the future: another instance's clock ahead of ours (tolerated a
        // little), or a caller passing a `now` that went backwards (not trusted).
        let age = match now_stamp.checked_sub(stamp) {
            Some(ms) => Duration::from_millis(ms),
            None if Duration::from_millis(stamp - now_stamp) <= CLOCK_SKEW => Duration::ZERO,
            None => return NonceStatus::Invalid,
        };
        if age <= self.lifetime {
            NonceStatus::Valid
        } else {
            NonceStatus::Stale
        }
    }

    /// When `nonce` stops being `Valid` (issued_at + lifetime); `None` if it cannot be decoded.
    ///
    /// This only decodes the timestamp and does not authenticate it: call [`check`] first.
    ///
    /// [`check`]: NonceFactory::check
    pub fn valid_until(&self, nonce: &str) -> Option<Instant> {
        let (stamp, _, _) = decode(nonce)?;
        let until = stamp.checked_add(u64::try_from(self.lifetime.as_millis()).ok()?)?;
        match until.checked_sub(self.wall_epoch_ms) {
            Some(after) => self.epoch.checked_add(Duration::from_millis(after)),
            // issued by another instance before this one started
            None => Some(
                self.epoch
                    .checked_sub(Duration::from_millis(self.wall_epoch_ms - until))
                    .unwrap_or(self.epoch),
            ),
        }
    }

    fn stamp_of(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        self.wall_epoch_ms
            .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The wall-clock time (ms since the Unix epoch) of `now`, as nonces are stamped.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        self.stamp_of(now)
    }

    fn tag(&self, stamp: u64, salt: &[u8; SALT_LEN], client: IpAddr) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&stamp.to_be_bytes());
        mac.update(salt);
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; fold that to plain IPv4 so
        // the nonce binds the same client whichever form the caller happens to hold.
        match client.to_canonical() {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// Splits a nonce into its timestamp, salt and tag; `None` if it is not exactly one of our
/// encodings.
fn decode(nonce: &str) -> Option<(u64, [u8; SALT_LEN], [u8; MAC_LEN])> {
    if nonce.len() != ENCODED_LEN {
        return None;
    }
    let mut raw = [0u8; RAW_LEN];
    let n = URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw).ok()?;
    if n != RAW_LEN {
        return None;
    }
    let mut stamp = [0u8; STAMP_LEN];
    stamp.copy_from_slice(&raw[..STAMP_LEN]);
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&raw[STAMP_LEN..STAMP_LEN + SALT_LEN]);
    let mut tag = [0u8; MAC_LEN];
    tag.copy_from_slice(&raw[STAMP_LEN + SALT_LEN..]);
    Some((u64::from_be_bytes(stamp), salt, tag))
}

/// Remembers the highest `nc` seen per nonce so a replayed `qop=auth` request (nc not greater
/// than before) is refused.
///
/// Bounded two ways: an entry is forgotten once its nonce can no longer be `Valid`, and at most
/// `capacity` entries are kept, evicting those that expire soonest first. Because eviction is
/// in expiry order, the tracker remembers the latest expiry it ever evicted and refuses any
/// unknown nonce expiring no later than that: such a nonce may be one it forgot, and accepting
/// it would reopen replay. The caller then re-challenges and the client moves to a fresh nonce.
///
/// Every call is O(log n) amortised; expired entries are purged lazily from the front of an
/// expiry-ordered index.
#[derive(Debug)]
pub struct NcTracker {
    capacity: usize,
    /// Highest nc seen per nonce.
    entries: HashMap<Arc<str>, u32>,
    /// Expiry order. The sequence number keeps keys unique when expiries coincide.
    by_expiry: BTreeMap<(Instant, u64), Arc<str>>,
    next_seq: u64,
    /// Latest `valid_until` among entries dropped for capacity.
    evicted_through: Option<Instant>,
}

impl NcTracker {
    /// Tracker holding at most `capacity` nonces (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            next_seq: 0,
            evicted_through: None,
        }
    }

    /// `true` if `nc` is strictly greater than any nc seen before for `nonce`, and records it;
    /// `false` means replay (or a nonce the tracker cannot vouch for: already expired at `now`,
    /// or possibly evicted). `valid_until` is when the nonce stops being `Valid`
    /// ([`NonceFactory::valid_until`]); it is taken from the first call for a nonce.
    ///
    /// Call it only once the nonce checked `Valid` and the digest response verified: the tracker
    /// keeps a copy of every nonce it accepts, and letting unauthenticated requests in would let
    /// them push real clients' entries out (still bounded by `capacity`, and still safe, but
    /// those clients would be re-challenged).
    pub fn accept(&mut self, nonce: &str, nc: u32, now: Instant, valid_until: Instant) -> bool {
        self.purge_expired(now);

        if let Some(seen) = self.entries.get_mut(nonce) {
            if nc > *seen {
                *seen = nc;
                return true;
            }
            return false;
        }

        if valid_until < now {
            return false;
        }
        if self.evicted_through.is_some_and(|t| valid_until <= t) {
            return false;
        }

        let key = (valid_until, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        let name: Arc<str> = Arc::from(nonce);
        self.by_expiry.insert(key, Arc::clone(&name));
        self.entries.insert(name, nc);

        let mut kept = true;
        while self.entries.len() > self.capacity {
            let Some(((expiry, seq), victim)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&victim);
            self.evicted_through = Some(self.evicted_through.map_or(expiry, |t| t.max(expiry)));
            if (expiry, seq) == key {
                // The newcomer expires before everything already held, so it is the oldest.
                kept = false;
            }
        }
        kept
    }

    /// Number of nonces currently remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no nonce is remembered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries whose nonce is no longer `Valid` (valid through `valid_until` inclusive,
    /// matching `NonceFactory::check`'s `age <= lifetime`).
    fn purge_expired(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 >= now {
                break;
            }
            let victim = entry.remove();
            self.entries.remove(&victim);
        }
    }
}

#[cfg(test)]
#[path = "nonce_tests.rs"]
mod tests;
