//! The RFC 3261 section 25 grammar for the header values trunkgate reads: URIs, name-addr /
//! addr-spec (From, To, Contact, P-Asserted-Identity), generic parameters, Via and CSeq.
//!
//! Tolerant where the RFC allows linear white space (around `;`, `=`, `/`), strict where it
//! does not (inside `<...>`, in unquoted display names, empty parameters), so that the RFC 4475
//! torture messages are accepted or refused as the RFC says. Every function returns an error
//! instead of panicking: these parse attacker-controlled bytes.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed {what}")]
pub struct GrammarError {
    pub what: &'static str,
}

fn err<T>(what: &'static str) -> Result<T, GrammarError> {
    Err(GrammarError { what })
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

fn is_lws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A parameter list `;name[=value]...` as found after a URI or a header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of a parameter that has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Parses `;a=b ; c ; d = "quoted"` (leading `;` required for each item, LWS allowed around `;`/`=`).
pub fn parse_params(mut s: &str) -> Result<Params, GrammarError> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches(is_lws);
        if s.is_empty() {
            return Ok(Params(out));
        }
        let Some(rest) = s.strip_prefix(';') else {
            return err("parameter list");
        };
        s = rest.trim_start_matches(is_lws);
        let name_end = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
        let name = &s[..name_end];
        if name.is_empty() {
            return err("parameter (empty)");
        }
        s = s[name_end..].trim_start_matches(is_lws);
        let value = if let Some(rest) = s.strip_prefix('=') {
            let rest = rest.trim_start_matches(is_lws);
            if rest.starts_with('"') {
                let (q, after) = take_quoted(rest)?;
                s = after;
                Some(q)
            } else {
                // gen-value = token / host / quoted-string; IPv6 references carry ':' '[' ']'
                let end = rest
                    .find(|c: char| !(is_token_char(c) || c == ':' || c == '[' || c == ']'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    return err("parameter value");
                }
                s = &rest[end..];
                Some(rest[..end].to_string())
            }
        } else {
            None
        };
        out.push((name.to_string(), value));
    }
}

/// Takes a quoted-string from the start of `s` (which begins with `"`), returning the unescaped
/// content and the remainder after the closing quote.
fn take_quoted(s: &str) -> Result<(String, &str), GrammarError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            '\r' | '\n' => break,
            c => out.push(c),
        }
    }
    err("quoted string (unbalanced quote)")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other(String),
}

/// A URI. For `sip`/`sips` the parts are split out; for `tel` the number is in `user`; other
/// schemes keep only their opaque text (`host` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub scheme: Scheme,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    /// `?h=v&...` part, raw (only legal in a URI that is not the Request-URI).
    pub headers: Option<String>,
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn valid_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
}

fn valid_password_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,".contains(c)
}

fn parse_host_port(s: &str) -> Result<(String, Option<u16>), GrammarError> {
    if s.is_empty() {
        return err("host");
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(GrammarError { what: "IPv6 host" })?;
        let host = &rest[..end];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return err("IPv6 host");
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return err("host"),
        };
        (format!("[{host}]"), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return err("host");
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|_| p.chars().all(|c| c.is_ascii_digit()))
                .ok_or(GrammarError { what: "port" })?,
        ),
        None => None,
    };
    Ok((host, port))
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, GrammarError> {
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return err("URI");
        }
        let (scheme, rest) = s
            .split_once(':')
            .ok_or(GrammarError { what: "URI scheme" })?;
        let mut sc = scheme.chars();
        if !sc.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return err("URI scheme");
        }
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            _ => Scheme::Other(scheme.to_string()),
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => Self::parse_sip(scheme, rest),
            Scheme::Tel => {
                let (number, params) = match rest.find(';') {
                    Some(i) => (&rest[..i], parse_params(&rest[i..])?),
                    None => (rest, Params::default()),
                };
                if number.is_empty() || !valid_escapes(number) {
                    return err("tel URI");
                }
                Ok(Uri {
                    scheme,
                    user: Some(number.to_string()),
                    host: String::new(),
                    port: None,
                    params,
                    headers: None,
                })
            }
            Scheme::Other(_) => {
                if rest.is_empty() {
                    return err("URI");
                }
                Ok(Uri {
                    scheme,
                    user: None,
                    host: String::new(),
                    port: None,
                    params: Params::default(),
                    headers: None,
                })
            }
        }
    }

    fn parse_sip(scheme: Scheme, rest: &str) -> Result<Uri, GrammarError> {
        // userinfo cannot hold an unescaped '@', while the user part may hold ';' '?' '/':
        // so the first '@' (if any) ends it.
        let (userinfo, hostpart) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let user = match userinfo {
            Some(ui) => {
                let (user, password) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if user.is_empty() || !user.chars().all(valid_user_char) || !valid_escapes(user) {
                    return err("URI user");
                }
                if let Some(p) = password {
                    if !p.chars().all(valid_password_char) || !valid_escapes(p) {
                        return err("URI password");
                    }
                }
                Some(user.to_string())
            }
            None => None,
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((h, hdrs)) => (h, Some(hdrs.to_string())),
            None => (hostpart, None),
        };
        let (hostport, params) = match hostpart.find(';') {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, ""),
        };
        let (host, port) = parse_host_port(hostport)?;
        if !valid_escapes(params) {
            return err("URI parameter");
        }
        let params = parse_params(params)?;
        if params.0.iter().any(|(_, v)| v.as_deref() == Some("")) {
            return err("URI parameter");
        }
        if let Some(h) = &headers {
            if h.is_empty() || !valid_escapes(h) {
                return err("URI headers");
            }
        }
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }
    /// URI equality as RFC 3261 19.1.4 defines it for SIP and SIPS URIs: user part exact after
    /// unescaping, host case-insensitive, port as written (absent is not 5060); a parameter in
    /// both must match case-insensitively, and `user`, `ttl`, `method` or `maddr` in only one
    /// never matches; headers must be the same set. Tel URIs compare their number without
    /// visual separators and the same parameters (RFC 3966 4). Other schemes are never
    /// equivalent here: compare their text.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        match self.scheme {
            Scheme::Sip | Scheme::Sips => {
                self.user.as_deref().map(unescape) == other.user.as_deref().map(unescape)
                    && self.host.eq_ignore_ascii_case(&other.host)
                    && self.port == other.port
                    && params_equivalent(&self.params, &other.params)
                    && header_set(self.headers.as_deref()) == header_set(other.headers.as_deref())
            }
            Scheme::Tel => {
                let digits = |u: &Option<String>| -> Option<String> {
                    u.as_deref().map(|n| {
                        unescape(n)
                            .chars()
                            .filter(|c| !"-.()".contains(*c))
                            .map(|c| c.to_ascii_lowercase())
                            .collect()
                    })
                };
                digits(&self.user) == digits(&other.user)
                    && param_set(&self.params) == param_set(&other.params)
            }
            Scheme::Other(_) => false,
        }
    }
}

fn lower_param(name: &str, value: Option<&str>) -> (String, Option<String>) {
    (
        unescape(name).to_ascii_lowercase(),
        value.map(|v| unescape(v).to_ascii_lowercase()),
    )
}

fn param_set(p: &Params) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> =
        p.0.iter()
            .map(|(n, val)| lower_param(n, val.as_deref()))
            .collect();
    v.sort();
    v
}

fn params_equivalent(a: &Params, b: &Params) -> bool {
    let (a, b) = (param_set(a), param_set(b));
    let find = |set: &[(String, Option<String>)], name: &str| {
        set.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    for (name, value) in &a {
        match find(&b, name) {
            Some(v) if v != *value => return false,
            None if matches!(name.as_str(), "user" | "ttl" | "method" | "maddr") => return false,
            _ => {}
        }
    }
    b.iter().all(|(name, _)| {
        !matches!(name.as_str(), "user" | "ttl" | "method" | "maddr") || find(&a, name).is_some()
    })
}

fn header_set(h: Option<&str>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h
        .unwrap_or("")
        .split('&')
        .filter(|x| !x.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (unescape(k).to_ascii_lowercase(), unescape(v))
        })
        .collect();
    v.sort();
    v
}

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

/// Percent-decodes a URI component (bad escapes are left as they are).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap())
    }

    #[test]
    fn uri_equivalence_follows_rfc3261_19_1_4() {
        // the RFC's own equal pairs
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        // and its unequal ones
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq("sip:bob@biloxi.com;user=phone", "sip:bob@biloxi.com"));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
        assert!(!eq("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
        // what matters for the digest: another dialled number is another resource
        assert!(!eq("sip:0505550107@10.0.0.1", "sip:0505550777@10.0.0.1"));
        assert!(eq("tel:+971-50-555-0107", "tel:+971505550107"));
        assert!(!eq("tel:+971505550107", "tel:+971505550777"));
        assert!(!eq("tel:+971505550107", "sip:+971505550107@h"));
    }

    #[test]
    fn sip_uri_with_odd_user_parts() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.host, "example.net");
        let u = Uri::parse("sip:3cx@10.0.0.5:5062;rinstance=abc;transport=udp").unwrap();
        assert_eq!(u.port, Some(5062));
        assert_eq!(u.params.value("rinstance"), Some("abc"));
        let u = Uri::parse("sip:[2001:db8::1]:5060").unwrap();
        assert_eq!(u.host, "[2001:db8::1]");
        assert!(Uri::parse("sip:user@host:99999").is_err());
        assert!(Uri::parse("sip:user@ho st").is_err());
        assert!(Uri::parse("sip:us%zzer@host").is_err());
        assert!(Uri::parse("sip:u@h;;").is_err());
    }

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

    #[test]
    fn unescape_decodes() {
        assert_eq!(unescape("%75se%72"), "user");
        assert_eq!(unescape("bad%zz%4"), "bad%zz%4");
    }
}
