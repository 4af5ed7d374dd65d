//! The edge under attack, on virtual time: stateless challenges, the digest bound to its
//! request, one-use no-qop nonces, bans, budgets, scanners, the transaction ceiling and
//! emergency calls over the limit.

use std::net::SocketAddr;
use std::time::Duration;

use crate::sip::endpoint::pbx_harness::*;
use crate::sip::security::{DropReason, FailureKind, Source};
use crate::sip::tu::DialogEvent;

fn failures(h: &H, kind: FailureKind) -> u64 {
    h.ep.security()
        .failures()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| n)
}

fn dropped(h: &H, reason: DropReason) -> u64 {
    h.ep.security()
        .dropped()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| n)
}

fn from(last: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], 5099))
}

fn register(from: SocketAddr, n: u32, auth: &str, ua: &str) -> String {
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-reg{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:x@{REALM}>;tag=r{n}\r\nTo: <sip:x@{REALM}>\r\n\
         Call-ID: reg-{n}@attacker\r\nCSeq: {n} REGISTER\r\nContact: <sip:x@{from}>\r\n\
         {ua}{auth}Content-Length: 0\r\n\r\n"
    )
}

fn wrong_password(nonce: &str) -> String {
    format!(
        "Authorization: Digest username=\"{USER}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"sip:{REALM}\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n"
    )
}

/// Every datagram sent to `to`, parsed.
fn sent_to(h: &mut H, to: SocketAddr) -> usize {
    h.out().into_iter().filter(|(d, _)| *d == to).count()
}

#[test]
fn a_challenge_is_one_datagram_and_leaves_no_transaction() {
    let mut h = H::std();
    h.challenge();
    assert_eq!(h.ep.server_transactions(), 0);
    // Timer G would retransmit a stateful 407 at 0.5, 1.5, 3.5 s ... until Timer H at 32 s
    let later = h.advance(Duration::from_secs(40));
    assert!(later.is_empty(), "{} datagrams after the 407", later.len());
    // the same INVITE again (a retransmission) gets the same To tag: a stateless UAS's duty
    let c = PbxCall::new(77);
    h.recv(&h.invite_text(&c, "0501234567", false, ""));
    let first = h.one_response();
    h.recv(&h.invite_text(&c, "0501234567", false, ""));
    let second = h.one_response();
    assert_eq!(first.headers.get("To"), second.headers.get("To"));
    assert_eq!(h.ep.server_transactions(), 0);
}

#[test]
fn options_is_answered_statelessly() {
    let mut h = H::std();
    let text = format!(
        "OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-o1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:p@x>;tag=1\r\nTo: <sip:{REALM}>\r\nCall-ID: o1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    h.recv(&text);
    assert_eq!(h.one_response().code, 200);
    assert_eq!(h.ep.server_transactions(), 0);
}

#[test]
fn a_digest_made_for_another_number_is_refused_400() {
    let mut h = H::std();
    h.challenge();
    let c = PbxCall::new(1);
    // credentials computed for 0505550107, put on an INVITE to 0505550777
    let auth = h.auth_value("INVITE", "sip:0505550107@127.0.0.1:5070");
    let text = h.invite_text(&c, "0505550777", false, "").replace(
        "Supported: timer",
        &format!("Proxy-Authorization: {auth}\r\nSupported: timer"),
    );
    h.recv(&text);
    assert_eq!(h.one_response().code, 400);
    assert!(h.events().is_empty(), "no call");
    assert_eq!(failures(&h, FailureKind::UriMismatch), 1);
    // the same credentials on their own request work
    let c = PbxCall::new(2);
    let text = h.invite_text(&c, "0505550107", false, "").replace(
        "Supported: timer",
        &format!("Proxy-Authorization: {auth}\r\nSupported: timer"),
    );
    h.recv(&text);
    assert_eq!(h.one_response().code, 100);
    assert_eq!(h.events().len(), 1);
}

#[test]
fn a_no_qop_answer_is_good_for_one_request_and_its_retransmission() {
    let mut h = H::std();
    h.qop = false;
    h.challenge();
    let c = PbxCall::new(1);
    let invite = h.invite_text(&c, "0501234567", true, "");
    h.recv(&invite);
    assert_eq!(h.one_response().code, 100);
    assert_eq!(h.events().len(), 1);
    // its retransmission is absorbed by the transaction, not refused as a replay
    h.recv(&invite);
    assert_eq!(h.one_response().code, 100);
    assert!(h.events().is_empty());
    // the same header copied into a new INVITE: a fresh challenge, marked stale
    let auth = h.auth_value("INVITE", "sip:0501234567@127.0.0.1:5070");
    let c2 = PbxCall::new(2);
    let copy = h.invite_text(&c2, "0501234567", false, "").replace(
        "Supported: timer",
        &format!("Proxy-Authorization: {auth}\r\nSupported: timer"),
    );
    h.recv(&copy);
    let r = h.one_response();
    assert_eq!(r.code, 407);
    assert!(r
        .headers
        .get("Proxy-Authenticate")
        .unwrap()
        .contains("stale=true"));
    assert!(h.events().is_empty());
    assert_eq!(failures(&h, FailureKind::Replay), 1);
}

#[test]
fn brute_force_ends_in_a_ban_and_silence_while_the_trunk_keeps_working() {
    let mut h = H::new("max_calls = 10\n[security]\nban_after = 5", "");
    let attacker = from(5);
    let mut answered = 0;
    for n in 1..=300u32 {
        // each attempt first gets its own nonce, then answers it with a wrong password
        h.ep.handle_datagram(
            register(attacker, 2 * n, "", "").as_bytes(),
            attacker,
            h.now,
        );
        let nonce = h.out().into_iter().find_map(|(_, m)| match m {
            crate::sip::message::Message::Response(r) => r
                .headers
                .get("WWW-Authenticate")
                .and_then(|c| c.split("nonce=\"").nth(1))
                .and_then(|s| s.split('"').next())
                .map(str::to_owned),
            _ => None,
        });
        let Some(nonce) = nonce else { continue };
        answered += 1;
        let text = register(attacker, 2 * n + 1, &wrong_password(&nonce), "");
        h.ep.handle_datagram(text.as_bytes(), attacker, h.now);
        let _ = h.out();
        h.now += Duration::from_millis(50);
    }
    assert_eq!(
        answered, 5,
        "challenged until the fifth failure, then silence"
    );
    assert!(h
        .ep
        .security()
        .bans()
        .iter()
        .any(|b| b.source == Source::of(attacker.ip())));
    assert_eq!(failures(&h, FailureKind::WrongPassword), 5);
    assert!(dropped(&h, DropReason::Banned) >= 290);
    // the trunk on another address still registers
    h.challenge();
    let c = PbxCall::new(3);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    assert_eq!(h.one_response().code, 100);
    // and the ban ends by itself after ban_time (1 h by default)
    h.advance(Duration::from_secs(3601));
    assert!(h.ep.security().bans().is_empty());
    h.ep.handle_datagram(register(attacker, 9999, "", "").as_bytes(), attacker, h.now);
    assert_eq!(sent_to(&mut h, attacker), 1);
}

#[test]
fn a_scanner_gets_nothing_and_is_banned() {
    let mut h = H::std();
    let scanner = from(6);
    let text = register(scanner, 1, "", "User-Agent: friendly-scanner\r\n");
    h.ep.handle_datagram(text.as_bytes(), scanner, h.now);
    assert_eq!(sent_to(&mut h, scanner), 0);
    // banned: even an innocent-looking request from it is dropped
    h.ep.handle_datagram(register(scanner, 2, "", "").as_bytes(), scanner, h.now);
    assert_eq!(sent_to(&mut h, scanner), 0);
    assert_eq!(dropped(&h, DropReason::Scanner), 1);
    assert_eq!(dropped(&h, DropReason::Banned), 1);
    assert!(h.ep.unban(Source::of(scanner.ip()), h.now));
    h.ep.handle_datagram(register(scanner, 3, "", "").as_bytes(), scanner, h.now);
    assert_eq!(sent_to(&mut h, scanner), 1);
}

#[test]
fn unauthenticated_requests_over_the_budget_are_dropped() {
    let mut h = H::new(
        "max_calls = 10\n[security]\nunauthenticated_rate = 10\nunauthenticated_burst = 20",
        "",
    );
    let flood = from(9);
    for n in 0..100 {
        h.ep.handle_datagram(register(flood, n, "", "").as_bytes(), flood, h.now);
    }
    assert_eq!(sent_to(&mut h, flood), 20);
    assert_eq!(dropped(&h, DropReason::RateLimited), 80);
    assert_eq!(
        h.ep.server_transactions(),
        0,
        "nothing kept for any of them"
    );
}

#[test]
fn over_the_transaction_ceiling_new_requests_get_503() {
    let mut h = H::new("max_calls = 100\n[security]\nmax_transactions = 10", "");
    h.challenge();
    for n in 1..=10 {
        h.start_call(n);
    }
    assert_eq!(h.ep.server_transactions(), 10);
    let c = PbxCall::new(11);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 503);
    assert!(r.headers.get("Retry-After").is_some());
    assert!(h.events().is_empty());
}

#[test]
fn an_emergency_call_is_admitted_over_the_call_limit() {
    let mut h = H::new("max_calls = 1", "max_calls = 1");
    h.start_call(1);
    let c = PbxCall::new(2);
    h.recv(&h.invite_text(&c, "0501234568", true, ""));
    assert_eq!(h.one_response().code, 503);
    let c = PbxCall::new(3);
    h.recv(&h.invite_text(&c, "999", true, ""));
    assert_eq!(h.one_response().code, 100);
    let ev = h.events();
    assert!(matches!(&ev[..], [(_, DialogEvent::Admitted(o))] if o.dialled == "999"));
}
