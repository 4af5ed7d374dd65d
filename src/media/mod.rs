//! Media: the WebRTC peer of the carrier leg (`webrtc_peer`), the plain RTP leg toward the PBX
//! (`rtp_leg`: port pairs from the configured range, `pbx_sdp`: its SDP), RTP header handling
//! (`rtp`), the relay between the two legs (`relay`), and the sans-IO TURN/STUN clients of the
//! media engine (`turn`).

pub mod pbx_sdp;
pub mod relay;
pub mod rtp;
pub mod rtp_leg;
pub mod turn;
pub mod webrtc_peer;
