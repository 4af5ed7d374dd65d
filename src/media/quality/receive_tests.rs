use std::time::{Duration, Instant};

use super::*;

const MS20: Duration = Duration::from_millis(20);

/// Feeds sequence numbers of one SSRC at 20 ms spacing with matching timestamps.
fn feed(stats: &mut ReceiveStats, ssrc: u32, seqs: &[u16], start: Instant) -> Instant {
    let mut at = start;
    for &seq in seqs {
        stats.on_packet(ssrc, seq, u32::from(seq).wrapping_mul(160), at);
        at += MS20;
    }
    at
}

#[test]
fn loss_follows_rfc_3550_a3_across_wrap_reordering_and_duplicates() {
    let long_gaps: Vec<u16> = (0..=100u32).map(|k| (65535 + k * 2000) as u16).collect();
    // (what, sequence numbers, packets, expected, lost, highest extended sequence)
    type Case<'a> = (&'a str, &'a [u16], u64, u64, u64, u64);
    let cases: &[Case] = &[
        (
            "two lost around the wrap",
            &[65530, 65531, 65532, 65534, 65535, 0, 1, 3, 4, 5],
            10,
            12,
            2,
            65536 + 5,
        ),
        (
            "reordered across the wrap",
            &[65534, 0, 65535, 1, 2],
            5,
            5,
            0,
            65536 + 2,
        ),
        ("late after the wrap", &[65535, 1, 0], 3, 3, 0, 65536 + 1),
        ("duplicates only", &[10, 11, 11, 12, 12, 13], 6, 4, 0, 13),
        ("a duplicate hides a loss", &[10, 11, 11, 13], 4, 4, 0, 13),
        ("a gap under the dropout", &[1, 2000], 2, 2000, 1998, 2000),
        (
            "one stray jump is not counted",
            &[100, 101, 20000, 102],
            3,
            3,
            0,
            102,
        ),
        (
            "a confirmed jump restarts the base",
            &[100, 101, 20000, 20001, 20002],
            4,
            4,
            0,
            20002,
        ),
        (
            "too late for the misorder window is a stray",
            &[500, 501, 300],
            2,
            2,
            0,
            501,
        ),
        (
            "four wraps in steps of 2000",
            &long_gaps,
            101,
            200_001,
            200_001 - 101,
            65535 + 200_000,
        ),
    ];
    for (what, seqs, packets, expected, lost, highest) in cases {
        let mut stats = ReceiveStats::new();
        feed(&mut stats, 7, seqs, Instant::now());
        assert_eq!(stats.packets(), *packets, "{what}: packets");
        assert_eq!(stats.expected(), *expected, "{what}: expected");
        assert_eq!(stats.lost(), *lost, "{what}: lost");
        assert_eq!(stats.highest_seq(), Some(*highest), "{what}: highest");
        let block = stats.report_block(Instant::now()).unwrap();
        assert_eq!(block.highest_seq, *highest as u32, "{what}: block");
    }
}

#[test]
fn a_new_ssrc_restarts_the_base_and_keeps_the_totals() {
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    // the first stream loses 5 of 10 ... and has a jitter
    let first: Vec<u16> = (1..=10).filter(|&s| s != 5).collect();
    let mut at = t0;
    for (i, &seq) in first.iter().enumerate() {
        let wobble = if i % 2 == 0 { Duration::ZERO } else { MS20 / 2 };
        stats.on_packet(1, seq, u32::from(seq) * 160, at + wobble);
        at += MS20;
    }
    assert!(stats.jitter() > 10.0);
    // after a re-INVITE the PBX sends another SSRC with unrelated numbers, one lost
    for seq in (40000..=40009u16).filter(|&s| s != 40003) {
        // steady: arrivals keep pace with the timestamps, the gap included
        let arrival = at + MS20 * u32::from(seq - 40000);
        stats.on_packet(2, seq, u32::from(seq) * 160, arrival);
    }
    let at = at + MS20 * 10;
    assert_eq!(stats.ssrc(), Some(2));
    assert_eq!(
        (stats.packets(), stats.expected(), stats.lost()),
        (18, 20, 2)
    );
    assert_eq!(stats.loss_percent(), 10.0);
    assert_eq!(stats.jitter(), 0.0, "jitter is per stream");
    let block = stats.report_block(at).unwrap();
    assert_eq!(
        (block.ssrc, block.cumulative_lost, block.highest_seq),
        (2, 1, 40009)
    );
    // back to the first SSRC: again a new base, not a jump back of 39990
    feed(&mut stats, 1, &[11, 12], at);
    assert_eq!(
        (stats.packets(), stats.expected(), stats.lost()),
        (20, 22, 2)
    );
    let block = stats.report_block(at).unwrap();
    assert_eq!(
        (block.ssrc, block.cumulative_lost, block.highest_seq),
        (1, 0, 12)
    );
}

#[test]
fn jitter_converges_on_the_known_value() {
    // (what, extra delay of each packet in ms repeating, expected jitter in 8 kHz units, tolerance)
    let cases: &[(&str, &[u64], f64, f64)] = &[
        ("steady", &[7], 0.0, 1e-9),
        // every transit difference is ±10 ms = 80 units
        ("alternating 0/10 ms", &[0, 10], 80.0, 1e-6),
        ("alternating 0/5 ms", &[0, 5], 40.0, 1e-6),
        // |D| runs 0, 240, 240: the estimate circles their mean of 160
        ("every third 30 ms late", &[0, 0, 30], 160.0, 25.0),
    ];
    let t0 = Instant::now();
    for (what, pattern, expected, tolerance) in cases {
        let mut stats = ReceiveStats::new();
        // timestamps start near the top to cross the 32-bit wrap on the way
        let ts0 = u32::MAX - 160 * 100;
        for i in 0..2000u32 {
            let extra = Duration::from_millis(pattern[i as usize % pattern.len()]);
            let arrival = t0 + MS20 * i + extra;
            stats.on_packet(9, i as u16, ts0.wrapping_add(160 * i), arrival);
        }
        let jitter = stats.jitter();
        assert!(
            (jitter - expected).abs() <= *tolerance,
            "{what}: jitter {jitter}, expected {expected}"
        );
        assert!((stats.jitter_ms() - expected / 8.0).abs() <= tolerance / 8.0);
        let block = stats.report_block(t0).unwrap();
        assert!((f64::from(block.jitter) - expected).abs() <= tolerance + 1.0);
    }
}

#[test]
fn one_late_packet_moves_the_estimate_by_a_sixteenth() {
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    feed(&mut stats, 4, &[0, 1, 2], t0);
    // packet 3 is 10 ms (80 units) late, packet 4 on time again
    stats.on_packet(4, 3, 480, t0 + MS20 * 3 + MS20 / 2);
    assert!((stats.jitter() - 5.0).abs() < 1e-9, "{}", stats.jitter());
    stats.on_packet(4, 4, 640, t0 + MS20 * 4);
    assert!((stats.jitter() - (5.0 + 75.0 / 16.0)).abs() < 1e-9);
    // a duplicate of packet 4 arriving 20 ms later: its transit is 160 units longer
    stats.on_packet(4, 4, 640, t0 + MS20 * 5);
    let expected = 9.6875 + (160.0 - 9.6875) / 16.0;
    assert!((stats.jitter() - expected).abs() < 1e-9);
}

#[test]
fn fraction_lost_is_per_report_interval() {
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    // (sequence numbers arriving in the interval, fraction lost in the report that ends it,
    // cumulative lost)
    let intervals: Vec<(Vec<u16>, u8, u32)> = vec![
        ((0..100).collect(), 0, 0),
        // 25 of 100 lost: 64/256
        ((100..200).filter(|s| s % 4 != 0).collect(), 64, 25),
        (vec![], 0, 25),
        // 9 of 10 lost
        (vec![209], 230, 34),
        // all arrive plus duplicates: no negative fraction, the cumulative count goes down
        ((210..220).chain(210..215).collect(), 0, 34 - 5),
        // all lost but the last: below 256/256, as a packet had to arrive to show the loss
        (vec![300], 252, 29 + 80),
    ];
    let mut at = t0;
    for (i, (seqs, fraction, cumulative)) in intervals.iter().enumerate() {
        at = feed(&mut stats, 3, seqs, at);
        let block = stats.report_block(at).unwrap();
        assert_eq!(block.fraction_lost, *fraction, "interval {i}: fraction");
        assert_eq!(
            block.cumulative_lost, *cumulative,
            "interval {i}: cumulative"
        );
    }
}

#[test]
fn no_block_before_anything_arrived() {
    let mut stats = ReceiveStats::new();
    assert_eq!(stats.report_block(Instant::now()), None);
    assert_eq!(
        (stats.packets(), stats.lost(), stats.loss_percent()),
        (0, 0, 0.0)
    );
}

#[test]
fn the_senders_last_sr_is_echoed_with_the_delay_since() {
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    feed(&mut stats, 5, &[1, 2, 3], t0);
    stats.on_sender_report(5, 0xb705_2000, t0);
    let block = stats
        .report_block(t0 + Duration::from_millis(5250))
        .unwrap();
    assert_eq!((block.lsr, block.dlsr), (0xb705_2000, 0x0005_4000));
    // an SR from another SSRC is not about this stream
    stats.on_sender_report(6, 0x1234_5678, t0);
    let block = stats.report_block(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!((block.lsr, block.dlsr), (0, 0));
    // a clock that went backwards gives no negative delay
    stats.on_sender_report(5, 0x1111_2222, t0 + Duration::from_secs(9));
    let block = stats.report_block(t0).unwrap();
    assert_eq!((block.lsr, block.dlsr), (0x1111_2222, 0));
}

#[test]
fn any_input_keeps_the_counts_consistent() {
    let t0 = Instant::now() + Duration::from_secs(3600);
    let mut stats = ReceiveStats::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ssrc = (x >> 60) as u32 % 3;
        let seq = (x >> 8) as u16;
        let ts = (x >> 24) as u32;
        // arrivals jump back and forth by up to an hour
        let arrival = if x & 1 == 0 {
            t0 + Duration::from_millis(x >> 52)
        } else {
            t0 - Duration::from_millis(x >> 52)
        };
        stats.on_packet(ssrc, seq, ts, arrival);
        if i % 1000 == 0 {
            let block = stats.report_block(arrival).unwrap();
            assert!(block.cumulative_lost <= 0x7f_ffff);
            assert!(stats.jitter().is_finite());
        }
        assert!(stats.lost() <= stats.expected());
    }
    assert!(stats.packets() > 0);
}
