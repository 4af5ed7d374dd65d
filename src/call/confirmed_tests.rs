use std::time::Duration;

use crate::call::io::{CarrierStep, Done, EffectError, Input};
use crate::call::record::EndedBy;
use crate::call::test_support::*;
use crate::carrier::events::{CallEvent, EndCause};
use crate::carrier::rest::RestError;
use crate::media::PeerState;
use crate::sip::tu::{DialogEvent, TimerHeaders};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A confirmed outbound call (PBX offer sendrecv, PCMU) with `calls` settings.
fn up(calls: &str) -> Harness {
    answered_outbound(
        &invite(Some(PBX_OFFER), TimerHeaders::default()),
        settings(calls),
    )
}

/// Timer headers as a PBX sends them.
fn timer(se: &str) -> TimerHeaders {
    TimerHeaders {
        session_expires: Some(se.into()),
        min_se: None,
        supports_timer: true,
    }
}

fn failed_carrier(step: CarrierStep) -> Input {
    Input::Failed(EffectError::Carrier(
        step,
        RestError::Transport("down".into()),
    ))
}

#[test]
fn hang_ups_end_the_other_leg_with_the_reason_that_matters() {
    let remote_end = CallEvent::Ended {
        code: Some(486),
        reason: Some("Busy \"Here\"".into()),
        cause: EndCause::Remote,
    };
    let audit_end = CallEvent::Ended {
        code: None,
        reason: Some("gone".into()),
        cause: EndCause::AuditFailed,
    };
    let cases: Vec<(&str, Input, &[&str], EndedBy)> = vec![
        (
            "PBX BYE",
            dialog(DialogEvent::Bye),
            &["carrier end hangup", "finished"],
            EndedBy::Pbx,
        ),
        (
            "SIP core gone",
            Input::DialogGone,
            &["carrier end hangup", "finished"],
            EndedBy::Pbx,
        ),
        (
            "carrier callEnd",
            carrier(remote_end),
            &["bye Q.850;cause=16;text=\"Busy Here\"", "finished"],
            EndedBy::Carrier,
        ),
        (
            "carrier session lost (audit)",
            carrier(audit_end),
            &[
                "bye Q.850;cause=41;text=\"carrier session lost\"",
                "finished",
            ],
            EndedBy::Carrier,
        ),
        (
            "carrier cancel",
            carrier(CallEvent::Cancelled),
            &["bye", "finished"],
            EndedBy::Carrier,
        ),
        (
            "carrier events end",
            Input::CarrierGone,
            &["bye", "finished"],
            EndedBy::Carrier,
        ),
        (
            "shutdown",
            dialog(DialogEvent::Shutdown),
            &[
                "bye Q.850;cause=41;text=\"gateway shutting down\"",
                "carrier end gateway shutting down",
                "finished",
            ],
            EndedBy::Gateway,
        ),
        (
            "no ACK",
            dialog(DialogEvent::NoAck),
            &[
                "bye SIP;cause=408;text=\"no ACK\"",
                "carrier end no ACK from the PBX",
                "finished",
            ],
            EndedBy::Gateway,
        ),
        (
            "WebRTC leg failed",
            Input::Peer(PeerState::Failed),
            &[
                "bye Q.850;cause=41;text=\"media failure\"",
                "carrier end media failure",
                "finished",
            ],
            EndedBy::Gateway,
        ),
        (
            "WebRTC leg closed",
            Input::Peer(PeerState::Closed),
            &[
                "bye Q.850;cause=41;text=\"media failure\"",
                "carrier end media failure",
                "finished",
            ],
            EndedBy::Gateway,
        ),
    ];
    for (name, input, lines, ended_by) in cases {
        let mut h = up(NO_RTP_CHECK);
        assert_eq!(h.feed(input), lines, "{name}");
        let r = h.record();
        assert_eq!(r.ended_by, ended_by, "{name}");
        assert_eq!(r.sip_code, 200, "{name}");
        assert!(r.answered.is_some(), "{name}");
        assert!(
            h.feed(dialog(DialogEvent::Bye)).is_empty(),
            "{name}: nothing after the end"
        );
        assert_eq!(h.machine.poll_timeout(), None, "{name}");
    }
}

#[test]
fn carrier_end_is_on_record() {
    let mut h = up(NO_RTP_CHECK);
    h.feed(carrier(CallEvent::Ended {
        code: Some(487),
        reason: None,
        cause: EndCause::Remote,
    }));
    let r = h.record();
    assert_eq!(r.carrier_code, Some(487));
    assert_eq!(r.carrier_reason.as_deref(), Some(""));
    assert_eq!(r.carrier_session.as_deref(), Some("S1"));
    assert_eq!(r.carrier_account.as_deref(), Some("acct"));
}

#[test]
fn a_connected_or_connecting_leg_changes_nothing() {
    let mut h = up(NO_RTP_CHECK);
    for state in [
        PeerState::Connecting,
        PeerState::Connected,
        PeerState::Disconnected,
    ] {
        assert!(h.feed(Input::Peer(state)).is_empty(), "{state:?}");
    }
}

#[test]
fn pbx_hold_and_resume_reach_the_carrier_before_the_pbx_hears_back() {
    let mut h = up(NO_RTP_CHECK);
    for (direction, pbx_media, reoffer, our_answer) in [
        (
            "sendonly",
            "192.0.2.20:7012 pt0 ev101 norecv",
            "SendOnly",
            "recvonly",
        ),
        (
            "inactive",
            "192.0.2.20:7012 pt0 ev101 norecv",
            "Inactive",
            "inactive",
        ),
        ("sendrecv", PBX_MEDIA, "SendRecv", "sendrecv"),
    ] {
        let offer = pbx_offer(direction);
        assert_eq!(
            h.feed(reinvite(Some(&offer), TimerHeaders::default())),
            [
                format!("media update-pbx {pbx_media}"),
                format!("media reoffer {reoffer}")
            ],
            "{direction}"
        );
        assert_eq!(
            h.feed(done(Done::Reoffered { sdp: "RO".into() })),
            ["carrier update RO"]
        );
        assert_eq!(
            h.feed(done(Done::Carrier(CarrierStep::Update))),
            [format!("reinvite-reply 200 sdp:{our_answer}")],
            "{direction}"
        );
    }
}

#[test]
fn a_failed_carrier_update_still_answers_the_pbx() {
    let mut h = up(NO_RTP_CHECK);
    h.feed(reinvite(
        Some(&pbx_offer("sendonly")),
        TimerHeaders::default(),
    ));
    h.feed(done(Done::Reoffered { sdp: "RO".into() }));
    assert_eq!(
        h.feed(failed_carrier(CarrierStep::Update)),
        ["reinvite-reply 200 sdp:recvonly"]
    );
    h.feed(reinvite(
        Some(&pbx_offer("sendrecv")),
        TimerHeaders::default(),
    ));
    let failed = Input::Failed(EffectError::Reoffer(crate::media::PeerError::EngineGone));
    assert_eq!(h.feed(failed), ["reinvite-reply 200 sdp:sendrecv"]);
}

#[test]
fn a_reinvite_without_a_direction_change_is_answered_at_once() {
    let mut h = up(NO_RTP_CHECK);
    assert_eq!(
        h.feed(reinvite(Some(PBX_OFFER), TimerHeaders::default())),
        [
            format!("media update-pbx {PBX_MEDIA}"),
            "reinvite-reply 200 sdp:sendrecv".into()
        ]
    );
}

#[test]
fn reinvites_we_cannot_take_are_refused_and_change_nothing() {
    let mut h = up(NO_RTP_CHECK);
    let no_g711 = PBX_OFFER
        .replace("RTP/AVP 0 8 101", "RTP/AVP 9 101")
        .replace(
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
            "a=rtpmap:9 G722/8000\r\n",
        );
    let pcma_only = PBX_OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 8 101");
    assert_eq!(
        h.feed(reinvite(Some(&no_g711), TimerHeaders::default())),
        ["reinvite-reply 488"]
    );
    assert_eq!(
        h.feed(reinvite(Some(&pcma_only), TimerHeaders::default())),
        ["reinvite-reply 488"],
        "the call's codec (PCMU) is gone"
    );
    assert_eq!(
        h.feed(reinvite(Some("garbage"), TimerHeaders::default())),
        ["reinvite-reply 488"]
    );
    assert_eq!(
        h.feed(reinvite(Some(PBX_OFFER), timer("60"))),
        ["reinvite-reply 422 [Min-SE: 90]"]
    );
    assert_eq!(
        h.feed(reinvite(Some(PBX_OFFER), timer("abc"))),
        ["reinvite-reply 400 malformed Session-Expires: \"abc\""]
    );
}

#[test]
fn an_offerless_reinvite_gets_our_offer_and_the_ack_its_answer() {
    let mut h = up(NO_RTP_CHECK);
    assert_eq!(
        h.feed(reinvite(None, TimerHeaders::default())),
        ["reinvite-reply 200 sdp:sendrecv"]
    );
    assert_eq!(
        h.feed(dialog(DialogEvent::Ack {
            sdp: Some(pbx_offer("sendonly"))
        })),
        ["media update-pbx 192.0.2.20:7012 pt0 ev101 norecv"]
    );
    assert!(
        h.feed(dialog(DialogEvent::Ack {
            sdp: Some(PBX_OFFER.into())
        }))
        .is_empty(),
        "a repeated ACK answers nothing"
    );
}

#[test]
fn carrier_reoffer_is_answered_then_carried_to_the_pbx() {
    let mut h = up(NO_RTP_CHECK);
    assert_eq!(
        h.feed(carrier(CallEvent::RemoteUpdate {
            sdp: carrier_sdp("sendonly")
        })),
        ["media answer-reoffer sendonly"]
    );
    assert_eq!(
        h.feed(done(Done::ReofferAnswered {
            sdp: "ANS".into(),
            format: PCMU
        })),
        ["carrier respond-update ANS"]
    );
    assert_eq!(
        h.feed(done(Done::Carrier(CarrierStep::RespondUpdate))),
        ["reinvite sdp:sendonly [Supported: timer]"]
    );
    assert_eq!(
        h.feed(reinvite_response(200, Some(&pbx_offer("recvonly")))),
        ["media update-pbx 192.0.2.20:7012 pt0 ev101 recv"]
    );
}

#[test]
fn a_failed_carrier_reoffer_sends_no_reinvite() {
    let mut h = up(NO_RTP_CHECK);
    h.feed(carrier(CallEvent::RemoteUpdate {
        sdp: carrier_sdp("inactive"),
    }));
    h.feed(done(Done::ReofferAnswered {
        sdp: "ANS".into(),
        format: PCMU,
    }));
    assert!(h
        .feed(failed_carrier(CarrierStep::RespondUpdate))
        .is_empty());
    assert!(h
        .feed(done(Done::Carrier(CarrierStep::RespondUpdate)))
        .is_empty());
}

#[test]
fn carrier_answer_to_our_update_is_applied() {
    let mut h = up(NO_RTP_CHECK);
    assert_eq!(
        h.feed(carrier(CallEvent::UpdateAnswered {
            sdp: carrier_sdp("recvonly")
        })),
        ["media accept recvonly"]
    );
}

/// A carrier re-offer carried to the PBX, whose re-INVITE is answered 491.
fn glare_491(h: &mut Harness) {
    h.feed(carrier(CallEvent::RemoteUpdate {
        sdp: carrier_sdp("sendonly"),
    }));
    h.feed(done(Done::ReofferAnswered {
        sdp: "ANS".into(),
        format: PCMU,
    }));
    h.feed(done(Done::Carrier(CarrierStep::RespondUpdate)));
    assert!(h.feed(reinvite_response(491, None)).is_empty());
}

/// How long until `h` outputs something (in 1 ms steps, up to `limit`), and what.
fn first_output_within(h: &mut Harness, limit: Duration) -> Option<(Duration, Vec<String>)> {
    let step = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    while waited < limit {
        waited += step;
        let lines = h.advance(step);
        if !lines.is_empty() {
            return Some((waited, lines));
        }
    }
    None
}

#[test]
fn glare_491_retries_the_reinvite_after_2_1_to_4_s_replayably() {
    let mut h = up(NO_RTP_CHECK);
    glare_491(&mut h);
    let (wait, lines) = first_output_within(&mut h, secs(5)).expect("a retry");
    assert!(
        wait >= Duration::from_millis(2100) && wait < secs(4),
        "{wait:?}"
    );
    assert_eq!(lines, ["reinvite sdp:sendonly [Supported: timer]"]);
    // The same seed, the same wait: a failing run replays.
    let mut again = up(NO_RTP_CHECK);
    glare_491(&mut again);
    assert_eq!(
        first_output_within(&mut again, secs(5)).map(|(w, _)| w),
        Some(wait)
    );
    // The retried re-INVITE is ours too: its 2xx is read as the PBX's answer.
    assert_eq!(
        h.feed(reinvite_response(200, Some(PBX_OFFER))),
        [format!("media update-pbx {PBX_MEDIA}")]
    );
}

#[test]
fn a_491_to_nothing_of_ours_is_not_retried() {
    let mut h = up(NO_RTP_CHECK);
    assert!(h.feed(reinvite_response(491, None)).is_empty());
    assert!(h.advance(secs(5)).is_empty());
}

#[test]
fn carrier_glare_retries_the_update_after_its_delay() {
    for (retry_after, wait) in [(300, 300), (0, 100)] {
        let mut h = up(NO_RTP_CHECK);
        h.feed(reinvite(
            Some(&pbx_offer("sendonly")),
            TimerHeaders::default(),
        ));
        h.feed(done(Done::Reoffered { sdp: "RO".into() }));
        h.feed(done(Done::Carrier(CarrierStep::Update)));
        let glare = CallEvent::UpdateGlare {
            retry_after: Duration::from_millis(retry_after),
        };
        assert!(h.feed(carrier(glare)).is_empty());
        assert!(h.advance(Duration::from_millis(wait - 1)).is_empty());
        assert_eq!(
            h.advance(Duration::from_millis(1)),
            ["media reoffer SendOnly"],
            "the PBX's direction now"
        );
        assert_eq!(
            h.feed(done(Done::Reoffered { sdp: "RO2".into() })),
            ["carrier update RO2"]
        );
        assert!(h.feed(done(Done::Carrier(CarrierStep::Update))).is_empty());
    }
}

#[test]
fn re_invite_failures_that_mean_the_dialog_is_gone_end_the_call() {
    for code in [408, 481] {
        let mut h = up(NO_RTP_CHECK);
        assert_eq!(
            h.feed(reinvite_response(code, None)),
            ["bye", "carrier end PBX dialog gone", "finished"],
            "{code}"
        );
        assert_eq!(h.record().ended_by, EndedBy::Gateway);
    }
    let mut h = up(NO_RTP_CHECK);
    assert!(
        h.feed(reinvite_response(488, None)).is_empty(),
        "others: the call goes on"
    );
}

#[test]
fn we_refresh_the_session_when_we_are_the_refresher() {
    // Refresher uas: the PBX asks us, the UAS of its INVITE, to refresh.
    let inv = invite(Some(PBX_OFFER), timer("120;refresher=uas"));
    let mut h = answered_outbound(&inv, settings(NO_RTP_CHECK));
    let refresh = "reinvite sdp:sendrecv [Supported: timer] [Session-Expires: 120;refresher=uas]";
    assert!(h.advance(secs(59)).is_empty());
    assert_eq!(h.advance(secs(1)), [refresh], "at half the interval");
    assert!(h.feed(reinvite_response(200, None)).is_empty());
    assert!(h.advance(secs(59)).is_empty(), "the interval starts again");
    assert_eq!(h.advance(secs(1)), [refresh]);
    // No answer to this one: the session expires min(32 s, interval / 3) before its end.
    assert!(h.advance(secs(27)).is_empty());
    assert_eq!(
        h.advance(secs(1)),
        [
            "bye SIP;cause=408;text=\"session expired\"",
            "carrier end session expired",
            "finished"
        ]
    );
    assert_eq!(h.record().ended_by, EndedBy::Gateway);
}

#[test]
fn the_pbx_refreshing_keeps_the_session_and_its_silence_expires_it() {
    let inv = invite(Some(PBX_OFFER), timer("90;refresher=uac"));
    let mut h = answered_outbound(&inv, settings(NO_RTP_CHECK));
    assert!(h.advance(secs(50)).is_empty(), "we never refresh");
    assert_eq!(
        h.feed(reinvite(Some(PBX_OFFER), timer("90;refresher=uac"))),
        [
            format!("media update-pbx {PBX_MEDIA}"),
            "reinvite-reply 200 [Session-Expires: 90;refresher=uac] [Require: timer] sdp:sendrecv"
                .into()
        ]
    );
    assert!(h.advance(secs(59)).is_empty(), "refreshed at 50 s");
    assert_eq!(
        h.advance(secs(1)),
        [
            "bye SIP;cause=408;text=\"session expired\"",
            "carrier end session expired",
            "finished"
        ]
    );
}

#[test]
fn no_rtp_from_the_pbx_ends_the_call() {
    let mut h = up("rtp_timeout = \"10s\"");
    let timeout = [
        "bye Q.850;cause=41;text=\"RTP timeout\"",
        "carrier end RTP timeout",
        "finished",
    ];
    assert!(h.advance(secs(5)).is_empty());
    h.last_rtp = Some(h.now);
    assert!(h.advance(secs(9)).is_empty(), "10 s from the last packet");
    assert_eq!(h.advance(secs(1)), timeout);
    assert_eq!(h.record().ended_by, EndedBy::Gateway);
}

#[test]
fn a_pbx_on_hold_is_not_expected_to_send() {
    let mut h = up("rtp_timeout = \"10s\"");
    h.feed(reinvite(
        Some(&pbx_offer("inactive")),
        TimerHeaders::default(),
    ));
    h.feed(done(Done::Reoffered { sdp: "RO".into() }));
    h.feed(done(Done::Carrier(CarrierStep::Update)));
    assert!(h.advance(secs(60)).is_empty());
    // Resumed: the wait starts at the resume.
    h.feed(reinvite(Some(PBX_OFFER), TimerHeaders::default()));
    h.feed(done(Done::Reoffered { sdp: "RO".into() }));
    h.feed(done(Done::Carrier(CarrierStep::Update)));
    assert!(h.advance(secs(10)).is_empty());
    assert_eq!(
        h.advance(secs(1)).len(),
        3,
        "ended 10 s after the first check"
    );
}

#[test]
fn a_reloaded_rtp_timeout_reaches_a_running_call() {
    let live = settings("rtp_timeout = \"10s\"");
    let inv = invite(Some(PBX_OFFER), TimerHeaders::default());
    let mut h = answered_outbound(&inv, live.clone());
    assert!(h.advance(secs(5)).is_empty());
    live.replace(call_settings("rtp_timeout = \"30s\""));
    assert!(h.advance(secs(24)).is_empty(), "past the old timeout");
    assert_eq!(h.advance(secs(1)).len(), 3, "the new one applies");
    let mut h = answered_outbound(&inv, live.clone());
    live.replace(call_settings(NO_RTP_CHECK));
    assert!(h.advance(secs(600)).is_empty(), "turned off");
}
