//! TURN (RFC 8656) and STUN Binding (RFC 5389) clients for the media engine, sans-IO: the engine
//! owns the sockets and the poll loop and feeds bytes and `Instant`s in; these types hand back
//! bytes to write, events and the next deadline. No sockets, threads or async here.
//!
//! - [`TurnClient`] (`client`): one allocation on one TURN server over UDP, TCP or TLS, its
//!   refreshes, the permissions (and on UDP the channels) for the call's peers, and the
//!   wrapping/unwrapping of relayed media. The TURN protocol itself is `turn-client-proto`'s.
//! - [`TurnUrl`] (`url`): `turn:`/`turns:` URLs (RFC 7065) as the carrier hands them out.
//! - [`StunBinding`] (`binding`): one Binding transaction for a server-reflexive candidate.
//! - [`classify`] (`demux`): first-byte demultiplexing of what arrives on a media socket.
//!
//! How the engine drives a [`TurnClient`] (one per call and TURN URL):
//! - connect the socket (UDP, or TCP for `tcp`/`turns`), then [`TurnClient::new`]; write out
//!   [`TurnClient::poll_transmit`] whenever it yields, feed what the socket reads to
//!   [`TurnClient::handle_input`], call [`TurnClient::handle_timeout`] at
//!   [`TurnClient::poll_timeout`], and [`TurnClient::handle_disconnect`] on a stream's EOF;
//! - on [`TurnEvent::Allocated`], add `Candidate::relayed(relayed, local, "udp")` to str0m (the
//!   relayed leg is UDP whatever the link to the server is) and call
//!   [`TurnClient::add_permission`] for each of the remote candidates before ICE starts;
//! - str0m's transmits whose source is the relayed address go to [`TurnClient::send_to`];
//!   what `handle_input` delivers is str0m input received on the relayed address;
//! - [`TurnEvent::Failed`]: drop the candidate, the client and its socket; at call end
//!   [`TurnClient::close`], drain `poll_transmit`, drop once [`TurnClient::is_closed`].

mod binding;
mod client;
mod clock;
mod demux;
mod errors;
mod framing;
mod link;
mod outq;
mod peers;
mod tls;
mod url;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod fake_server;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use binding::{BindingResult, StunBinding, BINDING_FINAL_WAIT, BINDING_TRANSMISSIONS};
pub use client::TurnClient;
pub use demux::{classify, PacketKind};
pub use url::{TurnUrl, TurnUrlError};

/// Largest payload [`TurnClient::send_to`] relays: str0m's datagrams are MTU-sized, so anything
/// near this is a bug upstream, not media.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// A buffer of this size always holds one datagram from [`TurnClient::poll_transmit`] (payload
/// plus the largest Send-indication framing).
pub const MAX_TRANSMIT: usize = MAX_PAYLOAD + 64;
/// An allocation not granted by then (TLS handshake and authentication included) fails, so a
/// call does not wait on the crate's ~40 s STUN transaction timeout.
pub const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`TurnClient::close`] waits for the server to confirm the deallocation.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Distinct peer addresses one allocation serves (a call's remote ICE candidates).
pub const MAX_PEERS: usize = 16;

/// How the client reaches the TURN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    /// UDP (`turn:`, or `?transport=udp`).
    Udp,
    /// TCP (`turn:` with `?transport=tcp`).
    Tcp,
    /// TLS over TCP (`turns:`).
    Tls,
}

impl fmt::Display for TurnTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
            TurnTransport::Tls => "tls",
        })
    }
}

/// Long-term credentials (RFC 8489 9.2) from the carrier subscription.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// The username the carrier issued.
    pub username: String,
    /// Its password (never logged).
    pub password: String,
}

impl fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs; the password must not.
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a [`TurnClient`] reports to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The relayed address to offer as a relay candidate.
    Allocated {
        /// The relayed transport address the server allocated.
        relayed: SocketAddr,
    },
    /// The server refused (or stopped refreshing) the permission for this peer IP; data for it
    /// is dropped. A later `add_permission`/`send_to` for it asks again after a back-off.
    PermissionFailed {
        /// The peer whose permission failed.
        peer: IpAddr,
    },
    /// The allocation is unusable (refused, timed out, lost, or the link broke); the client sends
    /// nothing more and the engine can drop it and its socket.
    Failed(String),
}

/// Errors at the API boundary; none of them leaves the client in a broken state.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// The local socket and the server are of different IP families.
    #[error("local address {local} and TURN server {server} are of different IP families")]
    AddressFamily {
        /// Our socket's address.
        local: SocketAddr,
        /// The server's.
        server: SocketAddr,
    },
    /// `turns:` without a TLS configuration.
    #[error("a TLS TURN server needs a rustls client configuration")]
    TlsConfigMissing,
    /// The server's host is no TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused to start the session.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// A payload longer than [`MAX_PAYLOAD`].
    #[error("payload of {len} bytes is larger than {MAX_PAYLOAD}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
    },
    /// A peer of another IP family than the allocation.
    #[error("peer {0} is not IPv4, and the allocation is")]
    PeerFamily(SocketAddr),
    /// [`MAX_PEERS`] peers are served already.
    #[error("already serving {MAX_PEERS} peers")]
    TooManyPeers,
    /// The server refused this peer's permission; asked again after a back-off.
    #[error("the server refused the permission for {0}; retrying later")]
    PermissionRefused(IpAddr),
    /// The output queue toward the server is full.
    #[error("the queue toward the TURN server is full")]
    QueueFull,
    /// The client is closed or failed.
    #[error("the TURN client is closed or has failed")]
    Closed,
    /// The protocol crate refused to send.
    #[error("TURN send: {0}")]
    Send(String),
}
