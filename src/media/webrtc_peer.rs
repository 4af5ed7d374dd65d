//! WebRTC media peer for the carrier leg (webrtc 0.21 / rtc 0.21).
//!
//! This module owns one WebRTC peer connection per call: its ICE (full, non-trickle: it gathers
//! completely, or until `gather_timeout`, before handing out one complete SDP), DTLS-SRTP,
//! rtcp-mux/BUNDLE, a single sendrecv audio transceiver negotiating G.711 (PCMU/PCMA) plus
//! `telephone-event/8000`, the local RTP sending path and the delivery of received RTP and
//! connection-state changes to the caller. It knows nothing about SIP or the carrier's
//! signalling: SDP goes in and out as strings.
//!
//! Both ends of the offer/answer exchange are here: [`MediaPeer::offer`] +
//! [`MediaPeer::accept_answer`] (the gateway calling out) and [`MediaPeer::answer`] (the gateway
//! answering, or the carrier simulator). Mid-call re-offers (hold/resume) are
//! [`MediaPeer::create_reoffer`] / [`MediaPeer::accept_answer`] and [`MediaPeer::answer_reoffer`].
//!
//! RFC 4733 events travel on the same SSRC as the audio with their own negotiated payload type:
//! webrtc 0.21's sender does not rewrite the payload type, it only checks that it is one of the
//! negotiated codecs, so both G.711 and telephone-event packets go through the one track.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    configure_rtcp_reports, MediaEngine, PeerConnection, PeerConnectionBuilder, RTCBundlePolicy,
    RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy, RTCRtcpMuxPolicy,
    RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpTransceiver;

mod events;
mod sdp;
#[cfg(test)]
mod tests;

pub use events::{InRtp, MediaEvent, MediaEvents, PeerState};
pub use sdp::g711_in_sdp;
use sdp::{format_in_sdp, g711, sdp_audio_direction, telephone_event};

/// The audio direction an SDP states (media level first, then session level; sendrecv by
/// default).
pub fn sdp_direction(sdp: &str) -> Direction {
    sdp_audio_direction(sdp)
}

/// Payload type we offer for `telephone-event/8000` (an answerer follows the offer's).
pub const TELEPHONE_EVENT_PT: u8 = 101;

// Bits of `MediaPeer::negotiated` besides the audio PT (bits 0..8) and event PT (bits 8..16).
const HAS_EVENT: u32 = 1 << 16;
const NEGOTIATED: u32 = 1 << 24;
const MAY_SEND: u32 = 1 << 25;

/// Errors of the media peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The WebRTC stack refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// The remote SDP negotiated no G.711 codec.
    #[error("no common audio codec (PCMU/PCMA) in the negotiated session")]
    NoCommonCodec,
    /// The peer has no local description after negotiation.
    #[error("no local description")]
    NoLocalDescription,
    /// The audio transceiver could not be found.
    #[error("no audio transceiver")]
    NoTransceiver,
    /// `send_rtp` was called before negotiation finished.
    #[error("media not negotiated yet")]
    NotNegotiated,
    /// `send_rtp` was given a payload type that is neither the audio nor the event one.
    #[error("payload type {0} is not negotiated")]
    PayloadTypeNotNegotiated(u8),
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

/// How a peer is built.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// UDP host candidates are bound here (port chosen by the OS).
    pub bind_ip: IpAddr,
    pub ice_servers: Vec<IceServer>,
    /// ICE transport policy `relay`: only TURN candidates are used.
    pub relay_only: bool,
    /// Longest wait for ICE gathering to complete; the SDP is sent with what exists after it.
    pub gather_timeout: Duration,
    /// Interval between ICE connectivity checks while connecting (library default 200 ms).
    pub ice_check_interval: Duration,
    /// Checks per candidate pair before it is given up (library default 7). A pair fails after
    /// about `ice_check_interval * ice_max_binding_requests`: keep that above the worst RTT.
    pub ice_max_binding_requests: u16,
}

impl PeerSettings {
    /// Settings for production use: 50 ms checks, a pair given up after ~2 s.
    pub fn new(bind_ip: IpAddr) -> Self {
        Self {
            bind_ip,
            ice_servers: Vec::new(),
            relay_only: false,
            gather_timeout: Duration::from_secs(3),
            ice_check_interval: Duration::from_millis(50),
            ice_max_binding_requests: 40,
        }
    }

    /// Settings for peers on the same host or LAN (tests, the simulator): 20 ms checks, a pair
    /// given up after ~1 s, so set-up stays short.
    pub fn nearby(bind_ip: IpAddr) -> Self {
        Self {
            ice_check_interval: Duration::from_millis(20),
            ice_max_binding_requests: 50,
            ..Self::new(bind_ip)
        }
    }
}

/// G.711 codecs (clock 8000, static payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
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
    fn mime(self) -> &'static str {
        match self {
            Codec::Pcmu => MIME_TYPE_PCMU,
            Codec::Pcma => MIME_TYPE_PCMA,
        }
    }
    fn from_mime(mime: &str) -> Option<Codec> {
        if mime.eq_ignore_ascii_case(MIME_TYPE_PCMU) {
            Some(Codec::Pcmu)
        } else if mime.eq_ignore_ascii_case(MIME_TYPE_PCMA) {
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

impl From<Direction> for RTCRtpTransceiverDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::SendRecv => RTCRtpTransceiverDirection::Sendrecv,
            Direction::SendOnly => RTCRtpTransceiverDirection::Sendonly,
            Direction::RecvOnly => RTCRtpTransceiverDirection::Recvonly,
            Direction::Inactive => RTCRtpTransceiverDirection::Inactive,
        }
    }
}

/// One RTP packet to send. `payload_type` is the negotiated audio PT or the telephone-event PT.
#[derive(Debug, Clone, Copy)]
pub struct OutRtp<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

/// One call's WebRTC media peer.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    /// The negotiated format packed for the send path (see `pack`): 0 until negotiated.
    negotiated: AtomicU32,
    gathered: watch::Receiver<bool>,
    gather_timeout: Duration,
    state: Arc<watch::Sender<PeerState>>,
    closed: AtomicBool,
}

impl MediaPeer {
    /// Gateway side: a peer with one sendrecv audio transceiver offering `codecs` in that order
    /// plus telephone-event/8000; returns the complete (gathered) offer SDP.
    pub async fn offer(
        settings: &PeerSettings,
        codecs: &[Codec],
    ) -> Result<(MediaPeer, String, MediaEvents), PeerError> {
        let first = *codecs.first().ok_or(PeerError::NoCommonCodec)?;
        let (peer, events) = Self::build(settings, codecs, first).await?;
        let track: Arc<dyn TrackLocal> = Arc::clone(&peer.track) as Arc<dyn TrackLocal>;
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendrecv,
            streams: Vec::new(),
            send_encodings: Vec::new(),
        };
        let transceiver = peer
            .pc
            .add_transceiver_from_track(track, Some(init))
            .await?;
        // A track whose encoding names a codec narrows the transceiver to that codec alone:
        // widen it back to the full list, in our order, with telephone-event.
        let mut prefs: Vec<RTCRtpCodecParameters> = codecs.iter().map(|c| g711(*c)).collect();
        prefs.push(telephone_event(TELEPHONE_EVENT_PT));
        transceiver.set_codec_preferences(prefs).await?;
        let offer = peer.pc.create_offer(None).await?;
        peer.pc.set_local_description(offer).await?;
        let sdp = peer.gathered_local_sdp().await?;
        Ok((peer, sdp, events))
    }

    /// Gateway side: applies the remote answer (also to a re-offer); returns the negotiated format.
    pub async fn accept_answer(&self, sdp: &str) -> Result<AudioFormat, PeerError> {
        let desc = RTCSessionDescription::answer(sdp.to_owned())?;
        self.pc.set_remote_description(desc).await?;
        self.refresh_format(sdp).await
    }

    /// Answering side: takes a remote offer, returns the complete (gathered) answer SDP.
    pub async fn answer(
        settings: &PeerSettings,
        offer_sdp: &str,
    ) -> Result<(MediaPeer, String, AudioFormat, MediaEvents), PeerError> {
        Self::answer_with(settings, offer_sdp, None).await
    }

    /// As [`Self::answer`], choosing `codec` when the offer has it (the gateway answering a
    /// carrier call with the codec the PBX picked); `None`: the offer's first G.711.
    pub async fn answer_with(
        settings: &PeerSettings,
        offer_sdp: &str,
        codec: Option<Codec>,
    ) -> Result<(MediaPeer, String, AudioFormat, MediaEvents), PeerError> {
        let offered = g711_in_sdp(offer_sdp);
        let first = match codec {
            Some(c) if offered.contains(&c) => c,
            Some(_) => return Err(PeerError::NoCommonCodec),
            None => *offered.first().ok_or(PeerError::NoCommonCodec)?,
        };
        let codecs: &[Codec] = if codec.is_some() {
            &[first]
        } else {
            &[Codec::Pcmu, Codec::Pcma]
        };
        let (peer, events) = Self::build(settings, codecs, first).await?;
        peer.set_remote_offer(offer_sdp).await?;
        // Re-uses the transceiver the offer created and makes it send as well.
        peer.pc
            .add_track(Arc::clone(&peer.track) as Arc<dyn TrackLocal>)
            .await?;
        let (sdp, format) = peer.finish_answer(offer_sdp).await?;
        Ok((peer, sdp, format, events))
    }

    /// Mid-call re-offer with the given direction (hold: `SendOnly`/`Inactive`; resume:
    /// `SendRecv`). Apply the reply with [`Self::accept_answer`].
    pub async fn create_reoffer(&self, direction: Direction) -> Result<String, PeerError> {
        if matches!(direction, Direction::RecvOnly | Direction::Inactive) {
            // The stack refuses to send from now on; stop before it logs every packet.
            self.negotiated.fetch_and(!MAY_SEND, Ordering::Relaxed);
        }
        self.audio_transceiver()
            .await?
            .set_direction(direction.into())
            .await?;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.gathered_local_sdp().await
    }

    /// Answers a mid-call re-offer from the remote; our direction mirrors theirs.
    pub async fn answer_reoffer(&self, sdp: &str) -> Result<(String, AudioFormat), PeerError> {
        self.set_remote_offer(sdp).await?;
        self.finish_answer(sdp).await
    }

    /// Applies a remote offer. webrtc 0.21 stops a transceiver
    /// whose remote offer is `inactive` (it could never resume), so such an offer is applied as
    /// `sendonly` and the answer made `inactive` by [`Self::finish_answer`].
    async fn set_remote_offer(&self, sdp: &str) -> Result<(), PeerError> {
        let remote = sdp_audio_direction(sdp);
        let sdp = if remote == Direction::Inactive {
            sdp.replace("a=inactive\r\n", "a=sendonly\r\n")
                .replace("a=inactive\n", "a=sendonly\n")
        } else {
            sdp.to_owned()
        };
        let desc = RTCSessionDescription::offer(sdp)?;
        self.pc.set_remote_description(desc).await?;
        Ok(())
    }

    /// Answers with the direction RFC 3264 requires (webrtc 0.21 leaves a sendrecv transceiver
    /// sendrecv when the offer is sendonly), sets the answer and returns it once gathered.
    async fn finish_answer(&self, remote_sdp: &str) -> Result<(String, AudioFormat), PeerError> {
        let remote = sdp_audio_direction(remote_sdp);
        let ours = match remote {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        };
        self.audio_transceiver()
            .await?
            .set_direction(ours.into())
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        let sdp = self.gathered_local_sdp().await?;
        Ok((sdp, self.refresh_format(remote_sdp).await?))
    }

    /// The negotiated format, if negotiation has finished.
    pub fn format(&self) -> Option<AudioFormat> {
        unpack(self.negotiated.load(Ordering::Relaxed))
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sends one RTP packet (audio or telephone-event, keeping its payload type). One copy of
    /// the payload is made (the stack takes an owned `Bytes`); see [`Self::send_rtp_bytes`].
    /// While the remote's SDP says it does not receive (hold), packets are discarded (`Ok`).
    pub async fn send_rtp(&self, pkt: &OutRtp<'_>) -> Result<(), PeerError> {
        let payload = Bytes::copy_from_slice(pkt.payload);
        self.send_rtp_bytes(pkt, payload).await
    }

    /// As [`Self::send_rtp`] with an owned payload (ignores `pkt.payload`): no copy.
    pub async fn send_rtp_bytes(&self, pkt: &OutRtp<'_>, payload: Bytes) -> Result<(), PeerError> {
        let packed = self.negotiated.load(Ordering::Relaxed);
        let format = unpack(packed).ok_or(PeerError::NotNegotiated)?;
        let pt = pkt.payload_type;
        if pt != format.codec.payload_type() && Some(pt) != format.telephone_event_pt {
            return Err(PeerError::PayloadTypeNotNegotiated(pt));
        }
        if packed & MAY_SEND == 0 {
            return Ok(()); // on hold: the remote does not receive
        }
        let packet = Packet {
            header: Header {
                version: 2,
                marker: pkt.marker,
                payload_type: pt,
                sequence_number: pkt.sequence,
                timestamp: pkt.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload,
        };
        self.track.write_rtp(packet).await?;
        Ok(())
    }

    /// Closes the connection (idempotent); the events stream ends with `Closed`. Dropping the
    /// peer without it closes in a spawned task (the stack's driver task would otherwise live on).
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(err) = self.pc.close().await {
            tracing::debug!(%err, "webrtc peer close");
        }
        self.state.send_replace(PeerState::Closed);
    }

    async fn build(
        settings: &PeerSettings,
        codecs: &[Codec],
        track_codec: Codec,
    ) -> Result<(MediaPeer, MediaEvents), PeerError> {
        let mut media = MediaEngine::default();
        for codec in codecs {
            media.register_codec(g711(*codec), RtpCodecKind::Audio)?;
        }
        media.register_codec(telephone_event(TELEPHONE_EVENT_PT), RtpCodecKind::Audio)?;
        let registry = configure_rtcp_reports(Registry::new());
        let setting = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(settings.bind_ip.is_loopback())
            .with_ice_connection_attempts(
                Some(settings.ice_check_interval),
                Some(settings.ice_max_binding_requests),
            )
            .build();
        let ice_servers = settings
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let policy = if settings.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        };
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .with_ice_transport_policy(policy)
            .with_bundle_policy(RTCBundlePolicy::MaxBundle)
            .with_rtcp_mux_policy(RTCRtcpMuxPolicy::Require)
            .build();

        let (handler, events, state_tx, gathered_rx) = events::channels();
        let handler = Arc::new(handler);
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(setting)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![SocketAddr::new(settings.bind_ip, 0)])
            .build()
            .await?;

        let ssrc = random_ssrc();
        let encoding = RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: g711(track_codec).rtp_codec,
            ..Default::default()
        };
        let id = format!("tg-{ssrc:08x}");
        let track = MediaStreamTrack::new(
            id.clone(),
            format!("{id}-audio"),
            "audio".to_owned(),
            RtpCodecKind::Audio,
            vec![encoding],
        );
        let peer = MediaPeer {
            pc: Arc::new(pc),
            track: Arc::new(TrackLocalStaticRTP::new(track)),
            ssrc,
            negotiated: AtomicU32::new(0),
            gathered: gathered_rx,
            gather_timeout: settings.gather_timeout,
            state: state_tx,
            closed: AtomicBool::new(false),
        };
        Ok((peer, events))
    }

    /// Waits for gathering to complete (at most `gather_timeout`), then returns the local SDP.
    async fn gathered_local_sdp(&self) -> Result<String, PeerError> {
        let mut gathered = self.gathered.clone();
        let wait = gathered.wait_for(|done| *done);
        if tokio::time::timeout(self.gather_timeout, wait)
            .await
            .is_err()
        {
            tracing::debug!("ICE gathering not complete after timeout; sending what we have");
        }
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or(PeerError::NoLocalDescription)
    }

    async fn audio_transceiver(&self) -> Result<Arc<dyn RtpTransceiver>, PeerError> {
        self.pc
            .get_transceivers()
            .await
            .into_iter()
            .next()
            .ok_or(PeerError::NoTransceiver)
    }

    /// Reads the negotiated codecs of our sender and stores them for the send path, with
    /// whether the remote (whose latest SDP is `remote_sdp`) accepts our media.
    async fn refresh_format(&self, remote_sdp: &str) -> Result<AudioFormat, PeerError> {
        // A transceiver that does not send hides its sender (webrtc 0.21): keep the codecs
        // negotiated before the hold, or read them from the remote SDP.
        let format = match self.sender_format().await {
            Ok(format) => format,
            Err(err) => self
                .format()
                .or_else(|| format_in_sdp(remote_sdp))
                .ok_or(err)?,
        };
        let remote = sdp_audio_direction(remote_sdp);
        let may_send = matches!(remote, Direction::SendRecv | Direction::RecvOnly);
        self.negotiated
            .store(pack(format, may_send), Ordering::Relaxed);
        Ok(format)
    }

    async fn sender_format(&self) -> Result<AudioFormat, PeerError> {
        let sender = self
            .audio_transceiver()
            .await?
            .sender()
            .await?
            .ok_or(PeerError::NoTransceiver)?;
        let params = sender.get_parameters().await?;
        let codecs = &params.rtp_parameters.codecs;
        let codec = codecs
            .iter()
            .find_map(|c| Codec::from_mime(&c.rtp_codec.mime_type))
            .ok_or(PeerError::NoCommonCodec)?;
        let telephone_event_pt = codecs
            .iter()
            .find(|c| {
                c.rtp_codec
                    .mime_type
                    .eq_ignore_ascii_case(MIME_TYPE_TELEPHONE_EVENT)
                    && c.rtp_codec.clock_rate == 8000
            })
            .map(|c| c.payload_type);
        Ok(AudioFormat {
            codec,
            telephone_event_pt,
        })
    }
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.state.send_replace(PeerState::Closed);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.pc);
            runtime.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

fn pack(f: AudioFormat, may_send: bool) -> u32 {
    let event = f
        .telephone_event_pt
        .map_or(0, |pt| HAS_EVENT | u32::from(pt) << 8);
    let send = if may_send { MAY_SEND } else { 0 };
    send | NEGOTIATED | event | u32::from(f.codec.payload_type())
}

fn unpack(v: u32) -> Option<AudioFormat> {
    if v & NEGOTIATED == 0 {
        return None;
    }
    let codec = if v & 0xff == 8 {
        Codec::Pcma
    } else {
        Codec::Pcmu
    };
    let telephone_event_pt = (v & HAS_EVENT != 0).then_some(((v >> 8) & 0xff) as u8);
    Some(AudioFormat {
        codec,
        telephone_event_pt,
    })
}

fn random_ssrc() -> u32 {
    // RandomState is randomly keyed per process and per instance: enough for an SSRC.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x7472_756e_6b67_6174);
    match h.finish() as u32 {
        0 => 1,
        v => v,
    }
}
