//! The subscription lifecycle of one carrier account, without I/O: feed it the outcome of each
//! subscribe/refresh and the current `Instant`; it says what to do next and when.
//!
//! Rules (CARRIER.md section 1): refresh at about half of the granted `expires` (at least 30 s,
//! never past 80 % of it, jittered ±20 %); a 503 with a retry hint is honoured up to 3 times in a
//! row, then exponential backoff; bad credentials are a persistent state retried with backoff;
//! a lost subscription (`statusCode` 39, a `gone` notification) means subscribing again.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

impl Backoff {
    /// Delay before retry number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }
}

/// What the driver should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Subscribe,
    Refresh,
    Wait(Instant),
    Stopped,
}

/// How the last subscribe or refresh went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Granted {
        expires: Duration,
    },
    Overloaded {
        retry_after: Option<Duration>,
    },
    Unauthorized,
    /// The subscription no longer exists on the server.
    Gone {
        retry_after: Option<Duration>,
    },
    /// Transport or unexpected error.
    Failed,
}

/// The account's subscription state as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Subscribing,
    Active,
    /// Subscribed, but the last refresh failed; retrying while the grant lasts.
    RefreshRetry,
    Unauthorized,
    Retrying,
    Stopped,
}

impl Phase {
    /// Calls may be placed on the account.
    pub fn usable(self) -> bool {
        matches!(self, Phase::Active | Phase::RefreshRetry)
    }
}

const OVERLOAD_HINTS_HONOURED: u32 = 3;
const MIN_REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Lifecycle {
    phase: Phase,
    in_flight: bool,
    next_at: Instant,
    /// End of the current grant; a refresh is only worth trying before it.
    valid_until: Option<Instant>,
    failures: u32,
    overloads: u32,
    backoff: Backoff,
    rng: StdRng,
}

impl Lifecycle {
    pub fn new(now: Instant, backoff: Backoff, seed: u64) -> Self {
        Lifecycle {
            phase: Phase::Subscribing,
            in_flight: false,
            next_at: now,
            valid_until: None,
            failures: 0,
            overloads: 0,
            backoff,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn subscribed(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|t| now < t)
    }

    pub fn poll(&mut self, now: Instant) -> Step {
        if self.phase == Phase::Stopped {
            return Step::Stopped;
        }
        if self.in_flight || now < self.next_at {
            return Step::Wait(self.next_at);
        }
        self.in_flight = true;
        if self.subscribed(now) {
            Step::Refresh
        } else {
            self.valid_until = None;
            if !matches!(self.phase, Phase::Unauthorized | Phase::Retrying) {
                self.phase = Phase::Subscribing;
            }
            Step::Subscribe
        }
    }

    /// The result of the request `poll` asked for.
    pub fn on_outcome(&mut self, now: Instant, outcome: Outcome) {
        self.in_flight = false;
        match outcome {
            Outcome::Granted { expires } => {
                self.phase = Phase::Active;
                self.failures = 0;
                self.overloads = 0;
                self.valid_until = Some(now + expires);
                self.next_at = now + self.refresh_delay(expires);
            }
            Outcome::Overloaded { retry_after } => {
                self.overloads += 1;
                let wait = match retry_after {
                    Some(d) if self.overloads <= OVERLOAD_HINTS_HONOURED => d,
                    _ => self.next_backoff(),
                };
                self.retry_after(now, wait);
            }
            Outcome::Unauthorized => {
                let wait = self.next_backoff();
                self.valid_until = None;
                self.phase = Phase::Unauthorized;
                self.next_at = now + wait;
            }
            Outcome::Gone { retry_after } => self.lost(now, retry_after),
            Outcome::Failed => {
                let wait = self.next_backoff();
                self.retry_after(now, wait);
            }
        }
    }

    /// A `gone` (or `websocketOverridden`) notification: the subscription is dead.
    pub fn on_gone(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.lost(now, retry_after);
    }

    pub fn stop(&mut self) {
        self.phase = Phase::Stopped;
    }

    fn lost(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.valid_until = None;
        self.phase = Phase::Subscribing;
        self.next_at = now + retry_after.unwrap_or(Duration::ZERO);
    }

    fn retry_after(&mut self, now: Instant, wait: Duration) {
        let retry = now + wait;
        match self.valid_until {
            // Keep refreshing while the grant lasts, but never sleep past it.
            Some(until) if now < until => {
                self.phase = Phase::RefreshRetry;
                self.next_at = retry.min(until);
            }
            _ => {
                self.valid_until = None;
                if self.phase != Phase::Unauthorized {
                    self.phase = Phase::Retrying;
                }
                self.next_at = retry;
            }
        }
    }

    fn next_backoff(&mut self) -> Duration {
        let d = self.backoff.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        d
    }

    fn refresh_delay(&mut self, expires: Duration) -> Duration {
        let half = expires / 2;
        let base = half.max(MIN_REFRESH).min(expires.mul_f64(0.8));
        let jitter: f64 = self.rng.gen_range(0.8..1.2);
        base.mul_f64(jitter).min(expires.mul_f64(0.9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }

    fn wait_of(step: Step, now: Instant) -> Duration {
        match step {
            Step::Wait(t) => t - now,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = backoff();
        let d: Vec<u64> = (0..6).map(|i| b.delay(i).as_secs()).collect();
        assert_eq!(d, vec![5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn subscribes_at_once_then_refreshes_near_half_of_expires() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        assert_eq!(lc.poll(t0), Step::Subscribe);
        assert!(
            matches!(lc.poll(t0), Step::Wait(_)),
            "one request at a time"
        );
        lc.on_outcome(
            t0,
            Outcome::Granted {
                expires: Duration::from_secs(3600),
            },
        );
        assert_eq!(lc.phase(), Phase::Active);
        let w = wait_of(lc.poll(t0), t0);
        assert!(
            w >= Duration::from_secs(1440) && w <= Duration::from_secs(2160),
            "{w:?}"
        );
        assert_eq!(lc.poll(t0 + w), Step::Refresh);
    }

    #[test]
    fn refresh_is_never_later_than_most_of_a_short_grant() {
        let t0 = Instant::now();
        for seed in 0..50 {
            let mut lc = Lifecycle::new(t0, backoff(), seed);
            lc.poll(t0);
            lc.on_outcome(
                t0,
                Outcome::Granted {
                    expires: Duration::from_secs(10),
                },
            );
            let w = wait_of(lc.poll(t0), t0);
            assert!(w <= Duration::from_secs(9), "{w:?}");
            assert!(w >= Duration::from_secs(6), "{w:?}");
        }
    }

    #[test]
    fn overload_hint_is_honoured_three_times_then_backoff() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        let mut now = t0;
        let hint = Some(Duration::from_millis(1500));
        for _ in 0..3 {
            assert_eq!(lc.poll(now), Step::Subscribe);
            lc.on_outcome(now, Outcome::Overloaded { retry_after: hint });
            let w = wait_of(lc.poll(now), now);
            assert_eq!(w, Duration::from_millis(1500));
            now += w;
        }
        assert_eq!(lc.poll(now), Step::Subscribe);
        lc.on_outcome(now, Outcome::Overloaded { retry_after: hint });
        assert_eq!(wait_of(lc.poll(now), now), Duration::from_secs(5));
        assert_eq!(lc.phase(), Phase::Retrying);
    }

    #[test]
    fn unauthorized_is_a_state_with_growing_retries() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        let mut now = t0;
        let mut waits = vec![];
        for _ in 0..4 {
            assert_eq!(lc.poll(now), Step::Subscribe);
            lc.on_outcome(now, Outcome::Unauthorized);
            assert_eq!(lc.phase(), Phase::Unauthorized);
            let w = wait_of(lc.poll(now), now);
            waits.push(w.as_secs());
            now += w;
        }
        assert_eq!(waits, vec![5, 10, 20, 40]);
        assert_eq!(lc.poll(now), Step::Subscribe);
        lc.on_outcome(
            now,
            Outcome::Granted {
                expires: Duration::from_secs(600),
            },
        );
        assert_eq!(lc.phase(), Phase::Active);
    }

    #[test]
    fn gone_on_refresh_subscribes_again_at_once() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        lc.poll(t0);
        lc.on_outcome(
            t0,
            Outcome::Granted {
                expires: Duration::from_secs(100),
            },
        );
        let w = wait_of(lc.poll(t0), t0);
        let t1 = t0 + w;
        assert_eq!(lc.poll(t1), Step::Refresh);
        lc.on_outcome(t1, Outcome::Gone { retry_after: None });
        assert_eq!(lc.poll(t1), Step::Subscribe);
    }

    #[test]
    fn gone_notification_honours_retry_after() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        lc.poll(t0);
        lc.on_outcome(
            t0,
            Outcome::Granted {
                expires: Duration::from_secs(100),
            },
        );
        lc.on_gone(t0, Some(Duration::from_secs(2)));
        assert!(!lc.phase().usable());
        assert_eq!(wait_of(lc.poll(t0), t0), Duration::from_secs(2));
        assert_eq!(lc.poll(t0 + Duration::from_secs(2)), Step::Subscribe);
    }

    #[test]
    fn failed_refresh_retries_refresh_within_the_grant_then_subscribes() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        lc.poll(t0);
        lc.on_outcome(
            t0,
            Outcome::Granted {
                expires: Duration::from_secs(60),
            },
        );
        let mut now = t0 + wait_of(lc.poll(t0), t0);
        assert_eq!(lc.poll(now), Step::Refresh);
        lc.on_outcome(now, Outcome::Failed);
        assert_eq!(lc.phase(), Phase::RefreshRetry);
        assert!(lc.phase().usable());
        // Keep failing: the retries never sleep past the grant, and after it ends we subscribe.
        let mut saw_subscribe = false;
        for _ in 0..10 {
            let w = wait_of(lc.poll(now), now);
            now += w;
            assert!(now <= t0 + Duration::from_secs(60) || saw_subscribe);
            match lc.poll(now) {
                Step::Refresh => lc.on_outcome(now, Outcome::Failed),
                Step::Subscribe => {
                    saw_subscribe = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(saw_subscribe);
    }

    #[test]
    fn stop_is_final() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, backoff(), 1);
        lc.stop();
        assert_eq!(lc.poll(t0), Step::Stopped);
    }
}
