//! Calls end to end (issue 5): the real daemon bridging sipp (the PBX, scenarios in
//! tests/sipp/call_*.xml) and `trunkgate sim` (the carrier), audio checked on the wire with the
//! loopback capture and in the simulator's per-call counters. One test per item of the issue's
//! "Tests" paragraph; every wait is bounded and the failure messages show what was expected,
//! what was seen, the simulator's calls and the logs.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::call_support::*;
use crate::harness::*;
use crate::rtp_capture::{Datagram, Rtp};

/// The outbound call the simulator saw: answered, then ended by the gateway (`client`).
fn assert_answered_and_ended_by_pbx(b: &Bridge, call: &Value) {
    let s = states(call);
    b.check(s.iter().any(|s| s == "ANSWERED"), || {
        format!("expected the call ANSWERED at the carrier, history {s:?}")
    });
    b.check(call["ended_by"] == "client", || {
        format!(
            "expected the gateway to end the carrier session (ended_by client) after the PBX's BYE, saw {}",
            call["ended_by"]
        )
    });
}

#[test]
fn outbound_call_with_digest_auth_echoes_the_pcap_audio_and_pbx_hangs_up() {
    let b = Bridge::start();
    let pbx_media = free_media_port();
    let cap = b.capture_toward_pbx(pbx_media);
    let run = Sipp::run(
        "call_echo.xml",
        b.daemon.sip,
        pbx_media,
        &uac_args(ANSWER_DIALLED),
        Duration::from_secs(60),
    );
    let captured = cap.finish();
    b.assert_sipp_ok(&run, "call_echo.xml (auth, answer, pcap audio, BYE)");
    let call = b.only_call_ended();
    b.check(call["direction"] == "outbound", || {
        format!("direction {}", call["direction"])
    });
    b.check(
        call["to"].as_str().is_some_and(|t| t.contains(ANSWER_E164)),
        || {
            format!(
                "expected the carrier to be asked for {ANSWER_E164}, saw to={}",
                call["to"]
            )
        },
    );
    assert_answered_and_ended_by_pbx(&b, &call);
    let sent = g711a_packets();
    let need = (sent.len() * 9 / 10) as u64;
    let rtp_in = media_u64(&call, "rtp_packets_in");
    b.check(rtp_in >= need, || {
        format!(
            "expected at least {need} of the {} pcap packets at the carrier, it counted {rtp_in}",
            sent.len()
        )
    });
    if let Some(e) = echo_shortfall(&sent, &captured, 1) {
        b.fail(&format!(
            "{e}; the carrier echoed {}",
            media_u64(&call, "rtp_packets_out")
        ));
    }
    // Symmetric RTP: every echo comes from one daemon port, inside the configured range.
    let sources: std::collections::BTreeSet<u16> = captured.iter().map(|d| d.src_port).collect();
    b.check(sources.len() == 1, || {
        format!("expected the echo from one daemon RTP port, saw {sources:?}")
    });
}

#[test]
fn carrier_hangs_up_and_the_pbx_gets_bye() {
    let b = Bridge::start();
    let sipp = b.held_call();
    std::thread::sleep(Duration::from_secs(1));
    let session = b.calls()[0]["session"].as_str().unwrap_or("").to_string();
    let (code, v) = http_json(
        b.sim.control,
        "POST",
        &format!("/calls/{session}/hangup"),
        None,
    );
    b.check(code == 200, || format!("sim hangup: {code} {v}"));
    let run = sipp.wait();
    b.assert_sipp_ok(&run, "call_wait_bye.xml (expects a BYE from the daemon)");
    let call = b.only_call_ended();
    b.check(call["ended_by"] == "control", || {
        format!(
            "expected the carrier (control API) to have ended the call, saw {}",
            call["ended_by"]
        )
    });
}

/// The carrier holds and resumes (its `startCallUpdate` offers): each becomes a re-INVITE toward
/// the PBX with the carrier's direction, and the carrier gets our answer.
#[test]
fn carrier_hold_and_resume_become_reinvites_to_the_pbx() {
    let b = Bridge::start();
    let sipp = Sipp::spawn(
        "call_carrier_hold.xml",
        Some(b.daemon.sip),
        free_udp_port(),
        free_media_port(),
        &uac_args(ANSWER_DIALLED),
        Duration::from_secs(60),
    );
    b.wait_calls("an ANSWERED call", Duration::from_secs(20), |c| {
        c.len() == 1 && c[0]["state"] == "ANSWERED"
    });
    let session = b.calls()[0]["session"].as_str().unwrap_or("").to_string();
    for (direction, updates) in [("sendonly", 1), ("sendrecv", 2)] {
        let (code, v) = http_json(
            b.sim.control,
            "POST",
            &format!("/calls/{session}/reoffer"),
            Some(&format!("{{\"direction\":\"{direction}\"}}")),
        );
        b.check(code == 200, || {
            format!("sim reoffer {direction}: {code} {v}")
        });
        // the daemon answers the carrier (respondCallUpdate) once the PBX has been told
        b.wait_calls(
            &format!("the carrier's {direction} re-offer answered"),
            Duration::from_secs(10),
            |c| c.len() == 1 && c[0]["updates"].as_u64() == Some(updates),
        );
    }
    let run = sipp.wait();
    b.assert_sipp_ok(
        &run,
        "call_carrier_hold.xml (re-INVITE sendonly, then sendrecv, from the daemon)",
    );
    let call = b.only_call_ended();
    b.check(call["ended_by"] == "client", || {
        format!(
            "expected the PBX's BYE to end the call, ended_by {}",
            call["ended_by"]
        )
    });
}

#[test]
fn cancel_while_ringing_gets_487_and_ends_the_carrier_session() {
    let b = Bridge::start();
    let run = Sipp::run(
        "call_cancel.xml",
        b.daemon.sip,
        free_media_port(),
        &uac_args(NO_ANSWER_DIALLED),
        Duration::from_secs(30),
    );
    b.assert_sipp_ok(&run, "call_cancel.xml (180, CANCEL, 200, 487)");
    let call = b.only_call_ended();
    let s = states(&call);
    b.check(
        s.iter().any(|s| s == "RINGING") && !s.iter().any(|s| s == "ANSWERED"),
        || format!("expected RINGING and never ANSWERED, history {s:?}"),
    );
    b.check(call["ended_by"] == "client", || {
        format!(
            "expected the gateway to delete the carrier session, ended_by {}",
            call["ended_by"]
        )
    });
}

/// Runs call_final.xml for `dialled` and asserts the PBX saw `want` as the final response.
fn final_code(b: &Bridge, dialled: &str, want: u16) -> SippRun {
    let run = Sipp::run(
        "call_final.xml",
        b.daemon.sip,
        free_media_port(),
        &uac_args(dialled),
        Duration::from_secs(30),
    );
    let got = logged_final(&run);
    if !run.success || got != Some(want) {
        b.fail(&format!(
            "dialled {dialled}: expected final response {want}, the PBX saw {got:?}\n{}",
            run.describe()
        ));
    }
    run
}

#[test]
fn busy_at_the_carrier_is_486() {
    let b = Bridge::start();
    final_code(&b, BUSY_DIALLED, 486);
    let call = b.only_call_ended();
    b.check(call["end_code"] == 486, || {
        format!("carrier end_code {}", call["end_code"])
    });
}

#[test]
fn reject_at_the_carrier_is_603() {
    let b = Bridge::start();
    final_code(&b, REJECT_DIALLED, 603);
    let call = b.only_call_ended();
    b.check(call["end_code"] == 603, || {
        format!("carrier end_code {}", call["end_code"])
    });
}

#[test]
fn invalid_number_is_484_and_never_reaches_the_carrier() {
    let b = Bridge::start();
    final_code(&b, "12", 484);
    std::thread::sleep(Duration::from_millis(300));
    b.check(b.calls().is_empty(), || {
        "expected no carrier call for an invalid number".into()
    });
}

#[test]
fn disallowed_number_is_403_and_never_reaches_the_carrier() {
    let b = Bridge::start();
    // A UK mobile under the default UAE-only policy (not +441632960000: that drama range is no
    // valid number, so it is 484, not 403).
    final_code(&b, "00447400123456", 403);
    std::thread::sleep(Duration::from_millis(300));
    b.check(b.calls().is_empty(), || {
        "expected no carrier call for a disallowed number".into()
    });
}

#[test]
fn unauthenticated_invite_never_reaches_the_carrier() {
    let b = Bridge::start();
    let c = SipClient::new();
    let me = c.addr();
    let to = b.daemon.sip;
    let invite = format!(
        "INVITE sip:{ANSWER_DIALLED}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKnoauth1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag=na1\r\nTo: <sip:{ANSWER_DIALLED}@{to}>\r\n\
         Call-ID: noauth1@test\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\nContent-Length: 0\r\n\r\n"
    );
    let r = c.request(&invite, to);
    b.check(status_code(&r) == 407, || {
        format!("expected 407 without credentials, got:\n{r}")
    });
    ack(&c, to, &r, &format!("sip:{ANSWER_DIALLED}@{to}"));
    // Wrong password: challenged again (or refused), never forwarded.
    let c2 = SipClient::new();
    let last = authenticated_invite(&c2, to, ANSWER_DIALLED, TRUNK_USER, "not-the-password", "");
    let code = status_code(&last);
    b.check(code == 407 || code == 403, || {
        format!("expected 407 or 403 for a wrong password, got:\n{last}")
    });
    std::thread::sleep(Duration::from_millis(500));
    b.check(b.calls().is_empty(), || {
        "expected the simulator to see no call from unauthenticated INVITEs".into()
    });
}

#[test]
fn hold_and_resume_are_carried_to_the_carrier() {
    let b = Bridge::start();
    let pbx_media = free_media_port();
    let cap = b.capture_toward_pbx(pbx_media);
    let run = Sipp::run(
        "call_hold.xml",
        b.daemon.sip,
        pbx_media,
        &uac_args(ANSWER_DIALLED),
        Duration::from_secs(60),
    );
    let captured = cap.finish();
    b.assert_sipp_ok(
        &run,
        "call_hold.xml (sendonly→recvonly, inactive→inactive, sendrecv→sendrecv)",
    );
    let call = b.only_call_ended();
    let updates = call["updates"].as_u64().unwrap_or(0);
    b.check(updates >= 3, || {
        format!("expected 3 call updates at the carrier (hold, inactive, resume), saw {updates}")
    });
    assert_answered_and_ended_by_pbx(&b, &call);
    // Audio played after the resume is echoed again.
    if let Some(e) = echo_shortfall(&g711a_packets(), &captured, 1) {
        b.fail(&format!("after resume: {e}"));
    }
}

#[test]
fn rfc4733_digits_arrive_at_the_carrier() {
    let b = Bridge::start();
    let run = Sipp::run(
        "call_dtmf.xml",
        b.daemon.sip,
        free_media_port(),
        &uac_args(ANSWER_DIALLED),
        Duration::from_secs(40),
    );
    b.assert_sipp_ok(&run, "call_dtmf.xml (events 1 5 9 # at PT 101)");
    let call = b.only_call_ended();
    let digits = call["media"]["dtmf"].as_str().unwrap_or("").to_string();
    b.check(digits == "159#", || {
        format!("expected the carrier to decode digits \"159#\", it saw {digits:?}")
    });
}

#[test]
fn early_media_is_183_with_sdp_then_200() {
    let b = Bridge::start();
    let run = Sipp::run(
        "call_early_media.xml",
        b.daemon.sip,
        free_media_port(),
        &uac_args(EARLY_DIALLED),
        Duration::from_secs(40),
    );
    b.assert_sipp_ok(&run, "call_early_media.xml (183 with SDP, then 200)");
    let call = b.only_call_ended();
    let s = states(&call);
    b.check(
        s.iter().position(|s| s == "EARLY_MEDIA") < s.iter().position(|s| s == "ANSWERED")
            && s.iter().any(|s| s == "EARLY_MEDIA"),
        || format!("expected EARLY_MEDIA before ANSWERED at the carrier, history {s:?}"),
    );
    assert_answered_and_ended_by_pbx(&b, &call);
}

#[test]
fn reinvite_without_sdp_gets_an_offer_and_the_ack_answer_keeps_audio() {
    let b = Bridge::start();
    let pbx_media = free_media_port();
    let cap = b.capture_toward_pbx(pbx_media);
    let run = Sipp::run(
        "call_reinvite_nosdp.xml",
        b.daemon.sip,
        pbx_media,
        &uac_args(ANSWER_DIALLED),
        Duration::from_secs(60),
    );
    let captured = cap.finish();
    b.assert_sipp_ok(
        &run,
        "call_reinvite_nosdp.xml (re-INVITE without SDP: offer in 200, answer in ACK)",
    );
    let call = b.only_call_ended();
    assert_answered_and_ended_by_pbx(&b, &call);
    if let Some(e) = echo_shortfall(&g711a_packets(), &captured, 1) {
        b.fail(&format!("after the offerless re-INVITE: {e}"));
    }
}

#[test]
fn inbound_call_reaches_the_registered_pbx_with_audio_both_ways() {
    use trunkgate::media::Codec;
    let b = Bridge::start();
    // The PBX registers from port P (reg_auth.xml), then listens on the same P as a UAS.
    let pbx_port = free_udp_port();
    let pbx_media = free_media_port();
    let csv = write_csv(
        b.daemon.dir.path(),
        "inbound-creds.csv",
        &format!(
            "SEQUENTIAL\n{TRUNK_USER};[authentication username={TRUNK_USER} password={TRUNK_PASS}]\n"
        ),
    );
    let csv = csv.to_string_lossy().into_owned();
    let reg = Sipp::spawn(
        "reg_auth.xml",
        Some(b.daemon.sip),
        pbx_port,
        free_media_port(),
        &["-inf", &csv, "-m", "1"],
        Duration::from_secs(20),
    )
    .wait();
    b.assert_sipp_ok(&reg, "reg_auth.xml (the trunk registers)");
    let cap = b.capture_toward_pbx(pbx_media);
    let mut uas = Sipp::spawn(
        "call_inbound_uas.xml",
        None,
        pbx_port,
        pbx_media,
        &["-m", "1"],
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(300));
    b.check(uas.running(), || "the sipp UAS did not start".into());
    let (code, v) = http_json(
        b.sim.control,
        "POST",
        "/originate",
        Some(r#"{"to":"+97142001000","from":"+971509990000","mode":"tone"}"#),
    );
    b.check(code == 200 && v["delivered"] == true, || {
        format!("originate: {code} {v}")
    });
    let run = uas.wait();
    let captured = cap.finish();
    b.assert_sipp_ok(
        &run,
        "call_inbound_uas.xml (INVITE to the registered contact, 180, 200, audio, BYE)",
    );
    let call = b.only_call_ended();
    let s = states(&call);
    b.check(
        call["direction"] == "inbound"
            && s.iter().any(|s| s == "RINGING")
            && s.iter().any(|s| s == "ANSWERED"),
        || format!("expected an inbound call RINGING then ANSWERED at the carrier, history {s:?}"),
    );
    // PBX → carrier: the pcap sipp played.
    let need = (g711a_packets().len() * 9 / 10) as u64;
    let rtp_in = media_u64(&call, "rtp_packets_in");
    b.check(rtp_in >= need, || {
        format!("expected at least {need} packets from the PBX at the carrier, it counted {rtp_in}")
    });
    // Carrier → PBX: the simulator's tone (PCMA, as the PBX answered), byte-identical.
    let tone = trunkgate::sim::media::tone_payload(Codec::Pcma);
    let rtp: Vec<Rtp> = captured
        .iter()
        .filter_map(|d: &Datagram| Rtp::parse(&d.payload))
        .collect();
    let tones = rtp.iter().filter(|r| r.payload == tone).count();
    let sent = media_u64(&call, "rtp_packets_out");
    // 7.8 s of call at 20 ms a packet is about 390 packets; allow for set-up.
    b.check(tones >= 250 && tones as u64 * 10 >= sent * 8, || {
        format!(
            "expected the carrier's tone at sipp's media port (250+ packets, 80 % of the {sent} the \
             simulator sent): captured {} datagrams, {} RTP, {tones} carrying the PCMA tone",
            captured.len(),
            rtp.len()
        )
    });
}

#[test]
fn twenty_simultaneous_calls_each_carry_audio() {
    let b = Bridge::start();
    let pbx_media = free_media_port();
    let cap = b.capture_toward_pbx(pbx_media);
    let run = Sipp::run(
        "call_echo.xml",
        b.daemon.sip,
        pbx_media,
        &[
            &uac_args(ANSWER_DIALLED)[..],
            &["-m", "20", "-l", "20", "-r", "20"],
        ]
        .concat(),
        Duration::from_secs(80),
    );
    let captured = cap.finish();
    b.assert_sipp_ok(&run, "20 simultaneous call_echo.xml calls");
    b.wait_calls("20 calls, all ENDED", Duration::from_secs(15), |c| {
        c.len() == 20 && c.iter().all(|c| c["state"] == "ENDED")
    });
    let sent = g711a_packets();
    let need = (sent.len() * 9 / 10) as u64;
    for call in b.calls() {
        assert_answered_and_ended_by_pbx(&b, &call);
        let (i, o) = (
            media_u64(&call, "rtp_packets_in"),
            media_u64(&call, "rtp_packets_out"),
        );
        b.check(i >= need && o >= need, || {
            format!(
                "call {}: expected at least {need} packets each way at the carrier, saw in {i} out {o}",
                call["session"]
            )
        });
    }
    if let Some(e) = echo_shortfall(&sent, &captured, 20) {
        b.fail(&format!("20 calls: {e}"));
    }
    // Each call's echo comes from its own daemon port.
    let sources: std::collections::BTreeSet<u16> = captured.iter().map(|d| d.src_port).collect();
    b.check(sources.len() == 20, || {
        format!(
            "expected echoes from 20 distinct daemon RTP ports, saw {}",
            sources.len()
        )
    });
}

/// A PBX that stops sending RTP (it vanished) is noticed: after `rtp_timeout` of silence the
/// daemon ends both legs.
#[test]
fn rtp_timeout_ends_a_call_whose_pbx_falls_silent() {
    let b = Bridge::start_with("", "rtp_timeout = \"2s\"");
    let started = Instant::now();
    // sipp plays the pcap (about 7 s), then sends nothing and waits for a BYE
    let sipp = b.held_call();
    let run = sipp.wait();
    let took = started.elapsed();
    b.assert_sipp_ok(&run, "call_wait_bye.xml (BYE after the RTP timeout)");
    b.check(took >= Duration::from_secs(8), || {
        format!("BYE after {took:?}: before the audio ended plus the 2 s timeout")
    });
    let call = b.only_call_ended();
    b.check(call["ended_by"] == "client", || {
        format!(
            "the gateway must delete the carrier session, ended_by {}",
            call["ended_by"]
        )
    });
    b.daemon.wait_log("no RTP from the PBX");
}
