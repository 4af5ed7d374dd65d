//! trunkgate: a SIP trunk gateway between a PBX and a WebRTC carrier.
//!
//! The protocol logic lives in I/O-free state machines (`sip`); sockets, clocks and tasks sit
//! at the edges (`sip::transport`, `daemon`).
//!
//! The public surface is what the binary, the integration tests, the benches and the fuzz
//! targets use; everything else is `pub(crate)`.

// No module needs `unsafe`: the one system call the standard library lacks (`sendmmsg`) goes
// through rustix's safe wrapper.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod call;
pub(crate) mod carrier;
pub(crate) mod cluster;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod media;
pub mod numbers;
pub mod ops;
pub mod sim;
pub mod sip;
