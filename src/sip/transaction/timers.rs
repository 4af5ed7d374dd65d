//! RFC 3261 timer values (17.1.1.1, table 4) and the deadline heap shared by both sides.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::TxId;

/// T1, T2 and T4. Everything else derives from them, for UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionTimers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TransactionTimers {
    fn default() -> Self {
        TransactionTimers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TransactionTimers {
    /// Timers B, F, H, J, L and M: 64*T1.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s for unreliable transports.
    pub fn timer_d(&self) -> Duration {
        self.t64().max(Duration::from_secs(32))
    }
}

/// Deadlines keyed by transaction id. Entries are not removed when a transaction changes its
/// deadline: the owner checks on expiry whether the popped deadline is still the current one.
#[derive(Debug, Default)]
pub(crate) struct DeadlineHeap {
    heap: BinaryHeap<Reverse<(Instant, TxId)>>,
}

impl DeadlineHeap {
    pub fn push(&mut self, at: Instant, id: TxId) {
        self.heap.push(Reverse((at, id)));
    }

    pub fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops the next entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TxId)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}
