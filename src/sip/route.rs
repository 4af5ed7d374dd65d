//! Routing through SIP proxies: who the PBX is when a trusted proxy relays its request (RFC 3261
//! 18.2.1's `received`/`rport` on the PBX's Via), and where a request goes along a route set
//! (RFC 3261 8.1.2 and 12.2.1.1: loose routing, and the strict-routing fallback).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::grammar::{NameAddr, Uri, Via};
use super::message::Request;

/// The SIP proxies whose Via and Path are believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: &[IpNet]) -> Self {
        TrustedProxies(nets.to_vec())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The PBX's own address for a request that arrived from `src`. From a trusted proxy it is
    /// the first Via below the proxies' own (its `received` and `rport` when the proxy stamped
    /// them); from anyone else it is `src`, whatever the request claims.
    pub fn pbx_address(&self, req: &Request, src: SocketAddr) -> SocketAddr {
        if !self.contains(src.ip()) {
            return src;
        }
        let vias: Vec<Via> = req
            .headers
            .list_items("Via")
            .map_while(|v| Via::parse(v).ok())
            .collect();
        // The top Via is the proxy's; below it, skip any further proxy of ours (a chain of
        // them) to the first hop that is not one.
        for (i, via) in vias.iter().enumerate().skip(1) {
            let Some(addr) = via_address(via) else {
                break;
            };
            if self.contains(addr.ip()) && i + 1 < vias.len() {
                continue;
            }
            return addr;
        }
        src
    }
}

/// Where a Via says its sender is: `received` (else the host when it is an address) and
/// `rport` (else the port, else 5060). `None` for a host name the proxy did not resolve.
fn via_address(via: &Via) -> Option<SocketAddr> {
    let ip: IpAddr = match via.params.value("received") {
        Some(r) => r.parse().ok()?,
        None => via.host.trim_matches(['[', ']']).parse().ok()?,
    };
    let port = via
        .params
        .value("rport")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .or(via.port)
        .unwrap_or(5060);
    Some(SocketAddr::new(ip, port))
}

/// Where a request along `routes` is sent: the first route's address, when it names one. A
/// host name is not resolved (we do no DNS): the caller falls back to the address it knows.
pub(crate) fn next_hop(routes: &[String]) -> Option<SocketAddr> {
    let first = NameAddr::parse(routes.first()?).ok()?;
    uri_address(&first.uri)
}

fn uri_address(uri: &Uri) -> Option<SocketAddr> {
    let ip: IpAddr = uri.host.trim_matches(['[', ']']).parse().ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// The Request-URI and Route values of a request to `target` along `routes` (RFC 3261
/// 12.2.1.1): with a loose router first (`lr`), the target and every route; with a strict one,
/// that route's URI and the rest, the target last.
pub(crate) fn apply(target: &str, routes: &[String]) -> (String, Vec<String>) {
    let Some(first) = routes.first() else {
        return (target.to_string(), Vec::new());
    };
    match NameAddr::parse(first) {
        Ok(n) if !n.uri.params.has("lr") => {
            let mut rest: Vec<String> = routes[1..].to_vec();
            rest.push(format!("<{target}>"));
            (strip_headers(&n.uri_text), rest)
        }
        _ => (target.to_string(), routes.to_vec()),
    }
}

/// A URI without its `?headers` part: a registered Contact may carry some (`?Subject=...`), a
/// Request-URI may not (RFC 3261 19.1.5).
pub(crate) fn strip_headers(uri: &str) -> String {
    uri.split('?').next().unwrap_or(uri).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse::{parse, Parsed};

    fn request(vias: &[&str]) -> Request {
        let mut s = String::from("OPTIONS sip:gw@127.0.0.2 SIP/2.0\r\n");
        for v in vias {
            s.push_str(&format!("Via: {v}\r\n"));
        }
        s.push_str(
            "From: <sip:a@b>;tag=1\r\nTo: <sip:gw@127.0.0.2>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 69\r\nContent-Length: 0\r\n\r\n",
        );
        match parse(s.as_bytes(), 65535).unwrap() {
            Parsed::Request(r, _) => r,
            _ => unreachable!(),
        }
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(&[
            "127.0.0.1/32".parse().unwrap(),
            "10.9.0.0/16".parse().unwrap(),
        ])
    }

    #[test]
    fn a_trusted_proxy_stands_for_the_pbx_it_stamped() {
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let req = request(&[
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp",
            "SIP/2.0/UDP 192.168.1.20:5060;received=203.0.113.7;rport=40123;branch=z9hG4bKa",
        ]);
        assert_eq!(
            proxies().pbx_address(&req, src),
            "203.0.113.7:40123".parse().unwrap()
        );
        // without the stamps: the Via's own host and port
        let req = request(&[
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp",
            "SIP/2.0/UDP 198.51.100.4:5070;branch=z9hG4bKa",
        ]);
        assert_eq!(
            proxies().pbx_address(&req, src),
            "198.51.100.4:5070".parse().unwrap()
        );
        // a chain of our proxies: the first hop below them
        let req = request(&[
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp, SIP/2.0/UDP 10.9.0.5;branch=z9hG4bKq",
            "SIP/2.0/UDP pbx.example;received=198.51.100.9;rport=5062;branch=z9hG4bKa",
        ]);
        assert_eq!(
            proxies().pbx_address(&req, src),
            "198.51.100.9:5062".parse().unwrap()
        );
    }

    #[test]
    fn anyone_else_is_taken_at_its_source_whatever_it_claims() {
        let src: SocketAddr = "203.0.113.50:5060".parse().unwrap();
        let req = request(&[
            "SIP/2.0/UDP 203.0.113.50:5060;branch=z9hG4bKp",
            "SIP/2.0/UDP 10.0.0.1;received=198.51.100.4;branch=z9hG4bKa",
        ]);
        assert_eq!(proxies().pbx_address(&req, src), src);
        // a trusted proxy's own request (one Via), or an unresolved name: the proxy itself
        let src: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let req = request(&["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp"]);
        assert_eq!(proxies().pbx_address(&req, src), src);
        let req = request(&[
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp",
            "SIP/2.0/UDP pbx.example:5060;branch=z9hG4bKa",
        ]);
        assert_eq!(proxies().pbx_address(&req, src), src);
    }

    #[test]
    fn loose_and_strict_routes() {
        let routes = vec![
            "<sip:127.0.0.1:15060;lr;received=sip:10.0.0.5:5062>".to_string(),
            "<sip:10.9.0.1;lr>".to_string(),
        ];
        assert_eq!(next_hop(&routes), Some("127.0.0.1:15060".parse().unwrap()));
        let (uri, r) = apply("sip:100@10.0.0.5:5062;rinstance=x", &routes);
        assert_eq!(uri, "sip:100@10.0.0.5:5062;rinstance=x");
        assert_eq!(r, routes);
        let strict = vec![
            "<sip:10.9.0.1>".to_string(),
            "<sip:10.9.0.2;lr>".to_string(),
        ];
        let (uri, r) = apply("sip:100@10.0.0.5", &strict);
        assert_eq!(uri, "sip:10.9.0.1");
        assert_eq!(
            r,
            vec![
                "<sip:10.9.0.2;lr>".to_string(),
                "<sip:100@10.0.0.5>".to_string()
            ]
        );
        assert_eq!(next_hop(&strict), Some("10.9.0.1:5060".parse().unwrap()));
        assert_eq!(next_hop(&["<sip:edge.example;lr>".to_string()]), None);
        assert_eq!(apply("sip:x@y", &[]), ("sip:x@y".to_string(), vec![]));
    }
}
