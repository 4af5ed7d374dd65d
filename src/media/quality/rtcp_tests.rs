use std::time::{Duration, Instant};

use super::super::rtcp_write::{write_report, MAX_REPORT_LEN};
use super::super::send::SendStats;
use super::*;

const US: u32 = 0x1122_3344;
const PBX: u32 = 0xdead_beef;

fn block() -> ReportBlock {
    ReportBlock {
        ssrc: PBX,
        fraction_lost: 0x40,
        cumulative_lost: 0x00_0a0b,
        highest_seq: 0x0001_0005,
        jitter: 0x11,
        lsr: 0xb705_2000,
        dlsr: 0x0005_4000,
    }
}

fn sent_three() -> SendStats {
    let mut send = SendStats::new();
    let t0 = Instant::now();
    for i in 0..3u32 {
        send.on_sent(160 * i, 160, t0 + Duration::from_millis(20 * u64::from(i)));
    }
    send
}

#[test]
fn a_written_sr_has_the_rfc_3550_layout_and_reads_back() {
    let send = sent_three();
    let mut out = [0u8; 1500];
    let ntp = 0xe8f0_1234_8000_0000;
    let n = write_report(
        &mut out,
        US,
        "tg@h",
        Some(&send),
        Some(&block()),
        ntp,
        0x0102_0304,
    );
    #[rustfmt::skip]
    let expected: [u8; 68] = [
        // SR: V=2, RC=1, PT=200, length 12 words after the first
        0x81, 200, 0, 12, 0x11, 0x22, 0x33, 0x44,
        0xe8, 0xf0, 0x12, 0x34, 0x80, 0, 0, 0, // NTP
        1, 2, 3, 4, // RTP timestamp
        0, 0, 0, 3, 0, 0, 1, 0xe0, // 3 packets, 480 octets
        0xde, 0xad, 0xbe, 0xef, 0x40, 0, 0x0a, 0x0b, // block: SSRC, fraction, cumulative
        0, 1, 0, 5, 0, 0, 0, 0x11, // highest sequence, jitter
        0xb7, 5, 0x20, 0, 0, 5, 0x40, 0, // LSR, DLSR
        // SDES: V=2, SC=1, PT=202, length 3; CNAME "tg@h" and two nulls
        0x81, 202, 0, 3, 0x11, 0x22, 0x33, 0x44,
        1, 4, b't', b'g', b'@', b'h', 0, 0,
    ];
    assert_eq!(&out[..n], &expected);
    let read = read_report(&out[..n], PBX).unwrap();
    assert_eq!(read.ssrc, US);
    assert_eq!(
        read.sender,
        Some(SenderInfo {
            ntp,
            rtp_ts: 0x0102_0304,
            packets: 3,
            octets: 480
        })
    );
    assert_eq!(read.lsr(), Some(0x1234_8000));
    assert_eq!(read.block, Some(block()));
    // asked about another stream, there is no block for it
    assert_eq!(read_report(&out[..n], 42).unwrap().block, None);
}

#[test]
fn a_written_rr_and_the_cname_padding() {
    let mut out = [0u8; 64];
    // (cname, expected bytes) without a block: RR header and SSRC, then the SDES
    let cases: &[(&str, &[u8])] = &[
        (
            // text ends on a word: a whole word of nulls still has to end the item list
            "ab",
            &[
                0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44, 0x81, 202, 0, 3, 0x11, 0x22, 0x33, 0x44,
                1, 2, b'a', b'b', 0, 0, 0, 0,
            ],
        ),
        (
            "abc",
            &[
                0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44, 0x81, 202, 0, 3, 0x11, 0x22, 0x33, 0x44,
                1, 3, b'a', b'b', b'c', 0, 0, 0,
            ],
        ),
        (
            "",
            &[
                0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44, 0x81, 202, 0, 2, 0x11, 0x22, 0x33, 0x44,
                1, 0, 0, 0,
            ],
        ),
    ];
    for (cname, expected) in cases {
        out.fill(0xaa);
        let n = write_report(&mut out, US, cname, None, None, 7, 7);
        assert_eq!(&out[..n], *expected, "{cname:?}");
        let read = read_report(&out[..n], PBX).unwrap();
        assert_eq!((read.ssrc, read.sender, read.block), (US, None, None));
    }
    // an RR with a block
    let n = write_report(&mut out, US, "ab", None, Some(&block()), 7, 7);
    assert_eq!(&out[..4], &[0x81, 201, 0, 7]);
    assert_eq!(read_report(&out[..n], PBX).unwrap().block, Some(block()));
}

#[test]
fn a_short_buffer_or_a_long_cname_is_handled() {
    let send = sent_three();
    let long = "é".repeat(200); // 400 bytes, two per character
    let mut out = [0u8; 1500];
    let n = write_report(&mut out, US, &long, Some(&send), Some(&block()), 1, 2);
    assert_eq!(out[52 + 9], 254, "cut to 254: 255 would split a character");
    assert!(n <= MAX_REPORT_LEN && n.is_multiple_of(4));
    assert!(read_report(&out[..n], PBX).is_some());
    for short in 0..n {
        assert_eq!(
            write_report(
                &mut out[..short],
                US,
                &long,
                Some(&send),
                Some(&block()),
                1,
                2
            ),
            0
        );
    }
    let max = "x".repeat(300);
    assert_eq!(
        write_report(&mut out, US, &max, Some(&send), Some(&block()), 1, 2),
        MAX_REPORT_LEN
    );
}

/// An SR as a PBX would send it, written out from RFC 3550 6.4.1's figure: two report blocks
/// (one about a stream of another party, one about ours), then an SDES and a BYE.
fn pbx_sr() -> Vec<u8> {
    #[rustfmt::skip]
    let sr: &[u8] = &[
        0x82, 200, 0, 18, 0xde, 0xad, 0xbe, 0xef,
        0xb7, 0x10, 0x80, 0x00, 0x20, 0x00, 0x00, 0x00, // NTP 46864.5 s (the RFC's example A)
        0x00, 0x01, 0xe2, 0x40, // RTP timestamp 123456
        0x00, 0x00, 0x01, 0xf4, // 500 packets
        0x00, 0x01, 0x38, 0x80, // 80000 octets
        0x55, 0x55, 0x55, 0x55, 0x00, 0x00, 0x00, 0x63, // another stream: lost 99
        0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4,
        0x11, 0x22, 0x33, 0x44, 0x19, 0x00, 0x00, 0x0c, // ours: fraction 25/256, lost 12
        0x00, 0x02, 0x10, 0x00, // highest 2:4096
        0x00, 0x00, 0x00, 0xa0, // jitter 160 = 20 ms
        0xb7, 0x05, 0x20, 0x00, // LSR
        0x00, 0x05, 0x40, 0x00, // DLSR 5.25 s
        0x81, 202, 0, 2, 0xde, 0xad, 0xbe, 0xef, 1, 1, b'p', 0,
        0x81, 203, 0, 1, 0xde, 0xad, 0xbe, 0xef,
    ];
    sr.to_vec()
}

#[test]
fn a_hand_written_sr_is_read() {
    let read = read_report(&pbx_sr(), US).unwrap();
    assert_eq!(read.ssrc, PBX);
    assert_eq!(
        read.sender,
        Some(SenderInfo {
            ntp: 0xb710_8000_2000_0000,
            rtp_ts: 123_456,
            packets: 500,
            octets: 80_000
        })
    );
    assert_eq!(read.lsr(), Some(0x8000_2000));
    let block = read.block.unwrap();
    assert_eq!(
        block,
        ReportBlock {
            ssrc: US,
            fraction_lost: 25,
            cumulative_lost: 12,
            highest_seq: 0x0002_1000,
            jitter: 160,
            lsr: 0xb705_2000,
            dlsr: 0x0005_4000,
        }
    );
    assert_eq!(block.jitter_ms(), 20.0);
    // and the round trip it gives when it arrives at the RFC's time A
    assert_eq!(
        super::super::ntp::rtt(block.lsr, block.dlsr, 0xb710_8000),
        Some(Duration::from_millis(6125))
    );
}

#[test]
fn padding_on_the_last_packet_is_allowed() {
    // RR with one block about us, then an SDES padded with 4 bytes
    let mut rr = vec![0x81, 201, 0, 7, 0xde, 0xad, 0xbe, 0xef];
    rr.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 5]);
    rr.extend_from_slice(&[0; 16]);
    rr.extend_from_slice(&[
        0xa1, 202, 0, 3, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 4,
    ]);
    let read = read_report(&rr, US).unwrap();
    assert_eq!(read.block.map(|b| b.cumulative_lost), Some(5));
    // a padded RR itself, its padding after the block
    let mut padded = vec![0xa1, 201, 0, 8, 0xde, 0xad, 0xbe, 0xef];
    padded.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 6]);
    padded.extend_from_slice(&[0; 16]);
    padded.extend_from_slice(&[0, 0, 0, 4]);
    assert_eq!(
        read_report(&padded, US)
            .and_then(|r| r.block)
            .map(|b| b.cumulative_lost),
        Some(6)
    );
    // the same padded RR with anything after it is refused
    padded.extend_from_slice(&[0x81, 203, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(read_report(&padded, US), None);
}

#[test]
fn malformed_compounds_are_refused() {
    let good = pbx_sr();
    let set = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        b
    };
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("version 1", set(0, 0x42)),
        ("a length past the end", set(3, 30)),
        ("padding on the first packet", set(0, 0xa2)),
        ("more blocks than the length holds", set(0, 0x83)),
        ("trailing bytes", trailing),
        ("no SR or RR", good[76..].to_vec()),
        (
            "an SR too short for its sender info",
            vec![0x80, 200, 0, 1, 0, 0, 0, 1],
        ),
        (
            "padding longer than the packet",
            vec![0xa0, 201, 0, 1, 0, 0, 0, 9],
        ),
        ("padding of zero", vec![0xa0, 201, 0, 1, 0, 0, 0, 0]),
    ];
    assert!(read_report(&good, US).is_some());
    for (what, buf) in cases {
        assert_eq!(read_report(&buf, US), None, "{what}");
    }
    for n in 0..good.len() {
        // every cut inside a packet is refused; cuts between packets leave a shorter compound
        let read = read_report(&good[..n], US);
        assert_eq!(read.is_some(), n == 76 || n == 88, "cut at {n}");
    }
}

#[test]
fn random_and_mutated_buffers_never_panic() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let good = pbx_sr();
    let mut buf = [0u8; 256];
    let mut read = 0;
    for round in 0..100_000 {
        let mut len = (next() % 200) as usize;
        if round % 2 == 0 {
            for b in &mut buf[..len] {
                *b = next() as u8;
            }
            // mostly version 2, so the walk gets past the first header
            buf[0] = 0x80 | (buf[0] & 0x3f);
        } else {
            len = len.min(good.len());
            buf[..len].copy_from_slice(&good[..len]);
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % good.len();
                if at < len {
                    buf[at] = next() as u8;
                }
            }
        }
        if let Some(r) = read_report(&buf[..len], US) {
            read += 1;
            if let Some(b) = r.block {
                assert_eq!(b.ssrc, US);
                assert!(b.cumulative_lost <= 0x7f_ffff);
            }
        }
    }
    assert!(
        read > 1000,
        "the mutations should often stay readable: {read}"
    );
}
