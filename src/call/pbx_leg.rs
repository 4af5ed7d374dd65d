//! Our side of the PBX dialog's offer/answer: the SDP we write (its `o=` identity and
//! version), the RTP port it names, and the media line last agreed. What the PBX said about its
//! own media goes to the relay, which owns it; nothing is kept here twice.

use std::net::SocketAddr;

use crate::media::pbx_sdp::{self, AudioOffer, LocalSdp, MediaLine, Negotiated};
use crate::media::relay::PbxMedia;
use crate::media::{AudioFormat, Codec, Direction};

#[derive(Debug, Clone)]
pub struct PbxLeg {
    sdp: LocalSdp,
    rtp_port: u16,
    /// Our media line as last agreed.
    line: Option<MediaLine>,
}

impl PbxLeg {
    /// Writes with `sdp`; the port is 0 until [`PbxLeg::set_port`].
    pub fn new(sdp: LocalSdp) -> PbxLeg {
        PbxLeg {
            sdp,
            rtp_port: 0,
            line: None,
        }
    }

    /// The RTP port our SDP names.
    pub fn set_port(&mut self, port: u16) {
        self.rtp_port = port;
    }

    /// Our media line as last agreed.
    pub fn line(&self) -> Option<MediaLine> {
        self.line
    }

    /// `line` is what is agreed now, without an SDP sent for it (the PBX answered our offer
    /// with one codec).
    pub fn agree(&mut self, line: MediaLine) {
        self.line = Some(line);
    }

    /// Renders our SDP for `line`, bumping the version only when it changed.
    pub fn render(&mut self, line: MediaLine) -> String {
        let changed = self.line != Some(line);
        self.line = Some(line);
        self.sdp.render(self.rtp_port, &line, changed)
    }

    /// Our answer's media line for a PBX offer, given the carrier leg's format.
    pub fn answer_line(neg: &Negotiated, format: &AudioFormat, direction: Direction) -> MediaLine {
        MediaLine {
            codec: format.codec,
            audio_pt: neg.audio_pt,
            event_pt: neg.event_pt.filter(|_| format.telephone_event_pt.is_some()),
            direction,
            alternative: None,
        }
    }
}

/// The relay's view of a PBX SDP: where to send, its payload types for `codec` and
/// telephone-event, whether it receives. `None` when the SDP does not carry `codec`.
pub fn pbx_media(offer: &AudioOffer, codec: Codec) -> Option<PbxMedia> {
    let audio_pt = offer
        .formats
        .iter()
        .find(|f| pbx_sdp::codec_of(f) == Some(codec))
        .map(|f| f.pt)?;
    let addr = (offer.port != 0 && !offer.addr.is_unspecified())
        .then(|| SocketAddr::new(offer.addr, offer.port));
    let receives = matches!(
        offer.effective_direction(),
        Direction::SendRecv | Direction::RecvOnly
    );
    Some(PbxMedia {
        addr,
        audio_pt,
        event_pt: pbx_sdp::telephone_event_pt(offer),
        receives,
    })
}
