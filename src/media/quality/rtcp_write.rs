//! Our RTCP toward the PBX (RFC 3550 6.4, 6.5): one compound packet of an SR (when we sent
//! RTP since the last report) or an RR, with at most one report block (the PBX's stream),
//! followed by the SDES CNAME every compound packet must carry. Written into the caller's
//! buffer, no allocation.

use super::report_block::{ReportBlock, BLOCK_LEN};
use super::send::SendStats;

/// RTCP packet types (RFC 3550 12.1) and the SDES item we write.
pub(super) const PT_SR: u8 = 200;
pub(super) const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
const SDES_CNAME: u8 = 1;

/// A CNAME is at most 255 bytes (the item's length octet).
const MAX_CNAME: usize = 255;

#[cfg(test)]
/// The longest compound packet `write_report` writes: SR with a block, SDES with the longest
/// CNAME and its terminating null padded to a word.
pub const MAX_REPORT_LEN: usize = 28 + BLOCK_LEN + 8 + (2 + MAX_CNAME + 1).next_multiple_of(4);

/// Writes the compound packet into `out` and returns its length, or 0 when `out` is shorter
/// than the packet (a 1500-byte buffer always suffices: see `MAX_REPORT_LEN`).
///
/// `send`: our sending side when an SR is due (`SendStats::take_for_report`), else `None` for
/// an RR. `ntp_now`/`rtp_now`: the same instant on the NTP clock and on our stream's RTP
/// clock (`SendStats::rtp_at`); unused in an RR. A CNAME over 255 bytes is cut at a character
/// boundary.
pub fn write_report(
    out: &mut [u8],
    ssrc: u32,
    cname: &str,
    send: Option<&SendStats>,
    block: Option<&ReportBlock>,
    ntp_now: u64,
    rtp_now: u32,
) -> usize {
    let cname = cut(cname, MAX_CNAME);
    let blocks = usize::from(block.is_some());
    let report_len = if send.is_some() { 28 } else { 8 } + BLOCK_LEN * blocks;
    // chunk: SSRC, CNAME item (type, length, text), then 1-4 nulls ending the item list
    let chunk_len = 4 + (2 + cname.len() + 1).next_multiple_of(4);
    let sdes_len = 4 + chunk_len;
    let total = report_len + sdes_len;
    let Some(out) = out.get_mut(..total) else {
        return 0;
    };
    out.fill(0);

    let (report, sdes) = out.split_at_mut(report_len);
    let pt = if send.is_some() { PT_SR } else { PT_RR };
    write_header(report, blocks as u8, pt);
    report[4..8].copy_from_slice(&ssrc.to_be_bytes());
    let mut at = 8;
    if let Some(send) = send {
        report[8..16].copy_from_slice(&ntp_now.to_be_bytes());
        report[16..20].copy_from_slice(&rtp_now.to_be_bytes());
        // The SR's counts are 32 bits and wrap (RFC 3550 6.4.1).
        report[20..24].copy_from_slice(&(send.packets() as u32).to_be_bytes());
        report[24..28].copy_from_slice(&(send.octets() as u32).to_be_bytes());
        at = 28;
    }
    if let Some(block) = block {
        if let Some(slot) = report
            .get_mut(at..at + BLOCK_LEN)
            .and_then(|s| <&mut [u8; BLOCK_LEN]>::try_from(s).ok())
        {
            block.write(slot);
        }
    }

    write_header(sdes, 1, PT_SDES);
    sdes[4..8].copy_from_slice(&ssrc.to_be_bytes());
    sdes[8] = SDES_CNAME;
    sdes[9] = cname.len() as u8;
    sdes[10..10 + cname.len()].copy_from_slice(cname.as_bytes());
    // the nulls after the text are already there from the fill
    total
}

/// Version 2, no padding, `count`, `pt`, and the length in words minus one of `packet`.
fn write_header(packet: &mut [u8], count: u8, pt: u8) {
    let words = (packet.len() / 4 - 1) as u16;
    packet[0] = 0x80 | (count & 0x1f);
    packet[1] = pt;
    packet[2..4].copy_from_slice(&words.to_be_bytes());
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
