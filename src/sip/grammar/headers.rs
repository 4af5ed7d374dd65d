//! The header values built on URIs and parameters: name-addr / addr-spec (From, To, Contact,
//! P-Asserted-Identity), Via and CSeq.

use super::params::{parse_params, take_quoted, Params};
use super::uri::{parse_host_port, Uri};
use super::{err, is_lws, is_token, is_token_char, GrammarError};

/// name-addr or addr-spec with its header parameters (From, To, Contact, PAI, RPID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    /// The URI text exactly as written.
    pub uri_text: String,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, GrammarError> {
        let s = s.trim_matches(is_lws);
        let (display, rest) = if s.starts_with('"') {
            let (d, rest) = take_quoted(s)?;
            let rest = rest.trim_start_matches(is_lws);
            if !rest.starts_with('<') {
                return err("name-addr");
            }
            (Some(d), rest)
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim_matches(is_lws);
            // an unquoted display name is a sequence of tokens separated by LWS
            if !d.split(is_lws).filter(|t| !t.is_empty()).all(is_token) {
                return err("display name");
            }
            (
                if d.is_empty() {
                    None
                } else {
                    Some(d.to_string())
                },
                &s[lt..],
            )
        } else {
            (None, s)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let end = inner.find('>').ok_or(GrammarError { what: "name-addr" })?;
            let uri_text = &inner[..end];
            let uri = Uri::parse(uri_text)?;
            let params = parse_params(&inner[end + 1..])?;
            Ok(NameAddr {
                display,
                uri_text: uri_text.to_string(),
                uri,
                params,
            })
        } else {
            // addr-spec: the URI may not contain ',', '?' or ';' here (RFC 3261 20): a ';' starts
            // header parameters.
            let (uri_text, params) = match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let uri_text = uri_text.trim_end_matches(is_lws);
            if uri_text.contains(['?', ',', '<', '>', '"']) {
                return err("addr-spec");
            }
            let uri = Uri::parse(uri_text)?;
            let params = parse_params(params)?;
            Ok(NameAddr {
                display,
                uri_text: uri_text.to_string(),
                uri,
                params,
            })
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

/// One Via value: `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, GrammarError> {
        // sent-protocol = name SLASH version SLASH transport, with LWS allowed around the slashes
        let mut parts = s.splitn(3, '/');
        let name = parts.next().unwrap_or("").trim_matches(is_lws);
        let version = parts.next().unwrap_or("").trim_matches(is_lws);
        let rest = parts.next().ok_or(GrammarError { what: "Via" })?;
        if !name.eq_ignore_ascii_case("SIP") || !is_token(version) {
            return err("Via protocol");
        }
        let rest = rest.trim_start_matches(is_lws);
        let t_end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let transport = &rest[..t_end];
        if transport.is_empty() {
            return err("Via transport");
        }
        let rest = rest[t_end..].trim_start_matches(is_lws);
        let hp_end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
        let (host, port) = parse_host_port(&rest[..hp_end])?;
        let params = parse_params(&rest[hp_end..])?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// `host[:port]` as used for transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host.to_ascii_lowercase(), p),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

/// CSeq: a 32-bit sequence number and a method token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: String,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, GrammarError> {
        let mut it = s.split(is_lws).filter(|t| !t.is_empty());
        let num = it.next().ok_or(GrammarError { what: "CSeq" })?;
        let method = it.next().ok_or(GrammarError { what: "CSeq" })?;
        if it.next().is_some() || !num.chars().all(|c| c.is_ascii_digit()) || !is_token(method) {
            return err("CSeq");
        }
        // RFC 3261 8.1.1.5: the number must be less than 2**31
        let seq = num
            .parse::<u32>()
            .ok()
            .filter(|n| *n < 1 << 31)
            .ok_or(GrammarError {
                what: "CSeq number",
            })?;
        Ok(CSeq {
            seq,
            method: method.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8"
                .replace("\r\n", "")
                .as_str(),
        )
        .unwrap();
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(n.params.has("unknownparam"));
        assert_eq!(n.uri.user.as_deref(), Some("+19725552222"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"W\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("Watson, Thomas <sip:t.watson@example.org>").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").is_ok());
        assert!(NameAddr::parse("\"Joe\" <sip:joe@example.org>;;;;").is_err());
    }

    #[test]
    fn via_with_whitespace() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = Via::parse("SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bK1").unwrap();
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.params.get("rport"), Some(None));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("").is_err());
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
    }
}
