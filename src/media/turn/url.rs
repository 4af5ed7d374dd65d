//! `turn:` and `turns:` URLs (RFC 7065): `scheme ":" host [":" port] ["?transport=" udp|tcp]`.
//! The carrier hands these out in its ICE server list; nothing else (user info, path, other
//! query keys) is part of the grammar, so anything else is refused rather than guessed at.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use super::TurnTransport;

/// A parsed TURN server URL. `host` is a DNS name or an IP literal (IPv6 without brackets);
/// resolving it is the caller's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TurnUrl {
    /// DNS name or IP literal.
    pub host: String,
    /// Port (3478, or 5349 for `turns:`, when the URL names none).
    pub port: u16,
    /// How the server is reached.
    pub transport: TurnTransport,
}

/// Why a TURN URL does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnUrlError {
    /// Not `turn:` or `turns:`.
    #[error("not a turn: or turns: URL: {0:?}")]
    Scheme(String),
    /// No host.
    #[error("TURN URL {0:?} has no host")]
    MissingHost(String),
    /// A host that is neither a DNS name nor an IP literal.
    #[error("TURN URL {url:?}: invalid host {host:?}")]
    BadHost {
        /// The URL.
        url: String,
        /// Its host part.
        host: String,
    },
    /// A port that is not a number from 1 to 65535.
    #[error("TURN URL {url:?}: invalid port {port:?}")]
    BadPort {
        /// The URL.
        url: String,
        /// Its port part.
        port: String,
    },
    /// A query other than `transport=udp|tcp`.
    #[error("TURN URL {url:?}: unsupported query {query:?} (only transport=udp|tcp)")]
    BadQuery {
        /// The URL.
        url: String,
        /// Its query.
        query: String,
    },
    /// `turns:` with `transport=udp` (DTLS is not supported).
    #[error(
        "TURN URL {0:?}: turns: runs over TCP (DTLS is not supported), transport=udp is invalid"
    )]
    TlsOverUdp(String),
}

impl TurnUrl {
    /// The host as it appears in a URL: IPv6 literals bracketed.
    pub fn host_for_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, query) = match self.transport {
            TurnTransport::Udp => ("turn", "udp"),
            TurnTransport::Tcp => ("turn", "tcp"),
            TurnTransport::Tls => ("turns", "tcp"),
        };
        write!(
            f,
            "{scheme}:{}:{}?transport={query}",
            self.host_for_url(),
            self.port
        )
    }
}

impl FromStr for TurnUrl {
    type Err = TurnUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| TurnUrlError::Scheme(url.to_owned()))?;
        let tls = if scheme.eq_ignore_ascii_case("turns") {
            true
        } else if scheme.eq_ignore_ascii_case("turn") {
            false
        } else {
            return Err(TurnUrlError::Scheme(url.to_owned()));
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let transport = parse_query(url, query, tls)?;
        let (host, port) = split_host_port(url, authority)?;
        let port = match port {
            None if tls => 5349,
            None => 3478,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => {
                    return Err(TurnUrlError::BadPort {
                        url: url.to_owned(),
                        port: p.to_owned(),
                    })
                }
            },
        };
        Ok(TurnUrl {
            host,
            port,
            transport,
        })
    }
}

fn parse_query(url: &str, query: Option<&str>, tls: bool) -> Result<TurnTransport, TurnUrlError> {
    let bad = |q: &str| TurnUrlError::BadQuery {
        url: url.to_owned(),
        query: q.to_owned(),
    };
    let transport = match query {
        None => None,
        Some(q) => {
            let (key, value) = q.split_once('=').ok_or_else(|| bad(q))?;
            if !key.eq_ignore_ascii_case("transport") {
                return Err(bad(q));
            }
            if value.eq_ignore_ascii_case("udp") {
                Some(false)
            } else if value.eq_ignore_ascii_case("tcp") {
                Some(true)
            } else {
                return Err(bad(q));
            }
        }
    };
    match (tls, transport) {
        (true, Some(false)) => Err(TurnUrlError::TlsOverUdp(url.to_owned())),
        (true, _) => Ok(TurnTransport::Tls),
        (false, Some(true)) => Ok(TurnTransport::Tcp),
        (false, _) => Ok(TurnTransport::Udp),
    }
}

/// Splits `host[:port]` / `[v6][:port]` and checks the host's characters.
fn split_host_port<'a>(
    url: &str,
    authority: &'a str,
) -> Result<(String, Option<&'a str>), TurnUrlError> {
    let bad_host = |h: &str| TurnUrlError::BadHost {
        url: url.to_owned(),
        host: h.to_owned(),
    };
    if authority.is_empty() {
        return Err(TurnUrlError::MissingHost(url.to_owned()));
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (literal, after) = v6.split_once(']').ok_or_else(|| bad_host(authority))?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(bad_host(literal));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| bad_host(authority))?),
        };
        return Ok((literal.to_owned(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(TurnUrlError::MissingHost(url.to_owned()));
    }
    // RFC 3986 reg-name as used for DNS: letters, digits, '-', '.'; no user info, no path.
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.starts_with('-');
    if !valid {
        return Err(bad_host(host));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TurnUrl, TurnUrlError> {
        s.parse()
    }

    fn url(host: &str, port: u16, transport: TurnTransport) -> TurnUrl {
        TurnUrl {
            host: host.into(),
            port,
            transport,
        }
    }

    #[test]
    fn good_urls() {
        use TurnTransport::*;
        assert_eq!(
            parse("turn:turn.example.net"),
            Ok(url("turn.example.net", 3478, Udp))
        );
        assert_eq!(
            parse("turn:10.1.2.3:3479?transport=udp"),
            Ok(url("10.1.2.3", 3479, Udp))
        );
        assert_eq!(
            parse("turn:turn.example.net?transport=tcp"),
            Ok(url("turn.example.net", 3478, Tcp))
        );
        assert_eq!(
            parse("turns:turn.example.net"),
            Ok(url("turn.example.net", 5349, Tls))
        );
        assert_eq!(
            parse("turns:turn.example.net:443?transport=tcp"),
            Ok(url("turn.example.net", 443, Tls))
        );
        assert_eq!(parse("TURN:[::1]:3478"), Ok(url("::1", 3478, Udp)));
        assert_eq!(
            parse("turns:[2001:db8::5]?TRANSPORT=TCP"),
            Ok(url("2001:db8::5", 5349, Tls))
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "turn:a.example:1?transport=udp",
            "turn:[::1]:3478?transport=tcp",
            "turns:b.example:443?transport=tcp",
        ] {
            let parsed = parse(s).unwrap();
            assert_eq!(parsed.to_string(), s);
            assert_eq!(parse(&parsed.to_string()), Ok(parsed));
        }
    }

    #[test]
    fn bad_urls_name_what_is_wrong() {
        assert!(matches!(
            parse("turns:t.example:443?transport=udp"),
            Err(TurnUrlError::TlsOverUdp(_))
        ));
        assert!(matches!(parse("turn:"), Err(TurnUrlError::MissingHost(_))));
        assert!(matches!(
            parse("turn::3478"),
            Err(TurnUrlError::MissingHost(_))
        ));
        assert!(matches!(
            parse("stun:x.example"),
            Err(TurnUrlError::Scheme(_))
        ));
        assert!(matches!(parse("x.example"), Err(TurnUrlError::Scheme(_))));
        for port in ["0", "65536", "-1", "", "34x", "3478:1"] {
            let s = format!("turn:x.example:{port}");
            assert!(
                matches!(parse(&s), Err(TurnUrlError::BadPort { .. })),
                "{s}: {:?}",
                parse(&s)
            );
        }
        assert!(matches!(
            parse("turn:[::1]:0"),
            Err(TurnUrlError::BadPort { .. })
        ));
        assert!(matches!(
            parse("turn:[::1"),
            Err(TurnUrlError::BadHost { .. })
        ));
        assert!(matches!(
            parse("turn:[not-v6]:3478"),
            Err(TurnUrlError::BadHost { .. })
        ));
        assert!(matches!(
            parse("turn:[::1]x"),
            Err(TurnUrlError::BadHost { .. })
        ));
        assert!(matches!(
            parse("turn:user@x.example"),
            Err(TurnUrlError::BadHost { .. })
        ));
        assert!(matches!(
            parse("turn:x.example/path"),
            Err(TurnUrlError::BadHost { .. })
        ));
        assert!(matches!(
            parse("turn:x.example?transport=sctp"),
            Err(TurnUrlError::BadQuery { .. })
        ));
        assert!(matches!(
            parse("turn:x.example?foo=bar"),
            Err(TurnUrlError::BadQuery { .. })
        ));
        assert!(matches!(
            parse("turn:x.example?transport"),
            Err(TurnUrlError::BadQuery { .. })
        ));
        // The error text names the offending part.
        let e = parse("turn:x.example:99999").unwrap_err().to_string();
        assert!(e.contains("99999"), "{e}");
    }
}
