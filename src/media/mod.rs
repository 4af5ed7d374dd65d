//! Media: the WebRTC peer of the carrier leg (`webrtc_peer`) and the SDP toward the PBX
//! (`pbx_sdp`). The PBX-side RTP leg and the relay between the two come with the calls.

pub mod pbx_sdp;
pub mod webrtc_peer;
