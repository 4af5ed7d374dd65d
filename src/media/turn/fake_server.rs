//! Test-only: an in-memory TURN server (`turn-server-proto`, optionally behind a rustls server
//! session) and a harness that wires a [`TurnClient`] to it in virtual time, so allocation,
//! refreshes over an hour, stale nonces, failures and relaying are tested without sockets or
//! sleeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use stun_proto::types::message::{Message, Method};

use super::framing::StreamFramer;
use turn_client_proto::types::TransportType;
use turn_server_proto::api::{SocketAllocateError, TurnServerApi, TurnServerPollRet};
use turn_server_proto::server::TurnServer;

use super::clock::Clock;
use super::{TurnClient, TurnCredentials, TurnEvent, TurnTransport, MAX_TRANSMIT};

pub(super) const USER: &str = "u";
pub(super) const PASS: &str = "p";
pub(super) const REALM: &str = "trunkgate.test";
pub(super) const TLS_NAME: &str = "turn.test";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn credentials(password: &str) -> TurnCredentials {
    TurnCredentials {
        username: USER.into(),
        password: password.into(),
    }
}

/// A self-signed, non-CA certificate for `TLS_NAME`, and a client config trusting only it.
pub(super) fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// The server side: a TURN server, behind TLS for `TurnTransport::Tls`.
pub(super) struct FakeServer {
    pub(super) turn: TurnServer,
    tls: Option<rustls::ServerConnection>,
    pub(super) listen: SocketAddr,
    pub(super) relayed: SocketAddr,
    transport: TransportType,
    clock: Clock,
    /// Refuse allocations as if out of relay ports.
    pub(super) no_capacity: bool,
    /// STUN methods of the requests the client sent, in order.
    pub(super) requests: Vec<Method>,
    /// Datagrams the relay sent to peers: (peer, payload).
    pub(super) to_peers: Vec<(SocketAddr, Vec<u8>)>,
    /// First bytes of the client's frames (media framing check).
    pub(super) first_bytes: Vec<u8>,
    framer: StreamFramer,
}

impl FakeServer {
    pub(super) fn new(
        transport: TurnTransport,
        tls: Option<Arc<rustls::ServerConfig>>,
        epoch: Instant,
    ) -> Self {
        let listen = addr("127.0.0.1:3478");
        let ttype = match transport {
            TurnTransport::Udp => TransportType::Udp,
            _ => TransportType::Tcp,
        };
        let mut turn = TurnServer::new(ttype, listen, REALM.into());
        turn.add_user(USER.into(), PASS.into());
        FakeServer {
            turn,
            tls: tls.map(|c| rustls::ServerConnection::new(c).unwrap()),
            listen,
            relayed: addr("127.0.0.1:49152"),
            transport: ttype,
            clock: Clock::new(epoch),
            no_capacity: false,
            requests: vec![],
            to_peers: vec![],
            first_bytes: vec![],
            framer: StreamFramer::default(),
        }
    }

    /// Bytes from the client (ciphertext under TLS); returns bytes for the client.
    pub(super) fn client_sent(
        &mut self,
        client: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Vec<u8> {
        let plain = match &mut self.tls {
            None => bytes.to_vec(),
            Some(tls) => {
                // A client that sent garbage gets nothing back (its TLS session is dead).
                let mut rd = bytes;
                while !rd.is_empty() {
                    if tls.read_tls(&mut rd).is_err() {
                        return vec![];
                    }
                }
                if tls.process_new_packets().is_err() {
                    return vec![];
                }
                let mut plain = vec![];
                let _ = std::io::Read::read_to_end(&mut tls.reader(), &mut plain);
                plain
            }
        };
        // The server takes one message per call: cut the stream (or take the datagram).
        let mut frames = vec![];
        if self.transport == TransportType::Tcp {
            self.framer.push(&plain);
            while let Ok(Some(r)) = self.framer.next_frame() {
                frames.push(self.framer.frame(r).to_vec());
            }
        } else if !plain.is_empty() {
            frames.push(plain);
        }
        let mut reply = vec![];
        let t = self.clock.proto_of(now);
        for frame in frames {
            self.note_request(&frame);
            let transmit = stun_proto::agent::Transmit::new(
                frame.as_slice(),
                self.transport,
                client,
                self.listen,
            );
            if let Some(out) = self.turn.recv(transmit, t) {
                let out = out.build();
                if out.to == client {
                    reply.extend_from_slice(&out.data);
                } else {
                    self.to_peers.push((out.to, out.data));
                }
            }
        }
        reply.extend(self.poll_plain(now));
        self.seal(reply)
    }

    /// A datagram from `peer` to the relayed address; returns bytes for the client.
    pub(super) fn peer_sent(&mut self, peer: SocketAddr, data: &[u8], now: Instant) -> Vec<u8> {
        let out = self.relay_plain(peer, data, now);
        self.seal(out)
    }

    /// What the relay makes of a peer's datagram, before any TLS.
    pub(super) fn relay_plain(&mut self, peer: SocketAddr, data: &[u8], now: Instant) -> Vec<u8> {
        let t = self.clock.proto_of(now);
        let transmit =
            stun_proto::agent::Transmit::new(data, TransportType::Udp, peer, self.relayed);
        self.turn
            .recv(transmit, t)
            .map(|o| o.build().data)
            .unwrap_or_default()
    }

    /// Timers and queued answers; returns bytes for the client.
    pub(super) fn poll(&mut self, now: Instant) -> Vec<u8> {
        let out = self.poll_plain(now);
        self.seal(out)
    }

    fn poll_plain(&mut self, now: Instant) -> Vec<u8> {
        let t = self.clock.proto_of(now);
        let mut out = vec![];
        for _ in 0..16 {
            match self.turn.poll(t) {
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let result = if self.no_capacity {
                        Err(SocketAllocateError::InsufficientCapacity)
                    } else {
                        Ok(self.relayed)
                    };
                    self.turn.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        result,
                        t,
                    );
                }
                _ => break,
            }
        }
        while let Some(transmit) = self.turn.poll_transmit(t) {
            out.extend_from_slice(&transmit.data);
        }
        out
    }

    fn seal(&mut self, plain: Vec<u8>) -> Vec<u8> {
        match &mut self.tls {
            None => plain,
            Some(tls) => {
                if !plain.is_empty() {
                    std::io::Write::write_all(&mut tls.writer(), &plain).unwrap();
                }
                let mut out = vec![];
                while tls.wants_write() {
                    tls.write_tls(&mut out).unwrap();
                }
                out
            }
        }
    }

    /// Plaintext straight into the TLS session (or raw), for hostile-frame tests.
    pub(super) fn raw_to_client(&mut self, plain: &[u8]) -> Vec<u8> {
        self.seal(plain.to_vec())
    }

    fn note_request(&mut self, frame: &[u8]) {
        if let Some(&first) = frame.first() {
            self.first_bytes.push(first);
        }
        if let Ok(msg) = Message::from_bytes(frame) {
            if msg.has_class(stun_proto::types::message::MessageClass::Request) {
                self.requests.push(msg.method());
            }
        }
    }
}

/// A client wired to a fake server, and a peer on the far side of the relay, in virtual time.
pub(super) struct Harness {
    pub(super) client: TurnClient,
    pub(super) server: FakeServer,
    pub(super) now: Instant,
    pub(super) local: SocketAddr,
    /// What the client delivered: (peer, payload).
    pub(super) delivered: Vec<(SocketAddr, Vec<u8>)>,
    pub(super) events: Vec<TurnEvent>,
    /// Drop everything from the server (a dead or unreachable server).
    pub(super) server_silent: bool,
}

impl Harness {
    pub(super) fn new(transport: TurnTransport, password: &str) -> Self {
        let now = Instant::now();
        let (server_tls, client_tls) = match transport {
            TurnTransport::Tls => {
                let (s, c) = tls_pair();
                (Some(s), Some(c))
            }
            _ => (None, None),
        };
        let server = FakeServer::new(transport, server_tls, now);
        let local = addr("127.0.0.1:40000");
        let client = TurnClient::new(
            transport,
            local,
            server.listen,
            TLS_NAME,
            &credentials(password),
            client_tls,
            now,
        )
        .unwrap();
        Harness {
            client,
            server,
            now,
            local,
            delivered: vec![],
            events: vec![],
            server_silent: false,
        }
    }

    /// Moves bytes both ways until nothing moves.
    pub(super) fn pump(&mut self) {
        let mut buf = vec![0u8; MAX_TRANSMIT];
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(n) = self.client.poll_transmit(&mut buf) {
                moved = true;
                if self.server_silent {
                    continue;
                }
                let reply = self.server.client_sent(self.local, &buf[..n], self.now);
                self.deliver_to_client(&reply);
            }
            if !self.server_silent {
                let reply = self.server.poll(self.now);
                if !reply.is_empty() {
                    moved = true;
                    self.deliver_to_client(&reply);
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }

    pub(super) fn deliver_to_client(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let delivered = &mut self.delivered;
        self.client.handle_input(bytes, self.now, |peer, data| {
            delivered.push((peer, data.to_vec()))
        });
    }

    /// Advances virtual time to the client's next deadline (at most `max`) and runs it.
    pub(super) fn step(&mut self, max: Instant) {
        self.pump();
        let next = self.client.poll_timeout().unwrap_or(max).min(max);
        self.now = next.max(self.now);
        self.client.handle_timeout(self.now);
        self.pump();
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            if self.now >= end {
                return;
            }
            self.step(end);
        }
        panic!("time did not advance");
    }

    pub(super) fn allocate(&mut self) -> SocketAddr {
        self.pump();
        self.run_for(Duration::from_millis(500));
        match self.events.first() {
            Some(TurnEvent::Allocated { relayed }) => *relayed,
            other => panic!("no allocation: {other:?}"),
        }
    }

    /// A peer datagram through the relay to the client.
    pub(super) fn peer_sends(&mut self, peer: SocketAddr, data: &[u8]) {
        let out = self.server.peer_sent(peer, data, self.now);
        self.deliver_to_client(&out);
        self.pump();
    }

    pub(super) fn failed(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::Failed(r) => Some(r.as_str()),
            _ => None,
        })
    }
}
