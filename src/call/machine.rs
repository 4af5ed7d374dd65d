//! One call as a sans-IO state machine: fed inputs and the time, it queues outputs and names
//! its next deadline. It runs a set-up stage ([`OutboundSetup`] or [`InboundSetup`]) until
//! the answer, then a [`ConfirmedCall`]; the stages share the call's [`CallBase`], so the facts
//! and our SDP carry over. Once it has output [`Output::Finished`] it takes nothing more.

use std::time::Instant;

use rand::rngs::StdRng;

use super::base::CallBase;
use super::confirmed::ConfirmedCall;
use super::facts::CallFacts;
use super::inbound::InboundSetup;
use super::io::{Input, Output};
use super::outbound::OutboundSetup;
use super::settings::LiveSettings;
use crate::carrier::events::IncomingCall;
use crate::sip::tu::AdmittedInvite;

/// Which stage the call is in.
#[derive(Debug)]
enum Stage {
    Outbound(OutboundSetup),
    Inbound(InboundSetup),
    Confirmed(ConfirmedCall),
}

/// One call's machine.
#[derive(Debug)]
pub struct CallMachine {
    base: CallBase,
    stage: Stage,
}

/// What every call machine starts with.
#[derive(Debug)]
pub struct CallStart {
    /// The call's facts so far.
    pub facts: CallFacts,
    /// The address in our SDP toward the PBX.
    pub sdp_ip: std::net::IpAddr,
    /// The call layer's settings.
    pub settings: LiveSettings,
    /// The call's randomness.
    pub rng: StdRng,
}

impl CallMachine {
    /// A PBX's admitted INVITE toward the carrier.
    pub fn outbound(start: CallStart, inv: &AdmittedInvite) -> CallMachine {
        let mut base = CallBase::new(start.facts, start.sdp_ip, start.settings, start.rng);
        let setup = OutboundSetup::new(&mut base, inv);
        CallMachine {
            base,
            stage: Stage::Outbound(setup),
        }
    }

    /// A carrier's call toward a PBX; `draining`: the daemon takes no new calls.
    pub fn inbound(start: CallStart, incoming: &IncomingCall, draining: bool) -> CallMachine {
        let mut base = CallBase::new(start.facts, start.sdp_ip, start.settings, start.rng);
        let setup = InboundSetup::new(&mut base, incoming, draining);
        CallMachine {
            base,
            stage: Stage::Inbound(setup),
        }
    }

    /// What is known about the call.
    pub fn facts(&self) -> &CallFacts {
        &self.base.facts
    }

    /// One input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) {
        if self.base.is_finished() {
            return;
        }
        let base = &mut self.base;
        match &mut self.stage {
            Stage::Outbound(s) => s.handle(base, input, now),
            Stage::Inbound(s) => s.handle(base, input, now),
            Stage::Confirmed(c) => c.handle(base, input, now),
        }
        self.promote();
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.base.poll_output()
    }

    /// When [`CallMachine::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.base.is_finished() {
            return None;
        }
        match &self.stage {
            Stage::Outbound(s) => s.poll_timeout(),
            Stage::Inbound(s) => s.poll_timeout(),
            Stage::Confirmed(c) => c.poll_timeout(),
        }
    }

    /// Whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.base.is_finished() {
            return;
        }
        let base = &mut self.base;
        match &mut self.stage {
            Stage::Outbound(s) => s.handle_timeout(base, now),
            Stage::Inbound(s) => s.handle_timeout(base, now),
            Stage::Confirmed(c) => c.handle_timeout(base, now),
        }
        self.promote();
    }

    /// An answered set-up becomes a confirmed call.
    fn promote(&mut self) {
        if let Some(h) = self.base.take_handover() {
            self.stage = Stage::Confirmed(ConfirmedCall::new(h));
        }
    }
}
