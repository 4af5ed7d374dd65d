//! When our next RTCP report to the PBX is due: RFC 3550 6.2/6.3.1 (A.7) for a session of two
//! members, with its 5 s minimum (2.5 s before the first report) and 0.5-1.5x randomisation.

use std::time::Duration;

/// Session bandwidth of one G.711 stream at 20 ms packets, in bits per second, headers
/// included (RFC 3550 6.2 counts IP and UDP): 50 x (160 + 12 + 8 + 20) bytes.
pub const G711_SESSION_BANDWIDTH: u32 = 80_000;

/// RTCP's share of the session bandwidth (RFC 3550 6.2).
const RTCP_SHARE: f64 = 0.05;

const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// e - 3/2: compensates the randomisation's bias towards timer reconsideration firing early
/// (RFC 3550 6.3.1).
const COMPENSATION: f64 = std::f64::consts::E - 1.5;

/// The interval until the next report. `avg_rtcp_size`: average compound packet size in
/// bytes, UDP and IP headers included; `initial`: no report sent yet; `random`: a value drawn
/// uniformly from [0.5, 1.5] (clamped to it; anything not a number counts as 1).
///
/// Two members means senders are never at most a quarter of them, so RFC 3550's split of the
/// bandwidth between senders and receivers does not apply: both share it alike.
pub fn rtcp_interval(
    session_bandwidth_bps: u32,
    avg_rtcp_size: f64,
    initial: bool,
    random: f64,
) -> Duration {
    const MEMBERS: f64 = 2.0;
    let rtcp_bytes_per_second = f64::from(session_bandwidth_bps) / 8.0 * RTCP_SHARE;
    let minimum = if initial {
        MIN_INTERVAL / 2
    } else {
        MIN_INTERVAL
    };
    let computed = if rtcp_bytes_per_second > 0.0 && avg_rtcp_size.is_finite() {
        avg_rtcp_size.max(0.0) * MEMBERS / rtcp_bytes_per_second
    } else {
        0.0
    };
    let deterministic = computed.max(minimum.as_secs_f64());
    let random = if random.is_nan() {
        1.0
    } else {
        random.clamp(0.5, 1.5)
    };
    // Bounded so that no input can overflow a Duration.
    let seconds = (deterministic * random / COMPENSATION).min(86_400.0);
    Duration::try_from_secs_f64(seconds).unwrap_or(MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Duration, b_secs: f64) -> bool {
        (a.as_secs_f64() - b_secs).abs() < 1e-6
    }

    #[test]
    fn the_minimum_rules_a_g711_call() {
        // (what, bandwidth, average size, initial, random, seconds)
        let cases: &[(&str, u32, f64, bool, f64, f64)] = &[
            (
                "middle",
                G711_SESSION_BANDWIDTH,
                120.0,
                false,
                1.0,
                5.0 / COMPENSATION,
            ),
            (
                "early",
                G711_SESSION_BANDWIDTH,
                120.0,
                false,
                0.5,
                2.5 / COMPENSATION,
            ),
            (
                "late",
                G711_SESSION_BANDWIDTH,
                120.0,
                false,
                1.5,
                7.5 / COMPENSATION,
            ),
            (
                "first report",
                G711_SESSION_BANDWIDTH,
                120.0,
                true,
                1.0,
                2.5 / COMPENSATION,
            ),
            (
                "out of range random",
                G711_SESSION_BANDWIDTH,
                120.0,
                false,
                9.0,
                7.5 / COMPENSATION,
            ),
            (
                "not a number",
                G711_SESSION_BANDWIDTH,
                120.0,
                false,
                f64::NAN,
                5.0 / COMPENSATION,
            ),
            // 8 kbit/s: 50 B/s for RTCP, 2 x 200 B / 50 B/s = 8 s, above the minimum
            ("narrow", 8_000, 200.0, false, 1.0, 8.0 / COMPENSATION),
            ("no bandwidth", 0, 200.0, false, 1.0, 5.0 / COMPENSATION),
            (
                "garbage size",
                8_000,
                f64::INFINITY,
                false,
                1.0,
                5.0 / COMPENSATION,
            ),
            ("huge size", 1, 1e300, false, 1.0, 86_400.0),
        ];
        for (what, bw, size, initial, random, secs) in cases {
            let got = rtcp_interval(*bw, *size, *initial, *random);
            assert!(close(got, *secs), "{what}: {got:?} against {secs}");
        }
    }

    #[test]
    fn about_four_seconds_on_average() {
        let mean: f64 = (0..=100)
            .map(|i| {
                rtcp_interval(
                    G711_SESSION_BANDWIDTH,
                    100.0,
                    false,
                    0.5 + f64::from(i) / 100.0,
                )
                .as_secs_f64()
            })
            .sum::<f64>()
            / 101.0;
        assert!((mean - 5.0 / COMPENSATION).abs() < 1e-9);
        assert!((4.0..4.2).contains(&mean), "{mean}");
    }
}
