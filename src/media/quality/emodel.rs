//! The ITU-T G.107 E-model for a G.711 call: transmission rating R from packet loss and
//! one-way delay, and its mapping to an estimated MOS (G.107 Annex B).
//!
//! Choices, with why:
//! - Every parameter but delay and loss keeps its G.107 Table 3 default (a wired handset,
//!   no echo problem beyond the default TELR of 65 dB, advantage factor A = 0): we measure
//!   neither, and with all defaults R is 93.2, the reference everyone quotes.
//! - G.711 has Ie = 0. For its packet-loss robustness we take Bpl = 25.1, G.113 Appendix I's
//!   figure for G.711 with packet-loss concealment (G.711 Appendix I), not 4.3 for none:
//!   both ends of our calls conceal loss (the PBXs we front, 3CX and Asterisk, and the
//!   browsers' and carrier's WebRTC stacks), and without concealment 2 % loss would already
//!   read as a poor call, which is not what listeners report. Loss is taken as random
//!   (BurstR = 1): RTCP's counters cannot tell bursts apart.
//! - T = Ta = the one-way delay given, Tr = 2T (G.107's defaults tie them so).

use std::time::Duration;

/// G.107 Table 3 defaults: basic signal-to-noise ratio Ro, simultaneous impairment Is.
const RO: f64 = 94.77;
const IS: f64 = 1.41;
/// Echo defaults: talker echo loudness rating, weighted echo path loss (dB).
const TELR: f64 = 65.0;
const WEPL: f64 = 110.0;
/// Roe = -1.5 (No - RLR) with the default No = -61.18 dBm0p and RLR = 2 dB.
const ROE: f64 = 94.77;

/// G.711 with packet-loss concealment (G.113 Appendix I).
const IE_G711: f64 = 0.0;
const BPL_G711_PLC: f64 = 25.1;

/// One G.711 frame of 20 ms: the packetisation part of the delay.
const PACKETISATION: Duration = Duration::from_millis(20);
/// The least a receiving jitter buffer holds, however steady the stream.
const MIN_JITTER_BUFFER: Duration = Duration::from_millis(20);

/// Mouth-to-ear delay as the E-model wants it, from what RTCP measures: half the round trip
/// (the path is taken as symmetric; none when no round trip is known yet), one packetisation
/// interval, and a jitter buffer assumed to hold twice the measured interarrival jitter, at
/// least 20 ms (what adaptive buffers such as WebRTC's NetEq and Asterisk's settle around).
pub fn one_way_delay(rtt: Option<Duration>, jitter: Duration) -> Duration {
    let network = rtt.map_or(Duration::ZERO, |r| r / 2);
    let buffer = jitter.saturating_mul(2).max(MIN_JITTER_BUFFER);
    network.saturating_add(PACKETISATION).saturating_add(buffer)
}

/// The transmission rating R for G.711 with concealment at `loss_percent` random packet loss
/// (clamped to 0-100; not a number counts as total loss) and `one_way_delay`.
pub fn r_factor_g711(loss_percent: f64, one_way_delay: Duration) -> f64 {
    let ppl = if loss_percent.is_nan() {
        100.0
    } else {
        loss_percent.clamp(0.0, 100.0)
    };
    let t = one_way_delay.as_secs_f64() * 1000.0;
    let id = talker_echo(t) + listener_echo(2.0 * t) + absolute_delay(t);
    let ie_eff = IE_G711 + (95.0 - IE_G711) * ppl / (ppl + BPL_G711_PLC);
    RO - IS - id - ie_eff
}

/// The estimated MOS (G.107 Annex B) of a G.711 call, 1.0 to 4.5.
pub fn mos_g711(loss_percent: f64, one_way_delay: Duration) -> f64 {
    mos_from_r(r_factor_g711(loss_percent, one_way_delay))
}

fn mos_from_r(r: f64) -> f64 {
    let mos = if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    };
    // The cubic dips below 1 for R under about 6.5.
    mos.clamp(1.0, 4.5)
}

/// Idte: talker echo at mean one-way echo path delay `t` (ms).
fn talker_echo(t: f64) -> f64 {
    let terv =
        TELR - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10() + 6.0 * (-0.3 * t * t).exp();
    let re = 80.0 + 2.5 * (terv - 14.0);
    let x = ROE - re;
    // For echo paths of a few ms the formula dips just below 0; an impairment never improves
    // the rating (and the rating must not rise with delay). This also covers G.107's rule
    // that under 1 ms talker echo counts as sidetone, not echo.
    ((x / 2.0 + (x * x / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp())).max(0.0)
}

/// Idle: listener echo at round-trip delay `tr` (ms).
fn listener_echo(tr: f64) -> f64 {
    let rle = 10.5 * (WEPL + 7.0) * (tr + 1.0).powf(-0.25);
    let x = RO - rle;
    x / 2.0 + (x * x / 4.0 + 169.0).sqrt()
}

/// Idd: absolute delay `ta` (ms), nothing up to 100 ms.
fn absolute_delay(ta: f64) -> f64 {
    if ta <= 100.0 {
        return 0.0;
    }
    let x = (ta / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

#[cfg(test)]
#[path = "emodel_tests.rs"]
mod tests;
