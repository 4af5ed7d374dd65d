//! A token bucket per address (the `pike` idea): `rate` unauthenticated requests per second,
//! `burst` at once.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Budget {
    tokens: f32,
    refilled: Instant,
}

impl Budget {
    pub fn full(burst: u32, now: Instant) -> Budget {
        Budget {
            tokens: burst as f32,
            refilled: now,
        }
    }

    /// Takes one token; `false` when none is left.
    pub fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f32();
        self.tokens = (self.tokens + elapsed * rate as f32).min(burst as f32);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives a token back (the request turned out to be authenticated).
    pub fn give_back(&mut self, burst: u32) {
        self.tokens = (self.tokens + 1.0).min(burst as f32);
    }
}
