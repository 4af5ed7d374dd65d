//! Which call a datagram on a shared WebRTC port belongs to, decided before any call's state is
//! touched: RFC 7983's first-byte ranges sort STUN from DTLS from SRTP/SRTCP; a STUN request is
//! routed by the ICE username fragment it names (`ours:theirs`), everything else by the remote
//! address the call itself has sent to. Strangers' datagrams are dropped and counted by reason,
//! without allocation. No I/O here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::media::turn::{classify, PacketKind};

/// Why a datagram on a shared port was not given to any call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not STUN, DTLS or (S)RTP, or too short to be any (a STUN header is 20 bytes).
    Garbage,
    /// A STUN message naming no username fragment of ours, or malformed.
    StunUnknownUfrag,
    /// DTLS or SRTP from an address no call talks to.
    UnknownSource,
    /// The call's WebRTC stack refused it (bad STUN integrity, DTLS from a stranger, SRTP that
    /// fails authentication).
    Refused,
}

/// Dropped datagrams by reason, shared with the operator's metrics.
#[derive(Debug, Default)]
pub struct DemuxCounters {
    pub garbage: AtomicU64,
    pub stun_unknown_ufrag: AtomicU64,
    pub unknown_source: AtomicU64,
    pub refused: AtomicU64,
    pub delivered: AtomicU64,
}

impl DemuxCounters {
    pub fn count(&self, d: Drop) {
        let c = match d {
            Drop::Garbage => &self.garbage,
            Drop::StunUnknownUfrag => &self.stun_unknown_ufrag,
            Drop::UnknownSource => &self.unknown_source,
            Drop::Refused => &self.refused,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The routing tables of one shared port. `C` identifies a call.
#[derive(Debug)]
pub struct Demux<C: Copy + Eq> {
    by_ufrag: HashMap<Box<str>, C>,
    by_addr: HashMap<SocketAddr, C>,
}

impl<C: Copy + Eq> Default for Demux<C> {
    fn default() -> Self {
        Demux {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }
}

impl<C: Copy + Eq> Demux<C> {
    pub fn add_ufrag(&mut self, ufrag: &str, call: C) {
        self.by_ufrag.insert(ufrag.into(), call);
    }

    /// The call sent to `remote`: what comes back from there is its. A remote already bound
    /// to another live call keeps its first owner (returns false): two calls cannot share one
    /// 5-tuple.
    pub fn learn_addr(&mut self, remote: SocketAddr, call: C) -> bool {
        match self.by_addr.get(&remote) {
            Some(c) => *c == call,
            None => {
                self.by_addr.insert(remote, call);
                true
            }
        }
    }

    /// Forgets everything routed to `call` (its addresses are listed by the caller).
    pub fn remove(&mut self, ufrag: &str, addrs: &[SocketAddr], call: C) {
        if self.by_ufrag.get(ufrag) == Some(&call) {
            self.by_ufrag.remove(ufrag);
        }
        for a in addrs {
            if self.by_addr.get(a) == Some(&call) {
                self.by_addr.remove(a);
            }
        }
    }

    pub fn route(&self, source: SocketAddr, datagram: &[u8]) -> Result<C, Drop> {
        match classify(datagram) {
            PacketKind::Stun => {
                if let Some(ufrag) = stun_local_ufrag(datagram) {
                    return self
                        .by_ufrag
                        .get(ufrag)
                        .copied()
                        .ok_or(Drop::StunUnknownUfrag);
                }
                // Responses and indications carry no USERNAME: they answer what we sent.
                self.by_addr
                    .get(&source)
                    .copied()
                    .ok_or(Drop::StunUnknownUfrag)
            }
            PacketKind::Dtls | PacketKind::Rtp => self
                .by_addr
                .get(&source)
                .copied()
                .ok_or(Drop::UnknownSource),
            // No TURN server talks to a shared WebRTC port: ChannelData here is garbage too.
            PacketKind::ChannelData | PacketKind::Other => Err(Drop::Garbage),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        (self.by_ufrag.len(), self.by_addr.len())
    }
}

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The receiver's ufrag of a STUN Binding request's USERNAME (`ours:theirs`, RFC 8445 7.2.2),
/// read in place. None for anything malformed or without a USERNAME.
pub fn stun_local_ufrag(m: &[u8]) -> Option<&str> {
    if m.len() < 20 || m[4..8] != STUN_MAGIC {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([m[2], m[3]]));
    let body = m.get(20..20 + body_len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if typ == ATTR_USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            return s.split_once(':').map(|(ours, _)| ours);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Fuzz entry (see `crate::fuzzing::webrtc_demux`): datagrams from a few sources into the
/// demultiplexer of a shared port holding two calls, each with a real str0m peer; whatever is
/// routed is fed to that call's WebRTC stack. Nothing may panic; a STUN request naming a call's
/// ufrag must reach that call whatever the source; strangers must reach no call.
pub fn fuzz_datagrams(data: &[u8]) {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    use str0m::net::{Protocol, Receive};
    use str0m::Input;

    use super::peer::{IceTiming, WebRtcPeer};
    use crate::media::Codec;

    thread_local! {
        static PEERS: std::cell::RefCell<Option<(Instant, [WebRtcPeer; 2])>> = const { std::cell::RefCell::new(None) };
    }
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let known = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001);
    PEERS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (t0, peers) = cell.get_or_insert_with(|| {
            let t0 = Instant::now();
            let timing = IceTiming {
                initial_rto: Duration::from_millis(50),
                max_retransmits: 3,
            };
            let mk = || {
                let mut p = WebRtcPeer::new(&[Codec::Pcmu, Codec::Pcma], timing, t0);
                p.add_local_candidate(str0m::Candidate::host(local, "udp").expect("candidate"));
                let _ = p.create_offer(crate::media::Direction::SendRecv);
                p
            };
            (t0, [mk(), mk()])
        });
        let mut demux: Demux<usize> = Demux::default();
        let ufrags = [peers[0].local_ufrag(), peers[1].local_ufrag()];
        demux.add_ufrag(&ufrags[0], 0);
        demux.add_ufrag(&ufrags[1], 1);
        demux.learn_addr(known, 1);
        for (i, chunk) in data.split(|b| *b == 0xff).take(16).enumerate() {
            let Some((&ctl, datagram)) = chunk.split_first() else {
                continue;
            };
            let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (ctl & 3))), 5000);
            let source = if ctl & 4 != 0 { known } else { source };
            let routed = demux.route(source, datagram);
            if let Some(u) = stun_local_ufrag(datagram) {
                let want = ufrags.iter().position(|x| x == u);
                if let Some(w) = want {
                    assert_eq!(routed, Ok(w), "a STUN request reaches the call it names");
                }
            } else if source != known {
                assert!(routed.is_err(), "a stranger's datagram reached a call");
            }
            if let Ok(call) = routed {
                let now = *t0 + Duration::from_millis(i as u64);
                let rtc = peers[call].rtc();
                if let Ok(recv) = Receive::new(Protocol::Udp, source, local, datagram) {
                    let input = Input::Receive(now, recv);
                    if rtc.accepts(&input) {
                        let _ = rtc.handle_input(input);
                    }
                }
                while let Ok(out) = rtc.poll_output() {
                    if matches!(out, str0m::Output::Timeout(_)) {
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_request(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&STUN_MAGIC);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn stun_requests_route_by_our_ufrag_and_the_rest_by_address() {
        let mut d: Demux<u32> = Demux::default();
        d.add_ufrag("abcd", 1);
        d.add_ufrag("wxyz", 2);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(d.route(peer, &stun_request("wxyz:remote")), Ok(2));
        assert_eq!(
            d.route(peer, &stun_request("nope:remote")),
            Err(Drop::StunUnknownUfrag)
        );
        assert_eq!(d.route(peer, &[0x80, 0, 0, 0]), Err(Drop::UnknownSource));
        assert!(d.learn_addr(peer, 1));
        assert!(!d.learn_addr(peer, 2), "a 5-tuple has one owner");
        assert_eq!(d.route(peer, &[0x80; 40]), Ok(1));
        assert_eq!(d.route(peer, &[22; 40]), Ok(1));
        assert_eq!(d.route(stranger, &[22; 40]), Err(Drop::UnknownSource));
        assert_eq!(d.route(peer, &[200; 40]), Err(Drop::Garbage));
        assert_eq!(d.route(peer, &[]), Err(Drop::Garbage));
        d.remove("abcd", &[peer], 1);
        assert_eq!(d.route(peer, &[0x80; 40]), Err(Drop::UnknownSource));
        assert_eq!(d.len(), (1, 0));
    }

    #[test]
    fn malformed_stun_never_panics() {
        let good = stun_request("abcd:efgh");
        for cut in 0..good.len() {
            let _ = stun_local_ufrag(&good[..cut]);
        }
        let mut bad = good.clone();
        bad[22] = 0xff; // attribute length past the end
        bad[23] = 0xff;
        assert_eq!(stun_local_ufrag(&bad), None);
        assert_eq!(stun_local_ufrag(&good), Some("abcd"));
    }
}
