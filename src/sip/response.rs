//! Building responses to received requests (RFC 3261 8.2.6) and choosing where they go
//! (18.2.2 with RFC 3581 `rport`).

use std::net::SocketAddr;

use super::grammar::{Params, Via};
use super::message::{reason_phrase, Headers, Request, Response};

/// Rewrites the top Via as RFC 3581 / 18.2.1 ask: `received` when the source IP differs from
/// sent-by (or when rport is requested), `rport=<port>` filled in when the client asked for it.
pub fn stamp_top_via(via: &Via, src: SocketAddr) -> String {
    let src_ip = src.ip().to_string();
    let wants_rport = via.params.has("rport");
    let mut params: Vec<(String, Option<String>)> = Vec::with_capacity(via.params.0.len() + 2);
    for (n, v) in &via.params.0 {
        if n.eq_ignore_ascii_case("received") {
            continue;
        }
        if n.eq_ignore_ascii_case("rport") {
            params.push((n.clone(), Some(src.port().to_string())));
        } else {
            params.push((n.clone(), v.clone()));
        }
    }
    let host_is_src = via.host.trim_matches(['[', ']']) == src_ip;
    if !host_is_src || wants_rport {
        params.push(("received".into(), Some(src_ip)));
    }
    let mut s = format!("SIP/2.0/{} {}", via.transport, via.host);
    if let Some(p) = via.port {
        s.push_str(&format!(":{p}"));
    }
    write_params(&mut s, &Params(params));
    s
}

fn write_params(s: &mut String, p: &Params) {
    for (n, v) in &p.0 {
        s.push(';');
        s.push_str(n);
        if let Some(v) = v {
            s.push('=');
            s.push_str(v);
        }
    }
}

/// Where a response to a request from `src` goes. Replies always go to the source IP (the
/// `received` rule); the port is the source port when the client asked for rport or when
/// `force_rport` is configured (NAT), else the sent-by port.
pub fn response_destination(
    top_via: Option<&Via>,
    src: SocketAddr,
    force_rport: bool,
) -> SocketAddr {
    match top_via {
        Some(v) if !force_rport && !v.params.has("rport") => {
            SocketAddr::new(src.ip(), v.port.unwrap_or(5060))
        }
        _ => src,
    }
}

/// Builds a response to `req`. `top_via` is the parsed top Via when the request parsed (its
/// stamped form replaces the first Via); otherwise the Via lines are copied as they came.
/// `to_tag` is added to To when the request has none and the response is not a 100.
pub fn build(
    req: &Request,
    top_via: Option<&Via>,
    src: SocketAddr,
    code: u16,
    reason: Option<&str>,
    to_tag: Option<&str>,
    server: &str,
) -> Response {
    let mut headers = Headers::new();
    let mut first = true;
    for v in req.headers.get_all("Via") {
        match (first, top_via) {
            (true, Some(top)) => headers.push("Via", stamp_top_via(top, src)),
            _ => headers.push("Via", v),
        }
        first = false;
    }
    if let Some(f) = req.headers.get("From") {
        headers.push("From", f);
    }
    if let Some(t) = req.headers.get("To") {
        let has_tag = super::grammar::NameAddr::parse(t)
            .map(|n| n.tag().is_some())
            .unwrap_or(true);
        match to_tag {
            Some(tag) if !has_tag && code > 100 => headers.push("To", format!("{t};tag={tag}")),
            _ => headers.push("To", t),
        }
    }
    if let Some(c) = req.headers.get("Call-ID") {
        headers.push("Call-ID", c);
    }
    if let Some(c) = req.headers.get("CSeq") {
        headers.push("CSeq", c);
    }
    headers.push("Server", server);
    Response {
        code,
        reason: reason.unwrap_or_else(|| reason_phrase(code)).to_string(),
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Method;

    #[test]
    fn rport_and_received_are_filled() {
        let via = Via::parse("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;rport").unwrap();
        let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        assert_eq!(
            stamp_top_via(&via, src),
            "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;rport=40000;received=198.51.100.7"
        );
        assert_eq!(response_destination(Some(&via), src, false), src);
        let plain = Via::parse("SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK2").unwrap();
        assert_eq!(
            stamp_top_via(&plain, src),
            "SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK2"
        );
        assert_eq!(
            response_destination(Some(&plain), src, false),
            "198.51.100.7:5062".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(response_destination(Some(&plain), src, true), src);
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_to_tag() {
        let mut req = Request::new(Method::Options, "sip:a@b");
        req.headers
            .push("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx");
        req.headers
            .push("Via", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKy");
        req.headers.push("From", "<sip:c@d>;tag=1");
        req.headers.push("To", "<sip:a@b>");
        req.headers.push("Call-ID", "abc");
        req.headers.push("CSeq", "1 OPTIONS");
        let via = Via::parse("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx").unwrap();
        let src = "10.0.0.1:5060".parse().unwrap();
        let r = build(&req, Some(&via), src, 200, None, Some("t1"), "tg");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("To: <sip:a@b>;tag=t1\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKy\r\n"));
        assert!(text.contains("Call-ID: abc\r\nCSeq: 1 OPTIONS\r\n"));
    }
}
