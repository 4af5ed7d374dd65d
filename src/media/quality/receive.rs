//! Receive statistics of a stream we receive, as RFC 3550 defines them: sequence tracking
//! across wraps, reordering and restarts (A.1), expected and lost counts with the per-report
//! fraction (A.3), interarrival jitter (A.8), and the LSR/DLSR echo of the sender's reports.
//! For the PBX's stream it yields the report block our RTCP carries; for it and the carrier's,
//! the totals the operator's figures and the loss counters use (the only place either stream's
//! sequence numbers are tracked).

use std::time::Instant;

use super::report_block::{to_units_65536, ReportBlock};

/// RTP clock of G.711 and telephone-event, the only media on the PBX leg.
pub const CLOCK_RATE: u32 = 8000;

/// A.1's bounds: a forward jump below `MAX_DROPOUT` is a gap (the packets between are lost),
/// a step back within `MAX_MISORDER` is a late packet, anything else is a jump that only a
/// second, sequential packet confirms as a restarted stream.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Per-stream statistics of what arrives from one sender.
///
/// Unlike A.1 there is no probation: the engine has already latched onto the PBX's address
/// (and str0m has authenticated the carrier's SRTP) and relays a new SSRC at once, so the
/// statistics follow it at once too. A new SSRC (or a
/// restart under the same one) begins a new sequence base, jitter and report interval; the
/// totals (`packets`, `expected`, `lost`) run on across them.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    source: Option<Source>,
    /// Totals of the streams before the current one.
    earlier_received: u64,
    earlier_expected: u64,
    /// The sender's latest SR: its SSRC, NTP middle 32 bits, and when it arrived.
    last_sr: Option<(u32, u32, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    base_seq: u16,
    max_seq: u16,
    /// Wraps of the sequence number seen so far.
    cycles: u64,
    /// The sequence number that would confirm a large jump as a restart.
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Arrival and RTP timestamp of the previous counted packet, for the transit difference.
    previous: Option<(Instant, u32)>,
    /// In timestamp units.
    jitter: f64,
}

enum Seq {
    Counted,
    Ignored,
    Restart,
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Source {
        Source {
            ssrc,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            previous: None,
            jitter: 0.0,
        }
    }

    fn extended_max(&self) -> u64 {
        (self.cycles << 16) + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }

    fn update_seq(&mut self, seq: u16) -> Seq {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1;
            }
            self.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            if self.bad_seq == Some(seq) {
                return Seq::Restart;
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return Seq::Ignored;
        }
        // else: a duplicate or a late packet, counted without moving the highest sequence
        Seq::Counted
    }

    fn update_jitter(&mut self, rtp_ts: u32, arrival: Instant) {
        if let Some((at, ts)) = self.previous {
            let arrival_units = signed_seconds(arrival, at) * f64::from(CLOCK_RATE);
            let ts_units = f64::from(rtp_ts.wrapping_sub(ts) as i32);
            let d = (arrival_units - ts_units).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.previous = Some((arrival, rtp_ts));
    }
}

/// `a - b` in seconds, negative when `a` is earlier (a caller's clock is not trusted to be
/// monotonic across threads).
fn signed_seconds(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64(),
        None => -b.duration_since(a).as_secs_f64(),
    }
}

impl ReceiveStats {
    pub fn new() -> ReceiveStats {
        ReceiveStats::default()
    }

    /// One RTP packet from the sender, as its header says and when it arrived.
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, rtp_ts: u32, arrival: Instant) {
        let source = match &mut self.source {
            Some(s) if s.ssrc == ssrc => match s.update_seq(seq) {
                Seq::Counted => s,
                Seq::Ignored => return,
                Seq::Restart => self.begin(ssrc, seq),
            },
            _ => self.begin(ssrc, seq),
        };
        source.received += 1;
        source.update_jitter(rtp_ts, arrival);
    }

    /// Retires the current stream into the totals and starts one at `seq`.
    fn begin(&mut self, ssrc: u32, seq: u16) -> &mut Source {
        if let Some(old) = self.source.take() {
            self.earlier_received += old.received;
            self.earlier_expected += old.expected();
        }
        self.source.insert(Source::new(ssrc, seq))
    }

    /// The sender's SR arrived (`ntp_middle`: the middle 32 bits of its NTP timestamp); our
    /// next report block echoes it as LSR with the time since as DLSR.
    pub fn on_sender_report(&mut self, ssrc: u32, ntp_middle: u32, arrival: Instant) {
        self.last_sr = Some((ssrc, ntp_middle, arrival));
    }

    /// The report block about the current stream at `now`, starting a new interval for the
    /// fraction lost; `None` before any packet arrived (RFC 3550 sends no block then).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let s = self.source.as_mut()?;
        let expected = s.expected();
        let expected_interval = expected - s.expected_prior.min(expected);
        let received_interval = s.received - s.received_prior.min(s.received);
        s.expected_prior = expected;
        s.received_prior = s.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        // Below 256: for the highest sequence to move, a packet of the interval arrived.
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| u8::try_from(f).unwrap_or(u8::MAX));
        let (lsr, dlsr) = match self.last_sr {
            Some((ssrc, middle, at)) if ssrc == s.ssrc => {
                (middle, to_units_65536(now.saturating_duration_since(at)))
            }
            _ => (0, 0),
        };
        Some(ReportBlock {
            ssrc: s.ssrc,
            fraction_lost,
            cumulative_lost: u32::try_from(expected.saturating_sub(s.received)).unwrap_or(u32::MAX),
            // The field is 32 bits: the count of wraps itself wraps after 2^16 of them.
            highest_seq: s.extended_max() as u32,
            jitter: s.jitter as u32,
            lsr,
            dlsr,
        })
    }

    #[cfg(test)]
    /// SSRC of the stream now arriving.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.map(|s| s.ssrc)
    }

    /// Packets received over all streams, duplicates included (as RFC 3550 counts them).
    pub fn packets(&self) -> u64 {
        self.earlier_received + self.source.map_or(0, |s| s.received)
    }

    /// Packets the sequence numbers say were sent, over all streams.
    pub fn expected(&self) -> u64 {
        self.earlier_expected + self.source.map_or(0, |s| s.expected())
    }

    /// Expected minus received over all streams, 0 when duplicates outnumber losses.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets())
    }

    #[cfg(test)]
    pub fn loss_percent(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            e => self.lost() as f64 * 100.0 / e as f64,
        }
    }

    #[cfg(test)]
    /// Highest extended sequence number of the current stream.
    pub fn highest_seq(&self) -> Option<u64> {
        self.source.map(|s| s.extended_max())
    }

    /// Interarrival jitter of the current stream in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.source.map_or(0.0, |s| s.jitter)
    }

    pub fn jitter_ms(&self) -> f64 {
        self.jitter() * 1000.0 / f64::from(CLOCK_RATE)
    }
}

#[cfg(test)]
#[path = "receive_tests.rs"]
mod tests;
