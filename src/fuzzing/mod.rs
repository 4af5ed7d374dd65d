//! Entry points of the cargo-fuzz targets in `fuzz/` (one per target, same names), kept in the
//! library so the normal test suite can replay the committed corpora through exactly the code
//! the fuzzer runs (`fuzz/corpus/<target>/`, see `tests`).
//!
//! Each function takes arbitrary bytes, drives one part of the daemon with them, and panics when
//! an invariant breaks; a panic is what libFuzzer reports as a crash. They do no I/O, read no
//! clock beyond one fixed `Instant` used as the origin of virtual time, and draw no randomness of
//! their own (the code under test still draws its tags, branches and nonces).
//!
//! - [`sip_datagram`]: a few datagrams from a few PBX addresses into an [`Endpoint`](crate::sip::endpoint::Endpoint), with the
//!   call side played by the harness; everything the endpoint sends must parse with our own
//!   parser, timers must settle, and no dialog or timer may outlive the calls.
//! - [`pbx_sdp`]: the PBX SDP parser and the codec negotiation; the SDP we build from what it
//!   read must parse again and mean the same.
//! - [`carrier_json`]: every carrier wire type (REST bodies, WebSocket frames) and the pure
//!   interpretation of notifications; whatever parses must survive serialising and parsing back.
//! - [`webrtc_demux`]: datagrams from strangers and peers into a shared WebRTC port's
//!   demultiplexer and the str0m peers behind it.
//! - [`digest_header`]: the digest credential parser, `nc`, verification against a fixed HA1,
//!   and the client side that answers a PBX's challenge.
//!
//! One file per target family; the origin of virtual time they share is here.

mod carrier_json;
mod digest_header;
mod pbx_sdp;
mod sip_datagram;
mod webrtc_demux;

use std::sync::OnceLock;
use std::time::Instant;

pub use self::carrier_json::carrier_json;
pub use self::digest_header::digest_header;
pub use self::pbx_sdp::pbx_sdp;
pub use self::sip_datagram::{sip_datagram, CHUNK_SEPARATOR};
pub use self::webrtc_demux::webrtc_demux;

/// The origin of virtual time: one `Instant`, read once; only offsets from it matter.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests;
