//! Media: the WebRTC peer of the carrier leg (`webrtc_peer`). The PBX-side RTP leg and the relay
//! between the two come with the calls.

pub mod webrtc_peer;
