//! The vocabulary the media engine shares with its callers: codecs, the negotiated format,
//! directions, connection states, ICE servers and peer settings, and the engine's errors.

use std::net::IpAddr;
use std::time::Duration;

/// Payload type we offer for `telephone-event/8000` (an answerer follows the offer's).
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// Errors of the WebRTC leg.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The WebRTC stack refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// The remote SDP cannot be used.
    #[error("unusable SDP: {0}")]
    BadSdp(String),
    /// The remote SDP negotiated no G.711 codec.
    #[error("no common audio codec (PCMU/PCMA) in the negotiated session")]
    NoCommonCodec,
    /// No local description could be produced.
    #[error("no local description")]
    NoLocalDescription,
    /// The session has no audio media.
    #[error("no audio media")]
    NoTransceiver,
    /// An answer arrived with no offer of ours pending.
    #[error("no offer of ours is pending")]
    NoPendingOffer,
    /// The media engine is stopped or the call is gone.
    #[error("the media engine is not running")]
    EngineGone,
    /// No socket could be set up for the call.
    #[error("media socket: {0}")]
    Io(String),
}

/// One ICE server (STUN or TURN).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TURN credential is a secret: never in a log line.
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How one call's WebRTC leg is set up.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// The address our host candidate is on (the media thread's shared socket is bound here).
    pub bind_ip: IpAddr,
    pub ice_servers: Vec<IceServer>,
    /// ICE transport policy `relay`: only TURN candidates are offered and used.
    pub relay_only: bool,
    /// Longest wait for candidates (server-reflexive, relayed) before the SDP goes out with
    /// what exists.
    pub gather_timeout: Duration,
    /// First STUN retransmission timeout of ICE checks (doubles per retry).
    pub ice_check_interval: Duration,
    /// Checks per candidate pair before it is given up.
    pub ice_max_binding_requests: u16,
}

impl PeerSettings {
    /// Settings for production use.
    pub fn new(bind_ip: IpAddr) -> Self {
        Self {
            bind_ip,
            ice_servers: Vec::new(),
            relay_only: false,
            gather_timeout: Duration::from_secs(3),
            ice_check_interval: Duration::from_millis(50),
            ice_max_binding_requests: 9,
        }
    }

    /// Settings for peers on the same host or LAN (tests, the simulator): short check timers,
    /// so set-up stays short.
    pub fn nearby(bind_ip: IpAddr) -> Self {
        Self {
            ice_check_interval: Duration::from_millis(20),
            ..Self::new(bind_ip)
        }
    }
}

/// G.711 codecs (clock 8000, static payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// Static RTP payload type: 0 or 8.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// From an rtpmap encoding name (`PCMU`, `pcma` ...).
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// The negotiated audio format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
}

/// Media direction of the audio stream, for hold/resume re-offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// Connection state of a call's WebRTC leg as the call needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}
