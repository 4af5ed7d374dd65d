//! Qualifying through the whole endpoint, on virtual time: the OPTIONS a registration brings,
//! what its answer or its silence publishes, the carrier call refused for a silent PBX, and
//! the schedule ending with the binding.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::sip::endpoint::pbx_harness::*;
use crate::sip::message::{Message, Method, Request};
use crate::sip::qualify::Reach;
use crate::sip::tu::{DialogEvent, OwnRequest};

/// The Contact `H::register` binds.
const CONTACT: &str = "sip:pbx@127.0.0.1:5080;rinstance=abc";
const INTERVAL: Duration = Duration::from_secs(30);

/// The harness with `[sip] qualify_interval` 30 s (its own config turns qualifying off).
pub(super) fn qualifying(extra: &str) -> H {
    let mut h = H::new("max_calls = 10", extra);
    let mut c = config("max_calls = 10", extra);
    c.sip.qualify_interval = INTERVAL;
    h.ep.reconfigure(&c);
    h
}

/// The OPTIONS among what went out (each with where it went); anything else fails the test.
pub(super) fn options(
    sent: Vec<(Duration, SocketAddr, Message)>,
) -> Vec<(Duration, SocketAddr, Request)> {
    sent.into_iter()
        .map(|(at, dest, m)| match m {
            Message::Request(r) if r.method == Method::Options => (at, dest, r),
            other => panic!("expected only OPTIONS, got {other:?}"),
        })
        .collect()
}

/// The one OPTIONS (its first transmission) sent within `d`.
fn one_options(h: &mut H, d: Duration) -> (Duration, Request) {
    let mut v = options(h.advance(d));
    assert_eq!(v.len(), 1, "{v:?}");
    let (at, dest, r) = v.remove(0);
    assert_eq!(dest, pbx());
    (at, r)
}

fn reach(h: &H) -> Reach {
    h.ep.registrations().get("pbx").reach_of(CONTACT)
}

fn reachable(ms: u64) -> Reach {
    Reach::Reachable {
        rtt: Duration::from_millis(ms),
    }
}

#[test]
fn a_new_binding_is_asked_at_once_then_every_interval_and_any_answer_is_reachable() {
    let mut h = qualifying("");
    h.register();
    assert_eq!(reach(&h), Reach::Unknown);
    assert!(
        h.ep.registrations().get("pbx").is_reachable(),
        "unknown counts"
    );

    let (at, first) = one_options(&mut h, Duration::from_millis(100));
    assert!(at < Duration::from_secs(1), "{at:?}");
    assert_eq!(first.uri, CONTACT);
    assert_eq!(
        first.headers.get("To"),
        Some(format!("<{CONTACT}>").as_str())
    );
    assert_eq!(first.headers.get("Max-Forwards"), Some("70"));
    assert_eq!(cseq_of(&first.headers), (1, "OPTIONS".into()));
    assert!(branch_of(&first).starts_with("z9hG4bK"));
    assert!(!tag_of(first.headers.get("From").unwrap()).is_empty());
    assert_eq!(first.headers.get("User-Agent"), Some("trunkgate/0.1.0"));
    assert_eq!(first.headers.get("Route"), None, "no Path: no Route");

    // answered 100 ms after it went out
    h.recv(&reply_text(&first, 200, Some("p1"), "", ""));
    assert_eq!(reach(&h), reachable(100));
    assert!(h.out().is_empty());

    // quiet until the interval is up, then a new OPTIONS (new transaction, new Call-ID)
    assert!(h.advance(INTERVAL - Duration::from_millis(101)).is_empty());
    let (_, second) = one_options(&mut h, Duration::from_millis(2));
    assert_ne!(branch_of(&second), branch_of(&first));
    assert_ne!(second.headers.get("Call-ID"), first.headers.get("Call-ID"));
    h.advance(Duration::from_millis(250));
    // a PBX that does not do OPTIONS is there all the same; the newer round trip is shown
    h.recv(&reply_text(&second, 405, Some("p2"), "", ""));
    assert!(
        matches!(reach(&h), Reach::Reachable { rtt } if rtt >= Duration::from_millis(250) && rtt < Duration::from_millis(253))
    );
    assert_eq!(h.ep.stats.qualify_requests.load(Ordering::Relaxed), 2);
    assert_eq!(h.ep.stats.qualify_timeouts.load(Ordering::Relaxed), 0);
}

#[test]
fn a_silent_pbx_is_unreachable_after_timer_f_and_its_carrier_calls_refused_until_it_answers() {
    let mut h = qualifying("");
    h.register();
    let (_, first) = one_options(&mut h, Duration::from_millis(1));

    // retransmitted (Timer E), one in flight: none other though the interval passes
    let before_f = options(h.advance(64 * T1 - Duration::from_millis(2)));
    assert!(before_f.len() > 3, "{before_f:?}");
    assert!(before_f
        .iter()
        .all(|(_, _, r)| branch_of(r) == branch_of(&first)));
    assert_eq!(reach(&h), Reach::Unknown);

    // Timer F: unreachable, and the next OPTIONS (overdue) goes out at once
    let after_f = options(h.advance(Duration::from_millis(2)));
    assert!(
        matches!(reach(&h), Reach::Unreachable { .. }),
        "{:?}",
        reach(&h)
    );
    assert!(!h.ep.registrations().get("pbx").is_reachable());
    assert_eq!(h.ep.stats.qualify_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(after_f.len(), 1, "{after_f:?}");
    let retry = after_f[0].2.clone();
    assert_ne!(branch_of(&retry), branch_of(&first));

    // a carrier call for the trunk is refused without an INVITE
    h.carrier_call();
    assert!(h.out().is_empty());
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(_, DialogEvent::Response { request: OwnRequest::Invite, code: 480, reason, .. })] if reason == "PBX Unreachable"),
        "{ev:?}"
    );

    // it answers again: reachable, and the next call goes out to it
    h.recv(&reply_text(&retry, 200, Some("p1"), "", ""));
    assert!(
        matches!(reach(&h), Reach::Reachable { .. }),
        "{:?}",
        reach(&h)
    );
    h.carrier_call();
    let (dest, inv) = h.one_request();
    assert_eq!((dest, inv.method), (pbx(), Method::Invite));
}

#[test]
fn an_expired_binding_is_no_longer_asked_and_its_reach_is_forgotten() {
    let mut h = qualifying("");
    h.register();
    // answered every time until the registration (300 s) runs out
    let mut asked = 0;
    for _ in 0..60 {
        if !h.ep.registrations().get("pbx").is_registered() {
            break;
        }
        for (_, _, r) in options(h.advance(Duration::from_secs(10))) {
            h.recv(&reply_text(&r, 200, Some("p"), "", ""));
            asked += 1;
        }
    }
    assert!(!h.ep.registrations().get("pbx").is_registered());
    assert!(asked >= 10, "{asked}");
    assert!(h.ep.registrations().get("pbx").reach.is_empty());
    assert!(h.advance(INTERVAL * 4).is_empty());
    assert_eq!(
        h.ep.qualify.reach(&("pbx".into(), CONTACT.into())),
        Reach::Unknown
    );
}

#[test]
fn interval_zero_asks_nobody() {
    let mut h = H::std();
    h.register();
    assert!(h.advance(INTERVAL * 4).is_empty());
    assert_eq!(h.ep.stats.qualify_requests.load(Ordering::Relaxed), 0);
}
