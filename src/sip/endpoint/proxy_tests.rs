//! The endpoint behind a trusted proxy, on virtual time: the PBX judged by the address the
//! proxy stamped, Path kept and followed, a Path from anyone else ignored, bans on the PBX and
//! never on the proxy, OPTIONS telling a dispatcher the truth, and what is shared with the
//! other instances.

use std::net::SocketAddr;

use crate::sip::endpoint::pbx_harness::*;
use crate::sip::message::{Message, Method, Request, Response};
use crate::sip::shared::SharedFact;
use crate::sip::tu::{CallRef, DialogCommand};

pub(super) const PROXIED: &str = "[cluster]\ntrusted_proxies = [\"127.0.0.9/32\"]";
/// [`PROXIED`], with other instances to share with (the endpoint never connects anywhere).
const SHARING: &str = "[cluster]\ntrusted_proxies = [\"127.0.0.9/32\"]\n\
                       redis = \"redis://127.0.0.1:9\"\nsecret = \"0123456789abcdef\"";
pub(super) const PATH: &str = "<sip:127.0.0.9:5060;lr;received=sip:198.51.100.20:40000>";

pub(super) fn proxy() -> SocketAddr {
    "127.0.0.9:5060".parse().unwrap()
}

/// The PBX's own address, as the proxy stamped it on its Via.
pub(super) fn real_pbx() -> SocketAddr {
    "198.51.100.20:40000".parse().unwrap()
}

/// A REGISTER from the PBX as the proxy relays it (its own Via on top, Path added).
pub(super) fn relayed_register(cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-px{cseq}\r\n\
         Via: SIP/2.0/UDP 10.1.1.5:5062;received=198.51.100.20;rport=40000;branch=z9hG4bK-r{cseq}\r\n\
         Path: {PATH}\r\nMax-Forwards: 69\r\nFrom: <sip:{USER}@127.0.0.1>;tag=r1\r\n\
         To: <sip:{USER}@127.0.0.1>\r\nCall-ID: reg-p@pbx\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:pbx@10.1.1.5:5062;rinstance=abc>\r\nExpires: 300\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )
}

/// The one response that went out, to `to`.
pub(super) fn reply_to(h: &mut H, to: SocketAddr) -> Response {
    let out = h.out();
    match &out[..] {
        [(dest, Message::Response(r))] if *dest == to => r.clone(),
        _ => panic!("expected one response to {to}: {out:?}"),
    }
}

/// The relayed REGISTER, challenged and answered; the 200.
pub(super) fn register_through_proxy(h: &mut H) {
    h.ep.handle_datagram(relayed_register(1, "").as_bytes(), proxy(), h.now);
    // the answer goes back the way it came
    let r = reply_to(h, proxy());
    assert_eq!(r.code, 401);
    h.take_nonce(r.headers.get("WWW-Authenticate").unwrap());
    let auth = format!(
        "Authorization: {}\r\n",
        h.auth_value("REGISTER", "sip:127.0.0.1:5070")
    );
    h.ep.handle_datagram(relayed_register(2, &auth).as_bytes(), proxy(), h.now);
    assert_eq!(reply_to(h, proxy()).code, 200);
}

#[test]
fn a_register_through_the_proxy_keeps_its_path_and_the_pbx_address_and_is_shared() {
    // alone (no Redis), nothing is made to share
    let mut alone = H::new("max_calls = 10", PROXIED);
    register_through_proxy(&mut alone);
    assert_eq!(alone.ep.poll_shared(), None);

    let mut h = H::new("max_calls = 10", SHARING);
    register_through_proxy(&mut h);
    let reg = h.ep.registrations().get("pbx");
    let b = &reg.bindings[0];
    assert_eq!(b.path, vec![PATH.to_string()]);
    assert_eq!((b.source, b.pbx), (proxy(), real_pbx()));
    assert_eq!(b.next_hop(), proxy());
    // shared: the nonce use first (a replay elsewhere reverts it), then the registration
    assert!(
        matches!(h.ep.poll_shared(), Some(SharedFact::NonceSpent { ref trunk, .. }) if trunk == "pbx")
    );
    match h.ep.poll_shared() {
        Some(SharedFact::Registration(r)) => {
            assert_eq!(r.bindings[0].path, vec![PATH.to_string()]);
            assert_eq!(r.bindings[0].pbx, real_pbx());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ep.poll_shared(), None);

    // The nonce is the PBX's: the same answer sent straight from another address is refused.
    let auth = format!(
        "Authorization: {}\r\n",
        h.auth_value("REGISTER", "sip:127.0.0.1:5070")
    );
    let thief: SocketAddr = "203.0.113.66:5060".parse().unwrap();
    h.ep.handle_datagram(relayed_register(3, &auth).as_bytes(), thief, h.now);
    assert_eq!(reply_to(&mut h, thief).code, 401);
}

#[test]
fn a_path_or_via_from_an_untrusted_source_is_not_believed() {
    let mut h = H::new("max_calls = 10", PROXIED);
    let from = "203.0.113.7:5062".parse().unwrap();
    h.ep.handle_datagram(relayed_register(1, "").as_bytes(), from, h.now);
    let r = reply_to(&mut h, from);
    assert_eq!(r.code, 401);
    h.take_nonce(r.headers.get("WWW-Authenticate").unwrap());
    let auth = format!(
        "Authorization: {}\r\n",
        h.auth_value("REGISTER", "sip:127.0.0.1:5070")
    );
    h.ep.handle_datagram(relayed_register(2, &auth).as_bytes(), from, h.now);
    assert_eq!(reply_to(&mut h, from).code, 200);
    let b = h.ep.registrations().get("pbx").bindings[0].clone();
    assert!(b.path.is_empty(), "{b:?}");
    assert_eq!((b.source, b.pbx, b.next_hop()), (from, from, from));
}

/// A carrier call to the registered trunk: our INVITE, as it went out, to the proxy.
pub(super) fn offer_through_proxy(h: &mut H) -> (CallRef, Request) {
    let call = h.carrier_call();
    let (dest, inv) = h.one_request();
    assert_eq!(dest, proxy());
    (call, inv)
}

#[test]
fn a_carrier_call_follows_the_path_and_the_dialog_follows_the_record_route() {
    let mut h = H::new("max_calls = 10", PROXIED);
    register_through_proxy(&mut h);
    let (call, inv) = offer_through_proxy(&mut h);
    assert_eq!(inv.uri, "sip:0501234567@10.1.1.5:5062;rinstance=abc");
    assert_eq!(inv.headers.get_all("Route").collect::<Vec<_>>(), [PATH]);
    // the PBX answers through the proxy, which record-routed
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nRecord-Route: <sip:127.0.0.9:5060;lr>\r\nFrom: {}\r\n\
         To: {};tag=pbx1\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@10.1.1.5:5062>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        inv.headers.get("Via").unwrap(),
        inv.headers.get("From").unwrap(),
        inv.headers.get("To").unwrap(),
        inv.headers.get("Call-ID").unwrap(),
        SDP.len()
    );
    h.ep.handle_datagram(ok.as_bytes(), proxy(), h.now);
    let (dest, ack) = h.one_request();
    assert_eq!((dest, ack.method), (proxy(), Method::Ack));
    assert_eq!(ack.uri, "sip:pbx@10.1.1.5:5062");
    assert_eq!(
        ack.headers.get_all("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.9:5060;lr>"]
    );
    h.events();
    h.cmd(DialogCommand::Bye(call, None));
    let (dest, bye) = h.one_request();
    assert_eq!((dest, bye.method), (proxy(), Method::Bye));
    assert_eq!(
        bye.headers.get_all("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.9:5060;lr>"]
    );
}

#[test]
fn failures_behind_the_proxy_ban_the_pbx_not_the_proxy_and_the_ban_is_shared() {
    let mut h = H::new(
        "max_calls = 10\n[security]\nban_after = 3",
        &format!("{SHARING}\n"),
    );
    let bad = "Authorization: Digest username=\"nobody\", realm=\"x\", nonce=\"n\", \
               uri=\"sip:127.0.0.1:5070\", response=\"00\"\r\n";
    for i in 0..4 {
        h.ep.handle_datagram(relayed_register(10 + i, bad).as_bytes(), proxy(), h.now);
        h.out();
    }
    let bans: Vec<SharedFact> = std::iter::from_fn(|| h.ep.poll_shared()).collect();
    assert!(
        bans.iter()
            .any(|f| matches!(f, SharedFact::Ban { ip, .. } if *ip == real_pbx().ip())),
        "{bans:?}"
    );
    // the banned PBX behind the proxy is dropped; another PBX behind it is answered
    h.ep.handle_datagram(relayed_register(20, "").as_bytes(), proxy(), h.now);
    assert!(h.out().is_empty(), "the banned PBX was answered");
    let other = relayed_register(21, "").replace("198.51.100.20", "198.51.100.21");
    h.ep.handle_datagram(other.as_bytes(), proxy(), h.now);
    assert_eq!(reply_to(&mut h, proxy()).code, 401);
}

#[test]
fn a_ban_from_another_instance_drops_that_pbx_here_too() {
    let mut h = H::new("max_calls = 10", PROXIED);
    let until = crate::sip::shared::unix_ms(std::time::SystemTime::now()) + 60_000;
    h.ep.import(
        SharedFact::Ban {
            ip: real_pbx().ip(),
            until_unix_ms: until,
        },
        h.now,
    );
    h.ep.handle_datagram(relayed_register(1, "").as_bytes(), proxy(), h.now);
    assert!(h.out().is_empty());
    // the proxy's own address is exempt: a ban for it is not taken
    h.ep.import(
        SharedFact::Ban {
            ip: proxy().ip(),
            until_unix_ms: until,
        },
        h.now,
    );
    h.ep.handle_datagram(options().as_bytes(), proxy(), h.now);
    assert_eq!(reply_to(&mut h, proxy()).code, 200);
}

pub(super) fn options() -> String {
    "OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-o\r\n\
     From: <sip:probe@127.0.0.1>;tag=o1\r\nTo: <sip:127.0.0.1:5070>\r\nCall-ID: o@x\r\n\
     CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        .to_string()
}

#[test]
fn options_tell_a_dispatcher_whether_a_call_would_be_taken() {
    let answer = |h: &mut H| {
        h.recv(&options());
        let r = h.one_response();
        (
            r.code,
            r.reason.clone(),
            r.headers.get("Retry-After").map(str::to_owned),
        )
    };
    let mut h = H::new("max_calls = 1", "");
    assert_eq!(answer(&mut h).0, 200);
    h.ep.set_carrier_ready(false);
    assert_eq!(
        answer(&mut h),
        (503, "No Carrier Subscribed".into(), Some("10".into()))
    );
    h.ep.set_carrier_ready(true);
    h.register();
    let _call = h.start_call(1);
    assert_eq!(
        answer(&mut h),
        (503, "Call Limit Reached".into(), Some("5".into()))
    );
    let mut h = H::new("max_calls = 1", "");
    h.ep.drain();
    assert_eq!(
        answer(&mut h),
        (503, "Shutting Down".into(), Some("60".into()))
    );
}

#[test]
fn qualifying_follows_the_path() {
    let mut h = super::qualify_tests::qualifying(PROXIED);
    register_through_proxy(&mut h);
    let mut sent = super::qualify_tests::options(h.advance(std::time::Duration::from_millis(1)));
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (_, dest, o) = sent.remove(0);
    assert_eq!(dest, proxy());
    assert_eq!(o.uri, "sip:pbx@10.1.1.5:5062;rinstance=abc");
    assert_eq!(o.headers.get_all("Route").collect::<Vec<_>>(), vec![PATH]);
}
