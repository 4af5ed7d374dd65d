//! Counters of the SIP edge, shared lock-free with whoever reports them (status, metrics, tests).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Monotonic counters; read with `snapshot`.
        #[derive(Debug, Default)]
        pub struct SipStats { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A point-in-time copy of every counter, by name.
        impl SipStats {
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Datagrams received on the SIP socket.
    datagrams_received,
    /// Requests that opened a new server transaction.
    requests_received,
    /// Retransmitted requests absorbed by a transaction.
    retransmissions_absorbed,
    /// Messages that failed to parse (answered 400/505 or dropped).
    parse_errors,
    /// Datagrams dropped without an answer: garbage, oversize, malformed responses.
    dropped,
    /// Responses that matched no client transaction.
    stray_responses,
    /// Responses sent (first transmissions, not retransmissions).
    responses_sent,
    /// Digest authentication failures (wrong password, unknown user, bad or replayed nonce).
    auth_failures,
    /// Requests refused because of `allowed_sources`.
    source_refusals,
    /// INVITEs refused by the destination policy (484 / 403).
    number_refusals,
    /// Successful REGISTER requests (including refreshes and removals).
    registrations,
    /// Bindings that expired without being refreshed.
    registrations_expired,
    /// INVITEs refused by the concurrent call limits.
    call_limit_refusals,
    /// Requests we originated (first transmissions: INVITE, re-INVITE, BYE, CANCEL).
    requests_sent,
}

impl SipStats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}
