//! RTP packets as the relay sees them (RFC 3550 5.1): reading the fixed header of a received
//! datagram in place, writing a header into a send buffer, and keeping sequence numbers and
//! timestamps continuous toward one receiver when the stream behind them changes (a new SSRC
//! after hold, re-INVITE or a carrier re-offer). No I/O, no allocation.

/// The fields of a received RTP packet the relay needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Where the payload starts (after CSRCs and any header extension).
    pub payload_start: usize,
    /// Where it ends (before padding).
    pub payload_end: usize,
}

impl RtpHeader {
    /// Parses version-2 RTP; `None` for anything else (RTCP on the RTP port included: its
    /// packet types 200-204 read as payload types 72-76 with the marker set, which no G.711 or
    /// telephone-event mapping holds, so they fall out at the payload type check).
    pub fn parse(buf: &[u8]) -> Option<RtpHeader> {
        if buf.len() < 12 || buf[0] >> 6 != 2 {
            return None;
        }
        let csrc = (buf[0] & 0x0f) as usize;
        let mut start = 12 + 4 * csrc;
        if buf[0] & 0x10 != 0 {
            let ext = buf.get(start + 2..start + 4)?;
            let words = u16::from_be_bytes([ext[0], ext[1]]) as usize;
            start += 4 + 4 * words;
        }
        let mut end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = *buf.last()? as usize;
            end = end.checked_sub(pad)?;
        }
        if start > end {
            return None;
        }
        Some(RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload_start: start,
            payload_end: end,
        })
    }
}

/// Writes a 12-byte RTP header (no CSRC, no extension) into `out[..12]`.
pub fn write_header(
    out: &mut [u8],
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out[0] = 0x80;
    out[1] = (payload_type & 0x7f) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// How far behind the newest packet a packet may arrive and still count as reordered, not as a
/// restarted stream.
const REORDER_WINDOW: i16 = 100;

/// One G.711 packet of 20 ms at 8 kHz: what a source change advances the timestamp by.
const FRAME_SAMPLES: u32 = 160;

/// Maps the (SSRC, sequence, timestamp) of whatever stream arrives onto one continuous
/// outgoing stream: a receiver behind a jitter buffer keeps playing across a source change
/// instead of resetting or discarding packets as late.
#[derive(Debug, Clone, Default)]
pub struct Continuity {
    source: Option<u32>,
    /// The newest incoming sequence number of the current source.
    last_in: Option<u16>,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest sequence / latest timestamp sent, when anything was sent.
    last: Option<(u16, u32)>,
}

impl Continuity {
    /// The outgoing sequence number and timestamp for a packet of `ssrc`, and whether it starts
    /// a new source (the caller then sets the marker bit, RFC 3551 4.1).
    pub fn map(&mut self, ssrc: u32, sequence: u16, timestamp: u32) -> (u16, u32, bool) {
        // A sender that restarts its numbering under the same SSRC (a PBX re-opening its stream)
        // is a new stream too: passed through, its numbers would go backwards and the SRTP
        // receiver would drop them as replays.
        let restarted = self.source == Some(ssrc)
            && self
                .last_in
                .is_some_and(|l| (sequence.wrapping_sub(l) as i16) < -REORDER_WINDOW);
        let new_source = self.source != Some(ssrc) || restarted;
        match self.last_in {
            Some(l) if !new_source && (sequence.wrapping_sub(l) as i16) <= 0 => {}
            _ => self.last_in = Some(sequence),
        }
        let switched = new_source && self.last.is_some();
        if new_source {
            self.source = Some(ssrc);
            if let Some((seq, ts)) = self.last {
                self.seq_offset = seq.wrapping_add(1).wrapping_sub(sequence);
                self.ts_offset = ts.wrapping_add(FRAME_SAMPLES).wrapping_sub(timestamp);
            }
        }
        let out_seq = sequence.wrapping_add(self.seq_offset);
        let out_ts = timestamp.wrapping_add(self.ts_offset);
        match self.last {
            // Only a newer packet moves the reference (reordering must not rewind it).
            Some((seq, _)) if (out_seq.wrapping_sub(seq) as i16) <= 0 && !new_source => {}
            _ => self.last = Some((out_seq, out_ts)),
        }
        (out_seq, out_ts, switched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        write_header(&mut v, false, pt, seq, ts, ssrc);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_round_trip() {
        let p = packet(8, 65535, 0xdead_beef, 0x1234_5678, &[1, 2, 3]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(
            (h.payload_type, h.sequence, h.timestamp, h.ssrc, h.marker),
            (8, 65535, 0xdead_beef, 0x1234_5678, false)
        );
        assert_eq!(&p[h.payload_start..h.payload_end], &[1, 2, 3]);
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        let mut p = vec![0xb1, 0x80 | 101, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        p.extend_from_slice(&[0, 0, 0, 7]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
        p.extend_from_slice(&[5, 6, 7, 8]); // payload
        p.extend_from_slice(&[0, 0, 3]); // padding 3
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 101);
        assert_eq!(&p[h.payload_start..h.payload_end], &[5, 6, 7, 8]);
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert!(RtpHeader::parse(&[]).is_none());
        assert!(RtpHeader::parse(&[0x80; 11]).is_none());
        assert!(RtpHeader::parse(&[0x40; 20]).is_none()); // version 1
        assert!(RtpHeader::parse(&[0x9f; 20]).is_none()); // 15 CSRCs in 20 bytes
        assert!(RtpHeader::parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        let mut padded = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200];
        assert!(RtpHeader::parse(&padded).is_none());
        padded.clear();
        for n in 0..64usize {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = RtpHeader::parse(&v);
        }
    }

    #[test]
    fn one_source_passes_unchanged() {
        let mut c = Continuity::default();
        assert_eq!(c.map(7, 100, 8000), (100, 8000, false));
        assert_eq!(c.map(7, 101, 8160), (101, 8160, false));
        assert_eq!(c.map(7, 103, 8480), (103, 8480, false));
        // a late packet keeps its own numbers and does not rewind the reference
        assert_eq!(c.map(7, 102, 8320), (102, 8320, false));
    }

    #[test]
    fn a_restart_under_the_same_ssrc_continues_the_numbers() {
        let mut c = Continuity::default();
        for i in 0..300u16 {
            c.map(7, 1000 + i, 160 * u32::from(i));
        }
        // the same stream played again from its start
        let (seq, _, marker) = c.map(7, 1000, 0);
        assert_eq!((seq, marker), (1300, true));
        assert_eq!(c.map(7, 1001, 160).0, 1301);
        // reordering inside the window is not a restart
        c.map(7, 1010, 1600);
        let (seq, _, marker) = c.map(7, 1005, 800);
        assert_eq!((seq, marker), (1305, false));
    }

    #[test]
    fn a_new_source_continues_the_numbers() {
        let mut c = Continuity::default();
        c.map(7, 65534, 1000);
        c.map(7, 65535, 1160);
        // after hold the far end restarts with another SSRC and random numbers
        let (seq, ts, marker) = c.map(9, 4000, 777_777);
        assert_eq!((seq, ts, marker), (0, 1320, true));
        assert_eq!(c.map(9, 4001, 777_937), (1, 1480, false));
        // and back to the first source: still continuous
        assert_eq!(c.map(7, 10, 50), (2, 1640, true));
    }
}
