//! The simulated far end's media, generated inside the media engine so a benchmark's far end
//! costs little: counters of what it receives, RFC 4733 digits decoded from it, and the
//! known tone it plays (1 kHz in the call's G.711 law, the same 160 bytes in every packet).

use std::sync::atomic::AtomicU64;

use crate::media::Codec;

/// What the far end does with the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalMode {
    /// Send back every RTP packet and RFC 4733 event received.
    Echo,
    /// Send a known tone so a test can check what it receives.
    Tone,
}

/// Counters of a local far end.
#[derive(Debug, Default)]
pub struct LocalStats {
    pub rtp_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub rtp_out: AtomicU64,
}

/// One digit per RFC 4733 event: reported on its first end packet (the end packet is sent
/// three times, all with the event's timestamp).
#[derive(Debug, Default)]
pub struct DigitTracker {
    last_ended: Option<u32>,
}

impl DigitTracker {
    pub fn on_event(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let (&event, &flags) = (payload.first()?, payload.get(1)?);
        if flags & 0x80 == 0 || self.last_ended == Some(timestamp) {
            return None;
        }
        self.last_ended = Some(timestamp);
        digit_of(event)
    }
}

fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The tone the simulator plays: 1 kHz (8 samples per cycle at 8 kHz), encoded in the call's
/// G.711 law. Every packet carries the same 160 bytes, so a test can compare exactly.
pub fn tone_payload(codec: Codec) -> [u8; 160] {
    const CYCLE: [i16; 8] = [0, 5792, 8191, 5792, 0, -5792, -8191, -5792];
    let mut out = [0u8; 160];
    for (i, b) in out.iter_mut().enumerate() {
        let s = CYCLE[i % 8];
        *b = match codec {
            Codec::Pcmu => linear_to_ulaw(s),
            Codec::Pcma => linear_to_alaw(s),
        };
    }
    out
}

/// G.711 mu-law of a 16-bit linear sample (ITU-T G.711 segment encoding).
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - ((s as u32) << 17).leading_zeros().min(7)) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

/// G.711 A-law of a 16-bit linear sample.
fn linear_to_alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3;
    let (sign, mag) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let mag = mag.min(0x0fff);
    let code = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let exponent = 31 - (mag as u32).leading_zeros() - 4;
        ((exponent as u8) << 4) | ((mag >> exponent) & 0x0f) as u8
    };
    (code | sign) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_encoders_match_reference_points() {
        // Silence and full scale, from the G.711 tables.
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-8), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xaa);
        assert_eq!(linear_to_alaw(-32768), 0x2a);
    }

    #[test]
    fn the_tone_is_periodic_and_not_silence() {
        let t = tone_payload(Codec::Pcmu);
        assert_eq!(t[0], t[8]);
        assert_ne!(t[0], t[2]);
        assert!(t.iter().any(|&b| b != 0xff));
    }

    fn event(ev: u8, end: bool, ts: u32) -> (u32, [u8; 4]) {
        (ts, [ev, if end { 0x8a } else { 0x0a }, 0, 160])
    }

    #[test]
    fn one_digit_per_event_despite_repeated_end_packets() {
        let mut t = DigitTracker::default();
        let got: String = [
            event(1, false, 100),
            event(1, true, 100),
            event(1, true, 100),
            event(1, true, 100),
            event(11, false, 900),
            event(11, true, 900),
            event(10, true, 1700),
        ]
        .iter()
        .filter_map(|(ts, p)| t.on_event(*ts, p))
        .collect();
        assert_eq!(got, "1#*");
    }
}
