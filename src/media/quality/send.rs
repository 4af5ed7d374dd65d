//! What we send the PBX, as a sender report needs it (RFC 3550 6.4.1): packet and payload
//! octet counts, and the RTP timestamp that corresponds to "now" (extrapolated from the last
//! packet sent), plus whether anything was sent since the last report (SR or RR).

use std::time::Instant;

use super::receive::CLOCK_RATE;

#[derive(Debug, Clone, Default)]
pub struct SendStats {
    packets: u64,
    octets: u64,
    /// RTP timestamp of the last packet sent and when it left.
    last: Option<(u32, Instant)>,
    sent_since_report: bool,
}

impl SendStats {
    pub fn new() -> SendStats {
        SendStats::default()
    }

    /// One RTP packet went to the PBX; `rtp_ts` as written in it (after any renumbering),
    /// `payload_len` without header or padding (what the SR's octet count counts).
    pub fn on_sent(&mut self, rtp_ts: u32, payload_len: usize, now: Instant) {
        self.packets += 1;
        self.octets += payload_len as u64;
        self.last = Some((rtp_ts, now));
        self.sent_since_report = true;
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// The RTP timestamp of `now` on our stream's clock: the SR pairs it with the NTP time so
    /// the receiver can map the two (RFC 3550 6.4.1 asks for the extrapolated value, not the
    /// last packet's). `None` before anything was sent.
    pub fn rtp_at(&self, now: Instant) -> Option<u32> {
        let (ts, at) = self.last?;
        let (ahead, elapsed) = match now.checked_duration_since(at) {
            Some(d) => (true, d),
            None => (false, at.duration_since(now)),
        };
        // Truncating to 32 bits is the timestamp's own wrap.
        let units = (elapsed.as_nanos() * u128::from(CLOCK_RATE) / 1_000_000_000) as u32;
        Some(if ahead {
            ts.wrapping_add(units)
        } else {
            ts.wrapping_sub(units)
        })
    }

    /// For the next report: `Some(self)` when RTP went out since the previous call (send an
    /// SR), `None` otherwise (send an RR). Starts a new reporting interval.
    pub fn take_for_report(&mut self) -> Option<&SendStats> {
        if std::mem::take(&mut self.sent_since_report) {
            Some(self)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_and_the_sr_choice() {
        let t0 = Instant::now();
        let mut send = SendStats::new();
        assert!(send.take_for_report().is_none());
        assert_eq!(send.rtp_at(t0), None);
        for i in 0..3u32 {
            send.on_sent(
                1000 + 160 * i,
                160,
                t0 + Duration::from_millis(20 * u64::from(i)),
            );
        }
        assert_eq!((send.packets(), send.octets()), (3, 480));
        assert!(send.take_for_report().is_some());
        assert!(send.take_for_report().is_none(), "nothing sent since");
        send.on_sent(1480, 80, t0 + Duration::from_millis(60));
        assert_eq!(send.take_for_report().map(|s| s.octets()), Some(560));
    }

    #[test]
    fn the_timestamp_of_now_is_extrapolated() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut send = SendStats::new();
        send.on_sent(u32::MAX - 79, 160, t0);
        // 12.5 ms later: 100 units on, across the wrap
        assert_eq!(send.rtp_at(t0 + Duration::from_micros(12_500)), Some(20));
        assert_eq!(send.rtp_at(t0), Some(u32::MAX - 79));
        assert_eq!(
            send.rtp_at(t0 - Duration::from_millis(1)),
            Some(u32::MAX - 87)
        );
    }
}
