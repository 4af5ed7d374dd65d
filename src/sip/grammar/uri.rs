//! URIs (`sip`, `sips`, `tel`, and other schemes kept opaque), their host and port, percent
//! escapes, and URI equivalence as RFC 3261 19.1.4 and RFC 3966 define it.

use super::params::{parse_params, Params};
use super::{err, GrammarError};

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

pub(super) fn parse_host_port(s: &str) -> Result<(String, Option<u16>), GrammarError> {
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
    fn unescape_decodes() {
        assert_eq!(unescape("%75se%72"), "user");
        assert_eq!(unescape("bad%zz%4"), "bad%zz%4");
    }
}
