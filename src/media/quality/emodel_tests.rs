use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn all_defaults_rate_93_2() {
    let r = r_factor_g711(0.0, Duration::ZERO);
    assert!((r - 93.2).abs() < 0.05, "{r}");
    assert!((mos_from_r(r) - 4.41).abs() < 0.01);
}

#[test]
fn delay_impairments_at_known_points() {
    // Idd by hand from G.107's formula: X = 1 at 200 ms, X = 2 at 400 ms
    let x1 = 2f64.powf(1.0 / 6.0) - 3.0 * (1.0 + 3f64.powi(-6)).powf(1.0 / 6.0) + 2.0;
    let x2 = 65f64.powf(1.0 / 6.0) - 3.0 * (1.0 + (2.0f64 / 3.0).powi(6)).powf(1.0 / 6.0) + 2.0;
    // (delay ms, Idd)
    let cases = [
        (0.0, 0.0),
        (100.0, 0.0),
        (200.0, 25.0 * x1),
        (400.0, 25.0 * x2),
    ];
    for (t, idd) in cases {
        assert!((absolute_delay(t) - idd).abs() < 1e-9, "Idd({t})");
    }
    assert!((absolute_delay(200.0) - 3.04).abs() < 0.01);
    assert!((absolute_delay(400.0) - 24.07).abs() < 0.01);
    // no talker echo under 1 ms (sidetone) nor a few ms on; the echo terms stay small for a
    // 65 dB TELR at 100 ms
    assert_eq!(talker_echo(0.0), 0.0);
    assert_eq!(talker_echo(0.5), 0.0);
    assert_eq!(talker_echo(2.0), 0.0, "clamped, not a gain");
    assert!(
        (1.5..2.5).contains(&talker_echo(100.0)),
        "{}",
        talker_echo(100.0)
    );
    assert!((0.1..0.2).contains(&listener_echo(0.0)));
}

#[test]
fn mos_from_r_follows_annex_b() {
    // (R, MOS)
    let cases = [
        (-5.0, 1.0),
        (0.0, 1.0),
        (3.0, 1.0), // the cubic is below 1 here
        (50.0, 1.0 + 1.75 - 50.0 * 10.0 * 50.0 * 7e-6),
        (80.0, 1.0 + 2.8 + 80.0 * 20.0 * 20.0 * 7e-6),
        (100.0, 4.5),
        (120.0, 4.5),
    ];
    for (r, mos) in cases {
        assert!((mos_from_r(r) - mos).abs() < 1e-12, "R {r}");
    }
}

#[test]
fn a_clean_call_and_a_lossy_one() {
    let clean = mos_g711(0.0, one_way_delay(Some(ms(20)), ms(2)));
    assert!(clean >= 4.2 && (clean - 4.4).abs() < 0.05, "{clean}");
    let lossy = mos_g711(10.0, one_way_delay(Some(ms(20)), ms(2)));
    assert!((3.3..=3.6).contains(&lossy), "{lossy}");
    // 1 % is still good, 20 % is poor
    assert!(mos_g711(1.0, ms(50)) > 4.1);
    assert!(mos_g711(20.0, ms(50)) < 3.0);
}

#[test]
fn mos_falls_with_loss_and_with_delay() {
    for t in [0u64, 40, 150, 400] {
        let mut previous = f64::INFINITY;
        for tenth in 0..=1000 {
            let mos = mos_g711(f64::from(tenth) / 10.0, ms(t));
            // strictly, until the rating bottoms out at 1
            assert!(mos < previous || mos == 1.0, "loss {tenth}/10 % at {t} ms");
            previous = mos;
        }
    }
    for loss in [0.0, 3.0, 10.0] {
        let mut previous = f64::INFINITY;
        for t in 0..=3000 {
            let mos = mos_g711(loss, ms(t));
            assert!(mos <= previous, "{t} ms at {loss} %");
            previous = mos;
        }
        assert!(mos_g711(loss, ms(600)) < mos_g711(loss, ms(100)) - 0.3);
    }
}

#[test]
fn any_input_gives_a_mos_in_range() {
    let losses = [
        f64::NAN,
        f64::NEG_INFINITY,
        -5.0,
        0.0,
        55.5,
        100.0,
        1e9,
        f64::INFINITY,
    ];
    let delays = [Duration::ZERO, ms(1), ms(100_000), Duration::MAX];
    for loss in losses {
        for delay in delays {
            let mos = mos_g711(loss, delay);
            assert!((1.0..=4.5).contains(&mos), "{loss} {delay:?}: {mos}");
        }
    }
    assert_eq!(mos_g711(f64::NAN, ms(0)), mos_g711(100.0, ms(0)));
}

#[test]
fn the_delay_assumption() {
    // (rtt, jitter, one-way delay)
    let cases = [
        (None, ms(0), ms(40)),
        (Some(ms(100)), ms(5), ms(90)),
        (Some(ms(100)), ms(30), ms(130)),
        (Some(Duration::MAX), Duration::MAX, Duration::MAX),
    ];
    for (rtt, jitter, expected) in cases {
        assert_eq!(one_way_delay(rtt, jitter), expected, "{rtt:?} {jitter:?}");
    }
}
