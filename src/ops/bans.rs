//! The `bans` and `unban` commands: a client of the running daemon's status endpoint, which owns
//! the ban list (`GET /bans`, `DELETE /bans/{address}`). Only the endpoint's address and the
//! rendering of its answers live here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::config::Config;

/// Why the `bans` or `unban` command failed.
#[derive(Debug, Error)]
pub enum BansError {
    /// The configuration file naming the status endpoint could not be used.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The status endpoint could not be reached (the daemon is likely not running), or its
    /// answer could not be read.
    #[error(
        "cannot reach the status endpoint at http://{addr}: {source} (is the daemon running?)"
    )]
    Unreachable {
        /// The status endpoint tried.
        addr: SocketAddr,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The status endpoint answered with an error status; also a 400 of our own for an address
    /// that cannot be put in a URL.
    #[error("the status endpoint at http://{addr} answered {status}: {body}")]
    Refused {
        /// The status endpoint asked.
        addr: SocketAddr,
        /// The HTTP status it answered.
        status: u16,
        /// The body of its answer.
        body: String,
    },
}

/// One ban as `GET /bans` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct Ban {
    address: String,
    reason: String,
    failures: u32,
    offences: u32,
    until: String,
    remaining_s: u64,
}

/// Where the daemon's status endpoint is: `--status`, else the config's `status.listen` (an
/// unspecified address is reached on loopback).
pub fn endpoint(config: &Path, status: Option<SocketAddr>) -> Result<SocketAddr, BansError> {
    if let Some(addr) = status {
        return Ok(addr);
    }
    let mut addr = Config::load(config)?.status.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Ok(addr)
}

fn client() -> reqwest::Client {
    // reqwest's rustls wants a process-wide provider even for plain http
    crate::carrier::tls::install_default_provider();
    reqwest::Client::new()
}

/// The live bans.
pub async fn list(addr: SocketAddr) -> Result<Vec<Ban>, BansError> {
    let unreachable = |source| BansError::Unreachable { addr, source };
    let resp = client()
        .get(format!("http://{addr}/bans"))
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(BansError::Refused {
            addr,
            status: status.as_u16(),
            body,
        });
    }
    resp.json().await.map_err(unreachable)
}

/// Lifts the ban on `address`: `Ok(true)` lifted, `Ok(false)` there was none.
pub async fn unban(addr: SocketAddr, address: &str) -> Result<bool, BansError> {
    let url = reqwest::Url::parse(&format!("http://{addr}/bans/"))
        // "./": an IPv6 address such as fe80::1 would otherwise read as a URL scheme
        .and_then(|u| u.join(&format!("./{}", address.replace('/', "%2F"))))
        .map_err(|_| BansError::Refused {
            addr,
            status: 400,
            body: format!("{address:?} cannot be put in a URL"),
        })?;
    let resp = client()
        .delete(url)
        .send()
        .await
        .map_err(|source| BansError::Unreachable { addr, source })?;
    match resp.status().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        status => Err(BansError::Refused {
            addr,
            status,
            body: resp.text().await.unwrap_or_default(),
        }),
    }
}

/// The `bans` command's table.
pub fn render(bans: &[Ban]) -> String {
    if bans.is_empty() {
        return "no bans\n".into();
    }
    let width = bans
        .iter()
        .map(|b| b.address.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:<width$}  {:<13}  {:>8}  {:>8}  UNTIL\n",
        "ADDRESS", "REASON", "FAILURES", "OFFENCES"
    );
    for b in bans {
        out.push_str(&format!(
            "{:<width$}  {:<13}  {:>8}  {:>8}  {} ({} s left)\n",
            b.address, b.reason, b.failures, b.offences, b.until, b.remaining_s
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table_or_says_there_is_none() {
        assert_eq!(render(&[]), "no bans\n");
        let t = render(&[Ban {
            address: "127.0.0.5".into(),
            reason: "auth_failures".into(),
            failures: 10,
            offences: 1,
            until: "2026-12-04T11:00:00Z".into(),
            remaining_s: 3599,
        }]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ADDRESS"));
        assert!(lines[1].starts_with("127.0.0.5"));
        assert!(lines[1].contains("auth_failures") && lines[1].contains("2026-12-04T11:00:00Z"));
    }
}
