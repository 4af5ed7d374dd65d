//! The SIP transaction layer (RFC 3261 section 17, with RFC 6026's Accepted state), as I/O-free
//! state machines: requests, responses and `Instant`s go in; datagrams to send, timeouts and
//! events come out. Timers A-K, L and M are deadlines held in one heap, never sleeps.
//!
//! Server side: a retransmitted request is absorbed and answered with the last response; it never
//! reaches the transaction user twice. Client side: requests are retransmitted until answered,
//! time out with an event, and a non-2xx final response to an INVITE is ACKed here.

mod client;
mod key;
mod server;
mod timers;

pub use client::{ClientRx, ClientTransactions};
pub use key::TxKey;
pub use server::{ServerRx, ServerTransactions};
pub use timers::TransactionTimers;

use std::net::SocketAddr;
use std::sync::Arc;

/// Identifies one transaction for its whole life (keys can be reused by a misbehaving peer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

impl TxId {
    /// The id after this one.
    pub fn next(self) -> TxId {
        TxId(self.0 + 1)
    }
}

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A datagram the transaction layer wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub bytes: Arc<[u8]>,
}

/// Something the transaction user must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    Transmit(Transmit),
    /// Timer H: an INVITE server transaction sent a non-2xx final response and no ACK came.
    ServerNoAck {
        id: TxId,
    },
    /// Timer B or F: a client transaction got no final response (the TU acts as on a 408).
    ClientTimeout {
        id: TxId,
    },
}
