//! The ICE servers of a call as the media thread needs them: STUN servers and TURN servers
//! (with transport and credentials) resolved to socket addresses on the async side, so no media
//! thread ever waits on DNS. Servers of the wrong address family, unparsable URLs and TURN
//! servers without credentials are skipped with a log line, never fatal to the call.

use std::net::{IpAddr, SocketAddr};

use crate::media::turn::{TurnCredentials, TurnUrl};
use crate::media::IceServer;

/// One TURN allocation to make.
#[derive(Debug, Clone)]
pub struct TurnTarget {
    pub url: TurnUrl,
    pub server: SocketAddr,
    /// The TLS server name (the URL's host).
    pub server_name: String,
    pub credentials: TurnCredentials,
}

/// What a call gathers candidates from.
#[derive(Debug, Clone, Default)]
pub struct Gathering {
    pub stun: Vec<SocketAddr>,
    pub turn: Vec<TurnTarget>,
}

/// At most this many TURN allocations per call (one token kind each in the poll loop).
pub const MAX_TURN: usize = 4;

/// `stun:host[:port]` (RFC 7064); `stuns:` is not used for host candidates' reflexive address.
fn stun_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("stun:")?;
    let rest = rest.split('?').next()?;
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 3478,
        };
        return Some((host.to_owned(), port));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((rest.to_owned(), 3478)),
    }
}

async fn resolve(host: &str, port: u16, family_of: IpAddr) -> Option<SocketAddr> {
    let found = tokio::net::lookup_host((host, port)).await.ok()?;
    found
        .into_iter()
        .find(|a| a.is_ipv4() == family_of.is_ipv4())
}

/// Resolves a call's ICE servers for a host candidate on `bind` (its family decides).
pub async fn resolve_servers(servers: &[IceServer], bind: IpAddr, relay_only: bool) -> Gathering {
    let mut g = Gathering::default();
    for s in servers {
        for url in &s.urls {
            if url.starts_with("stun:") {
                if relay_only {
                    continue;
                }
                let Some((host, port)) = stun_host_port(url) else {
                    tracing::warn!(%url, "STUN URL not understood: skipped");
                    continue;
                };
                match resolve(&host, port, bind).await {
                    Some(a) => g.stun.push(a),
                    None => tracing::warn!(%url, "STUN server not resolved: skipped"),
                }
            } else if url.starts_with("turn:") || url.starts_with("turns:") {
                let parsed: TurnUrl = match url.parse() {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "TURN URL skipped");
                        continue;
                    }
                };
                let (Some(username), Some(password)) = (&s.username, &s.credential) else {
                    tracing::warn!(%url, "TURN server without credentials: skipped");
                    continue;
                };
                if g.turn.len() == MAX_TURN {
                    tracing::warn!(%url, "more than {MAX_TURN} TURN servers: skipped");
                    continue;
                }
                let Some(server) = resolve(&parsed.host, parsed.port, bind).await else {
                    tracing::warn!(%url, "TURN server not resolved: skipped");
                    continue;
                };
                g.turn.push(TurnTarget {
                    server_name: parsed.host.clone(),
                    url: parsed,
                    server,
                    credentials: TurnCredentials {
                        username: username.clone(),
                        password: password.clone(),
                    },
                });
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_urls_are_read() {
        assert_eq!(
            stun_host_port("stun:ct-turn1.etisalat.ae:3478"),
            Some(("ct-turn1.etisalat.ae".into(), 3478))
        );
        assert_eq!(
            stun_host_port("stun:example.org"),
            Some(("example.org".into(), 3478))
        );
        assert_eq!(
            stun_host_port("stun:[::1]:3479"),
            Some(("::1".into(), 3479))
        );
        assert_eq!(stun_host_port("stun:host:notaport"), None);
    }

    #[tokio::test]
    async fn servers_resolve_by_family_and_turn_needs_credentials() {
        let servers = vec![
            IceServer {
                urls: vec!["stun:127.0.0.1:3478".into()],
                ..IceServer::default()
            },
            IceServer {
                urls: vec!["turn:127.0.0.1:3478?transport=tcp".into()],
                username: Some("u".into()),
                credential: Some("p".into()),
            },
            IceServer {
                urls: vec!["turns:127.0.0.1:5349".into()],
                ..IceServer::default()
            },
        ];
        let g = resolve_servers(&servers, "127.0.0.1".parse().unwrap(), false).await;
        assert_eq!(g.stun, vec!["127.0.0.1:3478".parse().unwrap()]);
        assert_eq!(g.turn.len(), 1, "the credential-less turns: is skipped");
        assert_eq!(g.turn[0].server, "127.0.0.1:3478".parse().unwrap());
        let g = resolve_servers(&servers, "127.0.0.1".parse().unwrap(), true).await;
        assert!(
            g.stun.is_empty(),
            "relay-only gathers no reflexive candidate"
        );
    }
}
