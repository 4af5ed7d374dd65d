//! RFC 3261 timer values (17.1.1.1, table 4).

use std::time::Duration;

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
