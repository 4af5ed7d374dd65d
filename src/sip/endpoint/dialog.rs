//! One dialog toward a PBX (RFC 3261 12) as the endpoint keeps it, and the table of them: who
//! the parties are, the CSeqs and the route, and the dialog's phase with the data that phase
//! has, so a phase cannot be reached without it (a pending INVITE while we answer, our INVITE
//! while we call, the unacknowledged 2xx and re-INVITE exchange once confirmed).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sip::deadlines::DeadlineHeap;
use crate::sip::grammar::NameAddr;
use crate::sip::message::Request;
use crate::sip::parse::RequestInfo;
use crate::sip::transaction::{Transmit, TxId};
use crate::sip::tu::{CallRef, DialogEvent, OwnRequest, TimerHeaders};

/// What the endpoint keeps of one call's dialog toward the PBX.
#[derive(Debug)]
pub(super) struct Dialog {
    /// The trunk's name (indices change on reload).
    pub trunk: String,
    pub call_id: String,
    pub local_tag: String,
    /// From/To header values as we write them in our requests (tags included once known).
    pub local: String,
    pub remote: String,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Where our in-dialog requests go: the PBX's Contact URI, and the address its signalling
    /// comes from (NAT: the Contact may name a private address).
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub peer: SocketAddr,
    pub phase: Phase,
}

/// Where a dialog stands, with what that phase needs.
#[derive(Debug)]
pub(super) enum Phase {
    /// We answer: the PBX's INVITE has no final response yet.
    Answering(Box<Pending>),
    /// We call: our INVITE toward the PBX has no final response yet.
    Calling(OurInvite),
    /// A 2xx was sent or received: in-dialog requests flow.
    Confirmed(Confirmed),
    /// Hung up, or the INVITE failed: kept until the call forgets it. Our ACK stays, for a 2xx
    /// to our INVITE that is retransmitted after our BYE.
    Ended { our_ack: Option<Transmit> },
}

/// A confirmed dialog's moving parts.
#[derive(Debug, Default)]
pub(super) struct Confirmed {
    /// Our 2xx to the INVITE or a re-INVITE, retransmitted until the ACK (RFC 3261 13.3.1.4).
    pub unacked: Option<Unacked>,
    /// A re-INVITE exchange under way.
    pub reinvite: Reinvite,
    /// Our ACK to the 2xx of our INVITE, resent on each retransmission of that 2xx.
    pub our_ack: Option<Transmit>,
}

/// Who has a re-INVITE under way in a confirmed dialog.
#[derive(Debug, Default)]
pub(super) enum Reinvite {
    #[default]
    Idle,
    /// The PBX's, waiting for the call's answer.
    FromPbx(Box<Pending>),
    /// Ours (the PBX's gets 491 meanwhile).
    Ours,
}

/// A request from the PBX waiting for the call's answer.
#[derive(Debug)]
pub(super) struct Pending {
    pub tx: TxId,
    pub req: Request,
    pub info: RequestInfo,
    pub src: SocketAddr,
}

/// Our 2xx, until the ACK.
#[derive(Debug)]
pub(super) struct Unacked {
    pub bytes: Arc<[u8]>,
    pub dest: SocketAddr,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
    pub cseq: u32,
    /// The call asked for BYE meanwhile (RFC 3261 15: not before the ACK).
    pub then_bye: bool,
}

/// Our INVITE toward the trunk while it has no final response.
#[derive(Debug)]
pub(super) struct OurInvite {
    pub cseq: u32,
    /// The INVITE as sent, for CANCEL and for a retry with credentials.
    pub via: String,
    pub uri: String,
    pub got_provisional: bool,
    pub cancel_wanted: bool,
    pub auth_tried: bool,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Dialog {
    /// Our ACK to a 2xx of our INVITE, in whichever phase still has one.
    pub fn our_ack(&self) -> Option<&Transmit> {
        match &self.phase {
            Phase::Confirmed(c) => c.our_ack.as_ref(),
            Phase::Ended { our_ack } => our_ack.as_ref(),
            _ => None,
        }
    }

    /// The confirmed dialog's parts, if it is confirmed.
    pub fn confirmed(&mut self) -> Option<&mut Confirmed> {
        match &mut self.phase {
            Phase::Confirmed(c) => Some(c),
            _ => None,
        }
    }

    /// The phase becomes `Ended`, keeping our ACK.
    pub fn end(&mut self) {
        let our_ack = self.our_ack().cloned();
        self.phase = Phase::Ended { our_ack };
    }
}

/// The calls' share of the endpoint: every dialog, its indexes and its timers, and the events
/// waiting for the transaction user.
#[derive(Debug, Default)]
pub(super) struct Dialogs {
    pub by_ref: HashMap<CallRef, Dialog>,
    pub by_call_id: HashMap<String, CallRef>,
    /// The PBX's INVITE transactions still pending, for CANCEL.
    pub by_invite_tx: HashMap<TxId, CallRef>,
    /// Our client transactions and what they are for.
    pub client_owner: HashMap<TxId, (CallRef, OwnRequest)>,
    /// 2xx retransmissions.
    pub timers: DeadlineHeap<CallRef>,
    pub to_calls: VecDeque<(CallRef, DialogEvent)>,
    per_trunk: HashMap<String, usize>,
    /// A call whose INVITE gets its 487 once the CANCEL's 200 is out (the order PBXs expect).
    pub cancelled: Option<CallRef>,
}

impl Dialogs {
    pub fn active(&self) -> usize {
        self.by_ref.len()
    }

    pub fn on_trunk(&self, trunk: &str) -> usize {
        self.per_trunk.get(trunk).copied().unwrap_or(0)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    pub fn insert(&mut self, call: CallRef, d: Dialog) {
        *self.per_trunk.entry(d.trunk.clone()).or_default() += 1;
        self.by_call_id.insert(d.call_id.clone(), call);
        if let Phase::Answering(p) = &d.phase {
            self.by_invite_tx.insert(p.tx, call);
        }
        self.by_ref.insert(call, d);
    }

    pub fn remove(&mut self, call: CallRef) {
        if let Some(d) = self.by_ref.remove(&call) {
            if let Some(n) = self.per_trunk.get_mut(&d.trunk) {
                *n = n.saturating_sub(1);
            }
            if self.by_call_id.get(&d.call_id) == Some(&call) {
                self.by_call_id.remove(&d.call_id);
            }
            if let Phase::Answering(p) = &d.phase {
                self.by_invite_tx.remove(&p.tx);
            }
        }
        self.client_owner.retain(|_, (c, _)| *c != call);
    }

    pub fn event(&mut self, call: CallRef, event: DialogEvent) {
        self.to_calls.push_back((call, event));
    }

    /// Tells `call` its `request` failed with `code` without any response from the PBX (glare,
    /// no trunk, a transaction timeout).
    pub fn fail(&mut self, call: CallRef, request: OwnRequest, code: u16, reason: &str) {
        self.event(
            call,
            DialogEvent::Response {
                request,
                code,
                reason: reason.into(),
                sdp: None,
                timer: TimerHeaders::default(),
            },
        );
    }

    /// The dialog an in-dialog request belongs to: Call-ID and both tags must match.
    pub fn find(&self, info: &RequestInfo) -> Option<CallRef> {
        let call = *self.by_call_id.get(&info.call_id)?;
        let d = self.by_ref.get(&call)?;
        let to_tag = info.to.tag()?;
        let from_tag = info.from.tag().unwrap_or_default();
        let remote_tag = NameAddr::parse(&d.remote)
            .ok()
            .and_then(|n| n.tag().map(str::to_owned))
            .unwrap_or_default();
        (to_tag == d.local_tag && from_tag == remote_tag).then_some(call)
    }
}

/// The RFC 4028 headers of a message, as the call layer reads them.
pub(super) fn timer_headers(headers: &crate::sip::message::Headers) -> TimerHeaders {
    TimerHeaders {
        session_expires: headers.get("Session-Expires").map(str::to_owned),
        min_se: headers.get("Min-SE").map(str::to_owned),
        supports_timer: headers
            .list_items("Supported")
            .chain(headers.list_items("Require"))
            .any(|o| o.eq_ignore_ascii_case("timer")),
    }
}

/// A message body as SDP text, `None` when empty.
pub(super) fn sdp_of(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(body).into_owned())
    }
}
