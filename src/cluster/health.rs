//! Whether Redis is up as this instance saw it last, and what that is worth a log line for: an
//! outage is said once (also when Redis was away from the start), its end once.

use std::time::SystemTime;

use super::ClusterStatus;

/// What a change of the link is worth saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Say {
    Nothing,
    /// Redis stopped answering (or never did so far).
    Unreachable,
    /// Linked for the first time, Redis never having failed.
    Reachable,
    /// Linked after an outage.
    ReachableAgain,
}

impl ClusterStatus {
    /// A request or a connection attempt failed with `error`.
    pub(crate) fn went_down(&mut self, error: &str, now: SystemTime) -> Say {
        // Before any failure `last_error` is empty: the first one is news even when the link
        // never came up.
        let news = self.redis_up || self.last_error.is_none();
        if self.redis_up {
            self.redis_up = false;
            self.since = now;
        }
        self.last_error = Some(error.to_string());
        if news {
            Say::Unreachable
        } else {
            Say::Nothing
        }
    }

    /// Linked and caught up.
    pub(crate) fn came_up(&mut self, now: SystemTime) -> Say {
        if self.redis_up {
            return Say::Nothing;
        }
        self.redis_up = true;
        self.since = now;
        if self.last_error.is_none() {
            Say::Reachable
        } else {
            Say::ReachableAgain
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fresh(at: SystemTime) -> ClusterStatus {
        ClusterStatus {
            node: "a".into(),
            redis_up: false,
            since: at,
            last_error: None,
            imported: 0,
            written: 0,
            replays_refused: 0,
            counted_calls: 0,
        }
    }

    #[test]
    fn an_outage_is_said_once_from_the_start_and_after_being_up_and_its_end_once() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |s| t0 + Duration::from_secs(s);

        // Redis away from the start: said at the first failure, not at the retries.
        let mut s = fresh(t0);
        assert_eq!(s.went_down("refused", at(1)), Say::Unreachable);
        assert_eq!(s.went_down("refused again", at(2)), Say::Nothing);
        assert_eq!(s.last_error.as_deref(), Some("refused again"));
        assert_eq!(s.since, t0, "down since the start");
        assert_eq!(s.came_up(at(3)), Say::ReachableAgain);
        assert_eq!(s.came_up(at(4)), Say::Nothing);
        assert!(s.redis_up);
        assert_eq!(s.since, at(3));

        // Up, then away: said once, and back once.
        assert_eq!(s.went_down("reset", at(5)), Say::Unreachable);
        assert!(!s.redis_up);
        assert_eq!(s.since, at(5));
        assert_eq!(s.went_down("refused", at(6)), Say::Nothing);
        assert_eq!(s.since, at(5));
        assert_eq!(s.came_up(at(7)), Say::ReachableAgain);

        // Up at the first try.
        let mut s = fresh(t0);
        assert_eq!(s.came_up(at(1)), Say::Reachable);
        assert_eq!(s.went_down("reset", at(2)), Say::Unreachable);
    }
}
