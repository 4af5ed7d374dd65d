//! Media: the WebRTC peer of the carrier leg (`webrtc_peer`), the plain RTP leg toward the PBX
//! (`rtp_leg`: port pairs from the configured range), RTP header handling (`rtp`), and the
//! relay between the two legs (`relay`).

pub mod relay;
pub mod rtp;
pub mod rtp_leg;
pub mod webrtc_peer;
