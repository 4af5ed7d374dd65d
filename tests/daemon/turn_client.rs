//! The media engine's TURN client (`media::turn::TurnClient`) against a real coturn on
//! loopback, over UDP, TCP and TLS: allocate, permission for a local UDP "peer", media both
//! ways through the relay (lengths that are not multiples of 4 included), byte-exact; coturn's
//! log shows the allocation; then the deallocation is confirmed. Driven by a plain std socket
//! loop with short timeouts; each transport finishes in well under 10 s or fails.
//!
//! Needs `turnserver` (Debian's coturn) and the launcher in `coturn.rs`. Written against a
//! stand-in launcher with the same API, with which it passed over all three transports in ~2 s.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use trunkgate::media::turn::{
    TurnClient, TurnCredentials, TurnEvent, TurnTransport, TurnUrl, MAX_TRANSMIT,
};

use crate::coturn::Coturn;

const BUDGET: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(5);

/// The engine's side of the link to the TURN server.
enum Link {
    Udp(UdpSocket),
    Stream(TcpStream),
}

impl Link {
    fn connect(transport: TurnTransport, server: SocketAddr) -> Link {
        match transport {
            TurnTransport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(server).unwrap();
                s.set_read_timeout(Some(TICK)).unwrap();
                Link::Udp(s)
            }
            TurnTransport::Tcp | TurnTransport::Tls => {
                let s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).unwrap();
                s.set_read_timeout(Some(TICK)).unwrap();
                s.set_nodelay(true).unwrap();
                Link::Stream(s)
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        match self {
            Link::Udp(s) => s.local_addr().unwrap(),
            Link::Stream(s) => s.local_addr().unwrap(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        match self {
            Link::Udp(s) => {
                s.send(bytes).unwrap();
            }
            Link::Stream(s) => s.write_all(bytes).unwrap(),
        }
    }

    /// One datagram or stream chunk, `None` when nothing came within a tick.
    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let got = match self {
            Link::Udp(s) => s.recv(buf),
            Link::Stream(s) => s.read(buf),
        };
        match got {
            Ok(0) if matches!(self, Link::Stream(_)) => {
                panic!("the TURN server closed the connection")
            }
            Ok(n) => Some(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("reading from the TURN server: {e}"),
        }
    }
}

fn tls_config(coturn: &Coturn) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&coturn.cert_path).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Payloads of 17, 30, 43 ... bytes, each different.
fn payloads() -> Vec<Vec<u8>> {
    (0..20u8)
        .map(|i| {
            (0..17 + usize::from(i) * 13)
                .map(|b| (b as u8) ^ i.wrapping_mul(37))
                .collect()
        })
        .collect()
}

/// Moves bytes between the client and its socket and runs its timers, once.
fn turn_tick(
    client: &mut TurnClient,
    link: &mut Link,
    out: &mut [u8],
    input: &mut [u8],
    delivered: &mut Vec<(SocketAddr, Vec<u8>)>,
) {
    while let Some(n) = client.poll_transmit(out) {
        link.send(&out[..n]);
    }
    if let Some(n) = link.recv(input) {
        client.handle_input(&input[..n], Instant::now(), |peer, data| {
            delivered.push((peer, data.to_vec()))
        });
    }
    if client.poll_timeout().is_some_and(|t| t <= Instant::now()) {
        client.handle_timeout(Instant::now());
    }
    while let Some(n) = client.poll_transmit(out) {
        link.send(&out[..n]);
    }
}

/// The `nth` allocation on this coturn (1-based).
fn relay_through(coturn: &Coturn, url: &str, nth: usize) {
    let url: TurnUrl = url.parse().unwrap();
    let transport = url.transport;
    let server = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .unwrap()
        .find(SocketAddr::is_ipv4)
        .unwrap();
    let mut link = Link::connect(transport, server);
    let creds = TurnCredentials {
        username: coturn.user.into(),
        password: coturn.password.into(),
    };
    let tls = (transport == TurnTransport::Tls).then(|| tls_config(coturn));
    let start = Instant::now();
    let mut client = TurnClient::new(
        transport,
        link.local_addr(),
        server,
        &url.host,
        &creds,
        tls,
        start,
    )
    .unwrap();

    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let sent = payloads();
    let (mut out, mut input, mut pbuf) = (vec![0; MAX_TRANSMIT], vec![0; 65536], vec![0; 65536]);
    let mut relayed = None;
    let mut at_peer: Vec<Vec<u8>> = vec![];
    let mut back: Vec<(SocketAddr, Vec<u8>)> = vec![];
    let mut next = 0;
    while back.len() < sent.len() {
        assert!(
            start.elapsed() < BUDGET,
            "{transport}: relayed {:?}, {} at the peer, {} back\n{}",
            relayed,
            at_peer.len(),
            back.len(),
            coturn.log()
        );
        turn_tick(&mut client, &mut link, &mut out, &mut input, &mut back);
        while let Some(event) = client.poll_event() {
            match event {
                TurnEvent::Allocated { relayed: r } => {
                    relayed = Some(r);
                    client.add_permission(peer_addr, Instant::now()).unwrap();
                }
                other => panic!("{transport}: {other:?}\n{}", coturn.log()),
            }
        }
        // Lockstep: the next payload once the previous one has reached the peer. The first
        // goes out before the permission is in: the client holds it until then.
        if relayed.is_some() && next < sent.len() && next == at_peer.len() {
            client
                .send_to(peer_addr, &sent[next], Instant::now())
                .unwrap();
            next += 1;
        }
        while let Ok((n, from)) = peer.recv_from(&mut pbuf) {
            assert_eq!(
                Some(from),
                relayed,
                "{transport}: the peer hears the relayed address"
            );
            at_peer.push(pbuf[..n].to_vec());
            peer.send_to(&pbuf[..n], from).unwrap();
        }
    }
    assert_eq!(at_peer, sent, "{transport}: to the peer");
    let expected: Vec<_> = sent.iter().map(|p| (peer_addr, p.clone())).collect();
    assert_eq!(back, expected, "{transport}: from the peer");
    assert_eq!(client.relayed_addr(), relayed);

    client.close(Instant::now());
    let closing = Instant::now();
    while !client.is_closed() {
        assert!(
            closing.elapsed() < Duration::from_secs(3),
            "{transport}: no close"
        );
        turn_tick(&mut client, &mut link, &mut out, &mut input, &mut back);
    }
    while let Some(n) = client.poll_transmit(&mut out) {
        link.send(&out[..n]);
    }
    assert_eq!(
        client.poll_event(),
        None,
        "{transport}: a clean close, no failure"
    );

    // coturn's log shows this allocation (the log is shared by the runs: count them) and its
    // deallocation; it is written asynchronously, so give it a moment.
    let count = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    let waiting = Instant::now();
    loop {
        let log = coturn.log();
        if count(&log, "ALLOCATE processed, success") == nth
            && count(&log, "lifetime=0") == nth
            && log.contains(&format!("realm=<{}>", coturn.realm))
        {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(2),
            "{transport}: allocation #{nth} or its deallocation missing in coturn's log\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn turn_client_relays_through_coturn_over_udp_tcp_and_tls() {
    let coturn = Coturn::start();
    for (i, url) in coturn.urls().iter().enumerate() {
        relay_through(&coturn, url, i + 1);
    }
}
