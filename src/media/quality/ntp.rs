//! RTCP's clock (RFC 3550 4): 64-bit NTP timestamps (seconds since 1900 in the high word,
//! binary fraction in the low) derived from `Instant`s through one wall-clock anchor the caller
//! captured, and the round-trip time a report block's LSR/DLSR give (6.4.1).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Maps `Instant`s onto NTP time. Anchored once, so the NTP times of one call advance with the
/// monotonic clock even when the wall clock is stepped.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// `wall` is the wall-clock time read at `anchor`. A wall clock before 1970 is taken as
    /// 1970 (RTCP only needs the peers' times to be consistent with themselves).
    pub fn new(anchor: Instant, wall: SystemTime) -> NtpClock {
        let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let anchor_ntp = to_ntp_units(since_unix).wrapping_add(NTP_UNIX_OFFSET << 32);
        NtpClock { anchor, anchor_ntp }
    }

    /// The 64-bit NTP timestamp of `at` (wrapping in 2036 as NTP era 0 does).
    pub fn ntp(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(d) => self.anchor_ntp.wrapping_add(to_ntp_units(d)),
            None => self
                .anchor_ntp
                .wrapping_sub(to_ntp_units(self.anchor.duration_since(at))),
        }
    }

    /// The middle 32 bits of `ntp(at)`: what LSR and the RTT computation use.
    pub fn middle32(&self, at: Instant) -> u32 {
        middle32(self.ntp(at))
    }
}

/// A duration in 1/2^32 s units, wrapping past 2^32 seconds.
fn to_ntp_units(d: Duration) -> u64 {
    let fraction = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(fraction)
}

/// The middle 32 bits of a 64-bit NTP timestamp (16 bits of seconds, 16 of fraction).
pub fn middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// The round-trip time to the receiver that sent a report block (RFC 3550 6.4.1): our NTP time
/// of its arrival minus the LSR it echoes minus the DLSR it held the SR for, all in 1/65536 s.
/// `None` when the block echoes no SR (LSR 0) or the arithmetic goes negative (a corrupted or
/// foreign block: the difference is then not a delay).
pub fn rtt(lsr: u32, dlsr: u32, ntp_now_middle32: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let since_sr = ntp_now_middle32.wrapping_sub(lsr);
    // More than half the 18-hour range back means our SR time is in the future: not ours.
    if since_sr > u32::MAX / 2 || dlsr > since_sr {
        return None;
    }
    let units = u64::from(since_sr - dlsr);
    Some(Duration::from_nanos(units * 1_000_000_000 / 65_536))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_3550_example_gives_6_125_seconds() {
        // RFC 3550 6.4.1, figure 2: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000
        assert_eq!(
            rtt(0xb705_2000, 0x0005_4000, 0xb710_8000),
            Some(Duration::from_millis(6125))
        );
    }

    #[test]
    fn rtt_refuses_what_is_not_a_delay() {
        // (what, lsr, dlsr, now, expected)
        let cases: &[(&str, u32, u32, u32, Option<Duration>)] = &[
            ("no SR echoed", 0, 0, 0x1234_0000, None),
            (
                "held longer than since",
                0x0001_0000,
                0x0002_0000,
                0x0002_0000,
                None,
            ),
            ("SR from the future", 0x0002_0000, 0, 0x0001_0000, None),
            (
                "across the 16-bit seconds wrap",
                0xffff_8000,
                0x0000_4000,
                0x0000_4000,
                Some(Duration::from_millis(500)),
            ),
            (
                "zero delay",
                0x0001_0000,
                0x0000_8000,
                0x0001_8000,
                Some(Duration::ZERO),
            ),
        ];
        for (what, lsr, dlsr, now, expected) in cases {
            assert_eq!(rtt(*lsr, *dlsr, *now), *expected, "{what}");
        }
    }

    #[test]
    fn instants_map_to_ntp_through_the_anchor() {
        let anchor = Instant::now() + Duration::from_secs(100);
        // 2024-01-01T00:00:00.5Z: 1_704_067_200.5 s after 1970
        let wall = UNIX_EPOCH + Duration::from_millis(1_704_067_200_500);
        let clock = NtpClock::new(anchor, wall);
        let secs = 1_704_067_200 + NTP_UNIX_OFFSET;
        assert_eq!(clock.ntp(anchor), (secs << 32) | 0x8000_0000);
        assert_eq!(
            clock.ntp(anchor + Duration::from_millis(250)),
            (secs << 32) | 0xc000_0000
        );
        assert_eq!(
            clock.ntp(anchor - Duration::from_secs(1)),
            ((secs - 1) << 32) | 0x8000_0000
        );
        assert_eq!(
            clock.middle32(anchor),
            ((secs as u32 & 0xffff) << 16) | 0x8000
        );
        // a wall clock before 1970 does not panic
        let early = NtpClock::new(anchor, UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(early.ntp(anchor), NTP_UNIX_OFFSET << 32);
    }

    #[test]
    fn a_round_trip_measured_through_the_clock() {
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        // our SR leaves at t0; the peer holds it 40 ms; its RR arrives 100 ms after t0
        let lsr = clock.middle32(t0);
        let dlsr = 40 * 65_536 / 1000;
        let rtt = rtt(lsr, dlsr, clock.middle32(t0 + Duration::from_millis(100))).unwrap();
        assert!(
            rtt.abs_diff(Duration::from_millis(60)) < Duration::from_micros(100),
            "{rtt:?}"
        );
    }
}
