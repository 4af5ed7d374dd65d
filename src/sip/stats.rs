//! Counters of the SIP edge, shared lock-free with whoever reports them (status, metrics, tests).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Monotonic counters; read with `snapshot`.
        #[derive(Debug, Default)]
        pub struct SipStats { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A point-in-time copy of every counter, by name.
        impl SipStats {
            pub(crate) fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Datagrams received on the SIP socket.
    datagrams_received,
    /// New requests handled (not retransmissions, not dropped by the guard).
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
    /// Responses sent without a transaction (challenges, OPTIONS, refusals): nothing kept.
    stateless_responses,
    /// Requests refused 503 because `security.max_transactions` transactions were live.
    transaction_limit_refusals,
    /// Authentication failures of every kind but a stale nonce (by kind: the security view).
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
    /// OPTIONS sent to registered PBX contacts (qualifying).
    qualify_requests,
    /// Of those, the ones that got no answer at all.
    qualify_timeouts,
}

impl SipStats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests received by method and responses sent by status code, for metrics.
#[derive(Debug)]
pub(crate) struct SipTraffic {
    requests: [AtomicU64; METHODS.len()],
    responses: Box<[AtomicU64]>,
}

/// Method labels; anything else counts as `other`.
pub(crate) const METHODS: [&str; 7] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "other",
];

impl Default for SipTraffic {
    fn default() -> Self {
        SipTraffic {
            requests: Default::default(),
            responses: (100..700).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl SipTraffic {
    pub fn request(&self, method: &str) {
        let i = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn response(&self, code: u16) {
        if let Some(c) = self.responses.get(usize::from(code).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (method, count) for every method.
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        METHODS
            .iter()
            .zip(&self.requests)
            .map(|(m, c)| (*m, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// (code, count) for every code sent at least once.
    pub fn responses(&self) -> Vec<(u16, u64)> {
        self.responses
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u16 + 100, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
