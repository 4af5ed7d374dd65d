//! One TURN allocation of a call, on the media thread: the socket toward the TURN server (UDP,
//! or a non-blocking TCP stream for `turn:?transport=tcp` and `turns:`) driven by the sans-IO
//! client in `media::turn`. Bytes from the server go in; data the server relays from peers comes
//! out into a reusable arena for the call to hand to str0m as received on the relayed address;
//! what str0m sends from the relayed address goes through the client. A stream's unwritten
//! bytes wait here until the socket is writable again.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use super::servers::TurnTarget;
use crate::media::turn::{TurnClient, TurnEvent, TurnTransport, MAX_TRANSMIT};

/// Largest chunk of a TCP/TLS stream handed to the client at once.
const STREAM_CHUNK: usize = 1024;

enum LinkSocket {
    Udp(mio::net::UdpSocket),
    Stream {
        stream: mio::net::TcpStream,
        /// Bytes the kernel did not take yet, oldest first.
        unsent: Vec<u8>,
        writable_wanted: bool,
    },
}

/// Where a link stands in the call's gathering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Allocating,
    Allocated(SocketAddr),
    Failed,
}

pub struct TurnLink {
    client: TurnClient,
    socket: LinkSocket,
    token: Token,
    pub state: LinkState,
    pub local: SocketAddr,
    pub url: String,
    out: Box<[u8; MAX_TRANSMIT]>,
    /// Relayed datagrams of the last read: (peer, start, end) into `arena`.
    pub delivered: Vec<(SocketAddr, usize, usize)>,
    pub arena: Vec<u8>,
}

impl TurnLink {
    /// Opens the socket toward the server (a TCP connect is started, not waited for) and the
    /// client; its first request is queued.
    pub fn open(
        target: &TurnTarget,
        bind: std::net::IpAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> std::io::Result<TurnLink> {
        let (mut socket, local) = match target.url.transport {
            TurnTransport::Udp => {
                let s = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))?;
                s.set_nonblocking(true)?;
                let local = s.local_addr()?;
                (LinkSocket::Udp(mio::net::UdpSocket::from_std(s)), local)
            }
            TurnTransport::Tcp | TurnTransport::Tls => {
                let stream = mio::net::TcpStream::connect(target.server)?;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr()?;
                (
                    LinkSocket::Stream {
                        stream,
                        unsent: Vec::new(),
                        writable_wanted: true,
                    },
                    local,
                )
            }
        };
        match &mut socket {
            LinkSocket::Udp(s) => registry.register(s, token, Interest::READABLE)?,
            LinkSocket::Stream { stream, .. } => {
                registry.register(stream, token, Interest::READABLE | Interest::WRITABLE)?
            }
        }
        let client = TurnClient::new(
            target.url.transport,
            local,
            target.server,
            &target.server_name,
            &target.credentials,
            tls,
            now,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(TurnLink {
            client,
            socket,
            token,
            state: LinkState::Allocating,
            local,
            url: target.url.to_string(),
            out: Box::new([0; MAX_TRANSMIT]),
            delivered: Vec::new(),
            arena: Vec::new(),
        })
    }

    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            LinkState::Allocated(a) => Some(a),
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// The socket is readable (or writable): reads what is there, collects relayed data into
    /// `delivered`/`arena`, writes what is queued. Returns events for the call.
    pub fn on_ready(
        &mut self,
        buf: &mut [u8],
        now: Instant,
        registry: &Registry,
    ) -> Vec<TurnEvent> {
        self.delivered.clear();
        self.arena.clear();
        let TurnLink {
            client,
            socket,
            delivered,
            arena,
            ..
        } = self;
        let mut deliver = |peer: SocketAddr, payload: &[u8]| {
            let start = arena.len();
            arena.extend_from_slice(payload);
            delivered.push((peer, start, arena.len()));
        };
        match socket {
            LinkSocket::Udp(s) => loop {
                match s.recv_from(buf) {
                    Ok((n, from)) if from == client.server_addr() => {
                        client.handle_input(&buf[..n], now, &mut deliver)
                    }
                    Ok(_) => {} // not the server: dropped
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            },
            LinkSocket::Stream { stream, .. } => loop {
                let cap = buf.len().min(STREAM_CHUNK);
                match stream.read(&mut buf[..cap]) {
                    Ok(0) => {
                        client.handle_disconnect();
                        break;
                    }
                    Ok(n) => client.handle_input(&buf[..n], now, &mut deliver),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::NotConnected => break,
                    Err(_) => {
                        client.handle_disconnect();
                        break;
                    }
                }
            },
        }
        self.flush(now, registry)
    }

    pub fn on_timeout(&mut self, now: Instant, registry: &Registry) -> Vec<TurnEvent> {
        self.client.handle_timeout(now);
        self.flush(now, registry)
    }

    pub fn add_permission(&mut self, peer: SocketAddr, now: Instant, registry: &Registry) {
        if let Err(e) = self.client.add_permission(peer, now) {
            tracing::debug!(%peer, error = %e, "TURN permission not asked");
        }
        let _ = self.flush(now, registry);
    }

    /// str0m sends `data` from the relayed address to `peer`.
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8], now: Instant, registry: &Registry) {
        if let Err(e) = self.client.send_to(peer, data, now) {
            tracing::trace!(%peer, error = %e, "not relayed through TURN");
        }
        let _ = self.flush(now, registry);
    }

    /// Deallocation at call end (best effort: sent, not waited for).
    pub fn close(&mut self, now: Instant, registry: &Registry) {
        self.client.close(now);
        let _ = self.flush(now, registry);
        match &mut self.socket {
            LinkSocket::Udp(s) => {
                let _ = registry.deregister(s);
            }
            LinkSocket::Stream { stream, .. } => {
                let _ = registry.deregister(stream);
            }
        }
    }

    /// Writes what the client queued, then reports its events.
    fn flush(&mut self, _now: Instant, registry: &Registry) -> Vec<TurnEvent> {
        let server = self.client.server_addr();
        while let Some(n) = self.client.poll_transmit(&mut self.out[..]) {
            match &mut self.socket {
                LinkSocket::Udp(s) => {
                    let _ = s.send_to(&self.out[..n], server);
                }
                LinkSocket::Stream { unsent, .. } => unsent.extend_from_slice(&self.out[..n]),
            }
        }
        if let LinkSocket::Stream {
            stream,
            unsent,
            writable_wanted,
        } = &mut self.socket
        {
            while !unsent.is_empty() {
                match stream.write(unsent) {
                    Ok(0) => break,
                    Ok(n) => {
                        unsent.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // Not connected yet or the kernel buffer is full: wait for writable.
                    Err(_) => break,
                }
            }
            let want = !unsent.is_empty();
            if want != *writable_wanted {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let _ = registry.reregister(stream, self.token, interest);
                *writable_wanted = want;
            }
        }
        let mut events = Vec::new();
        while let Some(e) = self.client.poll_event() {
            match &e {
                TurnEvent::Allocated { relayed } => self.state = LinkState::Allocated(*relayed),
                TurnEvent::Failed(_) => self.state = LinkState::Failed,
                _ => {}
            }
            events.push(e);
        }
        events
    }
}
