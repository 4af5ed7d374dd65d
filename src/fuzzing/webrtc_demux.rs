//! Fuzz target `webrtc_demux`: datagrams from strangers and peers into a shared WebRTC port's
//! demultiplexer and the str0m peers behind it (the driving code is the demultiplexer's own,
//! `media::engine::demux::fuzz_datagrams`).

/// Fuzz target `webrtc_demux`: chunks separated by 0xff, the first byte of each choosing the
/// source address.
pub fn webrtc_demux(data: &[u8]) {
    crate::media::engine::demux::fuzz_datagrams(data);
}
