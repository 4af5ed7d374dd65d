//! The RTCP report block (RFC 3550 6.4.1): one receiver's view of one sender's stream, as
//! both our reports and the PBX's carry it, and its 24-byte wire form.

use std::time::Duration;

use super::receive::CLOCK_RATE;

/// Bytes of one report block on the wire.
pub(super) const BLOCK_LEN: usize = 24;

/// The cumulative-lost field is 24 bits, signed; we never write or read a negative count.
const MAX_CUMULATIVE_LOST: u32 = 0x7f_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The stream reported on.
    pub ssrc: u32,
    /// Lost share of what was expected since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Expected minus received since reception began, 0 when duplicates outnumber losses.
    pub cumulative_lost: u32,
    /// Highest sequence number received, extended with the count of wraps in the high 16 bits.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the sender's last SR (0: none yet).
    pub lsr: u32,
    /// Time from receiving that SR to sending this block, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// Jitter in milliseconds (the timestamp clock is G.711's 8 kHz).
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter) * 1000.0 / f64::from(CLOCK_RATE)
    }

    #[cfg(test)]
    /// Lost share since the previous report, in percent.
    pub fn fraction_lost_percent(&self) -> f64 {
        f64::from(self.fraction_lost) * 100.0 / 256.0
    }

    #[cfg(test)]
    pub fn dlsr_duration(&self) -> Duration {
        Duration::from_nanos(u64::from(self.dlsr) * 1_000_000_000 / 65_536)
    }

    pub(super) fn write(&self, out: &mut [u8; BLOCK_LEN]) {
        let lost = self.cumulative_lost.min(MAX_CUMULATIVE_LOST).to_be_bytes();
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4] = self.fraction_lost;
        out[5..8].copy_from_slice(&lost[1..]);
        out[8..12].copy_from_slice(&self.highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        out[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
    }

    pub(super) fn read(b: &[u8; BLOCK_LEN]) -> ReportBlock {
        let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let raw_lost = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            // Negative (more duplicates than losses) reads as none lost.
            cumulative_lost: if raw_lost > MAX_CUMULATIVE_LOST {
                0
            } else {
                raw_lost
            },
            highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        }
    }
}

/// Converts a duration to RTCP's 1/65536 s units, saturating (a DLSR of over 18 hours is
/// nonsense either way).
pub(super) fn to_units_65536(d: Duration) -> u32 {
    let units = d.as_nanos() * 65_536 / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_rfc_3550_6_4_1() {
        let block = ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 0x40,
            cumulative_lost: 0x00_0a0b,
            highest_seq: 0x0001_0005,
            jitter: 0x11,
            lsr: 0xb705_2000,
            dlsr: 0x0005_4000,
        };
        let mut out = [0u8; BLOCK_LEN];
        block.write(&mut out);
        assert_eq!(
            out,
            [
                1, 2, 3, 4, 0x40, 0, 0x0a, 0x0b, 0, 1, 0, 5, 0, 0, 0, 0x11, 0xb7, 5, 0x20, 0, 0, 5,
                0x40, 0
            ]
        );
        assert_eq!(ReportBlock::read(&out), block);
        assert_eq!(block.dlsr_duration(), Duration::from_millis(5250));
        assert_eq!(block.fraction_lost_percent(), 25.0);
    }

    #[test]
    fn cumulative_loss_never_reads_or_writes_negative() {
        let mut raw = [0u8; BLOCK_LEN];
        raw[5..8].copy_from_slice(&[0xff, 0xff, 0xfe]); // -2: duplicates
        assert_eq!(ReportBlock::read(&raw).cumulative_lost, 0);
        let huge = ReportBlock {
            cumulative_lost: u32::MAX,
            ..ReportBlock::default()
        };
        huge.write(&mut raw);
        assert_eq!(&raw[5..8], &[0x7f, 0xff, 0xff]);
        assert_eq!(ReportBlock::read(&raw).cumulative_lost, MAX_CUMULATIVE_LOST);
    }

    #[test]
    fn units_of_1_65536_second() {
        assert_eq!(to_units_65536(Duration::from_millis(5250)), 0x0005_4000);
        assert_eq!(to_units_65536(Duration::ZERO), 0);
        assert_eq!(to_units_65536(Duration::from_secs(1 << 20)), u32::MAX);
    }
}
