use std::time::Duration;

use crate::call::io::{CarrierStep, Done, EffectError, Input};
use crate::call::record::EndedBy;
use crate::call::registry::CallPhase;
use crate::call::test_support::*;
use crate::carrier::events::{CallEvent, EndCause};
use crate::carrier::rest::RestError;
use crate::media::rtp_leg::RtpLegError;
use crate::media::PeerError;
use crate::sip::tu::{DialogEvent, OwnRequest, TimerHeaders};

const SETTINGS: &str = "no_answer_timeout = \"20s\"\nrtp_timeout = \"0s\"";

/// The carrier's call, routed, with its INVITE out to the PBX.
fn inviting() -> Harness {
    let offer = carrier_sdp("sendrecv");
    let (mut h, _) = Harness::inbound(&incoming(Some(&offer)), settings(SETTINGS), false);
    h.feed(done(Done::Admitted));
    h.feed(done(Done::PortReady { port: 40002 }));
    h
}

/// The PBX's 2xx with `sdp` and a Session-Expires.
fn ok(sdp: Option<&str>, session_expires: Option<&str>) -> Input {
    dialog(DialogEvent::Response {
        request: OwnRequest::Invite,
        code: 200,
        reason: "OK".into(),
        sdp: sdp.map(str::to_owned),
        timer: TimerHeaders {
            session_expires: session_expires.map(str::to_owned),
            ..TimerHeaders::default()
        },
    })
}

/// Answered by the PBX (its answer: [`PBX_OFFER`]), up to `callAnswer` being sent.
fn answering(session_expires: Option<&str>) -> Harness {
    let mut h = inviting();
    h.feed(ok(Some(PBX_OFFER), session_expires));
    h.feed(done(Done::MediaAnswered {
        sdp: "WA".into(),
        format: PCMU,
    }));
    h.feed(done(Done::Attached));
    h
}

#[test]
fn a_routed_call_invites_the_trunk_with_every_g711_the_carrier_offered() {
    let offer = carrier_sdp("sendrecv");
    let (mut h, start) = Harness::inbound(&incoming(Some(&offer)), settings(SETTINGS), false);
    assert_eq!(start, ["publish", "admit"]);
    assert_eq!(h.feed(done(Done::Admitted)), ["port"]);
    assert_eq!(
        h.feed(done(Done::PortReady { port: 40002 })),
        [
            "invite +97143456789 from +971501111111 sdp:sendrecv [Supported: timer] \
          [Session-Expires: 1800] [Min-SE: 90]"
        ]
    );
    let sdp = h.last_sdp().expect("our offer");
    assert!(sdp.contains("m=audio 40002 RTP/AVP 0 8 101\r\n"), "{sdp}");
    let live = h.machine.facts().live(None);
    assert_eq!(live.trunk.as_deref(), Some("pbx"));
    assert_eq!(live.carrier_session.as_deref(), Some("IN1"));
    assert_eq!(live.called, "+97143456789");
    assert_eq!(live.caller.as_deref(), Some("+971501111111"));
}

#[test]
fn calls_that_cannot_be_offered_to_a_pbx_are_rejected_at_the_carrier() {
    let g722 = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 9\r\na=rtpmap:9 G722/8000\r\n";
    let sendrecv = carrier_sdp("sendrecv");
    let cases: [(Option<&str>, bool, u16, &str); 3] = [
        (None, false, 488, "No Offer"),
        (Some(g722), false, 488, "No G.711"),
        (Some(&sendrecv), true, 503, "Shutting Down"),
    ];
    for (offer, draining, code, reason) in cases {
        let (h, lines) = Harness::inbound(&incoming(offer), settings(SETTINGS), draining);
        assert_eq!(lines, ["publish", "carrier reject", "finished"], "{reason}");
        let r = h.record();
        assert_eq!((r.sip_code, r.sip_reason.as_str()), (code, reason));
        assert_eq!(r.ended_by, EndedBy::Gateway);
        assert_eq!(r.trunk.as_deref(), Some("pbx"));
        assert_eq!(r.called.as_deref(), Some("+97143456789"));
    }
    let (mut h, _) = Harness::inbound(&incoming(Some(&sendrecv)), settings(SETTINGS), false);
    let no_port = EffectError::Port(RtpLegError::Exhausted { first: 1, last: 2 });
    assert_eq!(
        h.feed(Input::Failed(no_port)),
        ["carrier reject", "finished"]
    );
    assert_eq!(h.record().sip_code, 503);
}

#[test]
fn the_pbx_answer_picks_the_codec_then_the_carrier_is_answered() {
    let mut h = inviting();
    assert_eq!(
        h.feed(invite_response(180, "Ringing", None)),
        ["publish", "carrier ringing"]
    );
    assert_eq!(h.machine.facts().phase, CallPhase::Ringing);
    assert!(h.feed(invite_response(183, "Progress", None)).is_empty());
    assert_eq!(h.feed(ok(Some(PBX_OFFER), None)), ["media answer Pcmu"]);
    assert_eq!(
        h.feed(done(Done::MediaAnswered {
            sdp: "WA".into(),
            format: PCMU
        })),
        [format!("media attach {PBX_MEDIA}")]
    );
    assert_eq!(h.feed(done(Done::Attached)), ["carrier answer WA"]);
    assert_eq!(
        h.feed(done(Done::Carrier(CarrierStep::Answer))),
        ["publish"]
    );
    let r = h.record();
    assert_eq!((r.sip_code, r.sip_reason.as_str()), (200, "OK"));
    assert!(r.answered.is_some());
    assert_eq!(r.carrier_session.as_deref(), Some("IN1"));
    assert_eq!(r.carrier_account.as_deref(), Some("acct"));
    // Confirmed: the carrier's hang-up is a BYE.
    let end = CallEvent::Ended {
        code: None,
        reason: Some("bye".into()),
        cause: EndCause::Remote,
    };
    assert_eq!(
        h.feed(carrier(end)),
        ["bye Q.850;cause=16;text=\"bye\"", "finished"]
    );
}

#[test]
fn the_pbx_2xx_sets_the_session_timer_with_the_pbx_as_uas() {
    // refresher=uac: we sent the INVITE, so we refresh, at half the interval.
    let mut h = answering(Some("120;refresher=uac"));
    h.feed(done(Done::Carrier(CarrierStep::Answer)));
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    assert_eq!(
        h.advance(Duration::from_secs(1)),
        ["reinvite sdp:sendrecv [Supported: timer] [Session-Expires: 120;refresher=uac]"]
    );
    // refresher=uas: the PBX refreshes; without it the session expires.
    let mut h = answering(Some("120;refresher=uas"));
    h.feed(done(Done::Carrier(CarrierStep::Answer)));
    assert!(h.advance(Duration::from_secs(87)).is_empty());
    assert_eq!(
        h.advance(Duration::from_secs(1))[1],
        "carrier end session expired"
    );
}

#[test]
fn pbx_refusals_reject_the_carrier_call() {
    for (code, reason) in [
        (486, "Busy Here"),
        (480, "Not Registered"),
        (603, "Decline"),
    ] {
        let mut h = inviting();
        assert_eq!(
            h.feed(invite_response(code, reason, None)),
            ["carrier reject", "finished"]
        );
        let r = h.record();
        assert_eq!((r.sip_code, r.sip_reason.as_str()), (code, reason));
        assert_eq!(r.ended_by, EndedBy::Pbx);
    }
}

#[test]
fn no_answer_in_time_cancels_at_the_pbx_and_rejects_at_the_carrier() {
    let mut h = inviting();
    h.feed(invite_response(180, "Ringing", None));
    assert!(h.advance(Duration::from_millis(19_999)).is_empty());
    assert_eq!(
        h.advance(Duration::from_millis(1)),
        ["cancel", "carrier reject"]
    );
    assert_eq!(h.record().sip_code, 480);
    assert!(h.feed(invite_response(180, "Ringing", None)).is_empty());
    assert_eq!(
        h.feed(invite_response(487, "Request Terminated", None)),
        ["finished"]
    );
    let r = h.record();
    assert_eq!((r.sip_code, r.ended_by), (487, EndedBy::Gateway));
}

#[test]
fn carrier_cancel_while_the_pbx_rings_is_a_cancel() {
    for gone in [
        carrier(CallEvent::Cancelled),
        carrier(CallEvent::Ended {
            code: None,
            reason: None,
            cause: EndCause::Remote,
        }),
        Input::CarrierGone,
    ] {
        let mut h = inviting();
        h.feed(invite_response(180, "Ringing", None));
        assert_eq!(h.feed(gone), ["cancel"]);
        assert_eq!(h.machine.poll_timeout(), None, "no-answer timer off");
        assert_eq!(
            h.feed(invite_response(487, "Request Terminated", None)),
            ["finished"]
        );
        let r = h.record();
        assert_eq!((r.sip_code, r.ended_by), (487, EndedBy::Carrier));
    }
    // Events the carrier sends that are not a goodbye change nothing.
    let mut h = inviting();
    assert!(h.feed(carrier(CallEvent::Trying)).is_empty());
}

#[test]
fn a_200_crossing_our_cancel_ends_the_call_for_the_core_to_bye() {
    let mut h = inviting();
    h.feed(carrier(CallEvent::Cancelled));
    assert_eq!(h.feed(ok(Some(PBX_OFFER), None)), ["finished"]);
    let r = h.record();
    assert_eq!((r.sip_code, r.ended_by), (200, EndedBy::Carrier));
    assert!(r.answered.is_none());
}

#[test]
fn shutdown_while_the_pbx_rings_cancels_both() {
    let mut h = inviting();
    assert_eq!(
        h.feed(dialog(DialogEvent::Shutdown)),
        ["cancel", "carrier reject"]
    );
    assert!(h.feed(dialog(DialogEvent::Shutdown)).is_empty(), "once");
    assert_eq!(h.feed(Input::DialogGone), ["finished"]);
    let r = h.record();
    assert_eq!((r.sip_code, r.ended_by), (487, EndedBy::Gateway));
}

#[test]
fn pbx_answers_the_call_cannot_use_end_both_legs() {
    let pcma_carrier = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=sendrecv\r\n";
    for pbx_answer in [None, Some("garbage")] {
        let mut h = inviting();
        assert_eq!(
            h.feed(ok(pbx_answer, None)),
            [
                "bye SIP;cause=488;text=\"no usable SDP\"",
                "carrier reject",
                "finished"
            ]
        );
        let r = h.record();
        assert_eq!(
            (r.sip_code, r.sip_reason.as_str()),
            (488, "No Usable Answer")
        );
        assert_eq!(r.ended_by, EndedBy::Gateway);
    }
    // The carrier offered PCMA only; the PBX answers PCMU.
    let (mut h, _) = Harness::inbound(&incoming(Some(pcma_carrier)), settings(SETTINGS), false);
    h.feed(done(Done::Admitted));
    h.feed(done(Done::PortReady { port: 40002 }));
    let pcmu = PBX_OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 0 101");
    assert_eq!(
        h.feed(ok(Some(&pcmu), None)),
        [
            "bye SIP;cause=488;text=\"codec\"",
            "carrier reject",
            "finished"
        ]
    );
    assert_eq!(h.record().sip_reason, "Codec Mismatch");
}

#[test]
fn media_or_carrier_failures_after_the_pbx_answered_end_both_legs() {
    let media_failure = [
        "bye Q.850;cause=41;text=\"media failure\"",
        "carrier reject",
        "finished",
    ];
    let mut h = inviting();
    h.feed(ok(Some(PBX_OFFER), None));
    let failed = Input::Failed(EffectError::MediaAnswer(PeerError::EngineGone));
    assert_eq!(h.feed(failed), media_failure);
    assert_eq!(h.record().sip_code, 503);

    let mut h = inviting();
    h.feed(ok(Some(PBX_OFFER), None));
    h.feed(done(Done::MediaAnswered {
        sdp: "WA".into(),
        format: PCMU,
    }));
    let failed = Input::Failed(EffectError::Attach(PeerError::EngineGone));
    assert_eq!(h.feed(failed), media_failure);

    let mut h = answering(None);
    let failed = Input::Failed(EffectError::Carrier(
        CarrierStep::Answer,
        RestError::Transport("down".into()),
    ));
    assert_eq!(
        h.feed(failed),
        [
            "bye Q.850;cause=41;text=\"carrier answer failed\"",
            "finished"
        ]
    );
    let r = h.record();
    assert_eq!((r.sip_code, r.ended_by), (200, EndedBy::Gateway));
    assert!(r.answered.is_none());
}

#[test]
fn the_sip_core_going_away_ends_the_call() {
    let mut h = inviting();
    assert_eq!(h.feed(Input::DialogGone), ["finished"]);
}

#[test]
fn a_trunk_full_across_the_cluster_rejects_the_carrier_call_at_once() {
    let offer = carrier_sdp("sendrecv");
    let (mut h, start) = Harness::inbound(&incoming(Some(&offer)), settings(SETTINGS), false);
    assert_eq!(start, ["publish", "admit"]);
    assert_eq!(
        h.feed(Input::Failed(EffectError::TrunkFull(1))),
        ["carrier reject", "finished"]
    );
    assert_eq!(h.record().sip_code, 486);
}
