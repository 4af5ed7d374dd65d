//! The byte link between one TURN client and its server: UDP datagrams, or a TCP stream cut
//! into STUN/ChannelData frames, TLS-wrapped for `turns:`. What the socket reads becomes input
//! for `turn-client-proto` (and relayed media for the caller); what the crate writes becomes
//! bytes in the client's output queue. Which crate client fits the link is chosen here too.

use std::net::SocketAddr;
use std::sync::Arc;

use turn_client_proto::api::{
    DelayedMessageOrChannelSend, Transmit, TransmitBuild, TurnClientApi, TurnConfig, TurnRecvRet,
};
use turn_client_proto::client::TurnClient as Proto;
use turn_client_proto::prelude::DelayedTransmitBuild;
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::TransportType;
use turn_client_proto::udp::TurnClientUdp;

use super::errors::ErrorWatch;
use super::framing::StreamFramer;
use super::outq::OutQueue;
use super::tls::{ReadOutcome, TlsLink};
use super::{TurnError, TurnTransport};

/// Peer data the TCP client may still hold after one frame; it holds at most one.
const MAX_POLL_RECV: usize = 8;

#[derive(Debug)]
pub(super) enum Link {
    Udp,
    Tcp(StreamFramer),
    Tls {
        tls: Box<TlsLink>,
        framer: StreamFramer,
        /// One Send indication's plaintext on its way into TLS, reused.
        scratch: Vec<u8>,
    },
}

/// The client's two ends, its server's and its own: `(server, local)`.
pub(super) type Addrs = (SocketAddr, SocketAddr);

impl Link {
    /// The crate's client allocating over `transport`, the link, and the output queue that
    /// fits it (whole datagrams, or a stream). `tls` is required for TLS.
    pub(super) fn open(
        transport: TurnTransport,
        (server, local): Addrs,
        server_name: &str,
        config: TurnConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<(Proto, Link, OutQueue), TurnError> {
        Ok(match transport {
            TurnTransport::Udp => (
                Proto::from(TurnClientUdp::allocate(local, server, config)),
                Link::Udp,
                OutQueue::datagrams(),
            ),
            TurnTransport::Tcp => (
                Proto::from(TurnClientTcp::allocate(local, server, config)),
                Link::Tcp(StreamFramer::default()),
                OutQueue::stream(),
            ),
            TurnTransport::Tls => {
                let tls = TlsLink::new(tls.ok_or(TurnError::TlsConfigMissing)?, server_name)?;
                (
                    Proto::from(TurnClientTcp::allocate(local, server, config)),
                    Link::Tls {
                        tls: Box::new(tls),
                        framer: StreamFramer::default(),
                        scratch: Vec::new(),
                    },
                    OutQueue::stream(),
                )
            }
        })
    }

    /// Bytes read from the server's socket into the crate; relayed media goes to `deliver`.
    /// `Some(reason)` when the link cannot go on (not STUN framed, TLS broken or closed).
    pub(super) fn read(
        &mut self,
        bytes: &[u8],
        proto: &mut Proto,
        errors: &mut ErrorWatch,
        addrs: Addrs,
        t: stun_proto::Instant,
        deliver: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> Option<String> {
        match self {
            Link::Udp => {
                errors.incoming(bytes);
                recv_frame(proto, bytes, TransportType::Udp, addrs, t, deliver);
                None
            }
            Link::Tcp(framer) => {
                framer.push(bytes);
                recv_frames(proto, framer, errors, addrs, t, deliver)
            }
            Link::Tls { tls, framer, .. } => match tls.read(bytes, framer) {
                Err(reason) => Some(reason),
                Ok(outcome) => {
                    recv_frames(proto, framer, errors, addrs, t, deliver).or_else(|| {
                        (outcome == ReadOutcome::PeerClosed)
                            .then(|| "the TURN server closed the TLS session".to_owned())
                    })
                }
            },
        }
    }

    /// Relayed media from the crate into `out`; `Err(reason)` when TLS broke.
    pub(super) fn write_media(
        &mut self,
        out: &mut OutQueue,
        build: TransmitBuild<DelayedMessageOrChannelSend<&[u8]>>,
    ) -> Result<(), String> {
        let len = build.data.len();
        match self {
            Link::Udp | Link::Tcp(_) => {
                build.write_into(out.slot(len));
                Ok(())
            }
            Link::Tls { tls, scratch, .. } => {
                scratch.clear();
                scratch.resize(len, 0);
                build.write_into(scratch);
                let written = tls.write(scratch);
                tls.flush(out);
                written
            }
        }
    }

    /// A control message from the crate (requests, refreshes, its responses) into `out` (on
    /// TLS, into the session until the next flush); `Err(reason)` when TLS broke.
    pub(super) fn write_control(&mut self, out: &mut OutQueue, bytes: &[u8]) -> Result<(), String> {
        match self {
            Link::Udp | Link::Tcp(_) => {
                out.push(bytes);
                Ok(())
            }
            Link::Tls { tls, .. } => tls.write(bytes),
        }
    }

    /// TLS records for what was written go into `out`.
    pub(super) fn flush(&mut self, out: &mut OutQueue) {
        if let Link::Tls { tls, .. } = self {
            tls.flush(out);
        }
    }

    /// The link ends: a TLS session's close_notify goes into `out`.
    pub(super) fn close(&mut self, out: &mut OutQueue) {
        if let Link::Tls { tls, .. } = self {
            tls.close(out);
        }
    }
}

/// Hands one datagram or stream frame to the crate and relayed media to `deliver`.
fn recv_frame(
    proto: &mut Proto,
    frame: &[u8],
    transport: TransportType,
    (server, local): (SocketAddr, SocketAddr),
    t: stun_proto::Instant,
    deliver: &mut impl FnMut(SocketAddr, &[u8]),
) {
    if let TurnRecvRet::PeerData(data) =
        proto.recv(Transmit::new(frame, transport, server, local), t)
    {
        deliver(data.peer, data.data());
    }
    if transport == TransportType::Tcp {
        for _ in 0..MAX_POLL_RECV {
            let Some(data) = proto.poll_recv(t) else {
                break;
            };
            deliver(data.peer, data.data());
        }
    }
}

/// Every whole frame buffered; `Some(reason)` when the stream cannot be STUN/ChannelData.
fn recv_frames(
    proto: &mut Proto,
    framer: &mut StreamFramer,
    errors: &mut ErrorWatch,
    addrs: (SocketAddr, SocketAddr),
    t: stun_proto::Instant,
    deliver: &mut impl FnMut(SocketAddr, &[u8]),
) -> Option<String> {
    loop {
        match framer.next_frame() {
            Ok(Some(range)) => {
                let frame = framer.frame(range);
                errors.incoming(frame);
                recv_frame(proto, frame, TransportType::Tcp, addrs, t, deliver);
            }
            Ok(None) => return None,
            Err(_) => {
                return Some("the TURN server's stream is not STUN/ChannelData framed".to_owned())
            }
        }
    }
}
