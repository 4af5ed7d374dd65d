//! The one place that knows a call's facts: who called whom over which trunk and carrier
//! session, where the call stands, and how it ended. The call's machine changes them; the
//! registry's view ([`LiveCall`]) and the call's record ([`CallRecord`]) are both made from
//! here, so neither can drift from the other.

use std::time::{Instant, SystemTime};

use super::record::{CallDirection, CallRecord, EndedBy};
use super::registry::{CallPhase, LiveCall};
use crate::carrier::events::IncomingCall;
use crate::media::engine::MediaView;
use crate::sip::tu::{AdmittedInvite, CallRef};

/// What is known about one call.
#[derive(Debug, Clone)]
pub struct CallFacts {
    /// The call's number.
    pub call: CallRef,
    /// Which way it goes.
    pub direction: CallDirection,
    /// The trunk, once known.
    pub trunk: Option<String>,
    /// The PBX dialog's Call-ID (outbound: from the start; inbound: the core makes it).
    pub sip_call_id: Option<String>,
    /// The called number as received.
    pub called_raw: String,
    /// The called number in E.164.
    pub called: Option<String>,
    /// The calling number as received.
    pub caller_raw: Option<String>,
    /// The calling number as normalised for the other side.
    pub caller: Option<String>,
    /// The carrier's session name, once it exists.
    pub carrier_session: Option<String>,
    /// The carrier account carrying the call.
    pub carrier_account: Option<String>,
    /// Where the call stands.
    pub phase: CallPhase,
    /// The final SIP status of the PBX-side INVITE (0 while there is none).
    pub sip_code: u16,
    /// Its reason phrase.
    pub sip_reason: String,
    /// The carrier's status code when it ended the call.
    pub carrier_code: Option<i64>,
    /// The carrier's reason when it ended the call.
    pub carrier_reason: Option<String>,
    /// Who ended the call.
    pub ended_by: EndedBy,
    started: Instant,
    /// The wall clock at `started`: every other time in the record is derived from the
    /// monotonic clock, so a clock step during a call cannot give it a negative duration.
    started_wall: SystemTime,
    answered: Option<Instant>,
}

impl CallFacts {
    /// A call that started at `now` (`wall` on the wall clock).
    pub fn new(
        call: CallRef,
        direction: CallDirection,
        called_raw: String,
        now: Instant,
        wall: SystemTime,
    ) -> CallFacts {
        CallFacts {
            call,
            direction,
            trunk: None,
            sip_call_id: None,
            called_raw,
            called: None,
            caller_raw: None,
            caller: None,
            carrier_session: None,
            carrier_account: None,
            phase: CallPhase::Setup,
            sip_code: 0,
            sip_reason: String::new(),
            carrier_code: None,
            carrier_reason: None,
            ended_by: EndedBy::Gateway,
            started: now,
            started_wall: wall,
            answered: None,
        }
    }

    /// A PBX's admitted INVITE.
    pub fn outbound(call: CallRef, inv: &AdmittedInvite, now: Instant, wall: SystemTime) -> Self {
        let mut f = CallFacts::new(
            call,
            CallDirection::Outbound,
            inv.dialled.clone(),
            now,
            wall,
        );
        f.sip_call_id = Some(inv.call_id.clone());
        f.trunk = Some(inv.trunk.clone());
        f.called = Some(inv.destination.e164.clone());
        f.caller = inv.caller.number.clone();
        f.caller_raw = Some(inv.from_uri.clone());
        f
    }

    /// A carrier's incoming call on `account`, session `session`.
    pub fn inbound(
        call: CallRef,
        incoming: &IncomingCall,
        session: &str,
        account: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let called_raw = incoming.callee_number.clone().unwrap_or_default();
        let mut f = CallFacts::new(call, CallDirection::Inbound, called_raw, now, wall);
        f.caller_raw = incoming.caller_number.clone();
        f.carrier_session = Some(session.to_owned());
        f.carrier_account = Some(account.to_owned());
        f
    }

    /// The call was answered at `now`: 200 toward the PBX side.
    pub fn answered(&mut self, now: Instant) {
        self.sip_code = 200;
        self.sip_reason = "OK".into();
        self.answered = Some(now);
        self.phase = CallPhase::Answered;
    }

    /// Whether the call was answered.
    pub fn was_answered(&self) -> bool {
        self.answered.is_some()
    }

    /// The INVITE's final response.
    pub fn final_response(&mut self, code: u16, reason: impl Into<String>) {
        self.sip_code = code;
        self.sip_reason = reason.into();
    }

    /// The carrier ended the call with `code` and `reason`.
    pub fn carrier_ended(&mut self, code: Option<i64>, reason: &str) {
        self.carrier_code = code;
        self.carrier_reason = Some(reason.to_owned());
        self.ended_by = EndedBy::Carrier;
    }

    /// What status and metrics show now; `media` only counts once the call is answered.
    pub fn live(&self, media: Option<MediaView>) -> LiveCall {
        // Status has always shown each direction's numbers as its originating side knows
        // them: the PBX's normalised ones outbound, the carrier's as sent inbound.
        let (called, caller) = match self.direction {
            CallDirection::Outbound => (
                self.called
                    .clone()
                    .unwrap_or_else(|| self.called_raw.clone()),
                self.caller.clone(),
            ),
            CallDirection::Inbound => (self.called_raw.clone(), self.caller_raw.clone()),
        };
        LiveCall {
            direction: self.direction,
            trunk: self.trunk.clone(),
            called,
            caller,
            sip_call_id: self.sip_call_id.clone(),
            carrier_session: self.carrier_session.clone(),
            phase: self.phase,
            started: self.started,
            media: media.filter(|_| self.phase == CallPhase::Answered),
        }
    }

    /// The call's record, ended at `ended`; `media` (the call's figures) only counts once it
    /// was answered.
    pub fn record(&self, ended: Instant, media: Option<&MediaView>) -> CallRecord {
        let wall = |at: Instant| self.started_wall + at.saturating_duration_since(self.started);
        let mut r = CallRecord::new(self.call, self.direction, self.called_raw.clone());
        r.sip_call_id = self.sip_call_id.clone();
        r.carrier_session = self.carrier_session.clone();
        r.carrier_account = self.carrier_account.clone();
        r.trunk = self.trunk.clone();
        r.called = self.called.clone();
        r.caller_raw = self.caller_raw.clone();
        r.caller = self.caller.clone();
        r.started = self.started_wall;
        r.answered = self.answered.map(wall);
        r.ended = wall(ended);
        r.sip_code = self.sip_code;
        r.sip_reason = self.sip_reason.clone();
        r.carrier_code = self.carrier_code;
        r.carrier_reason = self.carrier_reason.clone();
        r.ended_by = self.ended_by;
        if let Some(m) = media.filter(|_| self.was_answered()) {
            r.take_counters(m.counters());
            r.quality = Some(m.quality());
        }
        r
    }
}
