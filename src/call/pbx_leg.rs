//! A call's view of its PBX dialog: the commands it sends to the SIP core, the SDP it writes,
//! and what it has negotiated with the PBX so far.

use std::net::SocketAddr;
use std::sync::Arc;

use super::context::CallContext;
use crate::media::pbx_sdp::{self, AudioOffer, LocalSdp, MediaLine, Negotiated};
use crate::media::relay::PbxMedia;
use crate::media::{AudioFormat, Codec, Direction};
use crate::sip::tu::{CallRef, DialogCommand, Reply};

pub struct PbxLeg {
    pub ctx: Arc<CallContext>,
    pub call: CallRef,
    pub sdp: LocalSdp,
    pub rtp_port: u16,
    /// Our media line as last sent.
    pub line: Option<MediaLine>,
    /// The PBX's payload types and address, as last negotiated.
    pub pbx: Option<PbxMedia>,
}

impl PbxLeg {
    pub fn new(ctx: Arc<CallContext>, call: CallRef, rtp_port: u16) -> PbxLeg {
        let sdp = LocalSdp::new(ctx.sdp_ip);
        PbxLeg {
            ctx,
            call,
            sdp,
            rtp_port,
            line: None,
            pbx: None,
        }
    }

    pub fn respond(&self, reply: Reply) {
        self.ctx.send(DialogCommand::Respond(self.call, reply));
    }

    pub fn respond_reinvite(&self, reply: Reply) {
        self.ctx
            .send(DialogCommand::RespondReinvite(self.call, reply));
    }

    pub fn bye(&self, reason: Option<String>) {
        self.ctx.send(DialogCommand::Bye(self.call, reason));
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
