//! A simulated far end living in a call (the carrier simulator's): it echoes what arrives or
//! plays a tone, and reports the digits (RFC 4733) it receives.

use std::time::{Duration, Instant};

use super::super::local::{tone_payload, DigitTracker, LocalMode};
use super::Call;
use crate::media::relay::RelayCounters;
use crate::media::Codec;

/// A simulated far end living in the engine.
pub struct LocalSide {
    pub mode: LocalMode,
    digits: DigitTracker,
    pub(super) next_tone: Option<Instant>,
    tone_seq: u16,
    tone_ts: u32,
}

impl LocalSide {
    pub fn new(mode: LocalMode) -> Self {
        LocalSide {
            mode,
            digits: DigitTracker::default(),
            next_tone: None,
            tone_seq: rand::random(),
            tone_ts: rand::random(),
        }
    }
}

/// A G.711 packet interval.
const PTIME: Duration = Duration::from_millis(20);

impl Call {
    /// A tone far end's next packet, when due.
    pub(super) fn tone_due(&mut self, now: Instant) {
        let Some(far) = self.far.as_mut() else {
            return;
        };
        if far.mode == LocalMode::Tone && self.connected {
            let due = *far.next_tone.get_or_insert(now);
            if due <= now {
                let codec = self.peer.format().map_or(Codec::Pcmu, |f| f.codec);
                let payload = tone_payload(codec);
                if self.peer.write_rtp(
                    codec.payload_type(),
                    far.tone_seq,
                    far.tone_ts,
                    false,
                    &payload,
                    now,
                ) {
                    RelayCounters::add(&self.shared.local.rtp_out, 1);
                }
                far.tone_seq = far.tone_seq.wrapping_add(1);
                far.tone_ts = far.tone_ts.wrapping_add(160);
                far.next_tone = Some(due + PTIME);
            }
        }
    }

    /// A packet from the other side for the local far end: counted, its digits reported, and
    /// echoed by an echo far end (true: written, drive again).
    pub(super) fn rtp_to_far(&mut self, p: &str0m::rtp::RtpPacket, now: Instant) -> bool {
        let pt = *p.header.payload_type;
        let (seq, ts, marker) = (
            p.header.sequence_number,
            p.header.timestamp,
            p.header.marker,
        );
        let format = self.peer.format();
        let Some(far) = self.far.as_mut() else {
            return false;
        };
        let st = &self.shared.local;
        RelayCounters::add(&st.rtp_in, 1);
        RelayCounters::add(&st.bytes_in, p.payload.len() as u64);
        if format.and_then(|f| f.telephone_event_pt) == Some(pt) {
            if let (Some(d), Some(tx)) = (far.digits.on_event(ts, &p.payload), &self.digits) {
                let _ = tx.send(d);
            }
        }
        if far.mode == LocalMode::Echo && self.peer.write_rtp(pt, seq, ts, marker, &p.payload, now)
        {
            RelayCounters::add(&st.rtp_out, 1);
            return true;
        }
        false
    }
}
