//! The PBX-side call scenarios (tests/sipp/call_*.xml) checked without the call bridge: against
//! a sipp stand-in for the trunk (tests/sipp/fake_trunk_*.xml, which challenges, answers and
//! echoes RTP with `-rtp_echo`), and against the daemon for what it already does. These keep
//! the scenarios and the RTP capture honest, so a failure in `calls.rs` points at the daemon.

use std::time::Duration;

use crate::call_support::*;
use crate::harness::*;
use crate::rtp_capture::{pcap_rtp, Capture, Filter, Rtp};
use crate::sipp::{free_media_port, Scenario, Sipp, SippRun};
use crate::tagged_audio::{streams_scenario, tagged_stream, PerCallEcho};

/// The stand-in trunk on its own SIP and media ports, echoing `calls` calls' RTP.
fn stand_in(scenario: &str, media_port: u16, calls: &str) -> Sipp {
    let uas = Scenario::uas(scenario, free_udp_port())
        .media_port(media_port)
        .args(&["-m", calls, "-rtp_echo"])
        .spawn(Duration::from_secs(40));
    // sipp binds before it reads the scenario's first recv; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    uas
}

/// `scenario` as the PBX calling `dialled` at the stand-in `trunk`.
fn pbx(scenario: impl AsRef<std::path::Path>, trunk: &Sipp, dialled: &str) -> Scenario {
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], trunk.sip_port()));
    Scenario::uac(scenario, target).dial(dialled, TRUNK_USER, TRUNK_PASS)
}

/// `scenario` as the PBX calling `dialled` at the stand-in trunk `trunk_scenario` (one call):
/// both must succeed; the PBX's run.
fn against_stand_in(trunk_scenario: &str, scenario: &str, dialled: &str) -> SippRun {
    let uas = stand_in(trunk_scenario, free_media_port(), "1");
    let run = pbx(scenario, &uas, dialled).run(Duration::from_secs(30));
    assert_ok(&run, &format!("{scenario} against the stand-in"));
    assert_ok(&uas.wait(), "stand-in trunk");
    run
}

fn assert_ok(run: &SippRun, what: &str) {
    run.assert_ok(what, "");
}

#[test]
fn echo_scenario_plays_the_pcap_and_the_capture_sees_every_echo() {
    let trunk_media = free_media_port();
    let uas = stand_in("fake_trunk_answer.xml", trunk_media, "1");
    let pbx_media = free_media_port();
    let cap = Capture::start(
        Filter {
            dst_port: pbx_media,
            src_ports: Some(trunk_media..=trunk_media),
        },
        Duration::from_secs(30),
    );
    let run = pbx("call_echo.xml", &uas, ANSWER_DIALLED)
        .media_port(pbx_media)
        .run(Duration::from_secs(30));
    let captured = cap.finish();
    assert_ok(&run, "call_echo.xml against the stand-in");
    assert_ok(&uas.wait(), "stand-in trunk");
    let sent = g711a_packets();
    if let Some(e) = echo_shortfall(&sent, &captured, 1) {
        panic!("{e}");
    }
    // sipp's echo is perfect: every packet, in order, unchanged.
    let got: Vec<Rtp> = captured
        .iter()
        .filter_map(|d| Rtp::parse(&d.payload))
        .collect();
    assert_eq!(got, sent);
}

#[test]
fn wait_bye_scenario_answers_the_far_ends_bye() {
    against_stand_in("fake_trunk_answer.xml", "call_wait_bye.xml", ANSWER_DIALLED);
}

#[test]
fn cancel_scenario_gets_487() {
    against_stand_in(
        "fake_trunk_reject.xml",
        "call_cancel.xml",
        NO_ANSWER_DIALLED,
    );
}

#[test]
fn final_scenario_logs_the_final_code() {
    // No CANCEL comes, so the stand-in answers 486 after 1.5 s.
    let run = against_stand_in("fake_trunk_reject.xml", "call_final.xml", BUSY_DIALLED);
    assert_eq!(run.logged_final(), Some(486), "{}", run.describe());
}

#[test]
fn final_scenario_authenticates_to_the_daemon_of_today() {
    // No [carrier]: an authenticated INVITE for an allowed number is 503, the refusals are
    // 484 and 403. This is what the bridge keeps doing without a carrier.
    let d = Daemon::start_default();
    for (dialled, want) in [("0501234567", 503), ("12", 484), ("00447400123456", 403)] {
        let run = Scenario::uac("call_final.xml", d.sip)
            .dial(dialled, "user0", "secret")
            .run(Duration::from_secs(20));
        if !run.success || run.logged_final() != Some(want) {
            panic!(
                "{dialled}: expected final {want}, sipp saw {:?}\n{}\ndaemon log (tail):\n{}",
                run.logged_final(),
                run.describe(),
                tail(&d.log(), 40)
            );
        }
    }
}

#[test]
fn dtmf_scenario_sends_the_four_events() {
    let trunk_media = free_media_port();
    let uas = stand_in("fake_trunk_answer.xml", trunk_media, "1");
    let cap = Capture::start(
        Filter {
            dst_port: trunk_media,
            src_ports: None,
        },
        Duration::from_secs(30),
    );
    let run = pbx("call_dtmf.xml", &uas, ANSWER_DIALLED).run(Duration::from_secs(30));
    let captured = cap.finish();
    assert_ok(&run, "call_dtmf.xml against the stand-in");
    assert_ok(&uas.wait(), "stand-in trunk");
    let events: Vec<Rtp> = captured
        .iter()
        .filter_map(|d| Rtp::parse(&d.payload))
        .filter(|r| r.payload_type == 101)
        .collect();
    let mut expected = Vec::new();
    for d in ["1", "5", "9", "pound"] {
        expected.extend(pcap_rtp(std::path::Path::new(&format!(
            "/usr/share/sip-tester/dtmf_2833_{d}.pcap"
        ))));
    }
    assert_eq!(events, expected);
}

/// The scenario the fifty-call media test plays, on three calls: each call plays its own
/// tagged stream from its own port, and the stand-in's echo of each comes back to that port
/// whole and alone.
#[test]
fn tagged_scenario_gives_each_call_its_own_stream_and_port() {
    const CALLS: u16 = 3;
    let uas = stand_in("fake_trunk_answer.xml", free_media_port(), "3");
    let dir = tempfile::tempdir().unwrap();
    let streams: Vec<Vec<Rtp>> = (1..=CALLS).map(|n| tagged_stream(n, 25)).collect();
    let scenario = streams_scenario(dir.path(), "call", &streams, Duration::from_millis(1200));
    let echo = PerCallEcho::bind(CALLS, Duration::from_secs(30));
    let run = pbx(&scenario, &uas, ANSWER_DIALLED)
        .calls(3)
        .media_port(echo.media_port)
        .run(Duration::from_secs(30));
    let received = echo.finish();
    assert_ok(&run, "the tagged scenario against the stand-in");
    assert_ok(&uas.wait(), "stand-in trunk");
    for (n, (got, sent)) in (1..).zip(received.iter().zip(&streams)) {
        let got: Vec<Rtp> = got.iter().filter_map(|d| Rtp::parse(&d.payload)).collect();
        assert_eq!(
            &got, sent,
            "call {n}: sipp's echo is every packet of its own stream, in order"
        );
    }
}
