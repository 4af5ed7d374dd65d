use std::time::Duration;

use super::map_failure;
use crate::call::io::{CarrierStep, Done, EffectError, Input};
use crate::call::record::EndedBy;
use crate::call::registry::CallPhase;
use crate::call::test_support::*;
use crate::carrier::events::{CallEvent, EndCause};
use crate::carrier::rest::RestError;
use crate::carrier::Unavailable;
use crate::media::rtp_leg::RtpLegError;
use crate::media::{AudioFormat, Codec, PeerError};
use crate::sip::tu::{DialogEvent, TimerHeaders};

const SETTINGS: &str = "no_answer_timeout = \"30s\"\nrtp_timeout = \"0s\"";
const ATTACH: &str = "media attach 192.0.2.20:7012 pt0 ev101 norecv";
const ANSWER_200: [&str; 3] = [
    "media update-pbx 192.0.2.20:7012 pt0 ev101 recv",
    "respond 200 sdp:sendrecv",
    "publish",
];

fn plain_invite() -> crate::sip::tu::AdmittedInvite {
    invite(Some(PBX_OFFER), TimerHeaders::default())
}

/// Set up and waiting for the carrier's answer.
fn early() -> Harness {
    set_up_outbound(&plain_invite(), settings(SETTINGS))
}

fn answered(sdp: &str) -> Input {
    carrier(CallEvent::Answered { sdp: sdp.into() })
}

#[test]
fn carrier_failures_map_to_sip_or_503() {
    for (carrier, sip) in [(486, 486), (603, 603), (404, 404), (480, 480)] {
        assert_eq!(map_failure(carrier), sip);
    }
    for odd in [0, 42, 200, 302, 700, -1, i64::MAX] {
        assert_eq!(map_failure(odd), 503, "{odd}");
    }
}

#[test]
fn invites_we_cannot_take_are_refused_before_the_carrier_hears_of_them() {
    let no_g711 = PBX_OFFER
        .replace("RTP/AVP 0 8 101", "RTP/AVP 9 101")
        .replace(
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
            "a=rtpmap:9 G722/8000\r\n",
        );
    let se = |v: &str| TimerHeaders {
        session_expires: Some(v.into()),
        min_se: None,
        supports_timer: true,
    };
    let cases: Vec<(Option<&str>, TimerHeaders, &str, u16)> = vec![
        (
            Some("v=0\r\n"),
            TimerHeaders::default(),
            "respond 488 [Warning: 399 trunkgate ",
            488,
        ),
        (
            Some(&no_g711),
            TimerHeaders::default(),
            "respond 488 [Warning: 305 trunkgate \"PCMU or PCMA required\"]",
            488,
        ),
        (Some(PBX_OFFER), se("60"), "respond 422 [Min-SE: 90]", 422),
        (
            Some(PBX_OFFER),
            se("x"),
            "respond 400 malformed Session-Expires: \"x\"",
            400,
        ),
    ];
    for (sdp, timer, line, code) in cases {
        let (h, lines) = Harness::outbound(&invite(sdp, timer), settings(SETTINGS));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(line), "{lines:?}");
        assert_eq!(lines[1], "finished");
        let r = h.record();
        assert_eq!((r.sip_code, r.ended_by), (code, EndedBy::Gateway));
    }
}

#[test]
fn set_up_reserves_takes_a_port_offers_starts_and_attaches_in_order() {
    let (mut h, start) = Harness::outbound(&plain_invite(), settings(SETTINGS));
    assert_eq!(start, ["admit"]);
    let lines: [&[&str]; 6] = [
        &["reserve"],
        &["port"],
        &["media offer [Pcmu, Pcma]"],
        &["start-call +971501234567 OFFER"],
        &["publish", ATTACH],
        &[],
    ];
    for (result, lines) in set_up_results().into_iter().zip(lines) {
        assert_eq!(h.feed(done(result)), lines);
    }
    let live = h.machine.facts().live(None);
    assert_eq!(live.carrier_session.as_deref(), Some("S1"));
    assert_eq!(live.called, "+971501234567");
    assert_eq!(live.phase, CallPhase::Setup);

    let mut emergency = plain_invite();
    emergency.destination.special = Some(crate::numbers::Special::Emergency);
    let (mut h, start) = Harness::outbound(&emergency, settings(SETTINGS));
    assert_eq!(start, ["admit emergency"]);
    assert_eq!(h.feed(done(Done::Admitted)), ["reserve emergency"]);
}

#[test]
fn set_up_failures_are_503_for_the_pbx_to_fail_over() {
    let retry5 = "respond 503 [Retry-After: 5]";
    let no_carrier = "respond 503 No Carrier Available [Retry-After: 30]";
    let rest = || RestError::Transport("down".into());
    // (results fed before the failure, the failure, the lines it gives)
    let cases: Vec<(usize, EffectError, Vec<&str>)> = vec![
        (1, EffectError::NoCarrier, vec![no_carrier]),
        (
            1,
            EffectError::Capacity(Unavailable::NotSubscribed),
            vec![no_carrier],
        ),
        (
            1,
            EffectError::Capacity(Unavailable::AtCapacity),
            vec!["respond 503 No Carrier Available [Retry-After: 5]"],
        ),
        (
            2,
            EffectError::Port(RtpLegError::Exhausted { first: 1, last: 2 }),
            vec![retry5],
        ),
        (3, EffectError::Offer(PeerError::EngineGone), vec![retry5]),
        (4, EffectError::StartCall(rest()), vec![retry5]),
        (
            5,
            EffectError::Attach(PeerError::EngineGone),
            vec!["carrier end media failure", retry5],
        ),
    ];
    for (before, failure, mut lines) in cases {
        let mut h = outbound_after(&plain_invite(), settings(SETTINGS), before);
        lines.push("finished");
        let what = failure.to_string();
        assert_eq!(h.feed(Input::Failed(failure)), lines, "{what}");
        assert_eq!(h.record().sip_code, 503, "{what}");
    }
}

#[test]
fn not_admitted_across_the_cluster_is_refused_before_the_carrier_is_asked() {
    // (the failure, the response, its code)
    let cases = [
        (
            EffectError::Replayed,
            "respond 403 Credentials Already Used",
            403,
        ),
        (
            EffectError::TrunkFull(2),
            "respond 503 Call Limit Reached [Retry-After: 5]",
            503,
        ),
    ];
    for (failure, line, code) in cases {
        let (mut h, start) = Harness::outbound(&plain_invite(), settings(SETTINGS));
        assert_eq!(start, ["admit"]);
        let what = failure.to_string();
        assert_eq!(h.feed(Input::Failed(failure)), [line, "finished"], "{what}");
        assert_eq!(h.record().sip_code, code, "{what}");
        assert_eq!(h.record().carrier_session, None, "{what}");
    }
    // limit_response = 486: busy, as the SIP core answers its own limit
    let s = settings(&format!("{SETTINGS}\nlimit_response = 486"));
    let (mut h, _) = Harness::outbound(&plain_invite(), s);
    assert_eq!(
        h.feed(Input::Failed(EffectError::TrunkFull(1))),
        ["respond 486 Call Limit Reached", "finished"]
    );
}

#[test]
fn carrier_answer_is_200_to_the_pbx_with_our_answer() {
    let mut h = early();
    assert_eq!(
        h.feed(carrier(CallEvent::Ringing)),
        ["publish", "respond 180"]
    );
    assert_eq!(h.machine.facts().phase, CallPhase::Ringing);
    assert!(h.feed(carrier(CallEvent::Ringing)).is_empty(), "one 180");
    assert_eq!(
        h.feed(answered(&carrier_sdp("sendrecv"))),
        ["media accept sendrecv"]
    );
    assert_eq!(h.feed(done(Done::AnswerAccepted(PCMU))), ANSWER_200);
    let sdp = h.last_sdp().expect("our answer");
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
    let r = h.record();
    assert_eq!((r.sip_code, r.sip_reason.as_str()), (200, "OK"));
    assert!(r.answered.is_some());
    assert_eq!(r.sip_call_id.as_deref(), Some("cid@pbx"));
    assert_eq!(r.trunk.as_deref(), Some("pbx"));
    assert_eq!(r.called_raw, "0501234567");
    assert_eq!(r.called.as_deref(), Some("+971501234567"));
    assert_eq!(r.caller.as_deref(), Some("+97143000000"));
    assert_eq!(r.caller_raw.as_deref(), Some("sip:100@pbx"));
    assert_eq!(r.carrier_account.as_deref(), Some("acct"));
    assert_eq!(h.machine.facts().phase, CallPhase::Answered);
    // The confirmed call has taken over: a BYE ends the carrier session.
    assert_eq!(
        h.feed(dialog(DialogEvent::Bye)),
        ["carrier end hangup", "finished"]
    );
}

#[test]
fn the_200_carries_the_agreed_session_timer() {
    let inv = invite(
        Some(PBX_OFFER),
        TimerHeaders {
            session_expires: Some("1800".into()),
            min_se: None,
            supports_timer: true,
        },
    );
    let mut h = set_up_outbound(&inv, settings(SETTINGS));
    h.feed(answered(&carrier_sdp("sendrecv")));
    assert_eq!(
        h.feed(done(Done::AnswerAccepted(PCMU)))[1],
        "respond 200 [Session-Expires: 1800;refresher=uac] [Require: timer] sdp:sendrecv"
    );
}

#[test]
fn early_media_is_183_with_our_answer_then_200_without_a_second_accept() {
    let mut h = early();
    assert_eq!(
        h.feed(carrier(CallEvent::Progress {
            sdp: carrier_sdp("sendrecv")
        })),
        ["media accept sendrecv"]
    );
    assert_eq!(
        h.feed(done(Done::AnswerAccepted(PCMU))),
        [
            "media update-pbx 192.0.2.20:7012 pt0 ev101 recv",
            "respond 183 sdp:sendrecv"
        ]
    );
    assert!(
        h.feed(carrier(CallEvent::Ringing)).is_empty(),
        "183 was sent"
    );
    assert_eq!(h.feed(answered(&carrier_sdp("sendrecv"))), ANSWER_200);
}

#[test]
fn an_answer_during_early_media_set_up_waits_for_it() {
    let mut h = early();
    h.feed(carrier(CallEvent::Progress {
        sdp: carrier_sdp("sendrecv"),
    }));
    assert!(h.feed(answered(&carrier_sdp("sendrecv"))).is_empty());
    let mut lines = vec![
        "media update-pbx 192.0.2.20:7012 pt0 ev101 recv",
        "respond 183 sdp:sendrecv",
    ];
    lines.extend(ANSWER_200);
    assert_eq!(h.feed(done(Done::AnswerAccepted(PCMU))), lines);
}

#[test]
fn unusable_early_media_waits_for_the_answer() {
    let mut h = early();
    h.feed(carrier(CallEvent::Progress {
        sdp: carrier_sdp("sendrecv"),
    }));
    let failed = Input::Failed(EffectError::AcceptAnswer(PeerError::NoCommonCodec));
    assert!(h.feed(failed).is_empty());
    assert_eq!(
        h.feed(answered(&carrier_sdp("sendrecv"))),
        ["media accept sendrecv"]
    );
}

#[test]
fn an_offerless_invite_gets_our_offer_in_the_200_and_no_early_media() {
    let inv = invite(None, TimerHeaders::default());
    let mut h = set_up_outbound(&inv, settings(SETTINGS));
    assert_eq!(
        h.outputs.iter().map(describe).collect::<Vec<_>>()[3..],
        [
            "media offer [Pcmu, Pcma]",
            "start-call +971501234567 OFFER",
            "publish",
            "media attach - pt0 ev- norecv"
        ]
    );
    assert!(h
        .feed(carrier(CallEvent::Progress {
            sdp: carrier_sdp("sendrecv")
        }))
        .is_empty());
    h.feed(answered(&carrier_sdp("sendrecv")));
    assert_eq!(
        h.feed(done(Done::AnswerAccepted(PCMU))),
        [
            "media update-pbx - pt0 ev- norecv",
            "respond 200 sdp:sendrecv",
            "publish"
        ]
    );
    let sdp = h.last_sdp().expect("our offer");
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
    assert_eq!(
        h.feed(dialog(DialogEvent::Ack {
            sdp: Some(PBX_OFFER.into())
        })),
        [format!("media update-pbx {PBX_MEDIA}")]
    );
}

#[test]
fn carrier_refusals_pass_to_the_pbx() {
    let cases: Vec<(CallEvent, &str, Option<i64>)> = vec![
        (
            CallEvent::Ended {
                code: Some(486),
                reason: Some("Busy Here".into()),
                cause: EndCause::Remote,
            },
            "respond 486 [Reason: SIP;cause=486;text=\"Busy Here\"]",
            Some(486),
        ),
        (
            CallEvent::Ended {
                code: Some(700),
                reason: None,
                cause: EndCause::Remote,
            },
            "respond 503 [Reason: SIP;cause=503;text=\"\"]",
            Some(700),
        ),
        (CallEvent::Cancelled, "respond 503 [Retry-After: 5]", None),
    ];
    for (ev, line, carrier_code) in cases {
        let mut h = early();
        assert_eq!(h.feed(carrier(ev)), [line, "finished"]);
        let r = h.record();
        assert_eq!(r.ended_by, EndedBy::Carrier, "{line}");
        assert_eq!(r.carrier_code, carrier_code, "{line}");
    }
    let mut h = early();
    h.feed(carrier(CallEvent::Ended {
        code: Some(486),
        reason: Some("Busy Here".into()),
        cause: EndCause::Remote,
    }));
    let r = h.record();
    assert_eq!((r.sip_code, r.sip_reason.as_str()), (486, "Busy Here"));
    assert_eq!(r.carrier_reason.as_deref(), Some("Busy Here"));
    assert!(r.answered.is_none());
}

#[test]
fn no_answer_in_time_is_480_and_the_carrier_session_ends() {
    let mut h = early();
    h.feed(carrier(CallEvent::Ringing));
    assert!(h.advance(Duration::from_millis(29_999)).is_empty());
    assert_eq!(
        h.advance(Duration::from_millis(1)),
        ["carrier end no answer", "respond 480 No Answer", "finished"]
    );
    let r = h.record();
    assert_eq!((r.sip_code, r.ended_by), (480, EndedBy::Gateway));
}

#[test]
fn pbx_cancel_while_ringing_ends_the_carrier_session() {
    for gone in [dialog(DialogEvent::Cancelled), Input::DialogGone] {
        let mut h = early();
        h.feed(carrier(CallEvent::Ringing));
        assert_eq!(h.feed(gone), ["carrier end cancelled", "finished"]);
        let r = h.record();
        assert_eq!((r.sip_code, r.ended_by), (487, EndedBy::Pbx));
        assert_eq!(r.sip_reason, "Request Terminated");
    }
}

#[test]
fn pbx_cancel_during_set_up_lets_the_request_finish_then_ends_what_it_made() {
    let results = set_up_results();
    // Cancelled while result `i` is awaited; then it arrives.
    for (i, result) in results.iter().enumerate() {
        let mut h = outbound_after(&plain_invite(), settings(SETTINGS), i);
        assert!(h.feed(dialog(DialogEvent::Cancelled)).is_empty(), "{i}");
        let lines = h.feed(done(result.clone()));
        let carrier_up = matches!(result, Done::CarrierStarted { .. } | Done::Attached);
        if carrier_up {
            assert_eq!(lines, ["carrier end cancelled", "finished"], "{i}");
        } else {
            assert_eq!(lines, ["finished"], "{i}");
        }
        assert_eq!(h.record().sip_code, 487);
    }
    // A callStart that fails leaves nothing to end.
    let mut h = outbound_after(&plain_invite(), settings(SETTINGS), 4);
    h.feed(dialog(DialogEvent::Cancelled));
    let failed = Input::Failed(EffectError::StartCall(RestError::Transport("x".into())));
    assert_eq!(h.feed(failed), ["finished"]);
}

#[test]
fn shutdown_answers_503_and_ends_the_carrier_session() {
    let shutting = "respond 503 Shutting Down [Retry-After: 60]";
    let mut h = early();
    assert_eq!(
        h.feed(dialog(DialogEvent::Shutdown)),
        ["carrier end shutting down", shutting, "finished"]
    );
    assert_eq!(h.record().ended_by, EndedBy::Gateway);
    // During set-up: the PBX hears at once, the carrier session ends once it exists.
    let mut h = outbound_after(&plain_invite(), settings(SETTINGS), 4);
    assert_eq!(h.feed(dialog(DialogEvent::Shutdown)), [shutting]);
    assert_eq!(
        h.feed(done(Done::CarrierStarted {
            session: "S1".into(),
            account: "acct".into()
        })),
        ["carrier end shutting down", "finished"]
    );
    assert_eq!(h.record().sip_code, 503);
}

#[test]
fn an_answer_the_call_cannot_use_ends_both_legs() {
    let mut h = early();
    h.feed(answered(&carrier_sdp("sendrecv")));
    let failed = Input::Failed(EffectError::AcceptAnswer(PeerError::NoCommonCodec));
    assert_eq!(
        h.feed(failed),
        [
            "carrier end unusable answer",
            "respond 503 [Retry-After: 5]",
            "finished"
        ]
    );
    // The carrier picked a codec the PBX did not offer.
    let pcmu_only = PBX_OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 0 101");
    let mut h = set_up_outbound(
        &invite(Some(&pcmu_only), TimerHeaders::default()),
        settings(SETTINGS),
    );
    h.feed(answered(&carrier_sdp("sendrecv")));
    let pcma = AudioFormat {
        codec: Codec::Pcma,
        telephone_event_pt: None,
    };
    assert_eq!(
        h.feed(done(Done::AnswerAccepted(pcma))),
        ["carrier end codec mismatch", "respond 488", "finished"]
    );
    assert_eq!(h.record().sip_code, 488);
}

#[test]
fn results_for_nothing_asked_change_nothing() {
    let mut h = early();
    assert!(h.feed(done(Done::Carrier(CarrierStep::Update))).is_empty());
    assert!(h.feed(done(Done::PortReady { port: 1 })).is_empty());
    assert!(h.feed(carrier(CallEvent::Trying)).is_empty());
    assert_eq!(
        h.machine.poll_timeout(),
        Some(h.now + Duration::from_secs(30))
    );
}
