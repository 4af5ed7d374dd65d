//! Prometheus text exposition (format 0.0.4) of what the daemon counts: SIP traffic and
//! registrations from the SIP core, calls from their records, RTP from the relays (finished
//! calls' totals plus the live calls' counters, summed at scrape time, so the media path
//! touches no shared counter), and the carrier accounts.
//!
//! The text is written here rather than through a metrics crate: every value already lives in
//! our own atomics and records, and the format is a few lines per family; a registry would only
//! copy them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::call::record::{CallDirection, CallRecord, RecordSink};

/// Call setup time buckets (seconds): INVITE to answer.
const SETUP_BUCKETS: [f64; 10] = [0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0];

/// What the records tell: calls by direction and outcome, setup times, RTP of finished calls.
#[derive(Debug, Default)]
pub struct CallMetrics {
    outcomes: Mutex<Vec<(CallDirection, String, u64)>>,
    setup_buckets: [AtomicU64; SETUP_BUCKETS.len()],
    setup_count: AtomicU64,
    setup_sum_ms: AtomicU64,
    pub rtp_from_pbx_finished: AtomicU64,
    pub rtp_to_pbx_finished: AtomicU64,
    pub rtp_bytes_from_pbx_finished: AtomicU64,
    pub rtp_bytes_to_pbx_finished: AtomicU64,
    pub rtp_lost_from_pbx_finished: AtomicU64,
    pub rtp_lost_from_carrier_finished: AtomicU64,
    pub rtp_lost_reported_by_pbx_finished: AtomicU64,
}

/// A record's outcome label: `answered`, or the final SIP code's meaning.
pub fn outcome(r: &CallRecord) -> String {
    if r.answered.is_some() {
        return "answered".into();
    }
    match r.sip_code {
        484 => "invalid_number",
        403 => "refused",
        486 => "busy",
        487 => "cancelled",
        480 | 408 => "no_answer",
        603 => "declined",
        488 => "not_acceptable",
        500..=599 => "unavailable",
        _ => "failed",
    }
    .into()
}

impl RecordSink for CallMetrics {
    fn record(&self, r: CallRecord) {
        let label = outcome(&r);
        {
            let mut o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            match o
                .iter_mut()
                .find(|(d, l, _)| *d == r.direction && *l == label)
            {
                Some(e) => e.2 += 1,
                None => o.push((r.direction, label, 1)),
            }
        }
        if let Some(setup) = r.answered.and_then(|a| a.duration_since(r.started).ok()) {
            self.observe_setup(setup);
        }
        self.rtp_from_pbx_finished
            .fetch_add(r.rtp_packets_from_pbx, Ordering::Relaxed);
        self.rtp_to_pbx_finished
            .fetch_add(r.rtp_packets_to_pbx, Ordering::Relaxed);
        self.rtp_bytes_from_pbx_finished
            .fetch_add(r.rtp_bytes_from_pbx, Ordering::Relaxed);
        self.rtp_bytes_to_pbx_finished
            .fetch_add(r.rtp_bytes_to_pbx, Ordering::Relaxed);
        self.rtp_lost_from_pbx_finished
            .fetch_add(r.rtp_lost_from_pbx, Ordering::Relaxed);
        self.rtp_lost_from_carrier_finished
            .fetch_add(r.rtp_lost_from_carrier, Ordering::Relaxed);
        self.rtp_lost_reported_by_pbx_finished
            .fetch_add(r.rtp_lost_reported_by_pbx, Ordering::Relaxed);
    }
}

impl CallMetrics {
    fn observe_setup(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in SETUP_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.setup_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.setup_count.fetch_add(1, Ordering::Relaxed);
        self.setup_sum_ms
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn write(&self, out: &mut Exposition) {
        out.family(
            "trunkgate_calls_total",
            "counter",
            "Call attempts by direction and outcome.",
        );
        let o = self
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (d, label, n) in o {
            let dir = match d {
                CallDirection::Outbound => "outbound",
                CallDirection::Inbound => "inbound",
            };
            out.sample(
                "trunkgate_calls_total",
                &[("direction", dir), ("outcome", &label)],
                n as f64,
            );
        }
        out.family(
            "trunkgate_call_setup_seconds",
            "histogram",
            "From the call's start to its answer.",
        );
        for (i, b) in SETUP_BUCKETS.iter().enumerate() {
            out.sample(
                "trunkgate_call_setup_seconds_bucket",
                &[("le", &b.to_string())],
                self.setup_buckets[i].load(Ordering::Relaxed) as f64,
            );
        }
        let count = self.setup_count.load(Ordering::Relaxed) as f64;
        out.sample(
            "trunkgate_call_setup_seconds_bucket",
            &[("le", "+Inf")],
            count,
        );
        out.sample(
            "trunkgate_call_setup_seconds_sum",
            &[],
            self.setup_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        out.sample("trunkgate_call_setup_seconds_count", &[], count);
    }
}

/// Builds the exposition text.
#[derive(Debug, Default)]
pub struct Exposition(pub String);

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// One family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn records_become_counters_and_a_histogram() {
        let m = CallMetrics::default();
        let mut r = CallRecord::new(crate::sip::tu::CallRef(1), CallDirection::Outbound, "x");
        r.started = SystemTime::now();
        r.answered = Some(r.started + Duration::from_millis(1500));
        r.rtp_packets_from_pbx = 10;
        m.record(r);
        let mut busy = CallRecord::new(crate::sip::tu::CallRef(2), CallDirection::Outbound, "y");
        busy.sip_code = 486;
        m.record(busy);
        let mut e = Exposition::default();
        m.write(&mut e);
        let t = e.0;
        assert!(
            t.contains("trunkgate_calls_total{direction=\"outbound\",outcome=\"answered\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("trunkgate_calls_total{direction=\"outbound\",outcome=\"busy\"} 1\n"));
        assert!(t.contains("trunkgate_call_setup_seconds_bucket{le=\"1\"} 0\n"));
        assert!(t.contains("trunkgate_call_setup_seconds_bucket{le=\"2\"} 1\n"));
        assert!(t.contains("trunkgate_call_setup_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(t.contains("trunkgate_call_setup_seconds_sum 1.5\n"));
        assert_eq!(m.rtp_from_pbx_finished.load(Ordering::Relaxed), 10);
    }
}
