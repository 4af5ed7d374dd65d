//! The PBX side of a call's media: an RTP/RTCP socket pair on an even/odd port pair taken from
//! the configured range. The sockets are the reservation: a port is in use exactly while a
//! socket is bound to it, so nothing is leaked when a call ends (its sockets drop) and ports
//! other programs hold are skipped.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RtpLegError {
    #[error("no free RTP port pair in {first}-{last}")]
    Exhausted { first: u16, last: u16 },
    #[error("cannot set up an RTP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Hands out port pairs round-robin, so a port just released is not reused at once (late
/// packets of the previous call would land in the next one).
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    first: u16,
    pairs: u32,
    cursor: AtomicU32,
}

/// A call's PBX-side sockets (non-blocking; the media engine takes them over).
#[derive(Debug)]
pub struct RtpLeg {
    pub rtp: UdpSocket,
    /// The RTCP port (RFC 3550 11: RTP port + 1): the PBX's reports arrive here.
    pub rtcp: UdpSocket,
    pub port: u16,
}

impl RtpLeg {
    pub fn into_sockets(self) -> (UdpSocket, UdpSocket) {
        (self.rtp, self.rtcp)
    }
}

impl PortPool {
    /// `first` is even; pairs are (first, first+1), (first+2, first+3) ... up to `last`.
    pub fn new(ip: IpAddr, first: u16, last: u16) -> PortPool {
        let pairs = (u32::from(last) + 1 - u32::from(first)) / 2;
        PortPool {
            ip,
            first,
            pairs: pairs.max(1),
            cursor: AtomicU32::new(rand::random::<u32>() % pairs.max(1)),
        }
    }

    /// Binds the next free pair.
    pub fn allocate(&self) -> Result<RtpLeg, RtpLegError> {
        for _ in 0..self.pairs {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed) % self.pairs;
            let port = self.first + (n * 2) as u16;
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(self.ip, port)) else {
                continue;
            };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(self.ip, port + 1)) else {
                continue;
            };
            rtp.set_nonblocking(true)?;
            rtcp.set_nonblocking(true)?;
            return Ok(RtpLeg { rtp, rtcp, port });
        }
        Err(RtpLegError::Exhausted {
            first: self.first,
            last: self.first + (self.pairs * 2 - 1) as u16,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_odd_and_exhaust_cleanly() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // find a free block of 6 ports to own for the test
        let base = loop {
            let p = 20_000 + (rand::random::<u16>() % 20_000) * 2;
            if (p..p + 6).all(|q| UdpSocket::bind((ip, q)).is_ok()) {
                break p;
            }
        };
        let pool = PortPool::new(ip, base, base + 5);
        let legs: Vec<RtpLeg> = (0..3).map(|_| pool.allocate().unwrap()).collect();
        let mut ports: Vec<u16> = legs.iter().map(|l| l.port).collect();
        ports.sort();
        assert_eq!(ports, vec![base, base + 2, base + 4]);
        for l in &legs {
            assert_eq!(l.rtcp.local_addr().unwrap().port(), l.port + 1);
        }
        assert!(matches!(
            pool.allocate(),
            Err(RtpLegError::Exhausted { .. })
        ));
        drop(legs);
        assert!(pool.allocate().is_ok(), "released ports are reusable");
    }
}
