//! The dialog layer driven with virtual time: datagrams in, datagrams and call events out,
//! timers fired by advancing an `Instant` by hand. The PBX side is played by hand-written SIP.

use crate::sip::digest::{self, Algorithm};
use crate::sip::endpoint::pbx_harness::*;
use crate::sip::message::{Message, Method, Request, Response};
use crate::sip::tu::{CallRef, DialogCommand, DialogEvent, InviteToPbx, OwnRequest, Reply};
use std::time::Duration;

#[test]
fn unauthenticated_invite_is_challenged_without_a_call() {
    let mut h = H::std();
    let r = h.challenge();
    assert!(r.headers.get("Proxy-Authenticate").unwrap().contains(REALM));
    assert!(h.events().is_empty());
    assert_eq!(h.ep.active_calls(), 0);
}

#[test]
fn authenticated_invite_becomes_an_outbound_call_with_100_trying() {
    let mut h = H::std();
    h.challenge();
    let c = PbxCall::new(1);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 100);
    let ev = h.events();
    assert_eq!(ev.len(), 1);
    let DialogEvent::Admitted(o) = &ev[0].1 else {
        panic!("{:?}", ev[0].1)
    };
    assert_eq!(o.trunk, "pbx");
    assert_eq!(o.call_id, c.call_id);
    assert_eq!(o.dialled, "0501234567");
    assert_eq!(o.destination.e164, "+971501234567");
    assert_eq!(o.from_uri, "sip:201@127.0.0.1");
    assert_eq!(o.source, pbx());
    assert_eq!(o.sdp.as_deref(), Some(SDP));
    assert_eq!(
        o.timer.session_expires.as_deref(),
        Some("1800;refresher=uac")
    );
    assert_eq!(o.timer.min_se.as_deref(), Some("90"));
    assert!(o.timer.supports_timer);
    let _ = &o.caller; // derived from From (201), policy-dependent
    assert_eq!(h.ep.active_calls(), 1);
    assert!(h.poll_refused().is_none());
}

#[test]
fn invalid_and_disallowed_numbers_are_refused_with_a_record() {
    let mut h = H::std();
    h.challenge();
    let c = PbxCall::new(1);
    h.recv(&h.invite_text(&c, "12", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 484);
    let rec = h.poll_refused().expect("record of the refusal");
    assert_eq!(rec.code, 484);
    assert_eq!(rec.call_id, c.call_id);

    let c = PbxCall::new(2);
    h.recv(&h.invite_text(&c, "+442079460000", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 403);
    let rec = h.poll_refused().expect("record of the refusal");
    assert_eq!(rec.code, 403);
    assert_eq!(rec.called.as_deref(), None);
    assert!(h.events().is_empty());
    assert_eq!(h.ep.active_calls(), 0);
}

fn second_call_refused(calls: &str, trunk: &str) -> Response {
    let mut h = H::new(calls, trunk);
    h.start_call(1);
    let c = PbxCall::new(2);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    let r = h.one_response();
    assert!(h.events().is_empty());
    assert_eq!(h.poll_refused().map(|r| r.code), Some(r.code));
    assert_eq!(h.ep.active_calls(), 1);
    r
}

#[test]
fn over_the_global_limit_503_with_retry_after_or_486() {
    let r = second_call_refused("max_calls = 1", "");
    assert_eq!(r.code, 503);
    assert!(r.headers.get("Retry-After").is_some());
    let r = second_call_refused("max_calls = 1\nlimit_response = 486", "");
    assert_eq!(r.code, 486);
    assert!(r.headers.get("Retry-After").is_none());
}

#[test]
fn over_the_trunk_limit_likewise() {
    let r = second_call_refused("max_calls = 10", "max_calls = 1");
    assert_eq!(r.code, 503);
    assert!(r.headers.get("Retry-After").is_some());
    let r = second_call_refused("max_calls = 10\nlimit_response = 486", "max_calls = 1");
    assert_eq!(r.code, 486);
}

// ---- 2. responses and the 2xx retransmission ----

#[test]
fn ringing_carries_the_dialog_tag_and_contact() {
    let mut h = H::std();
    let (call, c) = h.start_call(1);
    h.cmd(DialogCommand::Respond(call, Reply::new(180)));
    let r = h.one_response();
    assert_eq!(r.code, 180);
    let tag = tag_of(r.headers.get("To").unwrap());
    assert!(r.headers.get("Contact").unwrap().contains("127.0.0.1:5070"));
    assert_eq!(r.headers.get("Call-ID"), Some(c.call_id.as_str()));
    h.cmd(DialogCommand::Respond(
        call,
        Reply::new(200).sdp(SDP.into()),
    ));
    let r = h.one_response();
    assert_eq!(
        tag_of(r.headers.get("To").unwrap()),
        tag,
        "one tag for the dialog"
    );
}

#[test]
fn our_200_is_retransmitted_until_the_ack() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    let ok = h.answer(call, &mut c);
    assert_eq!(ok.headers.get("Content-Type"), Some("application/sdp"));
    assert_eq!(ok.body, SDP.as_bytes());
    assert!(ok.headers.get("Contact").is_some());
    let sent = h.advance(Duration::from_secs(10));
    let times: Vec<Duration> = sent
        .iter()
        .map(|(at, dest, m)| {
            assert_eq!(*dest, pbx());
            assert!(matches!(m, Message::Response(r) if r.code == 200));
            *at
        })
        .collect();
    assert_eq!(
        times,
        [
            T1,
            T1 + 2 * T1,
            T1 + 2 * T1 + 4 * T1,
            T1 + 2 * T1 + 4 * T1 + T2
        ],
        "T1, 2T1, 4T1, then capped at T2"
    );
    h.ack(&c, c.cseq, "z9hG4bK-ack1");
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, DialogEvent::Ack { sdp: None })] if *x == call));
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn no_ack_for_64_t1_ends_the_call() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.answer(call, &mut c);
    h.advance(64 * T1 - Duration::from_millis(1));
    assert!(h.events().is_empty(), "not before 64*T1");
    h.advance(Duration::from_millis(1));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::NoAck)] if *x == call),
        "{ev:?}"
    );
    assert!(
        h.advance(Duration::from_secs(10)).is_empty(),
        "retransmission stopped"
    );
}

// ---- 3. retransmitted INVITE, CANCEL ----

#[test]
fn retransmitted_invite_gets_the_last_provisional_and_no_second_call() {
    let mut h = H::std();
    let (call, c) = h.start_call(1);
    h.cmd(DialogCommand::Respond(call, Reply::new(180)));
    assert_eq!(h.one_response().code, 180);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    assert_eq!(h.one_response().code, 180);
    assert!(h.events().is_empty());
    assert_eq!(h.ep.active_calls(), 1);
}

fn cancel_text(c: &PbxCall, branch: &str) -> String {
    format!(
        "CANCEL sip:0501234567@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: <sip:0501234567@127.0.0.1:5070>\r\n\
         Call-ID: {}\r\nCSeq: {} CANCEL\r\nContent-Length: 0\r\n\r\n",
        c.from(),
        c.call_id,
        c.cseq
    )
}

#[test]
fn cancel_before_the_final_gets_200_and_487() {
    let mut h = H::std();
    let (call, c) = h.start_call(1);
    h.cmd(DialogCommand::Respond(call, Reply::new(180)));
    h.out();
    h.recv(&cancel_text(&c, &c.branch));
    let rs = h.responses();
    assert_eq!(
        codes(&rs),
        [200, 487],
        "200 to the CANCEL first, then 487 to the INVITE"
    );
    assert_eq!(cseq_of(&rs[0].headers).1, "CANCEL");
    assert_eq!(cseq_of(&rs[1].headers).1, "INVITE");
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, DialogEvent::Cancelled)] if *x == call));
    // the call answering late changes nothing
    h.cmd(DialogCommand::Respond(
        call,
        Reply::new(200).sdp(SDP.into()),
    ));
    assert!(h.out().is_empty());
}

#[test]
fn cancel_after_the_200_gets_200_only_and_unknown_cancel_481() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.answer(call, &mut c);
    h.recv(&cancel_text(&c, &c.branch));
    assert_eq!(codes(&h.responses()), [200]);
    assert!(h.events().is_empty());

    let other = PbxCall::new(7);
    h.recv(&cancel_text(&other, "z9hG4bK-nothing"));
    assert_eq!(codes(&h.responses()), [481]);
}

// ---- 4. BYE and re-INVITE from the PBX ----

#[test]
fn bye_in_the_dialog_200_and_wrong_tag_or_call_id_481() {
    let mut h = H::std();
    let (call, c) = h.confirmed_call(1);
    let mut wrong = c.clone();
    wrong.from_tag = "someoneelse".into();
    h.recv(&h.in_dialog_text(&wrong, "BYE", 11, "z9hG4bK-bye-w1", ""));
    assert_eq!(codes(&h.responses()), [481]);
    let mut wrong = c.clone();
    wrong.to = "<sip:0501234567@127.0.0.1:5070>;tag=nottours".into();
    h.recv(&h.in_dialog_text(&wrong, "BYE", 11, "z9hG4bK-bye-w2", ""));
    assert_eq!(codes(&h.responses()), [481]);
    let mut wrong = c.clone();
    wrong.call_id = "other@pbx".into();
    h.recv(&h.in_dialog_text(&wrong, "BYE", 11, "z9hG4bK-bye-w3", ""));
    assert_eq!(codes(&h.responses()), [481]);
    assert!(h.events().is_empty());

    h.recv(&h.in_dialog_text(&c, "BYE", 11, "z9hG4bK-bye1", ""));
    assert_eq!(codes(&h.responses()), [200]);
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, DialogEvent::Bye)] if *x == call));
}

#[test]
fn reinvite_waits_for_the_call_and_a_second_one_gets_500() {
    let mut h = H::std();
    let (call, c) = h.confirmed_call(1);
    h.recv(&h.in_dialog_text(&c, "INVITE", 11, "z9hG4bK-re1", SDP));
    assert!(h.out().is_empty(), "the call answers");
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Reinvite { sdp: Some(s), .. })] if *x == call && s == SDP),
        "{ev:?}"
    );
    h.recv(&h.in_dialog_text(&c, "INVITE", 12, "z9hG4bK-re2", SDP));
    let r = h.one_response();
    assert_eq!(r.code, 500);
    assert!(r.headers.get("Retry-After").is_some());
    assert!(h.events().is_empty());
    h.ack(&c, 12, "z9hG4bK-re2"); // the PBX ACKs the 500 in its transaction
    assert!(h.out().is_empty() && h.events().is_empty());

    h.cmd(DialogCommand::RespondReinvite(
        call,
        Reply::new(200).sdp(SDP.into()),
    ));
    let r = h.one_response();
    assert_eq!(r.code, 200);
    assert_eq!(cseq_of(&r.headers), (11, "INVITE".into()));
    h.ack(&c, 11, "z9hG4bK-reack1");
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, DialogEvent::Ack { .. })] if *x == call));
    assert!(
        h.advance(Duration::from_secs(5)).is_empty(),
        "ACKed: no retransmission"
    );

    // a re-INVITE with a CSeq below the last one
    h.recv(&h.in_dialog_text(&c, "INVITE", 9, "z9hG4bK-re3", SDP));
    assert_eq!(h.one_response().code, 500);
    assert!(h.events().is_empty());
}

// ---- 5. our BYE ----

#[test]
fn our_bye_goes_to_the_pbx_contact_via_its_source() {
    let mut h = H::std();
    let (call, mut c) = h.start_call_with(1, "Record-Route: <sip:10.0.0.1;lr>\r\n");
    let ok = h.answer(call, &mut c);
    assert_eq!(ok.headers.get("Record-Route"), Some("<sip:10.0.0.1;lr>"));
    let our_tag = tag_of(&c.to);
    h.ack(&c, c.cseq, "z9hG4bK-ack1");
    h.events();
    h.cmd(DialogCommand::Bye(call, Some("Q.850;cause=16".into())));
    let (dest, bye) = h.one_request();
    assert_eq!(dest, pbx(), "to where the INVITE came from");
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri, "sip:201@10.0.0.5:5060");
    assert_eq!(bye.headers.get("Route"), Some("<sip:10.0.0.1;lr>"));
    assert_eq!(tag_of(bye.headers.get("From").unwrap()), our_tag);
    assert_eq!(tag_of(bye.headers.get("To").unwrap()), c.from_tag);
    assert_eq!(bye.headers.get("Call-ID"), Some(c.call_id.as_str()));
    assert_eq!(bye.headers.get("Reason"), Some("Q.850;cause=16"));
    let (n, m) = cseq_of(&bye.headers);
    assert_eq!(m, "BYE");
    assert!(n >= 2);
    h.recv(&reply_text(&bye, 200, None, "", ""));
    assert!(h.events().is_empty());
    assert!(h.out().is_empty());
}

#[test]
fn our_bye_before_the_ack_waits_for_it() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.answer(call, &mut c);
    h.cmd(DialogCommand::Bye(call, None));
    assert!(h.out().is_empty());
    h.ack(&c, c.cseq, "z9hG4bK-ack1");
    let ev = h.events();
    assert!(matches!(&ev[..], [(_, DialogEvent::Ack { .. })]));
    let (dest, bye) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(bye.method, Method::Bye);
}

// ---- 6. our re-INVITE ----

fn our_reinvite(h: &mut H, call: CallRef) -> Request {
    h.cmd(DialogCommand::Reinvite(
        call,
        SDP.into(),
        vec![("Session-Expires", "1800;refresher=uac".into())],
    ));
    let (dest, req) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(req.method, Method::Invite);
    req
}

#[test]
fn our_reinvite_200_is_acked_and_delivered() {
    let mut h = H::std();
    let (call, c) = h.confirmed_call(1);
    let re = our_reinvite(&mut h, call);
    assert_eq!(re.uri, "sip:201@10.0.0.5:5060");
    assert_eq!(re.headers.get("Content-Type"), Some("application/sdp"));
    assert_eq!(re.body, SDP.as_bytes());
    assert_eq!(tag_of(re.headers.get("To").unwrap()), c.from_tag);
    assert_eq!(
        re.headers.get("Session-Expires"),
        Some("1800;refresher=uac")
    );
    let (n, _) = cseq_of(&re.headers);
    h.recv(&reply_text(
        &re,
        200,
        None,
        "Contact: <sip:201@10.0.0.5:5060>\r\n",
        SDP,
    ));
    let (dest, ack) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(ack.method, Method::Ack);
    assert_ne!(branch_of(&ack), branch_of(&re));
    assert_eq!(cseq_of(&ack.headers), (n, "ACK".into()));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Reinvite, code: 200, sdp: Some(_), .. })] if *x == call),
        "{ev:?}"
    );
    // the next request in the dialog counts on
    h.cmd(DialogCommand::Bye(call, None));
    let (_, bye) = h.one_request();
    assert_eq!(cseq_of(&bye.headers).0, n + 1);
}

#[test]
fn our_reinvite_491_is_acked_in_the_transaction() {
    let mut h = H::std();
    let (call, _c) = h.confirmed_call(1);
    let re = our_reinvite(&mut h, call);
    h.recv(&reply_text(&re, 491, None, "", ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(branch_of(&ack), branch_of(&re));
    assert_eq!(
        cseq_of(&ack.headers),
        (cseq_of(&re.headers).0, "ACK".into())
    );
    let ev = h.events();
    assert!(matches!(
        &ev[..],
        [(
            _,
            DialogEvent::Response {
                request: OwnRequest::Reinvite,
                code: 491,
                ..
            }
        )]
    ));
    // and another re-INVITE may follow
    our_reinvite(&mut h, call);
}

#[test]
fn our_reinvite_without_response_is_a_408_after_timer_b() {
    let mut h = H::std();
    let (call, _c) = h.confirmed_call(1);
    our_reinvite(&mut h, call);
    let sent = h.advance(64 * T1 - Duration::from_millis(1));
    assert!(sent
        .iter()
        .all(|(_, _, m)| matches!(m, Message::Request(r) if r.method == Method::Invite)));
    assert!(!sent.is_empty(), "Timer A retransmits");
    assert!(h.events().is_empty());
    h.advance(Duration::from_millis(1));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Reinvite, code: 408, .. })] if *x == call),
        "{ev:?}"
    );
}

// ---- 7. inbound calls toward the PBX ----

fn inbound(did: &str) -> Box<InviteToPbx> {
    Box::new(InviteToPbx {
        trunk: "pbx".into(),
        did: did.into(),
        caller_number: Some("+97145551234".into()),
        caller_name: Some("Bob".into()),
        sdp: SDP.into(),
        headers: vec![("Session-Expires", "1800".into())],
    })
}

fn offer(h: &mut H) -> (CallRef, Request) {
    let call = h.ep.call_refs().next();
    h.cmd(DialogCommand::Invite(call, inbound("0501234567")));
    let (dest, inv) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(inv.method, Method::Invite);
    (call, inv)
}

#[test]
fn inbound_call_rings_answers_and_hangs_up() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    assert_eq!(inv.uri, "sip:0501234567@127.0.0.1:5080;rinstance=abc");
    let from = inv.headers.get("From").unwrap();
    assert!(from.contains("sip:+97145551234@127.0.0.1:5070"), "{from}");
    assert!(from.contains("\"Bob\""), "{from}");
    assert!(inv
        .headers
        .get("P-Asserted-Identity")
        .unwrap()
        .contains("+97145551234"));
    assert_eq!(inv.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(inv.body, SDP.as_bytes());
    assert_eq!(cseq_of(&inv.headers), (1, "INVITE".into()));

    h.recv(&reply_text(&inv, 180, Some("pbx-answer"), "", ""));
    assert!(h.out().is_empty());
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 180, .. })] if *x == call),
        "{ev:?}"
    );
    h.recv(&reply_text(
        &inv,
        200,
        Some("pbx-answer"),
        "Contact: <sip:ext100@127.0.0.1:5080>\r\n",
        SDP,
    ));
    let (dest, ack) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, "sip:ext100@127.0.0.1:5080");
    assert_eq!(cseq_of(&ack.headers), (1, "ACK".into()));
    assert_eq!(tag_of(ack.headers.get("To").unwrap()), "pbx-answer");
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 200, sdp: Some(s), .. })] if *x == call && s == SDP),
        "{ev:?}"
    );
    // a retransmitted 200 gets the same ACK again
    h.recv(&reply_text(
        &inv,
        200,
        Some("pbx-answer"),
        "Contact: <sip:ext100@127.0.0.1:5080>\r\n",
        SDP,
    ));
    let (_, again) = h.one_request();
    assert_eq!(again.method, Method::Ack);
    assert!(h.events().is_empty());

    h.cmd(DialogCommand::Bye(call, None));
    let (dest, bye) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri, "sip:ext100@127.0.0.1:5080");
    assert_eq!(tag_of(bye.headers.get("To").unwrap()), "pbx-answer");
    assert_eq!(cseq_of(&bye.headers), (2, "BYE".into()));
}

#[test]
fn a_long_ringing_inbound_call_keeps_the_timers_quiet() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    h.recv(&reply_text(&inv, 180, Some("ring"), "", ""));
    h.events();
    // the PBX rings past Timer B: no timeout (the call's no-answer timer decides), no spinning
    assert!(h.advance(Duration::from_secs(60)).is_empty());
    assert!(h.events().is_empty());
    h.recv(&reply_text(
        &inv,
        200,
        Some("ring"),
        "Contact: <sip:ext100@127.0.0.1:5080>\r\n",
        SDP,
    ));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, DialogEvent::Response { code: 200, .. })] if *x == call));
}

#[test]
fn inbound_call_to_an_unregistered_trunk_is_480_without_sending() {
    let mut h = H::std();
    let call = h.ep.call_refs().next();
    h.cmd(DialogCommand::Invite(call, inbound("0501234567")));
    assert!(h.out().is_empty());
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 480, .. })] if *x == call),
        "{ev:?}"
    );
    assert_eq!(h.ep.active_calls(), 0);
}

const PBX_CHALLENGE: &str =
    "Proxy-Authenticate: Digest realm=\"3CX\", nonce=\"pbxnonce1\", algorithm=MD5\r\n";

#[test]
fn a_challenge_to_our_invite_is_answered_once_with_the_trunk_credentials() {
    let mut h = H::new(
        "",
        "outbound_username = \"gw\"\noutbound_password = \"gwpass\"",
    );
    h.register();
    let (call, inv) = offer(&mut h);
    h.recv(&reply_text(&inv, 407, Some("t407"), PBX_CHALLENGE, ""));
    let reqs = h.requests();
    assert_eq!(
        reqs.len(),
        2,
        "{:?}",
        reqs.iter().map(|r| &r.1.method).collect::<Vec<_>>()
    );
    let ack = &reqs[0].1;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(branch_of(ack), branch_of(&inv));
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(cseq_of(&ack.headers), (1, "ACK".into()));
    let (dest, retry) = &reqs[1];
    assert_eq!(*dest, pbx());
    assert_eq!(retry.method, Method::Invite);
    assert_ne!(branch_of(retry), branch_of(&inv));
    assert_eq!(cseq_of(&retry.headers), (2, "INVITE".into()));
    assert_eq!(retry.headers.get("Call-ID"), inv.headers.get("Call-ID"));
    let creds =
        digest::parse_credentials(retry.headers.get("Proxy-Authorization").unwrap()).unwrap();
    assert_eq!(creds.username, "gw");
    assert_eq!(creds.uri, inv.uri);
    let ha1 = digest::ha1(Algorithm::Md5, "gw", "3CX", "gwpass");
    assert!(digest::verify(&creds, "INVITE", &ha1));
    assert!(h.events().is_empty());

    // a second challenge is the call's
    h.recv(&reply_text(retry, 407, Some("t407b"), PBX_CHALLENGE, ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 407, .. })] if *x == call),
        "{ev:?}"
    );
}

#[test]
fn a_challenge_without_outbound_credentials_is_delivered() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    h.recv(&reply_text(&inv, 407, Some("t407"), PBX_CHALLENGE, ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 407, .. })] if *x == call),
        "{ev:?}"
    );
}

#[test]
fn our_cancel_waits_for_a_provisional_then_487_is_acked() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    h.cmd(DialogCommand::Cancel(call));
    assert!(h.out().is_empty(), "no CANCEL before a provisional");
    h.recv(&reply_text(&inv, 180, Some("ring"), "", ""));
    let (dest, cancel) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(branch_of(&cancel), branch_of(&inv));
    assert_eq!(cseq_of(&cancel.headers), (1, "CANCEL".into()));
    assert!(!cancel.headers.get("To").unwrap().contains("tag="));
    h.recv(&reply_text(&cancel, 200, Some("ring"), "", ""));
    assert!(h.out().is_empty());
    h.recv(&reply_text(&inv, 487, Some("ring"), "", ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(branch_of(&ack), branch_of(&inv));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 487, .. })] if *x == call),
        "{ev:?}"
    );
}

// ---- 8. Done ----

#[test]
fn done_before_a_final_sends_500_and_forgets_the_dialog() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.cmd(DialogCommand::Respond(call, Reply::new(180)));
    c.to = h.one_response().headers.get("To").unwrap().to_string();
    h.cmd(DialogCommand::Forget(call));
    let r = h.one_response();
    assert_eq!(r.code, 500);
    assert_eq!(tag_of(r.headers.get("To").unwrap()), tag_of(&c.to));
    assert_eq!(h.ep.active_calls(), 0);
    h.recv(&h.in_dialog_text(&c, "BYE", 11, "z9hG4bK-bye1", ""));
    assert_eq!(codes(&h.responses()), [481]);
    assert!(h.events().is_empty());
}

#[test]
fn the_request_uri_toward_a_contact_leaves_its_uri_headers_out() {
    assert_eq!(
        super::originating::with_user(
            "sip:201@10.0.0.5:5060;rinstance=ab?Subject=x",
            "+97142001000"
        )
        .as_deref(),
        Some("sip:+97142001000@10.0.0.5:5060;rinstance=ab")
    );
    assert_eq!(
        super::originating::with_user("sip:10.0.0.5", "100").as_deref(),
        Some("sip:100@10.0.0.5")
    );
}
