//! What the call tests share: the daemon configured for bridging against a simulator, sipp as
//! the PBX calling through it or registered to it, the carrier's side driven and polled through
//! the simulator's control API.

use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::http::http_json;
use crate::rtp_capture::{pcap_rtp, Capture, Datagram, Filter, Rtp};
use crate::sim_process::SimProcess;
use crate::sipp::{auth_csv, free_media_port, Scenario, Sipp, SippRun};

pub const CARRIER_USER: &str = "gw@sim.test";
pub const CARRIER_PASS: &str = "carrier-secret-c417";
pub const TRUNK: &str = "t0";
pub const TRUNK_USER: &str = "user0";
pub const TRUNK_PASS: &str = "secret";

/// The numbers the simulator scripts (E.164, the form its behaviour lists match) and what the
/// PBX dials to reach them (UAE national form, normalised by the daemon to the E.164 one).
pub const ANSWER_DIALLED: &str = "0501234567";
pub const ANSWER_E164: &str = "+971501234567";
pub const BUSY_DIALLED: &str = "0500000486";
pub const NO_ANSWER_DIALLED: &str = "0500000480";
pub const REJECT_DIALLED: &str = "0500000603";
pub const EARLY_DIALLED: &str = "0500000183";
pub const SIM_BEHAVIOUR: &str = "busy = [\"+971500000486\"]\nno_answer = [\"+971500000480\"]\n\
     reject = [\"+971500000603\"]\nearly_media = [\"+971500000183\"]\n";

pub const G711A_PCAP: &str = "/usr/share/sip-tester/g711a.pcap";

/// `blocks` consecutive blocks of 100 ports below the kernel's ephemeral range (32768-60999),
/// different for every test in this process, for the daemon's `[media] rtp_ports`: parallel
/// tests never share one (a test with many calls takes more blocks: each call takes an RTP/RTCP
/// pair).
pub fn rtp_port_blocks(blocks: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(blocks, Ordering::SeqCst);
    assert!(n + blocks <= 120, "out of RTP port blocks");
    let low = 20000 + n * 100;
    (low, low + blocks * 100 - 1)
}

/// The simulator with the scripted numbers above, and the daemon bridging to it: trunk `t0`
/// (`user0` / `secret`, plus `trunk_extra` lines), `[media] rtp_ports` from `rtp`, `[calls]`
/// with `calls_extra`, `[inbound] default_trunk = "t0"`. Returns once the carrier subscription
/// has its notification channel.
pub struct Bridge {
    pub sim: SimProcess,
    pub daemon: Daemon,
    pub rtp: (u16, u16),
}

/// What a test may change in the bridge; `..BridgeConfig::default()` for the rest.
#[derive(Debug, Default)]
pub struct BridgeConfig<'a> {
    /// Lines in the daemon's `[sip]`, after its trunk, and in `[calls]`.
    pub sip_extra: &'a str,
    pub trunk_extra: &'a str,
    pub calls_extra: &'a str,
    /// Top-level lines of the simulator's configuration (`turn_username = ...`).
    pub sim_top: &'a str,
    /// More lines in the daemon's `[carrier]` (`ice_servers = [...]`, ...).
    pub carrier_extra: &'a str,
    /// A PEM certificate the daemon trusts besides the simulator's (in one `ca_file` bundle).
    pub extra_ca: Option<&'a std::path::Path>,
    /// Blocks of 100 RTP ports toward the PBX (0 counts as 1).
    pub rtp_blocks: u16,
}

impl Bridge {
    pub fn start() -> Bridge {
        Bridge::start_with("", "")
    }

    pub fn start_with(trunk_extra: &str, calls_extra: &str) -> Bridge {
        Bridge::start_full("", trunk_extra, calls_extra)
    }

    /// As [`Bridge::start_with`], with `sip_extra` lines in `[sip]` (`t1 = "100ms"` ...).
    pub fn start_full(sip_extra: &str, trunk_extra: &str, calls_extra: &str) -> Bridge {
        Bridge::start_config(&BridgeConfig {
            sip_extra,
            trunk_extra,
            calls_extra,
            ..BridgeConfig::default()
        })
    }

    /// The bridge with everything [`BridgeConfig`] can change.
    pub fn start_config(c: &BridgeConfig) -> Bridge {
        let sim = SimProcess::start_full(CARRIER_USER, CARRIER_PASS, c.sim_top, SIM_BEHAVIOUR);
        let rtp = rtp_port_blocks(c.rtp_blocks.max(1));
        let ca_file = match c.extra_ca {
            None => sim.cert.clone(),
            Some(extra) => {
                // one PEM file holding both: `ca_file` takes every certificate it finds
                let bundle = sim.dir.path().join("ca-bundle.pem");
                let pem = [sim.cert.as_path(), extra]
                    .iter()
                    .map(|p| std::fs::read_to_string(p).expect("read a PEM certificate"))
                    .collect::<Vec<_>>()
                    .join("\n");
                std::fs::write(&bundle, pem).expect("write the CA bundle");
                bundle
            }
        };
        let config = format!(
            "{}{}\n\n[media]\nrtp_ports = \"{}-{}\"\n\n[calls]\nno_answer_timeout = \"60s\"\n\
             {}\n\n[inbound]\ndefault_trunk = \"{TRUNK}\"\n\n{}",
            trunk(TRUNK, TRUNK_USER, TRUNK_PASS),
            c.trunk_extra,
            rtp.0,
            rtp.1,
            c.calls_extra,
            sim.carrier_toml_with(CARRIER_USER, CARRIER_PASS, c.carrier_extra, &ca_file)
        );
        let daemon = Daemon::start(c.sip_extra, &config);
        daemon.wait_log("notification channel connected");
        sim.wait_subscriptions("the daemon's subscription with its socket", |s| {
            s.iter().any(|s| s["ws_connected"] == true)
        });
        Bridge { sim, daemon, rtp }
    }

    /// Captures what the daemon sends to `pbx_media` (sipp's media port) from its RTP range.
    pub fn capture_toward_pbx(&self, pbx_media: u16) -> Capture {
        Capture::start(
            Filter {
                dst_port: pbx_media,
                src_ports: Some(self.rtp.0..=self.rtp.1),
            },
            Duration::from_secs(90),
        )
    }

    /// sipp as the PBX calling `dialled` with `scenario`, through the daemon, with the trunk's
    /// credentials.
    pub fn call(&self, scenario: &str, dialled: &str) -> Scenario {
        Scenario::uac(scenario, self.daemon.sip).dial(dialled, TRUNK_USER, TRUNK_PASS)
    }

    /// Runs `call` on a media port whose every datagram from the daemon's RTP range is
    /// captured: the run and the capture.
    pub fn captured(&self, call: Scenario, max: Duration) -> (SippRun, Vec<Datagram>) {
        let pbx_media = free_media_port();
        let cap = self.capture_toward_pbx(pbx_media);
        let run = call.media_port(pbx_media).run(max);
        (run, cap.finish())
    }

    /// Runs `scenario` (`call_final.xml`, `call_limit.xml`: they log the final response) as the
    /// PBX calling `dialled`; fails, saying `what` was tried, unless the run ends well and with
    /// `want` as the final response.
    pub fn expect_final(&self, scenario: &str, dialled: &str, want: u16, what: &str) -> SippRun {
        let run = self.call(scenario, dialled).run(Duration::from_secs(40));
        let got = run.logged_final();
        if !run.success || got != Some(want) {
            self.fail(&format!(
                "{what}: expected final response {want}, the PBX saw {got:?}\n{}",
                run.describe()
            ));
        }
        run
    }

    /// sipp as the PBX in one call with `scenario`; returns once the carrier shows the call
    /// ANSWERED.
    pub fn answered_call(&self, scenario: &str) -> Sipp {
        let sipp = self
            .call(scenario, ANSWER_DIALLED)
            .spawn(Duration::from_secs(60));
        self.wait_calls("an ANSWERED call", Duration::from_secs(20), |c| {
            c.len() == 1 && c[0]["state"] == "ANSWERED"
        });
        sipp
    }

    /// sipp as the PBX holding one answered call (`call_wait_bye.xml`: it waits for a BYE).
    pub fn held_call(&self) -> Sipp {
        self.answered_call("call_wait_bye.xml")
    }

    /// An inbound call to the registered PBX: the trunk registers from a fresh port with
    /// reg_auth.xml, as a PBX does, `scenario` then waits on that port as the PBX's UAS (media
    /// on `pbx_media`), and the carrier calls the trunk.
    pub fn inbound_call(&self, scenario: &str, pbx_media: u16, max: Duration) -> Sipp {
        let pbx_port = free_udp_port();
        let csv = auth_csv(self.daemon.dir.path(), TRUNK_USER, TRUNK_USER, TRUNK_PASS);
        let reg = Scenario::uac("reg_auth.xml", self.daemon.sip)
            .sip_port(pbx_port)
            .args(&["-inf", &csv])
            .run(Duration::from_secs(20));
        self.assert_sipp_ok(&reg, "reg_auth.xml (the trunk registers)");
        let mut uas = Scenario::uas(scenario, pbx_port)
            .media_port(pbx_media)
            .spawn(max);
        // sipp binds before it reads the scenario's first recv; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        self.check(uas.running(), || {
            format!("the sipp UAS {scenario} did not start")
        });
        let (code, v) = http_json(
            self.sim.control,
            "POST",
            "/originate",
            Some(r#"{"to":"+97142001000","from":"+971509990000","mode":"tone"}"#),
        );
        self.check(code == 200 && v["delivered"] == true, || {
            format!("originate: {code} {v}")
        });
        uas
    }

    /// The carrier session of the simulator's call `n` (in the order it saw them).
    pub fn session(&self, n: usize) -> String {
        let calls = self.calls();
        calls
            .get(n)
            .and_then(|c| c["session"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| self.fail(&format!("the simulator has no call {n}")))
    }

    /// `POST /calls/{session}/{action}` at the simulator (`hangup`, `cancel`, `reoffer`),
    /// which must answer 200.
    pub fn carrier_does(&self, session: &str, action: &str, body: Option<&str>) {
        let path = format!("/calls/{session}/{action}");
        let (code, v) = http_json(self.sim.control, "POST", &path, body);
        self.check(code == 200, || format!("sim {action}: {code} {v}"));
    }

    pub fn calls(&self) -> Vec<Value> {
        match http_json(self.sim.control, "GET", "/calls", None) {
            (200, Value::Array(a)) => a,
            other => panic!("GET /calls: {other:?}"),
        }
    }

    /// Polls the simulator (bounded) until `f` holds for its call list; panics with the list
    /// and both logs otherwise.
    pub fn wait_calls(&self, what: &str, timeout: Duration, f: impl Fn(&[Value]) -> bool) {
        if wait_until(timeout, || f(&self.calls()).then_some(())).is_none() {
            self.fail(&format!("simulator never showed {what} within {timeout:?}"));
        }
    }

    /// After a moment for anything in flight to arrive, the carrier has seen `n` calls
    /// (`what` the test expected).
    pub fn check_carrier_calls(&self, n: usize, what: &str) {
        std::thread::sleep(Duration::from_millis(300));
        let calls = self.calls().len();
        self.check(calls == n, || {
            format!("expected {what}, the carrier saw {calls} call(s)")
        });
    }

    /// The single call the simulator saw, after it ended (bounded wait).
    pub fn only_call_ended(&self) -> Value {
        self.wait_calls("exactly one call, ENDED", Duration::from_secs(10), |c| {
            c.len() == 1 && c[0]["state"] == "ENDED"
        });
        self.calls().remove(0)
    }

    /// [`Bridge::only_call_ended`], which must have been ended by `by`: `client` (the gateway
    /// deleted the carrier session) or `control` (the carrier, through the simulator's API).
    pub fn only_call_ended_by(&self, by: &str) -> Value {
        let call = self.only_call_ended();
        self.check(call["ended_by"] == by, || {
            format!(
                "expected the carrier call ended_by {by}, it was ended_by {}, history {:?}",
                call["ended_by"],
                states(&call)
            )
        });
        call
    }

    /// [`Bridge::only_call_ended_by`] the gateway, after it was answered.
    pub fn answered_call_ended_by_gateway(&self) -> Value {
        let call = self.only_call_ended();
        self.check_answered_then_ended_by_gateway(&call);
        call
    }

    /// A carrier call was answered, then ended by the gateway (after the PBX's BYE, say).
    pub fn check_answered_then_ended_by_gateway(&self, call: &Value) {
        let s = states(call);
        self.check(s.iter().any(|s| s == "ANSWERED"), || {
            format!("expected the call ANSWERED at the carrier, history {s:?}")
        });
        self.check(call["ended_by"] == "client", || {
            format!(
                "expected the gateway to end the carrier session (ended_by client), saw {}",
                call["ended_by"]
            )
        });
    }

    /// The tails of the daemon and simulator logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "daemon log (tail):\n{}\nsimulator log (tail):\n{}",
            tail(&self.daemon.log(), 60),
            tail(&self.sim.log(), 20)
        )
    }

    /// Panics with a description, the simulator's calls and both logs.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nsim calls: {}\n{}",
            pretty(&self.calls()),
            self.logs()
        )
    }

    pub fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(&what());
        }
    }

    /// `call(scenario, dialled)` run to its end, which must succeed (`what` it does).
    pub fn call_ok(&self, scenario: &str, dialled: &str, what: &str) -> SippRun {
        let run = self.call(scenario, dialled).run(Duration::from_secs(60));
        self.assert_sipp_ok(&run, &format!("{scenario} ({what})"));
        run
    }

    /// [`Bridge::captured`] `call`, which must succeed (`what` it does): the capture.
    pub fn captured_ok(&self, call: Scenario, max: Duration, what: &str) -> Vec<Datagram> {
        let (run, captured) = self.captured(call, max);
        self.assert_sipp_ok(&run, what);
        captured
    }

    /// `scenario` calling the number the carrier answers, with the capture toward the PBX; it
    /// must succeed (`what` it does) and the carrier call be answered, then ended by the
    /// gateway: that call and the capture.
    pub fn answered_captured_call(&self, scenario: &str, what: &str) -> (Value, Vec<Datagram>) {
        let call = self.call(scenario, ANSWER_DIALLED);
        let captured = self.captured_ok(call, Duration::from_secs(60), what);
        (self.answered_call_ended_by_gateway(), captured)
    }

    /// The carrier got the pcap sipp plays on `call`.
    pub fn check_pcap_at_carrier(&self, call: &Value) {
        if let Some(e) = pcap_shortfall_at_carrier(call) {
            self.fail(&e);
        }
    }

    /// Asserts a finished sipp run succeeded; the failure names the scenario, sipp's output
    /// and error file, the simulator's calls and both logs.
    pub fn assert_sipp_ok(&self, run: &SippRun, what: &str) {
        if !run.success {
            self.fail(&format!("sipp {what} failed:\n{}", run.describe()));
        }
    }
}

pub fn pretty(v: &[Value]) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The states a simulator call went through, from its `history`.
pub fn states(call: &Value) -> Vec<String> {
    call["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|s| s["state"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn media_u64(call: &Value, key: &str) -> u64 {
    call["media"][key].as_u64().unwrap_or(0)
}

/// The audio packets sipp plays from g711a.pcap.
pub fn g711a_packets() -> Vec<Rtp> {
    pcap_rtp(std::path::Path::new(G711A_PCAP))
}

/// Whether the carrier counted at least 90 % of the pcap sipp plays coming in on `call`; what
/// it counted otherwise.
pub fn pcap_shortfall_at_carrier(call: &Value) -> Option<String> {
    let sent = g711a_packets().len();
    let need = (sent * 9 / 10) as u64;
    let rtp_in = media_u64(call, "rtp_packets_in");
    (rtp_in < need).then(|| {
        format!("expected at least {need} of the {sent} pcap packets at the carrier, it counted {rtp_in}")
    })
}

/// Checks the echo: at least 90 % of the audio payloads sipp sent (all but the first five,
/// which may meet a leg still connecting) came back byte-identical. Returns a description of
/// the mismatch, or None when it holds.
pub fn echo_shortfall(sent: &[Rtp], captured: &[Datagram], calls: usize) -> Option<String> {
    let received: Vec<Vec<u8>> = captured
        .iter()
        .filter_map(|d| Rtp::parse(&d.payload))
        .map(|r| r.payload)
        .collect();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for _ in 0..calls {
        expected.extend(sent.iter().skip(5).map(|r| r.payload.clone()));
    }
    let matched = crate::rtp_capture::matched_payloads(&expected, &received);
    let need = expected.len() * 9 / 10;
    if matched >= need {
        None
    } else {
        Some(format!(
            "echo: {matched} of {} sent audio payloads came back byte-identical (need {need}); \
             captured {} datagrams, {} of them RTP",
            expected.len(),
            captured.len(),
            received.len()
        ))
    }
}
