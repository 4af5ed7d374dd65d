//! An outbound call's set-up (PBX → carrier) as a sans-IO stage, from the admitted INVITE to
//! the answer: SDP checks, the session timer, capacity, the RTP port, the WebRTC offer and
//! `callStart`, then the carrier's progress mapped onto the PBX's INVITE (CARRIER.md section
//! 3), early media, CANCEL, shutdown and the no-answer timer.

use std::time::Instant;

use tracing::{info, warn};

use super::base::CallBase;
use super::confirmed::{Handover, PbxFlow};
use super::io::{CarrierOp, Done, EffectError, Input, MediaOp, Output};
use super::pbx_leg::{pbx_media, PbxLeg};
use super::record::EndedBy;
use super::registry::CallPhase;
use super::session_timer::{self, SessionAgreement, TimerRequest, UasDecision};
use crate::carrier::events::CallEvent;
use crate::carrier::Unavailable;
use crate::media::pbx_sdp::{self, AudioOffer, MediaLine, Negotiated};
use crate::media::relay::PbxMedia;
use crate::media::{AudioFormat, Codec, Direction, TELEPHONE_EVENT_PT};
use crate::sip::tu::{reason_header, warning_header, AdmittedInvite, DialogEvent, Reply};

/// A carrier `callEnd` before answer as the PBX's final response: SIP codes pass through,
/// anything else is 503 so the PBX fails over (CARRIER.md section 3).
pub fn map_failure(code: i64) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| (400..=699).contains(c))
        .unwrap_or(503)
}

/// 503 for a failure of ours: the PBX may try another route soon.
fn unavailable() -> Reply {
    Reply::new(503).header("Retry-After", "5")
}

/// Where the set-up stands. Each set-up step waits for the result of one request.
#[derive(Debug)]
enum Phase {
    Admitting {
        emergency: bool,
    },
    Reserving,
    Allocating,
    Offering,
    Starting,
    Attaching,
    /// Until the carrier answers, fails, or the PBX gives up.
    Early(Early),
    /// The carrier's answer is being applied to the WebRTC leg.
    Accepting,
    /// The PBX (or the daemon) gave up while a set-up request was in flight: once it
    /// completes, the carrier session, if there is one by then, is ended with `reason`.
    Abandoning {
        carrier_up: bool,
        reason: &'static str,
    },
    Over,
}

#[derive(Debug)]
struct Early {
    /// The no-answer timer.
    deadline: Instant,
    /// 180 or 183 sent.
    ringing_sent: bool,
    /// The carrier's early media, as it stands.
    media: EarlyMedia,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum EarlyMedia {
    None,
    /// Its SDP is being applied; the final answer, should it come meanwhile.
    Accepting {
        answer: Option<String>,
    },
    /// Flowing with this format: the final answer changes nothing on the WebRTC leg.
    Flowing(AudioFormat),
}

/// The set-up of one outbound call.
#[derive(Debug)]
pub struct OutboundSetup {
    /// The PBX's offer and what we negotiated from it; `None`: an offerless INVITE (we offer
    /// in the 200, it answers in the ACK).
    offer: Option<(AudioOffer, Negotiated)>,
    timer: Option<SessionAgreement>,
    e164: String,
    codecs: Vec<Codec>,
    phase: Phase,
}

impl OutboundSetup {
    /// Checks the INVITE and starts the set-up (or refuses it) at `now`.
    pub fn new(base: &mut CallBase, inv: &AdmittedInvite) -> OutboundSetup {
        let mut setup = OutboundSetup {
            offer: None,
            timer: None,
            e164: inv.destination.e164.clone(),
            codecs: Vec::new(),
            phase: Phase::Over,
        };
        if let Some(reply) = setup.check(base, inv) {
            base.refuse(reply);
            return setup;
        }
        let emergency = inv.destination.special == Some(crate::numbers::Special::Emergency);
        base.push(Output::Admit { emergency });
        setup.phase = Phase::Admitting { emergency };
        setup
    }

    /// The INVITE's SDP and session timer; `Some`: the response refusing it.
    fn check(&mut self, base: &CallBase, inv: &AdmittedInvite) -> Option<Reply> {
        self.offer = match inv.sdp.as_deref().map(pbx_sdp::parse) {
            None => None,
            Some(Err(e)) => {
                warn!(error = %e, "PBX offer refused");
                let warning = warning_header(399, &e.to_string());
                return Some(Reply::new(488).header("Warning", warning));
            }
            Some(Ok(o)) => match pbx_sdp::negotiate(&o) {
                Some(n) => Some((o, n)),
                None => {
                    warn!("no common codec: the PBX offers no PCMU or PCMA");
                    let warning = warning_header(305, "PCMU or PCMA required");
                    return Some(Reply::new(488).header("Warning", warning));
                }
            },
        };
        let request = TimerRequest {
            session_expires: inv.timer.session_expires.as_deref(),
            min_se: inv.timer.min_se.as_deref(),
            timer_supported: inv.timer.supports_timer,
        };
        self.timer = match session_timer::on_request(&request, &base.settings.current().timer) {
            Ok(UasDecision::Reject422 { min_se }) => {
                return Some(Reply::new(422).header("Min-SE", min_se.to_string()));
            }
            Ok(UasDecision::Accept(n)) => Some(n),
            Ok(UasDecision::NoTimer) => None,
            Err(e) => return Some(Reply::new(400).reason(e.to_string())),
        };
        self.codecs = match &self.offer {
            Some((o, _)) => pbx_sdp::codecs_in_order(o),
            None => vec![Codec::Pcmu, Codec::Pcma],
        };
        None
    }

    /// The no-answer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Early(e) => Some(e.deadline),
            _ => None,
        }
    }

    /// The no-answer timer, when due.
    pub fn handle_timeout(&mut self, base: &mut CallBase, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            info!("no answer in time: 480");
            base.facts.ended_by = EndedBy::Gateway;
            base.carrier(CarrierOp::End {
                reason: "no answer",
            });
            base.refuse(Reply::new(480).reason("No Answer"));
            self.phase = Phase::Over;
        }
    }

    /// One input.
    pub fn handle(&mut self, base: &mut CallBase, input: Input, now: Instant) {
        match input {
            Input::Dialog(DialogEvent::Cancelled) | Input::DialogGone => self.pbx_gave_up(base),
            Input::Dialog(DialogEvent::Shutdown) => self.shutdown(base),
            Input::Dialog(_) | Input::Peer(_) => {}
            Input::Carrier(ev) => self.on_carrier(base, ev, now),
            Input::CarrierGone => self.on_carrier(base, CallEvent::Cancelled, now),
            Input::Done(done) => self.on_done(base, done, now),
            Input::Failed(e) => self.on_failed(base, e, now),
        }
    }

    fn on_done(&mut self, base: &mut CallBase, done: Done, now: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Over);
        self.phase = match (phase, done) {
            (Phase::Admitting { emergency }, Done::Admitted) => {
                base.push(Output::Reserve { emergency });
                Phase::Reserving
            }
            (Phase::Reserving, Done::Reserved { account }) => {
                base.facts.carrier_account = Some(account);
                base.push(Output::AllocatePort);
                Phase::Allocating
            }
            (Phase::Allocating, Done::PortReady { port }) => {
                base.leg.set_port(port);
                base.media(MediaOp::Offer {
                    codecs: self.codecs.clone(),
                });
                Phase::Offering
            }
            (Phase::Offering, Done::Offered { sdp }) => {
                base.push(Output::StartCall {
                    e164: self.e164.clone(),
                    sdp,
                });
                Phase::Starting
            }
            (Phase::Starting, Done::CarrierStarted { session, account }) => {
                info!(destination = %self.e164, %account, "carrier call started");
                base.facts.carrier_session = Some(session);
                base.publish();
                // The PBX's sockets go to the engine now: audio it sends before the WebRTC
                // leg can carry it is held there, not lost.
                base.media(MediaOp::AttachPbx(self.initial_pbx_media()));
                Phase::Attaching
            }
            (Phase::Attaching, Done::Attached) => Phase::Early(Early {
                deadline: now + base.settings.current().calls.no_answer_timeout,
                ringing_sent: false,
                media: EarlyMedia::None,
            }),
            (Phase::Early(mut early), Done::AnswerAccepted(format)) => {
                let answer = match &early.media {
                    EarlyMedia::Accepting { answer } => answer.clone(),
                    _ => None,
                };
                self.early_media(base, &mut early, format);
                match answer {
                    Some(sdp) => self.carrier_answered(base, early, sdp, now),
                    None => Phase::Early(early),
                }
            }
            (Phase::Accepting, Done::AnswerAccepted(format)) => self.answer(base, format, now),
            (Phase::Abandoning { carrier_up, reason }, done) => {
                if carrier_up || matches!(done, Done::CarrierStarted { .. }) {
                    base.carrier(CarrierOp::End { reason });
                }
                base.finish();
                Phase::Over
            }
            (phase, _) => phase,
        };
    }

    fn on_failed(&mut self, base: &mut CallBase, e: EffectError, now: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Over);
        self.phase = match (phase, e) {
            (Phase::Admitting { .. }, EffectError::Replayed) => {
                warn!(
                    "INVITE refused: its digest nonce count was already used on another instance"
                );
                base.refuse(Reply::new(403).reason("Credentials Already Used"));
                Phase::Over
            }
            (Phase::Admitting { .. }, EffectError::TrunkFull(max)) => {
                warn!(
                    max_calls = max,
                    "INVITE refused: the trunk's calls are up across the cluster"
                );
                let code = base.settings.current().calls.limit_response.code();
                let mut reply = Reply::new(code).reason("Call Limit Reached");
                if code == 503 {
                    reply = reply.header("Retry-After", "5");
                }
                base.refuse(reply);
                Phase::Over
            }
            (Phase::Admitting { .. }, e) => {
                warn!(error = %e, "INVITE refused: not admitted");
                base.refuse(unavailable());
                Phase::Over
            }
            (Phase::Reserving, EffectError::NoCarrier) => {
                base.refuse(
                    Reply::new(503)
                        .reason("No Carrier Available")
                        .header("Retry-After", "30"),
                );
                Phase::Over
            }
            (Phase::Reserving, EffectError::Capacity(e)) => {
                warn!(reason = %e, "no carrier capacity");
                let retry = if e == Unavailable::AtCapacity {
                    "5"
                } else {
                    "30"
                };
                base.refuse(
                    Reply::new(503)
                        .reason("No Carrier Available")
                        .header("Retry-After", retry),
                );
                Phase::Over
            }
            (Phase::Allocating, e) => {
                warn!(error = %e, "no RTP port for the call");
                base.refuse(unavailable());
                Phase::Over
            }
            (Phase::Offering | Phase::Starting, e) => {
                warn!(error = %e, "carrier leg failed");
                base.refuse(unavailable());
                Phase::Over
            }
            (Phase::Attaching, e) => {
                warn!(error = %e, "media engine refused the call");
                base.carrier(CarrierOp::End {
                    reason: "media failure",
                });
                base.refuse(unavailable());
                Phase::Over
            }
            (Phase::Early(mut early), e @ EffectError::AcceptAnswer(_)) => {
                warn!(error = %e, "early media SDP unusable; waiting for the answer");
                match std::mem::replace(&mut early.media, EarlyMedia::None) {
                    EarlyMedia::Accepting { answer: Some(sdp) } => {
                        self.carrier_answered(base, early, sdp, now)
                    }
                    _ => Phase::Early(early),
                }
            }
            (Phase::Accepting, e) => {
                warn!(error = %e, "carrier answer unusable");
                base.facts.ended_by = EndedBy::Gateway;
                base.carrier(CarrierOp::End {
                    reason: "unusable answer",
                });
                base.refuse(unavailable());
                Phase::Over
            }
            (Phase::Abandoning { carrier_up, reason }, _) => {
                if carrier_up {
                    base.carrier(CarrierOp::End { reason });
                }
                base.finish();
                Phase::Over
            }
            (phase, e) => {
                warn!(error = %e, "outbound call set-up");
                phase
            }
        };
    }

    /// Still setting up: not answered, not over, not giving up already.
    fn setting_up(&self) -> bool {
        !matches!(self.phase, Phase::Over | Phase::Abandoning { .. })
    }

    /// Whether a request is in flight, and if so whether a carrier session exists once it
    /// completes (a `callStart` in flight makes one only when it succeeds).
    fn in_flight(&self) -> Option<bool> {
        match &self.phase {
            Phase::Admitting { .. }
            | Phase::Reserving
            | Phase::Allocating
            | Phase::Offering
            | Phase::Starting => Some(false),
            Phase::Attaching | Phase::Accepting => Some(true),
            Phase::Early(e) if matches!(e.media, EarlyMedia::Accepting { .. }) => Some(true),
            _ => None,
        }
    }

    /// The PBX cancelled (or its dialog is gone); the core has answered the CANCEL and the
    /// INVITE (487).
    fn pbx_gave_up(&mut self, base: &mut CallBase) {
        if !self.setting_up() {
            return;
        }
        info!("cancelled by the PBX");
        base.facts.ended_by = EndedBy::Pbx;
        base.facts.final_response(487, "Request Terminated");
        self.give_up(base, "cancelled", None);
    }

    /// The daemon stops: 503 to the PBX, the carrier session ended.
    fn shutdown(&mut self, base: &mut CallBase) {
        if !self.setting_up() {
            return;
        }
        base.facts.ended_by = EndedBy::Gateway;
        let reply = Reply::new(503)
            .reason("Shutting Down")
            .header("Retry-After", "60");
        self.give_up(base, "shutting down", Some(reply));
    }

    /// Ends the set-up, answering the PBX with `reply` (`None`: the core has). With nothing
    /// in flight the carrier session ends first, then the PBX hears; otherwise the PBX hears
    /// now and the carrier session ends once the request in flight completes.
    fn give_up(&mut self, base: &mut CallBase, reason: &'static str, reply: Option<Reply>) {
        match self.in_flight() {
            Some(carrier_up) => {
                if let Some(r) = reply {
                    base.facts.final_response(r.code, r.reason_phrase());
                    base.respond(r);
                }
                self.phase = Phase::Abandoning { carrier_up, reason };
            }
            None => {
                base.carrier(CarrierOp::End { reason });
                match reply {
                    Some(r) => base.refuse(r),
                    None => base.finish(),
                }
                self.phase = Phase::Over;
            }
        }
    }

    fn on_carrier(&mut self, base: &mut CallBase, ev: CallEvent, now: Instant) {
        let Phase::Early(early) = &mut self.phase else {
            return;
        };
        match ev {
            CallEvent::Ringing if !early.ringing_sent => {
                early.ringing_sent = true;
                base.facts.phase = CallPhase::Ringing;
                base.publish();
                base.respond(Reply::new(180));
            }
            CallEvent::Progress { sdp } => {
                if self.offer.is_none() {
                    warn!("early media SDP unusable; waiting for the answer: offerless INVITE");
                } else if early.media == EarlyMedia::None {
                    // Early media: answer the PBX provisionally and relay at once.
                    early.media = EarlyMedia::Accepting { answer: None };
                    base.media(MediaOp::AcceptAnswer { sdp });
                }
            }
            CallEvent::Answered { sdp } => {
                if let EarlyMedia::Accepting { answer } = &mut early.media {
                    *answer = Some(sdp);
                    return;
                }
                let Phase::Early(early) = std::mem::replace(&mut self.phase, Phase::Over) else {
                    return;
                };
                self.phase = self.carrier_answered(base, early, sdp, now);
            }
            CallEvent::Ended { code, reason, .. } => {
                let reason = reason.unwrap_or_default();
                let sip = map_failure(code.unwrap_or(0));
                info!(carrier_code = ?code, %reason, sip, "carrier call failed");
                base.facts.carrier_ended(code, &reason);
                let reply = Reply::new(sip).header("Reason", reason_header("SIP", sip, &reason));
                base.refuse(reply);
                self.phase = Phase::Over;
            }
            CallEvent::Cancelled => {
                base.facts.ended_by = EndedBy::Carrier;
                base.refuse(unavailable());
                self.phase = Phase::Over;
            }
            _ => {}
        }
    }

    /// The carrier's early media is on the WebRTC leg with `format`: the relay follows the
    /// PBX's offer, which gets our provisional answer (183).
    fn early_media(&mut self, base: &mut CallBase, early: &mut Early, format: AudioFormat) {
        early.media = EarlyMedia::None;
        let Some((o, n)) = &self.offer else {
            return;
        };
        let Some(media) = pbx_media(o, format.codec) else {
            warn!("early media SDP unusable; waiting for the answer: codec mismatch");
            return;
        };
        base.media(MediaOp::UpdatePbx(media));
        let direction = pbx_sdp::answer_direction(o.effective_direction());
        let body = base.leg.render(PbxLeg::answer_line(n, &format, direction));
        early.ringing_sent = true;
        early.media = EarlyMedia::Flowing(format);
        base.respond(Reply::new(183).sdp(body));
    }

    /// The carrier answered with `sdp`: its SDP completes the WebRTC leg unless early media
    /// did.
    fn carrier_answered(
        &mut self,
        base: &mut CallBase,
        early: Early,
        sdp: String,
        now: Instant,
    ) -> Phase {
        match early.media {
            EarlyMedia::Flowing(format) => self.answer(base, format, now),
            _ => {
                base.media(MediaOp::AcceptAnswer { sdp });
                Phase::Accepting
            }
        }
    }

    /// The WebRTC leg has `format`: the PBX gets our 200.
    fn answer(&mut self, base: &mut CallBase, format: AudioFormat, now: Instant) -> Phase {
        let (body, pbx, flow) = match &self.offer {
            Some((o, n)) => {
                let Some(media) = pbx_media(o, format.codec) else {
                    base.carrier(CarrierOp::End {
                        reason: "codec mismatch",
                    });
                    base.refuse(Reply::new(488));
                    return Phase::Over;
                };
                let direction = pbx_sdp::answer_direction(o.effective_direction());
                let body = base.leg.render(PbxLeg::answer_line(n, &format, direction));
                (body, media, PbxFlow::Answered)
            }
            None => {
                // Offerless INVITE: our offer goes in the 200, the answer comes in the ACK.
                let line = MediaLine {
                    codec: format.codec,
                    audio_pt: format.codec.payload_type(),
                    event_pt: format.telephone_event_pt.map(|_| TELEPHONE_EVENT_PT),
                    direction: Direction::SendRecv,
                    alternative: None,
                };
                let pbx = PbxMedia {
                    addr: None,
                    audio_pt: format.codec.payload_type(),
                    event_pt: None,
                    receives: false,
                };
                (base.leg.render(line), pbx, PbxFlow::AwaitingAckAnswer)
            }
        };
        base.media(MediaOp::UpdatePbx(pbx));
        let mut reply = Reply::new(200).sdp(body);
        if let Some(t) = &self.timer {
            for (n, v) in t.response_headers() {
                reply = reply.header(n, v);
            }
        }
        base.respond(reply);
        base.facts.answered(now);
        base.publish();
        info!(codec = ?format.codec, "answered");
        base.hand_over(Handover {
            format,
            agreement: self.timer,
            we_were_uas: true,
            flow,
            pbx_direction: self
                .offer
                .as_ref()
                .map_or(Direction::SendRecv, |(o, _)| o.effective_direction()),
            at: now,
        });
        Phase::Over
    }

    /// What the relay knows of the PBX before the answer: its offer's address and payload
    /// types for our first codec, not yet sending to it.
    fn initial_pbx_media(&self) -> PbxMedia {
        let first = self.codecs.first().copied().unwrap_or(Codec::Pcmu);
        self.offer
            .as_ref()
            .and_then(|(o, _)| pbx_media(o, first))
            .map(|m| PbxMedia {
                receives: false,
                ..m
            })
            .unwrap_or(PbxMedia {
                addr: None,
                audio_pt: first.payload_type(),
                event_pt: None,
                receives: false,
            })
    }
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
