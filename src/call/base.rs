//! What every stage of a call's machine works on: the call's facts, our SDP toward the PBX,
//! the settings handle, the call's one source of randomness (injected, so tests replay), and
//! the queue of outputs with the small vocabulary that fills it.

use std::collections::VecDeque;
use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::Rng;

use super::confirmed::Handover;
use super::facts::CallFacts;
use super::io::{CarrierOp, MediaOp, Output};
use super::pbx_leg::PbxLeg;
use super::settings::LiveSettings;
use crate::media::pbx_sdp::LocalSdp;
use crate::sip::tu::{DialogCommand, Reply};

/// The state all stages of one call share.
#[derive(Debug)]
pub struct CallBase {
    /// What is known about the call.
    pub facts: CallFacts,
    /// Our SDP toward the PBX.
    pub leg: PbxLeg,
    /// The call layer's settings, read where a decision needs them.
    pub settings: LiveSettings,
    /// The call's randomness (SDP session id, 491 back-off).
    pub rng: StdRng,
    out: VecDeque<Output>,
    /// An answered set-up's hand-over, until the confirmed call takes it.
    handover: Option<Handover>,
    finished: bool,
}

impl CallBase {
    /// A call with `facts`, whose SDP names `sdp_ip`.
    pub fn new(facts: CallFacts, sdp_ip: IpAddr, settings: LiveSettings, mut rng: StdRng) -> Self {
        // RFC 4566 5.2 session ids, kept below 2^62 as LocalSdp::new does.
        let sdp = LocalSdp::with_session_id(sdp_ip, rng.gen::<u64>() >> 2);
        CallBase {
            facts,
            leg: PbxLeg::new(sdp),
            settings,
            rng,
            out: VecDeque::new(),
            handover: None,
            finished: false,
        }
    }

    /// The next output, in the order they were asked for.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The call has asked to finish: nothing more happens.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Queues `output` (nothing once finished).
    pub fn push(&mut self, output: Output) {
        if !self.finished {
            self.out.push_back(output);
        }
    }

    /// A command to the SIP core.
    pub fn sip(&mut self, cmd: impl FnOnce(crate::sip::tu::CallRef) -> DialogCommand) {
        let call = self.facts.call;
        self.push(Output::Sip(cmd(call)));
    }

    /// A response to the PBX's INVITE.
    pub fn respond(&mut self, reply: Reply) {
        self.sip(|c| DialogCommand::Respond(c, reply));
    }

    /// The answer to the PBX's re-INVITE.
    pub fn respond_reinvite(&mut self, reply: Reply) {
        self.sip(|c| DialogCommand::RespondReinvite(c, reply));
    }

    /// BYE toward the PBX, with a Reason.
    pub fn bye(&mut self, reason: Option<String>) {
        self.sip(|c| DialogCommand::Bye(c, reason));
    }

    /// A carrier request.
    pub fn carrier(&mut self, op: CarrierOp) {
        self.push(Output::Carrier(op));
    }

    /// A media request.
    pub fn media(&mut self, op: MediaOp) {
        self.push(Output::Media(op));
    }

    /// The registry's view follows the facts.
    pub fn publish(&mut self) {
        self.push(Output::Publish);
    }

    /// Refuses the PBX's INVITE with `reply`, its final response on record, and finishes.
    pub fn refuse(&mut self, reply: Reply) {
        self.facts.final_response(reply.code, reply.reason_phrase());
        self.respond(reply);
        self.finish();
    }

    /// The set-up is answered: the confirmed call starts from `h`.
    pub fn hand_over(&mut self, h: Handover) {
        self.handover = Some(h);
    }

    /// The hand-over, once.
    pub fn take_handover(&mut self) -> Option<Handover> {
        self.handover.take()
    }

    /// The call is over.
    pub fn finish(&mut self) {
        self.push(Output::Finished);
        self.finished = true;
    }
}
