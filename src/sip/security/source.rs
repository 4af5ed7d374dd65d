//! Who a datagram is judged as: an IPv4 address, or an IPv6 /64 (one host is given a whole /64,
//! so banning a single IPv6 address would cost an attacker nothing), and the exempt networks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The unit bans, budgets and failure counts are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net([u8; 8]),
}

impl Source {
    /// The address that stands for this source (an IPv6 /64's first address).
    pub fn ip(&self) -> IpAddr {
        match self {
            Source::V4(a) => IpAddr::V4(*a),
            Source::V6Net(net) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(net);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        }
    }

    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => {
                let mut net = [0u8; 8];
                net.copy_from_slice(&v6.octets()[..8]);
                Source::V6Net(net)
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6Net(net) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(net);
                write!(f, "{}/64", Ipv6Addr::from(o))
            }
        }
    }
}

/// Accepts what `Display` prints, and any single address (an IPv6 one names its /64).
impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Source, String> {
        let s = s.trim();
        if let Some(net) = s.strip_suffix("/64") {
            return match net.parse::<Ipv6Addr>() {
                Ok(a) => Ok(Source::of(IpAddr::V6(a))),
                Err(_) => Err(format!("{s:?} is not an IPv6 /64")),
            };
        }
        s.parse::<IpAddr>()
            .map(Source::of)
            .map_err(|_| format!("{s:?} is not an IP address"))
    }
}

/// Networks that are never banned nor rate limited: `security.never_ban` and every trunk's
/// `allowed_sources`.
#[derive(Debug, Clone, Default)]
pub struct Exemptions(Vec<IpNet>);

impl Exemptions {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Exemptions {
        let mut v: Vec<IpNet> = nets.into_iter().collect();
        v.sort();
        v.dedup();
        Exemptions(v)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}
