//! Calls end to end (issue 5), the parts `calls.rs` does not cover: RFC 4028 session timers
//! (Asterisk and 3CX style, 422, a refresh), a PBX that never ACKs our 200, the concurrent call
//! limits, an inbound INVITE the PBX challenges, and an inbound call the carrier cancels while
//! the PBX rings. Same setup as `calls.rs`: the real daemon, sipp as the PBX (scenarios in
//! tests/sipp/call_*.xml), `trunkgate sim` as the carrier; every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::call_support::*;
use crate::sipp::free_media_port;

/// The nonce the inbound challenge scenarios put in their Proxy-Authenticate.
const PBX_NONCE: &str = "4f9c2d1e7a0b3c5d6e8f9a1b2c3d4e5f";
const OUTBOUND_USER: &str = "gw-out";
const OUTBOUND_PASS: &str = "pbx-side-secret-71";

/// Splits "Session-Expires=X Require=Y" (the timer scenarios' log lines) into (X, Y).
fn timer_headers(line: &str) -> (String, String) {
    let se = line
        .strip_prefix("Session-Expires=")
        .and_then(|s| s.split(" Require=").next())
        .unwrap_or("")
        .trim()
        .to_string();
    let req = line
        .split(" Require=")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    (se, req)
}

/// The simulator-relative time (ms) a call first entered `state`.
fn entered_at(call: &Value, state: &str) -> Option<u64> {
    call["history"]
        .as_array()?
        .iter()
        .find(|s| s["state"] == state)
        .and_then(|s| s["at_ms"].as_u64())
}

fn require_has_timer(require: &str) -> bool {
    require
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

// ---------------------------------------------------------------- RFC 4028 session timers

#[test]
fn session_timer_asterisk_style_is_honoured_and_a_refresh_keeps_the_call() {
    let b = Bridge::start();
    let mut sipp = b
        .call("call_timer_refresh.xml", ANSWER_DIALLED)
        .spawn(Duration::from_secs(40));
    // While the call is up after the refresh (sipp logs it, then waits 2 s before its BYE),
    // the carrier call is still ANSWERED and saw no update: the refresh changed nothing.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && sipp.running() {
        if sipp.log_so_far().contains("refresh Session-Expires=") {
            let calls = b.calls();
            b.check(
                calls.len() == 1 && calls[0]["state"] == "ANSWERED" && calls[0]["updates"] == 0,
                || {
                    "expected the carrier call still ANSWERED with no call update right after \
                     the session refresh"
                        .into()
                },
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = sipp.wait();
    b.assert_sipp_ok(
        &run,
        "call_timer_refresh.xml (Session-Expires 1800;refresher=uac, refresh re-INVITE, BYE)",
    );
    let (se, req) = timer_headers(&run.logged("answer ").unwrap_or_default());
    b.check(
        se == "1800;refresher=uac" && require_has_timer(&req),
        || {
            format!(
                "expected the 200 to the INVITE with Session-Expires: 1800;refresher=uac and \
             Require: timer (RFC 4028 9), it had Session-Expires {se:?}, Require {req:?}\n{}",
                run.describe()
            )
        },
    );
    let (se, req) = timer_headers(&run.logged("refresh ").unwrap_or_default());
    b.check(
        se == "1800;refresher=uac" && require_has_timer(&req),
        || {
            format!(
            "expected the 200 to the refresh re-INVITE with Session-Expires: 1800;refresher=uac \
             and Require: timer, it had Session-Expires {se:?}, Require {req:?}\n{}",
            run.describe()
        )
        },
    );
    let call = b.only_call_ended_by("client");
    let s = states(&call);
    b.check(s.iter().filter(|s| *s == "ANSWERED").count() == 1, || {
        format!("expected the call ANSWERED once, history {s:?}")
    });
    b.check(call["updates"] == 0, || {
        format!(
            "a refresh with the same SDP must not reach the carrier as a call update, it saw {}",
            call["updates"]
        )
    });
}

#[test]
fn session_timer_3cx_style_supported_without_session_expires_gets_a_uac_refresher() {
    let b = Bridge::start();
    let run = b.call_ok(
        "call_timer_3cx.xml",
        ANSWER_DIALLED,
        "Supported: timer, no Session-Expires, audio, BYE",
    );
    let (se, req) = timer_headers(&run.logged("answer ").unwrap_or_default());
    let interval: Option<u32> = se.split(';').next().and_then(|d| d.trim().parse().ok());
    let refresher_uac = se
        .split(';')
        .skip(1)
        .any(|p| p.trim().eq_ignore_ascii_case("refresher=uac"));
    b.check(
        interval.is_some_and(|i| i >= 90) && refresher_uac && require_has_timer(&req),
        || {
            format!(
                "expected the 200 to carry Session-Expires of at least 90 s with refresher=uac \
                 and Require: timer (RFC 4028 9), it had Session-Expires {se:?}, Require {req:?}\n{}",
                run.describe()
            )
        },
    );
    let call = b.answered_call_ended_by_gateway();
    b.check_pcap_at_carrier(&call);
}

#[test]
fn session_expires_below_min_se_is_422_and_never_reaches_the_carrier() {
    let b = Bridge::start();
    let run = b
        .call("call_timer_too_small.xml", ANSWER_DIALLED)
        .run(Duration::from_secs(30));
    let min_se = run.logged("final 422 Min-SE=");
    if !run.success || min_se.as_deref() != Some("90") {
        b.fail(&format!(
            "Session-Expires: 60 with Supported: timer: expected 422 with Min-SE: 90, the PBX saw \
             Min-SE {min_se:?}\n{}",
            run.describe()
        ));
    }
    b.check_carrier_calls(0, "no carrier call for a session interval below Min-SE");
}

// ------------------------------------------------------------------ a PBX that never ACKs

#[test]
fn pbx_that_never_acks_gets_200_retransmissions_then_bye_and_the_carrier_call_ends() {
    let b = Bridge::start_full("t1 = \"100ms\"\n", "", "");
    let trace = tempfile::tempdir().expect("tempdir");
    let messages = trace.path().join("messages.log");
    let messages_arg = messages.to_string_lossy().into_owned();
    let run = b
        .call("call_no_ack.xml", ANSWER_DIALLED)
        .args(&["-trace_msg", "-message_file", &messages_arg])
        .run(Duration::from_secs(40));
    b.assert_sipp_ok(&run, "call_no_ack.xml (200 never ACKed, waits for a BYE)");
    // Every 200 to the authenticated INVITE sipp received, the first and the retransmissions.
    let trace_text = std::fs::read_to_string(&messages).unwrap_or_default();
    let oks = trace_text
        .split("message received")
        .skip(1)
        .filter(|m| {
            let m = m.split_once("SIP/2.0").map_or("", |(_, rest)| rest);
            m.trim_start().starts_with("200") && m.contains("CSeq: 2 INVITE")
        })
        .count();
    // T1 = 100 ms, T2 = 4 s: retransmissions at 0.1, 0.3, 0.7, 1.5, 3.1 and 6.3 s, BYE at 6.4 s.
    b.check((5..=8).contains(&oks.saturating_sub(1)), || {
        format!(
            "expected the unacknowledged 200 retransmitted about 6 times (T1 = 100 ms, 64*T1 = \
             6.4 s; RFC 3261 13.3.1.4), sipp received it {oks} times in all\n{}",
            run.describe()
        )
    });
    // the gateway ends it when the ACK never comes
    let call = b.answered_call_ended_by_gateway();
    let held = entered_at(&call, "ENDED")
        .zip(entered_at(&call, "ANSWERED"))
        .map(|(e, a)| e.saturating_sub(a));
    b.check(held.is_some_and(|ms| (5500..=12000).contains(&ms)), || {
        format!(
            "expected the gateway to give up on the ACK 64*T1 = 6.4 s after the 200, the carrier \
             call lasted {held:?} ms from answer to end"
        )
    });
}

// ------------------------------------------------------------- concurrent call limits

/// With a limit of one call (set by `trunk_extra` / `calls_extra`), an answered call held by
/// call_wait_bye.xml makes a second INVITE fail with `want` (503 with Retry-After, or 486); the
/// carrier sees only the first call.
fn second_call_over_the_limit(trunk_extra: &str, calls_extra: &str, want: u16) {
    let b = Bridge::start_with(trunk_extra, calls_extra);
    let held = b.held_call();
    let run = b
        .call("call_limit.xml", ANSWER_DIALLED)
        .run(Duration::from_secs(30));
    let line = run.logged("final ").unwrap_or_default();
    let code: Option<u16> = line.get(..3).and_then(|c| c.parse().ok());
    let retry_after = line.split("Retry-After=").nth(1).unwrap_or("").trim();
    let retry_ok = want != 503 || retry_after.parse::<u32>().is_ok();
    if !run.success || code != Some(want) || !retry_ok {
        b.fail(&format!(
            "limit ({trunk_extra:?} in the trunk, {calls_extra:?} in [calls]): expected the second \
             call refused with {want}{}, the PBX saw {line:?}\n{}",
            if want == 503 {
                " and a numeric Retry-After"
            } else {
                ""
            },
            run.describe()
        ));
    }
    b.check_carrier_calls(1, "only the first call at the carrier");
    // End the held call from the carrier; its PBX side gets the BYE.
    b.carrier_does(&b.session(0), "hangup", None);
    b.assert_sipp_ok(&held.wait(), "call_wait_bye.xml (the held first call)");
}

#[test]
fn global_call_limit_refuses_the_second_call_with_503_and_retry_after() {
    second_call_over_the_limit("", "max_calls = 1\n", 503);
}

#[test]
fn global_call_limit_with_limit_response_486_refuses_with_486() {
    second_call_over_the_limit("", "max_calls = 1\nlimit_response = 486\n", 486);
}

#[test]
fn per_trunk_call_limit_refuses_the_second_call() {
    second_call_over_the_limit("max_calls = 1\n", "", 503);
}

// --------------------------------------------------------------------------- inbound

#[test]
fn inbound_invite_challenged_by_the_pbx_is_retried_with_the_trunk_outbound_credentials() {
    use trunkgate::sip::digest::{self, Algorithm};
    let b = Bridge::start_with(
        &format!(
            "outbound_username = \"{OUTBOUND_USER}\"\noutbound_password = \"{OUTBOUND_PASS}\"\n"
        ),
        "",
    );
    let uas = b.inbound_call(
        "call_inbound_challenge.xml",
        free_media_port(),
        Duration::from_secs(40),
    );
    let run = uas.wait();
    b.assert_sipp_ok(
        &run,
        "call_inbound_challenge.xml (407, then an INVITE with Proxy-Authorization, 180, 200, BYE)",
    );
    let auth = run.logged("Proxy-Authorization:").unwrap_or_default();
    let ruri = run.logged("Request-URI:").unwrap_or_default();
    let creds = digest::parse_credentials(&auth).unwrap_or_else(|e| {
        b.fail(&format!(
            "the retried INVITE's Proxy-Authorization {auth:?} does not parse: {e}"
        ))
    });
    let ha1 = digest::ha1(Algorithm::Md5, OUTBOUND_USER, "pbx", OUTBOUND_PASS);
    let want = digest::expected_response(Algorithm::Md5, &ha1, "INVITE", &creds);
    b.check(
        creds.username == OUTBOUND_USER
            && creds.realm == "pbx"
            && creds.nonce == PBX_NONCE
            && creds.uri == ruri
            && want
                .as_ref()
                .is_ok_and(|w| w.eq_ignore_ascii_case(&creds.response)),
        || {
            format!(
                "expected Proxy-Authorization for {OUTBOUND_USER} in realm \"pbx\" with nonce \
                 {PBX_NONCE}, uri = the Request-URI {ruri:?} and the MD5 response for the \
                 configured outbound_password ({want:?}), it was {auth:?}"
            )
        },
    );
    let call = b.only_call_ended();
    let s = states(&call);
    b.check(
        call["direction"] == "inbound" && s.iter().any(|s| s == "ANSWERED"),
        || format!("expected the inbound carrier call ANSWERED, history {s:?}"),
    );
}

#[test]
fn inbound_invite_challenged_without_outbound_credentials_is_rejected_at_the_carrier() {
    let b = Bridge::start();
    let uas = b.inbound_call(
        "call_inbound_challenge_only.xml",
        free_media_port(),
        Duration::from_secs(30),
    );
    let run = uas.wait();
    b.assert_sipp_ok(&run, "call_inbound_challenge_only.xml (INVITE, 407, ACK)");
    // the gateway rejects it: the PBX challenges and the trunk has no outbound credentials
    let call = b.only_call_ended_by("client");
    let s = states(&call);
    b.check(
        call["direction"] == "inbound" && !s.iter().any(|s| s == "ANSWERED"),
        || {
            format!(
                "expected the inbound carrier call never ANSWERED, history {s:?}, end_code {}",
                call["end_code"]
            )
        },
    );
}

#[test]
fn inbound_call_cancelled_by_the_carrier_while_the_pbx_rings_is_cancelled_at_the_pbx() {
    let b = Bridge::start();
    let uas = b.inbound_call(
        "call_inbound_ringing.xml",
        free_media_port(),
        Duration::from_secs(40),
    );
    b.wait_calls("the inbound call RINGING", Duration::from_secs(15), |c| {
        c.len() == 1 && c[0]["state"] == "RINGING"
    });
    b.carrier_does(&b.session(0), "cancel", None);
    let run = uas.wait();
    b.assert_sipp_ok(
        &run,
        "call_inbound_ringing.xml (180, then CANCEL from the gateway, 200, 487, ACK)",
    );
    let call = b.only_call_ended_by("control");
    let s = states(&call);
    b.check(!s.iter().any(|s| s == "ANSWERED"), || {
        format!("expected the cancelled carrier call never ANSWERED, history {s:?}")
    });
}
