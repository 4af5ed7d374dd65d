//! trunkgate: a SIP trunk gateway between a PBX and a WebRTC carrier.
//!
//! The protocol logic lives in I/O-free state machines (`sip`); sockets, clocks and tasks sit
//! at the edges (`sip::transport`, `daemon`).

pub mod call;
pub mod carrier;
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
