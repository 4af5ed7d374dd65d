//! What the call tests share: sipp as a child process on chosen SIP and media ports (killed on
//! drop, bounded), the daemon configured for bridging against a simulator, and polling the
//! simulator's calls.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::rtp_capture::{pcap_rtp, Capture, Datagram, Filter, Rtp};

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

/// A block of 100 ports below the kernel's ephemeral range (32768-60999), different for every
/// test in this process, for the daemon's `[media] rtp_ports`: parallel tests never share one.
pub fn rtp_port_block() -> (u16, u16) {
    rtp_port_blocks(1)
}

/// `blocks` consecutive blocks of [`rtp_port_block`] as one range (a test with many calls: each
/// takes an RTP/RTCP pair).
pub fn rtp_port_blocks(blocks: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(blocks, Ordering::SeqCst);
    assert!(n + blocks <= 120, "out of RTP port blocks");
    let low = 20000 + n * 100;
    (low, low + blocks * 100 - 1)
}

/// A free even UDP port whose +1 and +2 are free too (sipp binds its media port and the +2
/// "video" port).
pub fn free_media_port() -> u16 {
    for _ in 0..50 {
        let p = free_udp_port() & !1;
        let ok = [p, p + 1, p + 2]
            .iter()
            .all(|&q| std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no free media port triple on loopback");
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

    /// sipp as the PBX holding one answered call (`call_wait_bye.xml`: it waits for a BYE);
    /// returns once the carrier shows the call ANSWERED.
    pub fn held_call(&self) -> Sipp {
        let sipp = Sipp::spawn(
            "call_wait_bye.xml",
            Some(self.daemon.sip),
            free_udp_port(),
            free_media_port(),
            &uac_args(ANSWER_DIALLED),
            Duration::from_secs(60),
        );
        self.wait_calls("an ANSWERED call", Duration::from_secs(20), |c| {
            c.len() == 1 && c[0]["state"] == "ANSWERED"
        });
        sipp
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
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if f(&calls) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "simulator never showed {what} within {timeout:?}\nsim calls: {}\n{}",
                    pretty(&calls),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The single call the simulator saw, after it ended (bounded wait).
    pub fn only_call_ended(&self) -> Value {
        self.wait_calls("exactly one call, ENDED", Duration::from_secs(10), |c| {
            c.len() == 1 && c[0]["state"] == "ENDED"
        });
        self.calls().remove(0)
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

/// sipp on fixed SIP and media ports (127.0.0.1), running as a child process.
pub struct Sipp {
    child: Option<Child>,
    pub scenario: String,
    pub sip_port: u16,
    pub media_port: u16,
    dir: tempfile::TempDir,
    deadline: Instant,
}

/// What a finished sipp run left.
#[derive(Debug)]
pub struct SippRun {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    pub errors: String,
    /// The `<log>` lines (the scenario's `-log_file`).
    pub log: String,
}

impl SippRun {
    pub fn describe(&self) -> String {
        format!(
            "status {}\nsipp screen (tail):\n{}\nstderr:\n{}\nerror file (tail):\n{}\nscenario log:\n{}",
            self.status,
            // the last scenario screen (message counts per step), not the statistics after it
            tail(
                self.stdout
                    .rsplit_once("Test Terminated")
                    .map_or(self.stdout.as_str(), |(screen, _)| screen),
                40
            ),
            tail(&self.stderr, 10),
            tail(&self.errors, 40),
            self.log
        )
    }
}

impl Sipp {
    /// Starts `tests/sipp/<scenario>` toward `target` (None: a UAS, no target) with
    /// `-i 127.0.0.1 -p sip_port -mi 127.0.0.1 -mp media_port`, sipp's own `-timeout` and
    /// `max` as a hard bound after which the process is killed; one call (`-m 1`) unless
    /// `extra` gives `-m`.
    pub fn spawn(
        scenario: &str,
        target: Option<SocketAddr>,
        sip_port: u16,
        media_port: u16,
        extra: &[&str],
        max: Duration,
    ) -> Sipp {
        require_sipp();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf").arg(sipp_dir().join(scenario));
        if let Some(t) = target {
            cmd.arg(t.to_string());
        }
        let sip = sip_port.to_string();
        let media = media_port.to_string();
        let timeout = format!("{}s", max.as_secs().saturating_sub(5).max(5));
        cmd.args([
            "-i",
            "127.0.0.1",
            "-p",
            &sip,
            "-mi",
            "127.0.0.1",
            "-mp",
            &media,
        ])
        .args(["-nostdin", "-timeout", &timeout, "-timeout_error"])
        .args(["-trace_err", "-error_file"])
        .arg(dir.path().join("errors.log"))
        .args(["-trace_logs", "-log_file"])
        .arg(dir.path().join("scenario.log"))
        .args(extra)
        .args(auth_uri(target, extra))
        .args(if extra.contains(&"-m") {
            &[][..]
        } else {
            &["-m", "1"][..]
        })
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"));
        let child = cmd.spawn().expect("run sipp");
        Sipp {
            child: Some(child),
            scenario: scenario.to_string(),
            sip_port,
            media_port,
            dir,
            deadline: Instant::now() + max,
        }
    }

    /// A UAC run to completion (`-m 1` unless `extra` says otherwise).
    pub fn run(
        scenario: &str,
        target: SocketAddr,
        media_port: u16,
        extra: &[&str],
        max: Duration,
    ) -> SippRun {
        Sipp::spawn(
            scenario,
            Some(target),
            free_udp_port(),
            media_port,
            extra,
            max,
        )
        .wait()
    }

    /// Whether sipp is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits until sipp exits, killing it at the deadline given to `spawn`.
    pub fn wait(mut self) -> SippRun {
        let mut child = self.child.take().expect("sipp child");
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break format!("{s}");
            }
            if Instant::now() >= self.deadline {
                let _ = child.kill();
                let _ = child.wait();
                break "killed at the test's deadline".to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        SippRun {
            success: status == "exit status: 0",
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            errors: read("errors.log"),
            log: read("scenario.log"),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The PBX's trunk credentials for sipp (`-au`/`-ap`, used by `[authentication]`) and the
/// dialled number (`-s`, the Request-URI user).
pub fn uac_args(dialled: &str) -> Vec<&str> {
    vec!["-s", dialled, "-au", TRUNK_USER, "-ap", TRUNK_PASS]
}

/// `-auth_uri` for a UAC that authenticates (`-au`) calls to `-s NUMBER`: sipp 3.6 otherwise
/// signs `sip:{remote_ip}:{remote_port}`, and the daemon binds a digest to the Request-URI
/// (`sip:NUMBER@{daemon}` in our scenarios) and refuses any other with 400 (RFC 3261 22.4).
fn auth_uri(target: Option<SocketAddr>, extra: &[&str]) -> Vec<String> {
    let dialled = extra
        .iter()
        .position(|a| *a == "-s")
        .and_then(|i| extra.get(i + 1));
    match (target, dialled) {
        (Some(t), Some(d)) if extra.contains(&"-au") && !extra.contains(&"-auth_uri") => {
            vec!["-auth_uri".into(), format!("{d}@{t}")]
        }
        _ => Vec::new(),
    }
}

/// The final response `call_final.xml` logged ("final NNN"), if any.
pub fn logged_final(run: &SippRun) -> Option<u16> {
    run.log
        .split("final ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|c| c.parse().ok())
}

/// The audio packets sipp plays from g711a.pcap.
pub fn g711a_packets() -> Vec<Rtp> {
    pcap_rtp(std::path::Path::new(G711A_PCAP))
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
