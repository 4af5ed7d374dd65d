//! RTP as the tests see it: the packets a pcap file holds (what sipp plays) and the packets that
//! actually crossed the loopback interface (what came back), so a test can count and compare
//! payloads byte for byte.
//!
//! The capture is an `AF_PACKET` socket bound to `lo` (needs root, which the suite has). Loopback
//! shows every packet twice, once leaving (`PACKET_OUTGOING`) and once arriving (`PACKET_HOST`);
//! only the arriving copy is kept.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One UDP datagram from a pcap file or the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
    /// pcap: time since the file's first packet; capture: time since the capture started.
    pub at: Duration,
}

/// The fixed RTP header fields and the payload (after CSRCs and any extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtp {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

impl Rtp {
    /// Parses an RTP version 2 packet; `None` for anything else (RTCP included).
    pub fn parse(b: &[u8]) -> Option<Rtp> {
        if b.len() < 12 || b[0] >> 6 != 2 {
            return None;
        }
        let pt = b[1] & 0x7f;
        if (72..=76).contains(&pt) {
            return None; // RTCP SR/RR/SDES/BYE/APP share the port pair when muxed
        }
        let csrc = usize::from(b[0] & 0x0f);
        let mut off = 12 + 4 * csrc;
        if b[0] & 0x10 != 0 {
            let ext = b.get(off + 2..off + 4)?;
            off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*b.last()?))?;
        }
        Some(Rtp {
            payload_type: pt,
            marker: b[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: b.get(off..end)?.to_vec(),
        })
    }
}

/// The UDP datagrams in a classic libpcap file (either byte order, micro- or nanosecond
/// timestamps) with an Ethernet (1), BSD loopback (0), raw IP (12, 101) or Linux cooked (113)
/// link type; IPv4 and IPv6 (no extension headers). Fragments and non-UDP packets are skipped.
pub fn read_pcap(path: &Path) -> Result<Vec<Datagram>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_pcap(&data).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse_pcap(data: &[u8]) -> Result<Vec<Datagram>, String> {
    if data.len() < 24 {
        return Err("shorter than a pcap global header".into());
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let (big_endian, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => {
            return Err(format!(
                "not a classic pcap file (magic {magic:02x?}; pcapng?)"
            ))
        }
    };
    let u32_at = |off: usize| -> u32 {
        let b = [data[off], data[off + 1], data[off + 2], data[off + 3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let link_type = u32_at(20);
    let mut out = Vec::new();
    let mut first: Option<Duration> = None;
    let mut off = 24;
    while off + 16 <= data.len() {
        let secs = u64::from(u32_at(off));
        let frac = u64::from(u32_at(off + 4));
        let incl = u32_at(off + 8) as usize;
        off += 16;
        let Some(frame) = data.get(off..off + incl) else {
            return Err(format!("truncated record at byte {off}"));
        };
        off += incl;
        let at = Duration::from_secs(secs)
            + if nanos {
                Duration::from_nanos(frac)
            } else {
                Duration::from_micros(frac)
            };
        let first = *first.get_or_insert(at);
        let Some(ip) = network_layer(link_type, frame)? else {
            continue;
        };
        if let Some((src_port, dst_port, payload)) = udp_of_ip(ip) {
            out.push(Datagram {
                src_port,
                dst_port,
                payload: payload.to_vec(),
                at: at.saturating_sub(first),
            });
        }
    }
    Ok(out)
}

/// The IP packet inside a link-layer frame; `None` when the frame carries something else.
fn network_layer(link_type: u32, frame: &[u8]) -> Result<Option<&[u8]>, String> {
    let ethertype_ok = |t: u16| t == 0x0800 || t == 0x86dd;
    Ok(match link_type {
        // BSD loopback: a 4-byte address family in host order; the IP version tells the rest.
        0 => frame.get(4..),
        1 => {
            let (mut t, mut off) = (be16(frame, 12), 14);
            while t == Some(0x8100) || t == Some(0x88a8) {
                t = be16(frame, off + 2);
                off += 4;
            }
            t.filter(|&t| ethertype_ok(t))
                .and_then(|_| frame.get(off..))
        }
        12 | 101 => Some(frame),
        113 => be16(frame, 14)
            .filter(|&t| ethertype_ok(t))
            .and_then(|_| frame.get(16..)),
        other => return Err(format!("unsupported pcap link type {other}")),
    })
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// (source port, destination port, payload) of an unfragmented UDP packet in IPv4 or IPv6.
fn udp_of_ip(ip: &[u8]) -> Option<(u16, u16, &[u8])> {
    let udp = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let frag = be16(ip, 6)?;
            if *ip.get(9)? != 17 || frag & 0x3fff != 0 || ihl < 20 {
                return None;
            }
            ip.get(ihl..total.min(ip.len()))?
        }
        6 => {
            if *ip.get(6)? != 17 {
                return None;
            }
            let len = usize::from(be16(ip, 4)?);
            ip.get(40..(40 + len).min(ip.len()))?
        }
        _ => return None,
    };
    let len = usize::from(be16(udp, 4)?);
    Some((
        be16(udp, 0)?,
        be16(udp, 2)?,
        udp.get(8..len.min(udp.len()))?,
    ))
}

/// The RTP packets of a pcap file (sipp's `play_pcap_audio` input), in file order.
pub fn pcap_rtp(path: &Path) -> Vec<Rtp> {
    let datagrams = read_pcap(path).unwrap_or_else(|e| panic!("{e}"));
    datagrams
        .iter()
        .filter_map(|d| Rtp::parse(&d.payload))
        .collect()
}

/// Which datagrams a capture keeps.
#[derive(Debug, Clone)]
pub struct Filter {
    pub dst_port: u16,
    /// `None`: any source port.
    pub src_ports: Option<RangeInclusive<u16>>,
}

/// A loopback capture running on its own thread until [`Capture::finish`] or its deadline.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Datagram>, String>>>,
}

impl Capture {
    /// Starts capturing datagrams to `filter.dst_port` arriving on `lo`; never runs past
    /// `max` (the thread stops by itself). Returns once the socket is bound, so anything sent
    /// afterwards is seen.
    pub fn start(filter: Filter, max: Duration) -> Capture {
        let fd = open_lo_socket().unwrap_or_else(|e| {
            panic!("AF_PACKET capture on lo (the integration tests run as root): {e}")
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || capture_loop(fd, &filter, &stop2, max));
        Capture {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the capture and returns what it kept, oldest first.
    pub fn finish(mut self) -> Vec<Datagram> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(v))) => v,
            Some(Ok(Err(e))) => panic!("capture failed: {e}"),
            _ => panic!("capture thread panicked"),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An owned file descriptor closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor came from socket() and is closed exactly once.
        unsafe { libc::close(self.0) };
    }
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// `socket(AF_PACKET, SOCK_DGRAM, ETH_P_ALL)` bound to `lo`, with a 100 ms receive timeout
/// (so the loop can notice stop and deadline) and a large buffer (20 calls each way at 50
/// packets a second must not overflow it while the thread is descheduled).
fn open_lo_socket() -> Result<Fd, String> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain FFI calls with valid arguments; every pointer refers to a live local.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, libc::c_int::from(proto));
        if fd < 0 {
            return Err(os_error("socket(AF_PACKET)"));
        }
        let fd = Fd(fd);
        let ifindex = libc::if_nametoindex(c"lo".as_ptr());
        if ifindex == 0 {
            return Err(os_error("if_nametoindex(lo)"));
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as libc::c_int;
        let r = libc::bind(
            fd.0,
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
        if r != 0 {
            return Err(os_error("bind(lo)"));
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let r = libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if r != 0 {
            return Err(os_error("SO_RCVTIMEO"));
        }
        let size: libc::c_int = 16 << 20;
        // RCVBUFFORCE (root) ignores rmem_max; fall back to the capped RCVBUF.
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            let r = libc::setsockopt(
                fd.0,
                libc::SOL_SOCKET,
                opt,
                std::ptr::addr_of!(size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if r == 0 {
                break;
            }
        }
        Ok(fd)
    }
}

fn capture_loop(
    fd: Fd,
    filter: &Filter,
    stop: &AtomicBool,
    max: Duration,
) -> Result<Vec<Datagram>, String> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < max {
        // SAFETY: buf and sll outlive the call and their lengths are passed with them.
        let (n, sll) = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let n = libc::recvfrom(
                fd.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                std::ptr::addr_of_mut!(sll).cast(),
                &mut len,
            );
            (n, sll)
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => continue,
                _ => return Err(format!("recvfrom: {e}")),
            }
        }
        if sll.sll_pkttype != libc::PACKET_HOST {
            continue;
        }
        let Some((src_port, dst_port, payload)) = udp_of_ip(&buf[..n as usize]) else {
            continue;
        };
        let wanted_src = filter
            .src_ports
            .as_ref()
            .is_none_or(|r| r.contains(&src_port));
        if dst_port == filter.dst_port && wanted_src {
            out.push(Datagram {
                src_port,
                dst_port,
                payload: payload.to_vec(),
                at: started.elapsed(),
            });
        }
    }
    Ok(out)
}

/// How many of `sent` (a multiset of payloads) came back byte-identical in `received`.
pub fn matched_payloads(sent: &[Vec<u8>], received: &[Vec<u8>]) -> usize {
    let mut pool: HashMap<&[u8], usize> = HashMap::new();
    for r in received {
        *pool.entry(r.as_slice()).or_default() += 1;
    }
    let mut matched = 0;
    for s in sent {
        if let Some(n) = pool.get_mut(s.as_slice()).filter(|n| **n > 0) {
            *n -= 1;
            matched += 1;
        }
    }
    matched
}

/// Loopback socket pair for the self-test and for tests that need a plain UDP peer.
pub fn loopback_udp() -> UdpSocket {
    UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind loopback UDP")
}

#[test]
fn capture_sees_each_loopback_datagram_once_with_its_payload() {
    let a = loopback_udp();
    let b = loopback_udp();
    let (a_port, b_port) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let cap = Capture::start(
        Filter {
            dst_port: b_port,
            src_ports: Some(a_port..=a_port),
        },
        Duration::from_secs(10),
    );
    // Noise the filter must drop: the other direction, and another source to the same port.
    let c = loopback_udp();
    let payloads: Vec<Vec<u8>> = (0..50u8)
        .map(|i| (0..(20 + usize::from(i))).map(|j| i ^ j as u8).collect())
        .collect();
    for p in &payloads {
        a.send_to(p, b.local_addr().unwrap()).unwrap();
        b.send_to(b"back", a.local_addr().unwrap()).unwrap();
        c.send_to(b"other", b.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    // Both sockets really received theirs (drain b to be sure everything crossed lo).
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..100 {
        b.recv_from(&mut buf).expect("datagram on b");
    }
    std::thread::sleep(Duration::from_millis(150));
    let got = cap.finish();
    assert_eq!(got.len(), 50, "captured {} datagrams, sent 50", got.len());
    for (g, p) in got.iter().zip(&payloads) {
        assert_eq!(&g.payload, p);
        assert_eq!((g.src_port, g.dst_port), (a_port, b_port));
    }
    assert!(got.windows(2).all(|w| w[0].at <= w[1].at));
}

#[test]
fn the_sipp_pcaps_hold_the_expected_rtp() {
    let dir = Path::new("/usr/share/sip-tester");
    if !dir.exists() {
        crate::sipp::require_sipp();
    }
    let audio = pcap_rtp(&dir.join("g711a.pcap"));
    // 236 PCMA packets of 30 ms (240 bytes), one SSRC: about 7 s of audio.
    assert_eq!(audio.len(), 236, "g711a.pcap RTP packets");
    assert!(audio
        .iter()
        .all(|p| p.payload_type == 8 && p.payload.len() == 240));
    let ssrc = audio[0].ssrc;
    assert!(audio.iter().all(|p| p.ssrc == ssrc));
    for w in audio.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
    }
    let dtmf = pcap_rtp(&dir.join("dtmf_2833_1.pcap"));
    assert!(!dtmf.is_empty());
    assert!(dtmf.iter().all(|p| p.payload_type == 101));
    assert_eq!(dtmf[0].payload[0], 1, "event 1");
    assert!(
        dtmf.iter().any(|p| p.payload[1] & 0x80 != 0),
        "an end packet"
    );
}

#[test]
fn pcap_reader_handles_cooked_and_raw_link_types() {
    let ip_udp = |payload: &[u8]| {
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let total = (20 + 8 + payload.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&4000u16.to_be_bytes());
        ip.extend_from_slice(&5000u16.to_be_bytes());
        ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        ip
    };
    for (link, prefix) in [
        (113u32, {
            let mut h = vec![0u8; 14];
            h.extend_from_slice(&0x0800u16.to_be_bytes());
            h
        }),
        (101, Vec::new()),
        (0, vec![2, 0, 0, 0]),
    ] {
        let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&65535u32.to_le_bytes());
        file.extend_from_slice(&link.to_le_bytes());
        for (i, p) in [&b"one"[..], b"second"].iter().enumerate() {
            let frame = [prefix.clone(), ip_udp(p)].concat();
            file.extend_from_slice(&(100 + i as u32).to_le_bytes());
            file.extend_from_slice(&0u32.to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&frame);
        }
        let got = parse_pcap(&file).unwrap();
        assert_eq!(got.len(), 2, "link type {link}");
        assert_eq!(got[1].payload, b"second");
        assert_eq!((got[0].src_port, got[0].dst_port), (4000, 5000));
        assert_eq!(got[1].at, Duration::from_secs(1));
    }
}
