//! An inbound call's set-up (carrier → PBX) as a sans-IO stage: the DID routed to a trunk, an
//! INVITE to the trunk's registered contact, the PBX's progress mapped onto the carrier
//! (`ringing`, `callAnswer`, `reject`), the carrier's `callCancel`, shutdown and the no-answer
//! timer as CANCEL, and the WebRTC answer made once the PBX has picked its codec.

use std::time::Instant;

use tracing::{info, warn};

use super::base::CallBase;
use super::confirmed::{Handover, PbxFlow};
use super::io::{CarrierOp, CarrierStep, Done, EffectError, Input, MediaOp, Output};
use super::pbx_leg::pbx_media;
use super::record::EndedBy;
use super::registry::CallPhase;
use super::session_timer;
use crate::carrier::events::{CallEvent, IncomingCall};
use crate::media::pbx_sdp::{self, AudioOffer, MediaLine};
use crate::media::{g711_in_sdp, AudioFormat, Codec, Direction, TELEPHONE_EVENT_PT};
use crate::numbers::OutputFormat;
use crate::sip::tu::{
    reason_header, DialogCommand, DialogEvent, InviteToPbx, OwnRequest, TimerHeaders,
};

/// Where the set-up stands.
#[derive(Debug)]
enum Phase {
    /// Counted against the trunk across the cluster, or refused.
    Admitting,
    Allocating,
    /// Our INVITE is out; the no-answer timer runs.
    Inviting {
        deadline: Instant,
        ringing: bool,
    },
    /// We sent CANCEL (or the carrier left): waiting for the INVITE's final response.
    Cancelling,
    /// The PBX answered; the WebRTC answer is being made with its codec.
    MediaAnswering {
        answer: AudioOffer,
        timer: TimerHeaders,
    },
    /// The relay is being attached to the PBX's media.
    Attaching(Answering),
    /// `callAnswer` is on its way.
    CarrierAnswering(Answering),
    Over,
}

/// What the answer has settled so far.
#[derive(Debug)]
struct Answering {
    /// Our WebRTC answer for the carrier.
    sdp: String,
    format: AudioFormat,
    pbx_direction: Direction,
    timer: TimerHeaders,
}

/// The set-up of one inbound call.
#[derive(Debug)]
pub struct InboundSetup {
    /// The carrier's offer.
    offer: String,
    /// The G.711 codecs in it, in its order.
    offered: Vec<Codec>,
    invite: Option<InviteToPbx>,
    phase: Phase,
}

impl InboundSetup {
    /// Routes `incoming` and starts the set-up (or rejects it). `draining`: the daemon is
    /// stopping.
    pub fn new(base: &mut CallBase, incoming: &IncomingCall, draining: bool) -> InboundSetup {
        let mut setup = InboundSetup {
            offer: String::new(),
            offered: Vec::new(),
            invite: None,
            phase: Phase::Over,
        };
        match setup.route(base, incoming, draining) {
            Ok(()) => {
                base.push(Output::Admit { emergency: false });
                setup.phase = Phase::Admitting;
            }
            Err((code, why)) => reject(base, code, why),
        }
        setup
    }

    /// The trunk, the numbers and the offer; Err: the status to reject the call with.
    fn route(
        &mut self,
        base: &mut CallBase,
        incoming: &IncomingCall,
        draining: bool,
    ) -> Result<(), (u16, &'static str)> {
        let conf = base.settings.current();
        let callee = incoming.callee_number.clone().unwrap_or_default();
        let did_e164 = conf
            .numbers
            .reformat(&callee, OutputFormat::E164)
            .unwrap_or(callee);
        base.facts.called = Some(did_e164.clone());
        let caller = incoming
            .caller_number
            .as_deref()
            .and_then(|n| conf.numbers.reformat(n, conf.inbound.caller_format));
        base.facts.caller = caller.clone();
        let Some(trunk) = conf.route(&did_e164).map(str::to_owned) else {
            warn!(did = %did_e164, "inbound carrier call rejected: no trunk to route it to");
            return Err((404, "No Route"));
        };
        base.facts.trunk = Some(trunk.clone());
        base.publish();
        if draining {
            info!("inbound carrier call rejected: stopping");
            return Err((503, "Shutting Down"));
        }
        let Some(offer) = incoming.offer.clone() else {
            return Err((488, "No Offer"));
        };
        // The PBX chooses between the G.711 codecs the carrier offered; the WebRTC answer
        // follows its choice once it answers, so no codec is forced on either side.
        self.offered = g711_in_sdp(&offer);
        if self.offered.is_empty() {
            warn!("inbound carrier call rejected: its offer has no PCMU or PCMA");
            return Err((488, "No G.711"));
        }
        self.offer = offer;
        let did = conf
            .numbers
            .reformat(&did_e164, conf.inbound.did_format)
            .unwrap_or(did_e164);
        self.invite = Some(InviteToPbx {
            trunk,
            did,
            caller_number: caller,
            caller_name: incoming.caller_name.clone(),
            sdp: String::new(),
            headers: session_timer::request_headers(&conf.timer),
        });
        Ok(())
    }

    /// The no-answer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Inviting { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// The no-answer timer, when due.
    pub fn handle_timeout(&mut self, base: &mut CallBase, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            info!("the PBX did not answer in time");
            base.facts.ended_by = EndedBy::Gateway;
            self.cancel(base, 480, true);
        }
    }

    /// One input.
    pub fn handle(&mut self, base: &mut CallBase, input: Input, now: Instant) {
        match input {
            Input::Dialog(DialogEvent::Response {
                request: OwnRequest::Invite,
                code,
                reason,
                sdp,
                timer,
            }) => self.on_response(base, code, reason, sdp, timer),
            Input::Dialog(DialogEvent::Shutdown) => {
                if matches!(self.phase, Phase::Inviting { .. }) {
                    base.facts.ended_by = EndedBy::Gateway;
                    self.cancel(base, 487, true);
                }
            }
            Input::DialogGone => {
                if matches!(self.phase, Phase::Inviting { .. } | Phase::Cancelling) {
                    base.finish();
                    self.phase = Phase::Over;
                }
            }
            Input::Carrier(CallEvent::Cancelled | CallEvent::Ended { .. }) | Input::CarrierGone => {
                if matches!(self.phase, Phase::Inviting { .. }) {
                    info!("the carrier caller gave up: CANCEL");
                    base.facts.ended_by = EndedBy::Carrier;
                    self.cancel(base, 487, false);
                }
            }
            Input::Dialog(_) | Input::Carrier(_) | Input::Peer(_) => {}
            Input::Done(done) => self.on_done(base, done, now),
            Input::Failed(e) => self.on_failed(base, e),
        }
    }

    /// CANCEL toward the PBX, `code` on record until its final response; `reject`: the carrier
    /// call is still there to refuse.
    fn cancel(&mut self, base: &mut CallBase, code: u16, reject: bool) {
        base.facts.sip_code = code;
        base.sip(DialogCommand::Cancel);
        if reject {
            base.carrier(CarrierOp::Reject);
        }
        self.phase = Phase::Cancelling;
    }

    fn on_response(
        &mut self,
        base: &mut CallBase,
        code: u16,
        reason: String,
        sdp: Option<String>,
        timer: TimerHeaders,
    ) {
        match self.phase {
            Phase::Inviting {
                ref mut ringing, ..
            } => match code {
                180..=183 if !*ringing => {
                    *ringing = true;
                    base.facts.phase = CallPhase::Ringing;
                    base.publish();
                    base.carrier(CarrierOp::Ringing);
                }
                100..=199 => {}
                200..=299 => self.pbx_answered(base, sdp, timer),
                _ => {
                    match code {
                        480 if reason.contains("Not Registered") => {
                            warn!("inbound carrier call rejected: trunk is not registered")
                        }
                        _ => info!(code, %reason, "the PBX refused the call"),
                    }
                    base.facts.ended_by = EndedBy::Pbx;
                    reject(base, code, &reason);
                    self.phase = Phase::Over;
                }
            },
            Phase::Cancelling => match code {
                100..=199 => {}
                200..=299 => {
                    // the answer crossed our CANCEL: the core hangs up with BYE
                    base.facts.sip_code = code;
                    base.facts.ended_by = EndedBy::Carrier;
                    base.finish();
                    self.phase = Phase::Over;
                }
                _ => {
                    base.facts.final_response(code, reason);
                    base.finish();
                    self.phase = Phase::Over;
                }
            },
            _ => {}
        }
    }

    /// The PBX's 2xx: its codec picks the WebRTC answer's.
    fn pbx_answered(&mut self, base: &mut CallBase, sdp: Option<String>, timer: TimerHeaders) {
        let Some(answer) = sdp.as_deref().and_then(|s| pbx_sdp::parse(s).ok()) else {
            warn!("the PBX answered without a usable SDP");
            return self.fail(
                base,
                reason_header("SIP", 488, "no usable SDP"),
                488,
                "No Usable Answer",
            );
        };
        let Some(codec) = pbx_sdp::negotiate(&answer)
            .map(|n| n.codec)
            .filter(|c| self.offered.contains(c))
        else {
            warn!("the PBX answered with no codec we offered");
            return self.fail(base, codec_bye(), 488, "Codec Mismatch");
        };
        base.media(MediaOp::Answer {
            offer: self.offer.clone(),
            codec,
        });
        self.phase = Phase::MediaAnswering { answer, timer };
    }

    /// After the PBX answered: BYE to it with `bye` as the Reason, and the carrier call
    /// rejected with `code`.
    fn fail(&mut self, base: &mut CallBase, bye: String, code: u16, why: &str) {
        base.bye(Some(bye));
        base.facts.ended_by = EndedBy::Gateway;
        reject(base, code, why);
        self.phase = Phase::Over;
    }

    fn on_done(&mut self, base: &mut CallBase, done: Done, now: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Over);
        self.phase = match (phase, done) {
            (Phase::Admitting, Done::Admitted) => {
                base.push(Output::AllocatePort);
                Phase::Allocating
            }
            (Phase::Allocating, Done::PortReady { port }) => self.invite(base, port, now),
            (Phase::MediaAnswering { answer, timer }, Done::MediaAnswered { sdp, format }) => {
                let Some(media) = pbx_media(&answer, format.codec) else {
                    self.fail(base, codec_bye(), 488, "Codec Mismatch");
                    return;
                };
                // What is now agreed with the PBX: one codec, its payload types.
                base.leg.agree(MediaLine {
                    codec: format.codec,
                    audio_pt: media.audio_pt,
                    event_pt: media
                        .event_pt
                        .filter(|_| format.telephone_event_pt.is_some()),
                    direction: Direction::SendRecv,
                    alternative: None,
                });
                base.media(MediaOp::AttachPbx(media));
                Phase::Attaching(Answering {
                    sdp,
                    format,
                    pbx_direction: answer.effective_direction(),
                    timer,
                })
            }
            (Phase::Attaching(a), Done::Attached) => {
                base.carrier(CarrierOp::Answer { sdp: a.sdp.clone() });
                Phase::CarrierAnswering(a)
            }
            (Phase::CarrierAnswering(a), Done::Carrier(CarrierStep::Answer)) => {
                base.facts.answered(now);
                base.publish();
                info!(codec = ?a.format.codec, "answered by the PBX");
                base.hand_over(Handover {
                    format: a.format,
                    agreement: session_timer::on_2xx(a.timer.session_expires.as_deref()),
                    we_were_uas: false,
                    flow: PbxFlow::Answered,
                    pbx_direction: a.pbx_direction,
                    at: now,
                });
                Phase::Over
            }
            (phase, _) => phase,
        };
    }

    fn on_failed(&mut self, base: &mut CallBase, e: EffectError) {
        match (&self.phase, e) {
            (Phase::Admitting, EffectError::TrunkFull(max)) => {
                warn!(
                    max_calls = max,
                    "inbound carrier call rejected: the trunk's calls are up across the cluster"
                );
                reject(base, 486, "Call Limit Reached");
                self.phase = Phase::Over;
            }
            (Phase::Admitting, e) => {
                warn!(error = %e, "inbound carrier call rejected: not admitted");
                reject(base, 503, "Not Admitted");
                self.phase = Phase::Over;
            }
            (Phase::Allocating, e) => {
                warn!(error = %e, "inbound carrier call rejected: no RTP port");
                reject(base, 503, "No RTP Port");
                self.phase = Phase::Over;
            }
            (Phase::MediaAnswering { .. } | Phase::Attaching(_), e) => {
                warn!(error = %e, "WebRTC answer failed");
                self.fail(
                    base,
                    reason_header("Q.850", 41, "media failure"),
                    503,
                    "Media Failure",
                );
            }
            (Phase::CarrierAnswering(_), e) => {
                warn!(error = %e, "carrier callAnswer failed");
                base.bye(Some(reason_header("Q.850", 41, "carrier answer failed")));
                base.facts.ended_by = EndedBy::Gateway;
                base.facts.sip_code = 200;
                base.finish();
                self.phase = Phase::Over;
            }
            (_, e) => warn!(error = %e, "inbound call set-up"),
        }
    }

    /// The port is ours: the INVITE goes to the trunk's PBX with every G.711 codec offered.
    fn invite(&mut self, base: &mut CallBase, port: u16, now: Instant) -> Phase {
        let Some(mut invite) = self.invite.take() else {
            base.finish();
            return Phase::Over;
        };
        base.leg.set_port(port);
        let first = self.offered.first().copied().unwrap_or(Codec::Pcmu);
        invite.sdp = base.leg.render(MediaLine {
            codec: first,
            audio_pt: first.payload_type(),
            event_pt: self
                .offer
                .to_ascii_lowercase()
                .contains("telephone-event/8000")
                .then_some(TELEPHONE_EVENT_PT),
            direction: Direction::SendRecv,
            alternative: self.offered.get(1).copied(),
        });
        base.sip(|c| DialogCommand::Invite(c, Box::new(invite)));
        Phase::Inviting {
            deadline: now + base.settings.current().calls.no_answer_timeout,
            ringing: false,
        }
    }
}

/// The BYE Reason for a PBX answer without a codec the call can use.
fn codec_bye() -> String {
    reason_header("SIP", 488, "codec")
}

/// Refuses the carrier call, with `code` and `why` on record as the call's final status.
fn reject(base: &mut CallBase, code: u16, why: &str) {
    base.facts.final_response(code, why);
    base.carrier(CarrierOp::Reject);
    base.finish();
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
