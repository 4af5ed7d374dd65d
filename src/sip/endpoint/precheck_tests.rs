//! Unit tests of the RFC 3261 8.2 precheck: each refusal with the header it must carry, the
//! order in which they are tried, and the requests that pass.

use super::super::answer::Answer;
use super::super::ALLOW;
use super::precheck;
use crate::sip::parse::{parse, Parsed};

/// `method` to `uri` with the mandatory headers, `extra` header lines and `body`.
fn check(method: &str, uri: &str, extra: &str, body: &str) -> Result<(), Answer> {
    let text = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKp1\r\n\
         From: <sip:100@pbx.example>;tag=1\r\nTo: <sip:0501234567@gw.example>\r\nCall-ID: p1@pbx\r\n\
         CSeq: 1 {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match parse(text.as_bytes(), 65_535) {
        Ok(Parsed::Request(req, info)) => precheck(&req, &info),
        other => panic!("the test request does not parse: {other:?}\n{text}"),
    }
}

const URI: &str = "sip:0501234567@gw.example";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";

/// The code of a refusal and the headers it carries.
fn refusal(r: Result<(), Answer>) -> (u16, Vec<(&'static str, String)>) {
    match r {
        Err(a) => (a.code, a.headers),
        Ok(()) => panic!("expected a refusal, the request passed"),
    }
}

fn headers(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    list.iter().map(|(n, v)| (*n, v.to_string())).collect()
}

#[test]
fn each_refusal_carries_what_tells_the_client_why() {
    let sdp = "Content-Type: application/sdp\r\n";
    let gzip = format!("{sdp}Content-Encoding: gzip\r\n");
    let accept_sdp = [("Accept", "application/sdp")];
    let cases = [
        (
            "mailto:",
            check("INVITE", "mailto:ops@example.com", "", ""),
            416,
            headers(&[]),
        ),
        (
            "urn:",
            check("INVITE", "urn:service:sos", "", ""),
            416,
            headers(&[]),
        ),
        (
            "SUBSCRIBE",
            check("SUBSCRIBE", URI, "", ""),
            405,
            headers(&[("Allow", ALLOW)]),
        ),
        (
            "no hops left",
            check("INVITE", URI, "Max-Forwards: 0\r\n", ""),
            483,
            headers(&[]),
        ),
        (
            "BYE, no hops",
            check("BYE", URI, "Max-Forwards: 0\r\n", ""),
            483,
            headers(&[]),
        ),
        (
            "Require",
            check(
                "INVITE",
                URI,
                "Require: timer, 100rel\r\nRequire: precondition\r\n",
                "",
            ),
            420,
            headers(&[("Unsupported", "100rel, precondition")]),
        ),
        (
            "text/plain",
            check("INVITE", URI, "Content-Type: text/plain\r\n", "hello"),
            415,
            headers(&accept_sdp),
        ),
        // a body without any Content-Type is no SDP either
        (
            "untyped body",
            check("INVITE", URI, "", SDP),
            415,
            headers(&accept_sdp),
        ),
        (
            "gzip",
            check("INVITE", URI, &gzip, SDP),
            415,
            headers(&[
                ("Accept", "application/sdp"),
                ("Accept-Encoding", "identity"),
            ]),
        ),
        (
            "Accept",
            check(
                "INVITE",
                URI,
                "Accept: text/plain, application/pidf+xml\r\n",
                "",
            ),
            406,
            headers(&accept_sdp),
        ),
    ];
    for (what, result, code, want) in cases {
        assert_eq!(refusal(result), (code, want), "{what}");
    }
}

#[test]
fn the_checks_run_in_the_order_of_rfc_3261_8_2() {
    // scheme before method before Max-Forwards before Require before content
    let everything_wrong = "Max-Forwards: 0\r\nRequire: 100rel\r\nContent-Type: text/plain\r\n";
    assert_eq!(
        refusal(check("FROB", "mailto:a@b", everything_wrong, "x")).0,
        416
    );
    assert_eq!(refusal(check("FROB", URI, everything_wrong, "x")).0, 405);
    assert_eq!(refusal(check("INVITE", URI, everything_wrong, "x")).0, 483);
    let no_hops_left = &everything_wrong["Max-Forwards: 0\r\n".len()..];
    assert_eq!(refusal(check("INVITE", URI, no_hops_left, "x")).0, 420);
    let only_content = "Content-Type: text/plain\r\nAccept: text/plain\r\n";
    assert_eq!(refusal(check("INVITE", URI, only_content, "x")).0, 415);
}

#[test]
fn what_passes() {
    let sdp_type = "Content-Type: Application/SDP; charset=utf-8\r\n";
    let passing = [
        ("INVITE", URI, String::new(), ""),
        ("INVITE", "sips:0501234567@gw.example", String::new(), ""),
        ("INVITE", "tel:+971501234567", String::new(), ""),
        ("INVITE", URI, sdp_type.to_string(), SDP),
        (
            "INVITE",
            URI,
            format!("{sdp_type}Content-Encoding: Identity\r\n"),
            SDP,
        ),
        (
            "INVITE",
            URI,
            "Require: TIMER\r\nSupported: timer\r\n".into(),
            "",
        ),
        ("INVITE", URI, "Accept: application/*;q=0.5\r\n".into(), ""),
        ("INVITE", URI, "Accept: text/plain, */*\r\n".into(), ""),
        ("INVITE", URI, "Accept: application/sdp\r\n".into(), ""),
        // OPTIONS is answered whatever its Max-Forwards (RFC 3261 11: a probe of the next hop)
        ("OPTIONS", URI, "Max-Forwards: 0\r\n".into(), ""),
        // ACK and CANCEL cannot be refused for an extension
        ("ACK", URI, "Require: 100rel\r\n".into(), ""),
        ("CANCEL", URI, "Require: 100rel\r\n".into(), ""),
        // Accept only matters for an INVITE's answer
        ("OPTIONS", URI, "Accept: text/plain\r\n".into(), ""),
        (
            "REGISTER",
            "sip:gw.example",
            "Max-Forwards: 1\r\n".into(),
            "",
        ),
        ("BYE", URI, String::new(), ""),
    ];
    for (method, uri, extra, body) in passing {
        assert!(
            check(method, uri, &extra, body).is_ok(),
            "{method} {uri} with {extra:?}: {:?}",
            check(method, uri, &extra, body).err().map(|a| a.code)
        );
    }
}
