//! The peers of one allocation: the addresses the engine asked for (each may get a channel on
//! UDP), the state of each peer IP's permission (RFC 8656 9: permissions are per IP), and media
//! waiting for a permission. ICE sends its first checks right after the relay candidate is
//! added; holding them briefly until the permission is in saves a retransmission round
//! (~250 ms measured), while the bounds keep a dead peer from holding memory.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::MAX_PEERS;

/// Held datagrams: few, since ICE retransmits anyway and media before connectivity is useless.
const MAX_QUEUED: usize = 32;
const MAX_QUEUED_BYTES: usize = 64 * 1024;
/// A held datagram older than this is stale for ICE (its check has been retransmitted).
pub(super) const QUEUE_AGE: Duration = Duration::from_secs(2);
/// After a refusal, a permission is asked for again no sooner than this.
pub(super) const PERMISSION_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Permission {
    /// Wanted, not asked for yet (no allocation yet).
    Wanted,
    Pending,
    Installed,
    Refused {
        retry_at: Instant,
    },
}

#[derive(Debug)]
pub(super) struct Held {
    pub(super) peer: SocketAddr,
    at: Instant,
    pub(super) data: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct Peers {
    /// Peer addresses and whether a channel was asked for.
    addrs: Vec<(SocketAddr, bool)>,
    perms: Vec<(IpAddr, Permission)>,
    held: VecDeque<Held>,
    held_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooMany;

impl Peers {
    /// Records `peer` (and a `Wanted` permission for its IP if the IP is new).
    pub(super) fn insert(&mut self, peer: SocketAddr) -> Result<(), TooMany> {
        if self.addrs.iter().any(|(a, _)| *a == peer) {
            return Ok(());
        }
        if self.addrs.len() >= MAX_PEERS {
            return Err(TooMany);
        }
        self.addrs.push((peer, false));
        if self.permission(peer.ip()).is_none() {
            self.perms.push((peer.ip(), Permission::Wanted));
        }
        Ok(())
    }

    pub(super) fn permission(&self, ip: IpAddr) -> Option<Permission> {
        self.perms.iter().find(|(i, _)| *i == ip).map(|(_, p)| *p)
    }

    pub(super) fn set_permission(&mut self, ip: IpAddr, state: Permission) {
        if let Some((_, p)) = self.perms.iter_mut().find(|(i, _)| *i == ip) {
            *p = state;
        }
    }

    /// IPs whose permission should be asked for now.
    pub(super) fn to_request(&self, now: Instant) -> impl Iterator<Item = IpAddr> + '_ {
        self.perms.iter().filter_map(move |(ip, p)| match p {
            Permission::Wanted => Some(*ip),
            Permission::Refused { retry_at } if now >= *retry_at => Some(*ip),
            _ => None,
        })
    }

    /// Addresses on `ip` with no channel asked for yet; marks them asked.
    pub(super) fn take_unchanneled(&mut self, ip: IpAddr) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for (addr, asked) in self.addrs.iter_mut() {
            if addr.ip() == ip && !*asked {
                *asked = true;
                out.push(*addr);
            }
        }
        out
    }

    /// Holds a datagram until its peer's permission is in; the oldest go first when full.
    pub(super) fn hold(&mut self, peer: SocketAddr, data: &[u8], now: Instant) {
        self.expire(now);
        while !self.held.is_empty()
            && (self.held.len() >= MAX_QUEUED || self.held_bytes + data.len() > MAX_QUEUED_BYTES)
        {
            self.pop_front();
        }
        self.held_bytes += data.len();
        self.held.push_back(Held {
            peer,
            at: now,
            data: data.to_vec(),
        });
    }

    fn pop_front(&mut self) {
        if let Some(h) = self.held.pop_front() {
            self.held_bytes -= h.data.len();
        }
    }

    pub(super) fn expire(&mut self, now: Instant) {
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.at) > QUEUE_AGE)
        {
            self.pop_front();
        }
    }

    /// Removes and returns, in order, what is held for `ip`.
    pub(super) fn take_held(&mut self, ip: IpAddr) -> Vec<Held> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.held.len());
        for h in self.held.drain(..) {
            if h.peer.ip() == ip {
                self.held_bytes -= h.data.len();
                out.push(h);
            } else {
                kept.push_back(h);
            }
        }
        self.held = kept;
        out
    }

    pub(super) fn drop_held(&mut self, ip: IpAddr) {
        drop(self.take_held(ip));
    }

    pub(super) fn clear(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
    }

    #[cfg(test)]
    pub(super) fn held_len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_permission_per_ip_and_a_bounded_peer_set() {
        let mut p = Peers::default();
        p.insert(addr("10.0.0.1:1000")).unwrap();
        p.insert(addr("10.0.0.1:2000")).unwrap();
        p.insert(addr("10.0.0.1:2000")).unwrap();
        let now = Instant::now();
        assert_eq!(
            p.to_request(now).collect::<Vec<_>>(),
            vec![addr("10.0.0.1:1").ip()]
        );
        let ip = addr("10.0.0.1:1").ip();
        assert_eq!(p.take_unchanneled(ip).len(), 2);
        assert!(p.take_unchanneled(ip).is_empty());
        for port in 3..=MAX_PEERS as u16 {
            p.insert(SocketAddr::new(ip, port)).unwrap();
        }
        assert_eq!(p.insert(addr("10.0.0.9:9")), Err(TooMany));
        p.set_permission(
            ip,
            Permission::Refused {
                retry_at: now + PERMISSION_RETRY,
            },
        );
        assert_eq!(p.to_request(now).count(), 0);
        assert_eq!(p.to_request(now + PERMISSION_RETRY).count(), 1);
    }

    #[test]
    fn held_data_is_bounded_ordered_and_ages_out() {
        let mut p = Peers::default();
        let now = Instant::now();
        let a = addr("10.0.0.1:1");
        let b = addr("10.0.0.2:1");
        for i in 0..(MAX_QUEUED + 5) {
            p.hold(if i % 2 == 0 { a } else { b }, &[i as u8], now);
        }
        assert_eq!(p.held_len(), MAX_QUEUED);
        let for_a = p.take_held(a.ip());
        // The oldest five went first; what is left for `a` is in order.
        assert_eq!(for_a.first().unwrap().data, vec![6]);
        assert!(for_a.windows(2).all(|w| w[0].data[0] < w[1].data[0]));
        p.hold(a, &[0; 1000], now);
        p.expire(now + QUEUE_AGE + Duration::from_millis(1));
        assert_eq!(p.held_len(), 0);
        p.hold(a, &vec![0; MAX_QUEUED_BYTES], now);
        p.hold(a, &[1], now);
        assert_eq!(p.held_len(), 1, "the byte bound evicts the big one");
    }
}
