//! Reading the PBX's RTCP (RFC 3550 6.4): of a compound packet, the sender's SR information
//! (its NTP time becomes our LSR) and the report block about the stream we send it (its
//! loss, jitter and the LSR/DLSR that give the round trip). Other packet types are skipped;
//! anything malformed is refused whole. Every input is untrusted: no indexing that can fail.

use super::ntp::middle32;
use super::report_block::{ReportBlock, BLOCK_LEN};
use super::rtcp_write::{PT_RR, PT_SR};

/// The sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp of the report.
    pub ntp: u64,
    /// The same instant on the sender's RTP clock.
    pub rtp_ts: u32,
    /// Packets and payload octets sent so far (32 bits, wrapping).
    pub packets: u32,
    pub octets: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadReport {
    /// SSRC of the reporter (of its first SR or RR).
    pub ssrc: u32,
    /// Present when that first report was an SR.
    pub sender: Option<SenderInfo>,
    /// The report block about the stream we send, if the reporter included one.
    pub block: Option<ReportBlock>,
}

impl ReadReport {
    /// What our next report block echoes as LSR (`ReceiveStats::on_sender_report`).
    pub fn lsr(&self) -> Option<u32> {
        self.sender.map(|s| middle32(s.ntp))
    }
}

/// Reads an RTCP compound packet. `None` when it holds no SR or RR, or when any of its packets
/// is malformed (not version 2, a length past the end, padding anywhere but the last packet,
/// more report blocks than its length holds, trailing bytes).
pub fn read_report(buf: &[u8], our_ssrc: u32) -> Option<ReadReport> {
    let mut report: Option<ReadReport> = None;
    let mut at = 0;
    while at < buf.len() {
        let header = buf.get(at..at + 4)?;
        if header[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        let mut packet = buf.get(at..at + len)?;
        at += len;
        if header[0] & 0x20 != 0 {
            // RFC 3550 6.4.1: only the last packet of a compound may be padded.
            let pad = usize::from(*packet.last()?);
            if at != buf.len() || pad == 0 || pad > len - 4 {
                return None;
            }
            packet = packet.get(..len - pad)?;
        }
        let count = usize::from(header[0] & 0x1f);
        let (blocks_at, sender) = match header[1] {
            PT_SR => (28, Some(sender_info(packet)?)),
            PT_RR => (8, None),
            _ => continue,
        };
        let ssrc = word(packet, 4)?;
        let blocks = packet.get(blocks_at..blocks_at + count * BLOCK_LEN)?;
        let r = report.get_or_insert(ReadReport {
            ssrc,
            sender,
            block: None,
        });
        if r.block.is_none() {
            r.block = blocks
                .chunks_exact(BLOCK_LEN)
                .filter_map(|b| <&[u8; BLOCK_LEN]>::try_from(b).ok())
                .map(ReportBlock::read)
                .find(|b| b.ssrc == our_ssrc);
        }
    }
    report
}

fn sender_info(packet: &[u8]) -> Option<SenderInfo> {
    let ntp_high = word(packet, 8)?;
    let ntp_low = word(packet, 12)?;
    Some(SenderInfo {
        ntp: (u64::from(ntp_high) << 32) | u64::from(ntp_low),
        rtp_ts: word(packet, 16)?,
        packets: word(packet, 20)?,
        octets: word(packet, 24)?,
    })
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

#[cfg(test)]
#[path = "rtcp_tests.rs"]
mod tests;
