//! One TURN allocation (RFC 8656) for one call on one server, over UDP, TCP or TLS: the
//! engine's view of it. The protocol (authentication, stale nonces, refreshes, permission and
//! channel upkeep, Send/Data indications, ChannelData) is `turn-client-proto`'s, and the link
//! to the server (datagrams, or a framed byte stream, TLS-wrapped for `turns:`) is `link`'s;
//! this owns the allocation's state, the call's peers and the media held for them, the
//! deadlines the crate has none for, and turning what goes wrong into one `TurnEvent::Failed`.
//!
//! Channels are bound on UDP only: `turn-client-proto` 0.7.3 does not pad ChannelData over a
//! stream (RFC 8656 12.5), which coturn needs, so on TCP/TLS media goes in Send indications.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use turn_client_proto::api::{
    BindChannelError, CreatePermissionError, DelayedMessageOrChannelSend, SendError, TransmitBuild,
    TurnClientApi, TurnConfig, TurnEvent as ProtoEvent, TurnPollRet,
};
use turn_client_proto::client::TurnClient as Proto;
use turn_client_proto::types::{TransportType, TurnCredentials as ProtoCredentials};

use super::clock::Clock;
use super::errors::ErrorWatch;
use super::link::Link;
use super::outq::OutQueue;
use super::peers::{Peers, Permission, TooMany, PERMISSION_RETRY};
use super::{
    TurnCredentials, TurnError, TurnEvent, TurnTransport, ALLOCATE_TIMEOUT, CLOSE_TIMEOUT,
    MAX_PAYLOAD,
};

/// Bounds one `drive` pass; the crate settles in two or three rounds.
const MAX_ROUNDS: usize = 32;
/// Earliest re-poll when the crate says "now" but has nothing to do, so a crate quirk cannot
/// turn the engine's loop into a busy loop.
const MIN_WAKE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Allocating,
    Allocated,
    /// Deallocation sent, waiting for the answer (or `CLOSE_TIMEOUT`).
    Closing,
    Closed,
    Failed,
}

/// A TURN client for one allocation. See the module doc of `media::turn` for how the engine
/// drives it.
#[derive(Debug)]
pub struct TurnClient {
    proto: Proto,
    link: Link,
    out: OutQueue,
    clock: Clock,
    transport: TurnTransport,
    local: SocketAddr,
    server: SocketAddr,
    state: State,
    relayed: Option<SocketAddr>,
    peers: Peers,
    events: VecDeque<TurnEvent>,
    /// Allocation deadline while allocating, deallocation deadline while closing.
    deadline: Option<Instant>,
    proto_wake: Option<Instant>,
    errors: ErrorWatch,
    /// Requests were queued in the crate outside `drive`: drive before returning.
    kick: bool,
}

impl TurnClient {
    /// Starts an allocation: the first bytes to write (the Allocate request, or the TLS
    /// ClientHello) are ready from [`Self::poll_transmit`] at once. For TCP/TLS the engine has
    /// connected `local` to `server` already.
    ///
    /// `server_name` is the TLS SNI and certificate name (a DNS name or IP literal) and is unused
    /// otherwise; `tls` is required for [`TurnTransport::Tls`] and must carry a crypto provider
    /// (build it with `ClientConfig::builder_with_provider`). The relayed address is IPv4.
    pub fn new(
        transport: TurnTransport,
        local: SocketAddr,
        server: SocketAddr,
        server_name: &str,
        credentials: &TurnCredentials,
        tls: Option<Arc<rustls::ClientConfig>>,
        now: Instant,
    ) -> Result<Self, TurnError> {
        if local.is_ipv4() != server.is_ipv4() {
            return Err(TurnError::AddressFamily { local, server });
        }
        let config = TurnConfig::new(ProtoCredentials::new(
            &credentials.username,
            &credentials.password,
        ));
        let (proto, link, out) = Link::open(transport, (server, local), server_name, config, tls)?;
        let mut client = TurnClient {
            proto,
            link,
            out,
            clock: Clock::new(now),
            transport,
            local,
            server,
            state: State::Allocating,
            relayed: None,
            peers: Peers::default(),
            events: VecDeque::new(),
            deadline: now.checked_add(ALLOCATE_TIMEOUT),
            proto_wake: None,
            errors: ErrorWatch::default(),
            kick: false,
        };
        client.drive(now);
        Ok(client)
    }

    /// How the server is reached.
    pub fn transport(&self) -> TurnTransport {
        self.transport
    }

    /// Our socket's address toward the server.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// The relayed address while the allocation is usable.
    pub fn relayed_addr(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Closed or failed: nothing more will be produced beyond what `poll_transmit` still holds,
    /// and the client (and, once drained, its socket) can be dropped.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// Bytes read from the server's socket: one UDP datagram, or any chunk of the TCP/TLS
    /// stream. Media relayed from peers is handed to `deliver(peer, payload)`; for str0m it is
    /// input received on the relayed address from `peer`.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        now: Instant,
        mut deliver: impl FnMut(SocketAddr, &[u8]),
    ) {
        if self.is_closed() || bytes.is_empty() {
            return;
        }
        let t = self.clock.proto_of(now);
        let broken = self.link.read(
            bytes,
            &mut self.proto,
            &mut self.errors,
            (self.server, self.local),
            t,
            &mut deliver,
        );
        match broken {
            Some(reason) if self.state == State::Closing => {
                tracing::debug!(%reason, "TURN link ended while deallocating");
                self.finish_closed();
            }
            Some(reason) => self.fail(reason),
            None => self.drive(now),
        }
    }

    /// The engine saw the TCP/TLS connection to the server end (EOF, reset, write error).
    pub fn handle_disconnect(&mut self) {
        match self.state {
            State::Closing => self.finish_closed(),
            State::Allocating | State::Allocated => {
                self.fail("the connection to the TURN server closed".to_owned())
            }
            State::Closed | State::Failed => {}
        }
    }

    /// Moves the next bytes to write to the server into `out`: one whole datagram on UDP (`out`
    /// of [`super::MAX_TRANSMIT`] bytes always fits one), as much of the stream as fits on
    /// TCP/TLS. Still yields what was queued before a close or failure (the deallocation, the
    /// TLS close_notify).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<usize> {
        self.out.pop_into(out)
    }

    /// Whether `poll_transmit` has bytes (for the engine's write interest on a stream).
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// When [`Self::handle_timeout`] is next due; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        match (self.proto_wake, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers: retransmissions, refreshes of the allocation (before its lifetime
    /// ends), of permissions (every 4 min, under their 5 min lifetime) and channels, and the
    /// allocation and close deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.drive(now);
    }

    /// The next event for the engine.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// Asks for a permission for `peer`'s IP (and on UDP a channel to `peer`), now or as soon
    /// as the allocation exists. Do this for each remote candidate before ICE checks start.
    pub fn add_permission(&mut self, peer: SocketAddr, now: Instant) -> Result<(), TurnError> {
        match self.state {
            State::Allocating | State::Allocated => {}
            State::Closing | State::Closed | State::Failed => return Err(TurnError::Closed),
        }
        if self.want_peer(peer, now)? {
            self.drive(now);
        }
        Ok(())
    }

    /// Relays `payload` to `peer`: ChannelData where a channel is bound (UDP), else a Send
    /// indication, queued for [`Self::poll_transmit`]. Before the peer's permission is in,
    /// the datagram is held (up to 32 datagrams / 64 KiB, each for at most 2 s, oldest dropped
    /// first) and sent in order once it is; a peer not added yet is added. For a peer whose
    /// permission the server refused it is dropped and an error returned.
    pub fn send_to(
        &mut self,
        peer: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), TurnError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(TurnError::PayloadTooLarge { len: payload.len() });
        }
        match self.state {
            State::Allocating | State::Allocated => {}
            State::Closing | State::Closed | State::Failed => return Err(TurnError::Closed),
        }
        if self.want_peer(peer, now)? {
            self.drive(now);
        }
        if self.state != State::Allocated {
            self.peers.hold(peer, payload, now);
            return Ok(());
        }
        let sent = match self.peers.permission(peer.ip()) {
            Some(Permission::Installed) => self.send_now(peer, payload, now),
            Some(Permission::Refused { .. }) => Err(TurnError::PermissionRefused(peer.ip())),
            _ => {
                self.peers.hold(peer, payload, now);
                Ok(())
            }
        };
        if std::mem::take(&mut self.kick) {
            self.drive(now);
        }
        sent
    }

    /// Deallocates (a Refresh with lifetime 0) at call end. The client is closed once the
    /// server confirms, the link ends or `CLOSE_TIMEOUT` passes; drain `poll_transmit` first.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::Allocated => {
                self.peers.clear();
                match self.proto.delete(self.clock.proto_of(now)) {
                    Ok(()) => {
                        self.state = State::Closing;
                        self.relayed = None;
                        self.deadline = now.checked_add(CLOSE_TIMEOUT);
                        self.drive(now);
                    }
                    Err(_) => self.finish_closed(),
                }
            }
            // Nothing granted yet: the server ages out an allocation granted in flight.
            State::Allocating => self.finish_closed(),
            State::Closing | State::Closed | State::Failed => {}
        }
    }

    /// Records `peer`; asks for what it needs if the allocation exists. Whether anything was
    /// asked (so the crate has requests to send).
    fn want_peer(&mut self, peer: SocketAddr, now: Instant) -> Result<bool, TurnError> {
        if !peer.is_ipv4() {
            return Err(TurnError::PeerFamily(peer));
        }
        self.peers
            .insert(peer)
            .map_err(|TooMany| TurnError::TooManyPeers)?;
        if self.state != State::Allocated {
            return Ok(false);
        }
        let mut asked = self.request_permissions(now);
        if self.peers.permission(peer.ip()) == Some(Permission::Installed) {
            asked |= self.bind_channels(peer.ip(), now);
        }
        Ok(asked)
    }

    fn request_permissions(&mut self, now: Instant) -> bool {
        let t = self.clock.proto_of(now);
        let ips: Vec<IpAddr> = self.peers.to_request(now).collect();
        let asked = !ips.is_empty();
        for ip in ips {
            let state = match self.proto.create_permission(TransportType::Udp, ip, t) {
                Ok(()) => Permission::Pending,
                Err(CreatePermissionError::AlreadyExists) => {
                    if self.proto.have_permission(TransportType::Udp, ip) {
                        Permission::Installed
                    } else {
                        Permission::Pending
                    }
                }
                Err(e) => {
                    tracing::debug!(%ip, error = %e, "TURN permission not requested");
                    Permission::Refused {
                        retry_at: now + PERMISSION_RETRY,
                    }
                }
            };
            self.peers.set_permission(ip, state);
        }
        asked
    }

    /// On UDP, a channel for each address on `ip` that has none yet (4 bytes of framing per
    /// packet instead of 36).
    fn bind_channels(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.transport != TurnTransport::Udp {
            return false;
        }
        let t = self.clock.proto_of(now);
        let mut asked = false;
        for addr in self.peers.take_unchanneled(ip) {
            match self.proto.bind_channel(TransportType::Udp, addr, t) {
                Ok(()) => asked = true,
                // Send indications carry the media meanwhile.
                Err(BindChannelError::AlreadyExists) => {}
                Err(e) => tracing::debug!(%addr, error = %e, "TURN channel not bound"),
            }
        }
        asked
    }

    fn send_now(
        &mut self,
        peer: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), TurnError> {
        if !self.out.has_room() {
            return Err(TurnError::QueueFull);
        }
        let t = self.clock.proto_of(now);
        match self.proto.send_to(TransportType::Udp, peer, payload, t) {
            Ok(Some(build)) => {
                self.write_media(build);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(SendError::NoPermission) => {
                // The crate let the permission lapse (refresh refused or expired): ask again.
                self.peers.set_permission(peer.ip(), Permission::Wanted);
                self.peers.hold(peer, payload, now);
                self.kick |= self.request_permissions(now);
                Ok(())
            }
            Err(e) => Err(TurnError::Send(e.to_string())),
        }
    }

    fn write_media(&mut self, build: TransmitBuild<DelayedMessageOrChannelSend<&[u8]>>) {
        if let Err(reason) = self.link.write_media(&mut self.out, build) {
            self.fail(reason);
        }
    }

    /// Control messages from the crate (requests, refreshes, its responses).
    fn write_control(&mut self, bytes: &[u8]) {
        if self.state == State::Allocating {
            self.errors.outgoing(bytes);
        }
        if let Err(reason) = self.link.write_control(&mut self.out, bytes) {
            self.fail(reason);
        }
    }

    /// Lets the crate run its timers and collects what it has to send and to say.
    fn drive(&mut self, now: Instant) {
        self.kick = false;
        let t = self.clock.proto_of(now);
        for _ in 0..MAX_ROUNDS {
            if self.is_closed() {
                break;
            }
            let ret = self.proto.poll(t);
            let mut progress = false;
            while let Some(transmit) = self.proto.poll_transmit(t) {
                self.write_control(&transmit.data);
                progress = true;
            }
            while let Some(event) = self.proto.poll_event() {
                self.on_event(event, now);
                progress = true;
            }
            match ret {
                TurnPollRet::WaitUntil(at) => {
                    let at = self.clock.std_of(at);
                    self.proto_wake = Some(if at <= now && !progress {
                        now + MIN_WAKE
                    } else {
                        at.max(now)
                    });
                    if !progress || at > now {
                        break;
                    }
                }
                TurnPollRet::Closed => {
                    self.on_proto_closed();
                    break;
                }
                // Only for TCP allocations (RFC 6062), which this client never asks for.
                TurnPollRet::AllocateTcpSocket { .. } | TurnPollRet::TcpClose { .. } => {}
            }
        }
        if self.state == State::Allocating && self.errors.credentials_rejected() {
            self.fail("allocation refused: 401 Unauthorized (credentials rejected)".to_owned());
        }
        if self.deadline.is_some_and(|d| now >= d) {
            match self.state {
                State::Allocating => self.fail(format!(
                    "no allocation within {} s{}",
                    ALLOCATE_TIMEOUT.as_secs(),
                    self.errors
                        .last()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                )),
                State::Closing => self.finish_closed(),
                _ => self.deadline = None,
            }
        }
        self.peers.expire(now);
        self.link.flush(&mut self.out);
    }

    fn on_event(&mut self, event: ProtoEvent, now: Instant) {
        match event {
            ProtoEvent::AllocationCreated(_, relayed) => {
                if self.state != State::Allocating {
                    return;
                }
                tracing::debug!(server = %self.server, transport = %self.transport, %relayed, "TURN allocation granted");
                self.state = State::Allocated;
                self.relayed = Some(relayed);
                self.deadline = None;
                self.errors.granted();
                self.events.push_back(TurnEvent::Allocated { relayed });
                self.request_permissions(now);
            }
            ProtoEvent::AllocationCreateFailed(_) => {
                if matches!(self.state, State::Allocating | State::Allocated) {
                    let why = self
                        .errors
                        .last()
                        .unwrap_or("no acceptable answer")
                        .to_owned();
                    self.fail(format!("allocation refused: {why}"));
                }
            }
            ProtoEvent::PermissionCreated(_, ip) => {
                self.peers.set_permission(ip, Permission::Installed);
                self.bind_channels(ip, now);
                for held in self.peers.take_held(ip) {
                    if let Err(e) = self.send_now(held.peer, &held.data, now) {
                        tracing::debug!(peer = %held.peer, error = %e, "held TURN data dropped");
                    }
                }
            }
            ProtoEvent::PermissionCreateFailed(_, ip) => {
                if self.state != State::Allocated {
                    return;
                }
                tracing::info!(server = %self.server, %ip, reason = ?self.errors.last(), "TURN permission refused or lapsed");
                self.peers.set_permission(
                    ip,
                    Permission::Refused {
                        retry_at: now + PERMISSION_RETRY,
                    },
                );
                self.peers.drop_held(ip);
                self.events
                    .push_back(TurnEvent::PermissionFailed { peer: ip });
            }
            ProtoEvent::ChannelCreated(_, peer) => {
                tracing::trace!(%peer, "TURN channel bound");
            }
            ProtoEvent::ChannelCreateFailed(_, peer) => {
                tracing::debug!(%peer, "TURN channel not bound or lapsed; Send indications carry on");
            }
            ProtoEvent::TcpConnected(_) | ProtoEvent::TcpConnectFailed(_) => {}
        }
    }

    fn on_proto_closed(&mut self) {
        match self.state {
            State::Closing => self.finish_closed(),
            State::Allocating => {
                let why = self.errors.last().unwrap_or("no answer").to_owned();
                self.fail(format!("allocation refused: {why}"));
            }
            State::Allocated => {
                let why = self
                    .errors
                    .last()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                self.fail(format!("allocation lost: refresh failed or expired{why}"));
            }
            State::Closed | State::Failed => {}
        }
    }

    fn finish_closed(&mut self) {
        self.state = State::Closed;
        self.relayed = None;
        self.deadline = None;
        self.peers.clear();
        self.link.close(&mut self.out);
    }

    fn fail(&mut self, reason: String) {
        if self.is_closed() {
            return;
        }
        tracing::warn!(server = %self.server, transport = %self.transport, %reason, "TURN allocation failed");
        self.finish_closed();
        self.state = State::Failed;
        self.events.push_back(TurnEvent::Failed(reason));
    }
}
