//! Media: the engine that owns every call's media (`engine`: media threads, sans-IO WebRTC on
//! str0m, the relay, batched I/O), the PBX side's port pairs (`rtp_leg`) and SDP (`pbx_sdp`),
//! RTP header handling (`rtp`), the relay between the legs (`relay`), the PBX leg's RTCP and
//! the call-quality figures (`quality`), the WebRTC leg's SDP text helpers (`sdp_text`) and the
//! sans-IO TURN/STUN clients the engine drives (`turn`). The shared vocabulary is in `types`.

pub(crate) mod engine;
pub(crate) mod pbx_sdp;
pub(crate) mod quality;
pub(crate) mod relay;
pub(crate) mod rtp;
pub(crate) mod rtp_leg;
pub(crate) mod sdp_text;
pub mod turn;
mod types;

pub(crate) use sdp_text::{g711_in_sdp, sdp_audio_direction as sdp_direction};
pub use types::Codec;
pub(crate) use types::{
    AudioFormat, Direction, IceServer, PeerError, PeerSettings, PeerState, TELEPHONE_EVENT_PT,
};
