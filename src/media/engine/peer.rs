//! One call's WebRTC state on str0m, sans-IO: the `Rtc` in RTP mode with G.711 and
//! telephone-event only (no header extensions, no congestion-control feedback: a G.711 relay
//! uses none), the SDP offer/answer of the carrier leg (complete, non-trickle), the negotiated
//! format and direction, and the outgoing RTP stream. Sockets, candidates' discovery and the
//! relay live elsewhere; this owns what str0m is told and asked.

use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec as StrCodec, CodecConfig, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Direction as StrDirection, Frequency, MediaKind, Mid, Pt};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::media::sdp_text::{finish_local_sdp, first_audio_mid, sdp_audio_direction, setup_role};
use crate::media::{AudioFormat, Codec, Direction, PeerError, TELEPHONE_EVENT_PT};

/// How often str0m reports per-stream statistics (loss, jitter, RTT) for the quality figures.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// ICE pacing for one peer.
#[derive(Debug, Clone, Copy)]
pub struct IceTiming {
    pub initial_rto: Duration,
    pub max_retransmits: usize,
}

pub struct WebRtcPeer {
    rtc: Rtc,
    mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    format: Option<AudioFormat>,
    /// Our negotiated direction lets us send (the remote receives).
    may_send: bool,
    /// Extended sequence number of the last packet written (the SRTP ROC lives in its high bits).
    last_seq: Option<u64>,
}

impl std::fmt::Debug for WebRtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcPeer")
            .field("mid", &self.mid)
            .field("format", &self.format)
            .finish()
    }
}

impl WebRtcPeer {
    /// A peer offering or accepting `codecs` (in that order) plus telephone-event/8000.
    pub fn new(codecs: &[Codec], timing: IceTiming, now: Instant) -> Self {
        let mut config = RtcConfig::new()
            .clear_codecs()
            .clear_extension_map()
            .set_rtp_mode(true)
            .set_stats_interval(Some(STATS_INTERVAL));
        config.set_initial_stun_rto(timing.initial_rto);
        config.set_max_stun_retransmits(timing.max_retransmits);
        let mut params: Vec<PayloadParams> = codecs
            .iter()
            .map(|c| match c {
                Codec::Pcmu => audio_params(0, StrCodec::PCMU, FormatParams::default()),
                Codec::Pcma => audio_params(8, StrCodec::PCMA, FormatParams::default()),
            })
            .collect();
        params.push(audio_params(
            TELEPHONE_EVENT_PT,
            StrCodec::Tele,
            FormatParams::parse_line("0-16"),
        ));
        *config.codec_config() = CodecConfig::new_from_payload_params(params);
        WebRtcPeer {
            rtc: config.build(now),
            mid: None,
            pending: None,
            format: None,
            may_send: false,
            last_seq: None,
        }
    }

    pub fn rtc(&mut self) -> &mut Rtc {
        &mut self.rtc
    }

    pub fn add_local_candidate(&mut self, c: Candidate) {
        self.rtc.add_local_candidate(c);
    }

    /// Our ICE username fragment (what the remote's checks carry before the colon).
    pub fn local_ufrag(&mut self) -> String {
        self.rtc.direct_api().local_ice_credentials().ufrag
    }

    pub fn format(&self) -> Option<AudioFormat> {
        self.format
    }

    /// A first offer or a re-offer with `direction`; the answer goes to [`Self::accept_answer`].
    pub fn create_offer(&mut self, direction: Direction) -> Result<String, PeerError> {
        let mut api = self.rtc.sdp_api();
        match self.mid {
            None => {
                let mid = api.add_media(MediaKind::Audio, direction.into(), None, None, None);
                self.mid = Some(mid);
            }
            Some(mid) => api.set_direction(mid, direction.into()),
        }
        if matches!(direction, Direction::RecvOnly | Direction::Inactive) {
            self.may_send = false;
        }
        let (offer, pending) = match api.apply() {
            Some(v) => v,
            // Nothing changed (the same direction again): offer the current session anew.
            None => {
                let mut api = self.rtc.sdp_api();
                api.ice_restart(true);
                api.apply().ok_or(PeerError::NoLocalDescription)?
            }
        };
        self.pending = Some(pending);
        Ok(finish_local_sdp(&offer.to_sdp_string()))
    }

    /// Applies the remote answer to our pending offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<AudioFormat, PeerError> {
        if self.pending.is_none() {
            return Err(PeerError::NoPendingOffer);
        }
        // Refused before the pending offer is taken, so a refused answer leaves the offer
        // waiting for a usable one (as a failed setRemoteDescription does in JSEP).
        if setup_role(sdp).as_deref() == Some("actpass") {
            // Both sides would wait for the other to start DTLS (RFC 5763 5: an answer picks).
            return Err(PeerError::BadSdp("answer with a=setup:actpass".into()));
        }
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| PeerError::BadSdp(e.to_string()))?;
        let pending = self.pending.take().ok_or(PeerError::NoPendingOffer)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| PeerError::WebRtc(e.to_string()))?;
        self.refresh(sdp, None)
    }

    /// Answers a remote offer (the first one or a re-offer); `codec` narrows the choice.
    pub fn accept_offer(
        &mut self,
        sdp: &str,
        codec: Option<Codec>,
    ) -> Result<(String, AudioFormat), PeerError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| PeerError::BadSdp(e.to_string()))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| PeerError::WebRtc(e.to_string()))?;
        if self.mid.is_none() {
            self.mid = first_audio_mid(sdp).map(|m| Mid::from(m.as_str()));
        }
        let format = self.refresh(sdp, codec)?;
        Ok((finish_local_sdp(&answer.to_sdp_string()), format))
    }

    /// Reads the negotiated codec and telephone-event PT and whether we may send.
    fn refresh(
        &mut self,
        remote_sdp: &str,
        codec: Option<Codec>,
    ) -> Result<AudioFormat, PeerError> {
        let mid = self.mid.ok_or(PeerError::NoTransceiver)?;
        let media = self.rtc.media(mid).ok_or(PeerError::NoTransceiver)?;
        let remote_pts: Vec<Pt> = media.remote_pts().to_vec();
        let our_dir = media.direction();
        let config = self.rtc.codec_config();
        let mut chosen: Option<Codec> = None;
        let mut event = None;
        for pt in &remote_pts {
            let Some(p) = config.find(|p| p.pt() == *pt) else {
                continue;
            };
            let spec = p.spec();
            match spec.codec {
                StrCodec::PCMU if chosen.is_none() && codec != Some(Codec::Pcma) => {
                    chosen = Some(Codec::Pcmu)
                }
                StrCodec::PCMA if chosen.is_none() && codec != Some(Codec::Pcmu) => {
                    chosen = Some(Codec::Pcma)
                }
                StrCodec::Tele if spec.clock_rate == Frequency::EIGHT_KHZ => event = Some(**pt),
                _ => {}
            }
        }
        // A hold re-offer may list no codecs str0m keeps: the call's codec stays.
        let codec = chosen
            .or(self.format.map(|f| f.codec))
            .ok_or(PeerError::NoCommonCodec)?;
        let format = AudioFormat {
            codec,
            telephone_event_pt: event.or(self.format.and_then(|f| f.telephone_event_pt)),
        };
        let remote = sdp_audio_direction(remote_sdp);
        self.may_send = matches!(our_dir, StrDirection::SendRecv | StrDirection::SendOnly)
            && matches!(remote, Direction::SendRecv | Direction::RecvOnly);
        self.format = Some(format);
        Ok(format)
    }

    /// Writes one RTP packet toward the carrier (sent on the next poll). `seq` is the 16-bit
    /// sequence number the receiver sees; its rollover is tracked here.
    pub fn write_rtp(
        &mut self,
        pt: u8,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        now: Instant,
    ) -> bool {
        let Some(mid) = self.mid else { return false };
        if !self.may_send {
            return false;
        }
        let ext = extend_seq(self.last_seq, seq);
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let write =
            RtpWrite::new(pt.into(), SeqNo::from(ext), timestamp, now, payload).marker(marker);
        tx.write_rtp(write);
        self.last_seq = Some(ext);
        true
    }
}

/// One 8 kHz audio payload type without transport-cc feedback: str0m announces it for every
/// codec by default, but G.711 cannot adapt its rate to congestion and no TWCC header
/// extension is negotiated to carry it.
fn audio_params(pt: u8, codec: StrCodec, format: FormatParams) -> PayloadParams {
    let spec = CodecSpec {
        codec,
        clock_rate: Frequency::EIGHT_KHZ,
        channels: None,
        format,
    };
    let mut p = PayloadParams::new(pt.into(), None, spec);
    p.set_fb_transport_cc(false);
    p
}

/// RFC 3550 A.1 style extension of a 16-bit sequence number next to the previous one.
fn extend_seq(last: Option<u64>, seq: u16) -> u64 {
    let Some(last) = last else {
        return u64::from(seq);
    };
    let roc = last >> 16;
    let last16 = (last & 0xffff) as u16;
    let delta = seq.wrapping_sub(last16);
    if delta < 0x8000 {
        // forward (possibly across a wrap)
        if seq < last16 {
            ((roc + 1) << 16) | u64::from(seq)
        } else {
            (roc << 16) | u64::from(seq)
        }
    } else if seq > last16 && roc > 0 {
        // backward across a wrap: a late packet of the previous cycle
        ((roc - 1) << 16) | u64::from(seq)
    } else {
        (roc << 16) | u64::from(seq)
    }
}

impl From<Direction> for StrDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::SendRecv => StrDirection::SendRecv,
            Direction::SendOnly => StrDirection::SendOnly,
            Direction::RecvOnly => StrDirection::RecvOnly,
            Direction::Inactive => StrDirection::Inactive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_is_g711_and_events_only_with_no_extensions_or_feedback() {
        let now = Instant::now();
        let timing = IceTiming {
            initial_rto: Duration::from_millis(50),
            max_retransmits: 5,
        };
        let mut p = WebRtcPeer::new(&[Codec::Pcma, Codec::Pcmu], timing, now);
        let host = "127.0.0.1:40000".parse().unwrap();
        p.add_local_candidate(Candidate::host(host, "udp").unwrap());
        let sdp = p.create_offer(Direction::SendRecv).unwrap();
        let mline = sdp.lines().find(|l| l.starts_with("m=audio")).unwrap();
        assert!(mline.ends_with(" 8 0 101"), "{mline}");
        for absent in ["extmap", "transport-cc", "goog-remb", "trickle", "opus"] {
            assert!(!sdp.contains(absent), "{absent} in\n{sdp}");
        }
        for present in [
            "a=rtpmap:101 telephone-event/8000",
            "a=setup:actpass",
            "a=fingerprint:sha-256",
            "a=rtcp-mux",
            "a=end-of-candidates",
            "127.0.0.1 40000 typ host",
        ] {
            assert!(sdp.contains(present), "{present} missing in\n{sdp}");
        }
    }

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        assert_eq!(extend_seq(None, 65535), 65535);
        assert_eq!(extend_seq(Some(65535), 0), 65536);
        assert_eq!(extend_seq(Some(65536), 65535), 65535);
        assert_eq!(extend_seq(Some(65536 + 10), 11), 65536 + 11);
        assert_eq!(extend_seq(Some(5), 3), 3);
    }
}
