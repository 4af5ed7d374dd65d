//! Media: the engine that owns every call's media (`engine`: media threads, sans-IO WebRTC on
//! str0m, the relay, batched I/O), the PBX side's port pairs (`rtp_leg`) and SDP (`pbx_sdp`),
//! RTP header handling (`rtp`), the relay between the legs (`relay`), the PBX leg's RTCP and
//! the call-quality figures (`quality`), the WebRTC leg's SDP text helpers (`sdp_text`) and the
//! sans-IO TURN/STUN clients the engine drives (`turn`). The shared vocabulary is in `types`.

pub mod engine;
pub mod pbx_sdp;
pub mod quality;
pub mod relay;
pub mod rtp;
pub mod rtp_leg;
pub mod sdp_text;
pub mod turn;
mod types;

pub use sdp_text::{g711_in_sdp, sdp_audio_direction as sdp_direction};
pub use types::{
    AudioFormat, Codec, Direction, IceServer, PeerError, PeerSettings, PeerState,
    TELEPHONE_EVENT_PT,
};
