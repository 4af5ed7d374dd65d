//! A call's quality bookkeeping inside its media thread: receive statistics of what the PBX
//! and the carrier send (the one owner of both streams' sequence and loss facts; the call's
//! loss counters for metrics and the record are published from them), what we send the PBX, the PBX's RTCP reports and our reports to it (RFC 3550 SR/RR with
//! SDES, on the RTCP port, at RFC 3550's randomised interval), str0m's statistics of the WebRTC
//! leg, and the per-direction figures (packets, loss, jitter, round trip, MOS) published once a
//! second for status, metrics and the call record.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use str0m::stats::{MediaEgressStats, MediaIngressStats};

pub use crate::media::quality::DirectionQuality;
use crate::media::quality::{
    read_report, rtcp_interval, rtt, write_report, NtpClock, ReceiveStats, ReportBlock, SendStats,
    G711_SESSION_BANDWIDTH,
};
use crate::media::relay::RelayCounters;

/// How often the published figures are refreshed.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// Average RTCP compound size for the interval computation: SR + one block + SDES, with UDP/IP.
const AVG_RTCP_SIZE: f64 = 100.0;
/// RTP clock of G.711 and telephone-event.
const CLOCK_KHZ: f64 = 8.0;

/// Both directions of a call.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CallQuality {
    pub pbx_to_carrier: DirectionQuality,
    pub carrier_to_pbx: DirectionQuality,
}

/// What the PBX's latest report says about our stream.
#[derive(Debug, Clone, Copy)]
struct PbxReport {
    block: ReportBlock,
    rtt: Option<Duration>,
}

pub struct QualityTracker {
    clock: NtpClock,
    cname: String,
    from_pbx: ReceiveStats,
    /// What the carrier sends, for its loss only: str0m's statistics carry the rest of it.
    from_carrier: ReceiveStats,
    to_pbx: SendStats,
    pbx_report: Option<PbxReport>,
    ingress: Option<MediaIngressStats>,
    egress: Option<MediaEgressStats>,
    next_snapshot: Instant,
    next_rtcp: Instant,
    snapshot: CallQuality,
}

fn rtp_units_to_duration(units: u32) -> Duration {
    Duration::from_secs_f64(f64::from(units) / CLOCK_KHZ / 1000.0)
}

fn add_rtt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

impl QualityTracker {
    pub fn new(now: Instant) -> Self {
        QualityTracker {
            // One wall-clock read per call, for the NTP timestamps of our sender reports.
            clock: NtpClock::new(now, SystemTime::now()),
            cname: format!("trunkgate-{:08x}", rand::random::<u32>()),
            from_pbx: ReceiveStats::new(),
            from_carrier: ReceiveStats::new(),
            to_pbx: SendStats::new(),
            pbx_report: None,
            ingress: None,
            egress: None,
            next_snapshot: now + SNAPSHOT_EVERY,
            next_rtcp: now
                + rtcp_interval(
                    G711_SESSION_BANDWIDTH,
                    AVG_RTCP_SIZE,
                    true,
                    0.5 + rand::random::<f64>(),
                ),
            snapshot: CallQuality::default(),
        }
    }

    pub fn next_report(&self) -> Instant {
        self.next_snapshot.min(self.next_rtcp)
    }

    /// An RTP packet of the PBX's stream arrived (relayed or not).
    pub fn on_pbx_packet(&mut self, ssrc: u32, seq: u16, ts: u32, c: &RelayCounters, now: Instant) {
        self.from_pbx.on_packet(ssrc, seq, ts, now);
        RelayCounters::raise(&c.lost_from_pbx, self.from_pbx.lost());
    }

    /// An RTP packet of the carrier's stream arrived on a PBX call (relayed or not).
    pub fn on_carrier_packet(
        &mut self,
        ssrc: u32,
        seq: u16,
        ts: u32,
        c: &RelayCounters,
        now: Instant,
    ) {
        self.from_carrier.on_packet(ssrc, seq, ts, now);
        RelayCounters::raise(&c.lost_from_carrier, self.from_carrier.lost());
    }

    /// A packet went to the PBX with RTP timestamp `ts` (as written toward it).
    pub fn on_sent_to_pbx(&mut self, ts: u32, len: usize, now: Instant) {
        self.to_pbx.on_sent(ts, len, now);
    }

    /// An RTCP datagram from the PBX: its report about our stream (loss, jitter, round trip)
    /// and its sender report's timestamp for our next receiver report.
    pub fn on_pbx_rtcp(&mut self, buf: &[u8], our_ssrc: u32, c: &RelayCounters, now: Instant) {
        let Some(r) = read_report(buf, our_ssrc) else {
            return;
        };
        if let Some(lsr) = r.lsr() {
            self.from_pbx.on_sender_report(r.ssrc, lsr, now);
        }
        if let Some(block) = r.block {
            c.lost_reported_by_pbx.store(
                u64::from(block.cumulative_lost),
                std::sync::atomic::Ordering::Relaxed,
            );
            let rtt = rtt(block.lsr, block.dlsr, self.clock.middle32(now));
            self.pbx_report = Some(PbxReport { block, rtt });
        }
    }

    pub fn on_ingress(&mut self, s: &MediaIngressStats) {
        self.ingress = Some(s.clone());
    }

    pub fn on_egress(&mut self, s: &MediaEgressStats) {
        self.egress = Some(s.clone());
    }

    /// Due work of a PBX call: the figures refreshed, and our RTCP report written into `out`
    /// when one is due (its length returned).
    pub fn pbx_report(
        &mut self,
        out: &mut [u8],
        ssrc: u32,
        c: &RelayCounters,
        now: Instant,
    ) -> Option<usize> {
        if now >= self.next_snapshot {
            self.refresh(c, now);
        }
        if now < self.next_rtcp {
            return None;
        }
        self.next_rtcp = now
            + rtcp_interval(
                G711_SESSION_BANDWIDTH,
                AVG_RTCP_SIZE,
                false,
                0.5 + rand::random::<f64>(),
            );
        let block = self.from_pbx.report_block(now);
        let ntp_now = self.clock.ntp(now);
        let rtp_now = self.to_pbx.rtp_at(now).unwrap_or(0);
        let send = self.to_pbx.take_for_report();
        match write_report(
            out,
            ssrc,
            &self.cname,
            send,
            block.as_ref(),
            ntp_now,
            rtp_now,
        ) {
            0 => None,
            n => Some(n),
        }
    }

    /// Due work of a call without a PBX (a local far end): the figures only.
    pub fn skip_report(&mut self, c: &RelayCounters, now: Instant) {
        if now >= self.next_snapshot {
            self.refresh(c, now);
        }
        self.next_rtcp = now + Duration::from_secs(3600);
    }

    fn refresh(&mut self, c: &RelayCounters, now: Instant) {
        self.next_snapshot = now + SNAPSHOT_EVERY;
        let egress = self.egress.as_ref();
        let ingress = self.ingress.as_ref();
        let carrier_rtt = egress.and_then(|e| e.rtt).or(ingress.and_then(|i| i.rtt));
        let pbx_rtt = self.pbx_report.and_then(|r| r.rtt);
        let rtt = add_rtt(carrier_rtt, pbx_rtt);

        // PBX → carrier: what we received from the PBX, less what the carrier says it lost of it.
        let up = DirectionQuality::received(&self.from_pbx, rtt);
        let remote = egress.and_then(|e| e.remote.as_ref());
        let carrier_lost = remote.map_or(0, |r| r.packets_lost);
        let carrier_jitter = remote.map_or(Duration::ZERO, |r| rtp_units_to_duration(r.jitter));
        let up_jitter = Duration::from_secs_f64(up.jitter_ms / 1000.0).max(carrier_jitter);
        self.snapshot.pbx_to_carrier = DirectionQuality::new(
            up.packets.saturating_sub(carrier_lost),
            up.lost + carrier_lost,
            up_jitter,
            rtt,
        );

        // Carrier → PBX: what the carrier's stream lost on its way to us, plus what the PBX says
        // it lost of what we sent it.
        let from_carrier = ingress.map_or(RelayCounters::get(&c.to_pbx_packets), |i| i.packets);
        let gaps = self.from_carrier.lost();
        let pbx_lost = self
            .pbx_report
            .map_or(0, |r| u64::from(r.block.cumulative_lost));
        let down_jitter = ingress
            .map_or(Duration::ZERO, |i| rtp_units_to_duration(i.jitter))
            .max(self.pbx_report.map_or(Duration::ZERO, |r| {
                Duration::from_secs_f64(r.block.jitter_ms() / 1000.0)
            }));
        self.snapshot.carrier_to_pbx = DirectionQuality::new(
            from_carrier.saturating_sub(pbx_lost),
            gaps + pbx_lost,
            down_jitter,
            rtt,
        );
    }

    pub fn snapshot(&self) -> CallQuality {
        self.snapshot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counters_follow_the_receive_statistics_and_never_go_back() {
        // (ssrc, sequence, the published count after it)
        let steps: [(u32, u16, u64); 9] = [
            (1, 65534, 0),
            (1, 65535, 0),
            (1, 2, 2), // 0 and 1 missing, across the wrap
            (1, 1, 2), // late: RFC 3550 counts one lost now, the counter keeps its 2
            (1, 3, 2),
            (2, 900, 2),    // new source
            (2, 40_000, 2), // a jump: a restart, not loss...
            (2, 40_001, 2), // ...once the next packet confirms it
            (2, 40_005, 4), // three missing in the restarted stream: 0 and these over the call
        ];
        type Feed = fn(&mut QualityTracker, u32, u16, u32, &RelayCounters, Instant);
        type Published = fn(&RelayCounters) -> u64;
        let streams: [(&str, Feed, Published); 2] = [
            ("from the PBX", QualityTracker::on_pbx_packet, |c| {
                RelayCounters::get(&c.lost_from_pbx)
            }),
            ("from the carrier", QualityTracker::on_carrier_packet, |c| {
                RelayCounters::get(&c.lost_from_carrier)
            }),
        ];
        for (stream, feed, published) in streams {
            let t0 = Instant::now();
            let mut q = QualityTracker::new(t0);
            let c = RelayCounters::default();
            let mut now = t0;
            for (ssrc, seq, lost) in steps {
                now += Duration::from_millis(20);
                feed(&mut q, ssrc, seq, u32::from(seq) * 160, &c, now);
                assert_eq!(published(&c), lost, "{stream}: after {ssrc}/{seq}");
            }
            // The figures read the statistics themselves: the same 4 once nothing is late.
            let mut out = [0u8; 1500];
            q.pbx_report(&mut out, 7, &c, now + SNAPSHOT_EVERY);
            let figures = q.snapshot();
            let lost = match stream {
                "from the PBX" => figures.pbx_to_carrier.lost,
                _ => figures.carrier_to_pbx.lost,
            };
            assert_eq!(lost, 4, "{stream}: {figures:?}");
        }
    }
}
