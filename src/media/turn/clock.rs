//! Maps the engine's `std::time::Instant` onto the `Instant` of the stun/turn crates
//! (`sans_io_time`: nanoseconds from an arbitrary zero). Each client takes its creation time as
//! zero, so the mapping is exact and needs no wall clock.

use std::time::{Duration, Instant};

use stun_proto::Instant as ProtoInstant;

#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(super) fn new(epoch: Instant) -> Self {
        Clock { epoch }
    }

    /// Times before the epoch (a caller's clock going backwards) read as the epoch.
    pub(super) fn proto_of(self, now: Instant) -> ProtoInstant {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        ProtoInstant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    pub(super) fn std_of(self, t: ProtoInstant) -> Instant {
        let nanos = u64::try_from(t.as_nanos()).unwrap_or(0);
        self.epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_saturates_before_the_epoch() {
        let epoch = Instant::now() + Duration::from_secs(5);
        let clock = Clock::new(epoch);
        let later = epoch + Duration::from_millis(1234);
        assert_eq!(clock.proto_of(later).as_nanos(), 1_234_000_000);
        assert_eq!(clock.std_of(clock.proto_of(later)), later);
        assert_eq!(clock.proto_of(epoch - Duration::from_secs(1)).as_nanos(), 0);
        assert_eq!(clock.std_of(ProtoInstant::from_nanos(-5)), epoch);
    }
}
