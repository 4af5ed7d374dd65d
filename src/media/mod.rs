//! Media: the WebRTC peer of the carrier leg (`webrtc_peer`), the plain RTP leg toward the PBX
//! (`rtp_leg`: port pairs from the configured range, `pbx_sdp`: its SDP), RTP header handling
//! (`rtp`), and the relay between the two legs (`relay`).

pub mod pbx_sdp;
pub mod relay;
pub mod rtp;
pub mod rtp_leg;
pub mod webrtc_peer;
