//! A call's quality bookkeeping inside the media thread: what the PBX sends (receive
//! statistics), what we send it, its RTCP reports, str0m's statistics of the WebRTC leg, our
//! RTCP reports toward the PBX, and the per-direction figures (packets, loss, jitter, RTT,
//! MOS) the async side reads once per interval.

use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use crate::media::quality::read_report;
use crate::media::relay::RelayCounters;

/// How often the snapshot is refreshed (and RTCP may go to the PBX).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// One direction's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DirectionQuality {
    pub packets: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub mos: f64,
}

/// Both directions of a call.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CallQuality {
    pub pbx_to_carrier: DirectionQuality,
    pub carrier_to_pbx: DirectionQuality,
}

pub struct QualityTracker {
    next: Instant,
    ingress: Option<MediaIngressStats>,
    egress: Option<MediaEgressStats>,
    snapshot: CallQuality,
}

impl QualityTracker {
    pub fn new(now: Instant) -> Self {
        QualityTracker {
            next: now + REPORT_EVERY,
            ingress: None,
            egress: None,
            snapshot: CallQuality::default(),
        }
    }

    pub fn next_report(&self) -> Instant {
        self.next
    }

    pub fn on_pbx_packet(&mut self, _ssrc: u32, _seq: u16, _ts: u32, _now: Instant) {}

    pub fn on_sent_to_pbx(&mut self, _ts: u32, _len: usize, _now: Instant) {}

    pub fn on_pbx_rtcp(&mut self, buf: &[u8], our_ssrc: u32, c: &RelayCounters, _now: Instant) {
        if let Some(block) = read_report(buf, our_ssrc).and_then(|r| r.block) {
            c.lost_reported_by_pbx.store(
                u64::from(block.cumulative_lost),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    pub fn on_ingress(&mut self, s: &MediaIngressStats) {
        self.ingress = Some(s.clone());
    }

    pub fn on_egress(&mut self, s: &MediaEgressStats) {
        self.egress = Some(s.clone());
    }

    pub fn pbx_report(
        &mut self,
        _out: &mut [u8],
        _ssrc: u32,
        c: &RelayCounters,
        now: Instant,
    ) -> Option<usize> {
        self.refresh(c, now);
        None
    }

    pub fn skip_report(&mut self, now: Instant) {
        self.next = now + REPORT_EVERY;
    }

    fn refresh(&mut self, c: &RelayCounters, now: Instant) {
        self.next = now + REPORT_EVERY;
        let up = RelayCounters::get(&c.from_pbx_packets);
        let up_lost = RelayCounters::get(&c.lost_from_pbx);
        self.snapshot.pbx_to_carrier.packets = up;
        self.snapshot.pbx_to_carrier.lost = up_lost;
        self.snapshot.carrier_to_pbx.packets = RelayCounters::get(&c.to_pbx_packets);
        self.snapshot.carrier_to_pbx.lost = RelayCounters::get(&c.lost_from_carrier);
    }

    pub fn snapshot(&self) -> CallQuality {
        self.snapshot.clone()
    }
}
