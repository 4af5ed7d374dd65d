//! One direction of a call's media as the operator sees it (status, call records): packets,
//! loss, jitter, round trip and the MOS estimate, from whichever side measured them.

use std::time::Duration;

use serde::Serialize;

use super::emodel::{mos_g711, one_way_delay};
use super::receive::ReceiveStats;
#[cfg(test)]
use super::report_block::ReportBlock;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DirectionQuality {
    /// Packets that arrived.
    pub packets: u64,
    /// Packets that did not (expected minus arrived, not negative).
    pub lost: u64,
    /// `lost` as a share of the packets expected.
    pub loss_percent: f64,
    /// Interarrival jitter (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time of the leg, once measured.
    pub rtt_ms: Option<f64>,
    /// E-model estimate (G.711), 1.0 to 4.5; 0.0 while nothing was expected, as there is
    /// nothing to judge.
    pub mos: f64,
}

impl DirectionQuality {
    /// From counts measured anywhere (str0m's statistics of the WebRTC leg, for one).
    pub fn new(packets: u64, lost: u64, jitter: Duration, rtt: Option<Duration>) -> Self {
        let expected = packets.saturating_add(lost);
        Self::with_loss(packets, lost, expected, jitter, rtt)
    }

    /// What we received ourselves; `rtt` is the leg's, from the sender's reports.
    pub fn received(stats: &ReceiveStats, rtt: Option<Duration>) -> Self {
        let jitter = ms_duration(stats.jitter_ms());
        Self::with_loss(stats.packets(), stats.lost(), stats.expected(), jitter, rtt)
    }

    #[cfg(test)]
    /// What the receiver of our stream reports (its RTCP block about us), given how many
    /// packets we sent it. Packets sent since its report count as arrived: at most one
    /// report interval's worth, and the next report settles them.
    pub fn reported(block: &ReportBlock, sent: u64, rtt: Option<Duration>) -> Self {
        let lost = u64::from(block.cumulative_lost).min(sent);
        let jitter = ms_duration(block.jitter_ms());
        Self::with_loss(sent - lost, lost, sent, jitter, rtt)
    }

    fn with_loss(
        packets: u64,
        lost: u64,
        expected: u64,
        jitter: Duration,
        rtt: Option<Duration>,
    ) -> Self {
        let loss_percent = match expected {
            0 => 0.0,
            e => lost as f64 * 100.0 / e as f64,
        };
        let mos = if expected == 0 {
            0.0
        } else {
            mos_g711(loss_percent, one_way_delay(rtt, jitter))
        };
        DirectionQuality {
            packets,
            lost,
            loss_percent,
            jitter_ms: jitter.as_secs_f64() * 1000.0,
            rtt_ms: rtt.map(|r| r.as_secs_f64() * 1000.0),
            mos,
        }
    }
}

/// Milliseconds as a `Duration`; what cannot be one (not a number, negative, past
/// `Duration::MAX`) counts as none.
fn ms_duration(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn figures_from_counts_reception_and_reports() {
        let q = DirectionQuality::new(900, 100, Duration::from_millis(4), None);
        assert_eq!(
            (q.packets, q.lost, q.loss_percent, q.rtt_ms),
            (900, 100, 10.0, None)
        );
        assert!((q.jitter_ms - 4.0).abs() < 1e-9);
        assert!((3.3..3.6).contains(&q.mos), "{}", q.mos);

        let mut stats = ReceiveStats::new();
        let t0 = Instant::now();
        for seq in (0..100u16).filter(|s| s % 50 != 7) {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            stats.on_packet(1, seq, u32::from(seq) * 160, at);
        }
        let q = DirectionQuality::received(&stats, Some(Duration::from_millis(30)));
        assert_eq!((q.packets, q.lost, q.loss_percent), (98, 2, 2.0));
        assert_eq!(q.rtt_ms, Some(30.0));
        assert!(q.jitter_ms < 0.01 && q.mos > 4.0 && q.mos < 4.4, "{q:?}");

        let block = ReportBlock {
            cumulative_lost: 50,
            jitter: 80,
            ..ReportBlock::default()
        };
        let q = DirectionQuality::reported(&block, 1000, None);
        assert_eq!(
            (q.packets, q.lost, q.loss_percent, q.jitter_ms),
            (950, 50, 5.0, 10.0)
        );
        // a report claiming more lost than we sent is held to what we sent
        let q = DirectionQuality::reported(&block, 20, None);
        assert_eq!((q.packets, q.lost, q.loss_percent), (0, 20, 100.0));
    }

    #[test]
    fn nothing_expected_is_not_judged() {
        assert_eq!(
            DirectionQuality::new(0, 0, Duration::ZERO, None),
            DirectionQuality::default()
        );
        assert_eq!(
            DirectionQuality::received(&ReceiveStats::new(), None).mos,
            0.0
        );
        assert!(DirectionQuality::new(1, 0, Duration::ZERO, None).mos > 4.2);
    }
}
