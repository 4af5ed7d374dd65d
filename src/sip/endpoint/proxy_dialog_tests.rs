//! Calls through a trusted proxy, on virtual time: the trunk's `allowed_sources` judged on the
//! PBX behind it, our CANCEL and ACK taking the INVITE's Path, the route set a Record-Route
//! makes (reversed for our INVITE, in order for the PBX's, strict routers included), and OPTIONS
//! coming back to 200 once nothing stands in a call's way.

use std::net::SocketAddr;

use super::proxy_tests::*;
use crate::sip::endpoint::pbx_harness::*;
use crate::sip::message::{Method, Request};
use crate::sip::tu::{DialogCommand, DialogEvent, OwnRequest, Reply};

/// `text` as the proxy relays it from the PBX: the proxy's Via on top (its branch derived from
/// the PBX's, as a stateful proxy's CANCEL keeps its INVITE's), the PBX's stamped below it.
fn relayed(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        match line.strip_prefix("Via: SIP/2.0/UDP 127.0.0.1:5080;branch=") {
            Some(rest) => {
                let branch = rest.trim_end().trim_end_matches(";rport");
                out.push_str(&format!(
                    "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-px-{branch}\r\n\
                     Via: SIP/2.0/UDP 10.1.1.5:5062;received=198.51.100.20;rport=40000;branch={branch}\r\n"
                ));
            }
            None => out.push_str(line),
        }
    }
    out
}

fn from_proxy(h: &mut H, text: &str) {
    h.ep.handle_datagram(relayed(text).as_bytes(), proxy(), h.now);
}

fn routes(r: &Request) -> Vec<&str> {
    r.headers.get_all("Route").collect()
}

#[test]
fn allowed_sources_are_judged_on_the_pbx_behind_the_proxy() {
    let only_pbx = format!("allowed_sources = [\"198.51.100.20/32\"]\n{PROXIED}");
    let mut h = H::new("max_calls = 10", &only_pbx);
    register_through_proxy(&mut h);
    assert_eq!(h.ep.registrations().get("pbx").bindings[0].pbx, real_pbx());

    let only_proxy = format!("allowed_sources = [\"127.0.0.9/32\"]\n{PROXIED}");
    let mut h = H::new("max_calls = 10", &only_proxy);
    h.ep.handle_datagram(relayed_register(1, "").as_bytes(), proxy(), h.now);
    let r = reply_to(&mut h, proxy());
    assert_eq!((r.code, r.reason.as_str()), (403, "Source Not Allowed"));
    assert!(!h.ep.registrations().get("pbx").is_registered());
}

#[test]
fn our_cancel_and_the_ack_of_its_487_take_the_path() {
    let mut h = H::new("max_calls = 10", PROXIED);
    register_through_proxy(&mut h);
    let (call, inv) = offer_through_proxy(&mut h);
    h.ep.handle_datagram(
        reply_text(&inv, 180, Some("ring"), "", "").as_bytes(),
        proxy(),
        h.now,
    );
    h.events();
    h.cmd(DialogCommand::Cancel(call));
    let (dest, cancel) = h.one_request();
    assert_eq!((dest, &cancel.method), (proxy(), &Method::Cancel));
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(routes(&cancel), [PATH]);
    assert_eq!(branch_of(&cancel), branch_of(&inv));
    h.ep.handle_datagram(
        reply_text(&cancel, 200, Some("ring"), "", "").as_bytes(),
        proxy(),
        h.now,
    );
    assert!(h.out().is_empty());
    h.ep.handle_datagram(
        reply_text(&inv, 487, Some("ring"), "", "").as_bytes(),
        proxy(),
        h.now,
    );
    // RFC 3261 17.1.1.3: the ACK of a non-2xx has the INVITE's Request-URI and Route
    let (dest, ack) = h.one_request();
    assert_eq!((dest, &ack.method), (proxy(), &Method::Ack));
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(routes(&ack), [PATH]);
    assert_eq!(branch_of(&ack), branch_of(&inv));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, DialogEvent::Response { request: OwnRequest::Invite, code: 487, .. })] if *x == call),
        "{ev:?}"
    );
}

/// Our INVITE answered 200 through the proxy with `record_route` lines (as the PBX sends them:
/// the hop nearest the PBX first); our ACK and the BYE after it, with where each went.
fn answered_with(record_route: &[&str]) -> [(SocketAddr, Request); 2] {
    let mut h = H::new("max_calls = 10", PROXIED);
    register_through_proxy(&mut h);
    let (call, inv) = offer_through_proxy(&mut h);
    let extra: String = record_route
        .iter()
        .map(|rr| format!("Record-Route: {rr}\r\n"))
        .chain(["Contact: <sip:pbx@10.1.1.5:5062>\r\n".to_string()])
        .collect();
    h.ep.handle_datagram(
        reply_text(&inv, 200, Some("pbx1"), &extra, SDP).as_bytes(),
        proxy(),
        h.now,
    );
    let ack = h.one_request();
    assert_eq!(ack.1.method, Method::Ack);
    h.events();
    h.cmd(DialogCommand::Bye(call, None));
    let bye = h.one_request();
    assert_eq!(bye.1.method, Method::Bye);
    [ack, bye]
}

/// The proxy's other interface, which it may record-route instead of the one it sent from.
fn proxy_side() -> SocketAddr {
    "127.0.0.10:5060".parse().unwrap()
}

#[test]
fn the_record_route_of_a_2xx_to_our_invite_is_followed_reversed() {
    let sent = answered_with(&["<sip:10.200.0.1;lr>", "<sip:127.0.0.10:5060;lr>"]);
    for (dest, r) in &sent {
        assert_eq!(*dest, proxy_side(), "to the first route");
        assert_eq!(r.uri, "sip:pbx@10.1.1.5:5062");
        assert_eq!(
            routes(r),
            ["<sip:127.0.0.10:5060;lr>", "<sip:10.200.0.1;lr>"]
        );
    }
}

#[test]
fn a_strict_router_gets_the_request_uri_and_the_target_goes_last() {
    let sent = answered_with(&["<sip:127.0.0.10:5060>"]);
    for (dest, r) in &sent {
        assert_eq!(*dest, proxy_side());
        assert_eq!(r.uri, "sip:127.0.0.10:5060");
        assert_eq!(routes(r), ["<sip:pbx@10.1.1.5:5062>"]);
    }
}

#[test]
fn a_pbx_call_through_the_proxy_is_the_pbx_s_and_its_dialog_follows_the_record_route() {
    let mut h = H::new("max_calls = 10", PROXIED);
    let rr = "Record-Route: <sip:127.0.0.10:5060;lr>\r\nRecord-Route: <sip:10.200.0.1;lr>\r\n";
    let mut c = PbxCall::new(1);
    // challenged through the proxy: the nonce is the PBX's
    let text = h.invite_text(&c, "0501234567", false, "");
    from_proxy(&mut h, &text);
    let r = reply_to(&mut h, proxy());
    assert_eq!(r.code, 407);
    h.take_nonce(r.headers.get("Proxy-Authenticate").unwrap());
    c.branch = "z9hG4bK-inv1b".into();
    c.cseq += 1;
    let text = h.invite_text(&c, "0501234567", true, rr);
    from_proxy(&mut h, &text);
    assert_eq!(reply_to(&mut h, proxy()).code, 100);
    let ev = h.events();
    let [(call, DialogEvent::Admitted(a))] = &ev[..] else {
        panic!("{ev:?}");
    };
    let call = *call;
    assert_eq!(a.source, real_pbx());
    let nonce = a.nonce.as_ref().expect("the nonce use that admitted it");
    assert_eq!((Some(&nonce.nonce), nonce.nc), (h.nonce.as_ref(), 1));

    h.cmd(DialogCommand::Respond(
        call,
        Reply::new(200).sdp(SDP.into()),
    ));
    let ok = reply_to(&mut h, proxy());
    assert_eq!(ok.code, 200);
    assert_eq!(
        ok.headers.get_all("Record-Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.10:5060;lr>", "<sip:10.200.0.1;lr>"]
    );
    c.to = ok.headers.get("To").unwrap().to_string();
    let text = h.in_dialog_text(&c, "ACK", c.cseq, "z9hG4bK-ack1", "");
    from_proxy(&mut h, &text);
    assert!(matches!(h.events()[..], [(x, DialogEvent::Ack { .. })] if x == call));
    // A re-INVITE straight from the PBX (answered where it came from) does not move the
    // dialog off its route.
    h.recv(&h.in_dialog_text(&c, "INVITE", c.cseq + 1, "z9hG4bK-re1", SDP));
    assert!(matches!(h.events()[..], [(x, DialogEvent::Reinvite { .. })] if x == call));
    h.cmd(DialogCommand::RespondReinvite(
        call,
        Reply::new(200).sdp(SDP.into()),
    ));
    assert_eq!(h.one_response().code, 200);
    h.ack(&c, c.cseq + 1, "z9hG4bK-reack1");
    assert!(matches!(h.events()[..], [(x, DialogEvent::Ack { .. })] if x == call));
    h.cmd(DialogCommand::Bye(call, None));
    let (dest, bye) = h.one_request();
    assert_eq!((dest, &bye.method), (proxy_side(), &Method::Bye));
    assert_eq!(bye.uri, "sip:201@10.0.0.5:5060");
    assert_eq!(
        routes(&bye),
        ["<sip:127.0.0.10:5060;lr>", "<sip:10.200.0.1;lr>"]
    );
}

#[test]
fn options_come_back_to_200_once_nothing_stands_in_the_way() {
    fn answer(h: &mut H) -> u16 {
        h.recv(&options());
        h.one_response().code
    }
    let mut h = H::new("max_calls = 1", PROXIED);
    h.ep.set_carrier_ready(false);
    assert_eq!(answer(&mut h), 503);
    h.ep.set_carrier_ready(true);
    assert_eq!(answer(&mut h), 200);
    // the limit counts calls either way: a carrier call to the PBX fills it too
    register_through_proxy(&mut h);
    let (call, _) = offer_through_proxy(&mut h);
    assert_eq!(answer(&mut h), 503);
    h.cmd(DialogCommand::Forget(call));
    h.out();
    assert_eq!(answer(&mut h), 200);
    // and a PBX's call likewise (challenged anew: the nonce above is the PBX's behind the proxy)
    h.nonce = None;
    let (call, _) = h.start_call(1);
    assert_eq!(answer(&mut h), 503);
    h.cmd(DialogCommand::Forget(call));
    assert_eq!(h.one_response().code, 500);
    assert_eq!(answer(&mut h), 200);
}
