//! Call admission: whether an authenticated INVITE from a PBX becomes a call (draining, the
//! trunk's number policy, the concurrent call limits, loop detection, the caller's number),
//! and the limits a carrier call toward a PBX is held to. A refusal is answered here and
//! reported to the transaction user as facts ([`RefusedInvite`]), not as a record.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use tracing::{info, warn};

use super::answer::Answer;
use super::dialog::{sdp_of, timer_headers, Dialog, Pending, Phase};
use super::{Endpoint, Peer};
use crate::numbers::{CallerIdInput, Special, Verdict};
use crate::sip::grammar::{NameAddr, Uri};
use crate::sip::message::Request;
use crate::sip::parse::RequestInfo;
use crate::sip::route;
use crate::sip::shared::NonceUse;
use crate::sip::stats::SipStats;
use crate::sip::transaction::TxId;
use crate::sip::tu::{
    reason_header, warning_header, AdmittedInvite, CallRef, DialogEvent, RefusedInvite, Reply,
};

/// Who an authenticated INVITE is from: the trunk (its index), where it came from, and the
/// nonce use its digest spent.
pub(super) struct Authenticated {
    pub trunk: usize,
    pub peer: Peer,
    pub nonce: Option<NonceUse>,
}

impl Endpoint {
    /// Whether one more call on `trunk` (its index) would pass a concurrent call limit.
    pub(super) fn over_limit(&self, trunk: usize) -> bool {
        let t = &self.auth.trunks()[trunk];
        let on_trunk = self.dialogs.on_trunk(&t.name);
        self.dialogs.active() >= self.max_calls || t.max_calls.is_some_and(|m| on_trunk >= m)
    }

    /// An INVITE without To tag that passed authentication: number policy, limits, then a call.
    /// `None` when the call answers (the core has sent 100 Trying).
    pub(super) fn new_call(
        &mut self,
        id: TxId,
        caller: Authenticated,
        req: &Request,
        info: &RequestInfo,
        now: Instant,
    ) -> Option<Answer> {
        let Authenticated { trunk, peer, nonce } = caller;
        let name = self.auth.trunks()[trunk].name.clone();
        let call = self.next_call.next();
        let dialled = if info.request_uri.user.is_some() {
            req.uri.as_str()
        } else {
            info.to.uri_text.as_str()
        };
        let dialled_user = Uri::parse(dialled)
            .ok()
            .and_then(|u| u.user)
            .unwrap_or_else(|| dialled.to_string());
        let mut refusal = RefusedInvite {
            trunk: name.clone(),
            call_id: info.call_id.clone(),
            dialled: dialled_user.clone(),
            called: None,
            from_uri: info.from.uri_text.clone(),
            code: 0,
            reason: String::new(),
        };
        if self.draining {
            let a = Answer::new(503)
                .reason("Shutting Down")
                .header("Retry-After", "60");
            return Some(self.refuse(call, refusal, a));
        }
        let destination = match self.policies[trunk].check(dialled) {
            Verdict::Refused(r) => {
                SipStats::inc(&self.stats.number_refusals);
                warn!(trunk = %name, call_id = %info.call_id, code = r.code, cause = r.cause.as_str(),
                      reason = %r.reason, "dialled number refused");
                let a = Answer::new(r.code)
                    .header("Warning", warning_header(399, &r.reason))
                    .header("Reason", reason_header("SIP", r.code, &r.reason));
                return Some(self.refuse(call, refusal, a));
            }
            Verdict::Allowed(d) => d,
        };
        refusal.called = Some(destination.e164.clone());
        let over_limit = self.over_limit(trunk);
        // A limit protects the carrier account and the machine; refusing an emergency call to
        // protect them would be the wrong trade.
        let emergency = destination.special == Some(Special::Emergency);
        let (active, on_trunk) = (self.dialogs.active(), self.dialogs.on_trunk(&name));
        if over_limit && emergency {
            warn!(trunk = %name, call_id = %info.call_id, active, on_trunk,
                  "emergency call admitted over the concurrent call limit");
        }
        if over_limit && !emergency {
            SipStats::inc(&self.stats.call_limit_refusals);
            warn!(trunk = %name, call_id = %info.call_id, active, on_trunk,
                  "call refused: concurrent call limit reached");
            let code = self.limit_response;
            let mut a = Answer::new(code).reason("Call Limit Reached");
            if code == 503 {
                a = a.header("Retry-After", "5");
            }
            return Some(self.refuse(call, refusal, a));
        }
        if self.dialogs.by_call_id.contains_key(&info.call_id) {
            // A second INVITE with a new branch but the Call-ID of a live call (a forked or
            // confused PBX): RFC 3261 8.2.2.2 loop/merge detection.
            return Some(self.refuse(call, refusal, Answer::new(482)));
        }
        let caller = self.policies[trunk].caller_id(
            &CallerIdInput {
                p_asserted_identity: req.headers.get("P-Asserted-Identity"),
                remote_party_id: req.headers.get("Remote-Party-ID"),
                from: req.headers.get("From"),
                privacy: req.headers.get("Privacy"),
            },
            self.auth.trunks()[trunk].default_caller_id.as_deref(),
        );
        let dialog = self.answering_dialog(id, name.clone(), req, info, peer.src);
        info!(call = call.0, trunk = %name, call_id = %info.call_id, destination = %destination.e164,
              "outbound call accepted for the carrier");
        self.dialogs.insert(call, dialog);
        let invite = AdmittedInvite {
            trunk: name,
            call_id: info.call_id.clone(),
            dialled: dialled_user,
            destination,
            caller,
            from_uri: info.from.uri_text.clone(),
            source: peer.pbx,
            nonce,
            sdp: sdp_of(&req.body),
            timer: timer_headers(&req.headers),
        };
        self.dialogs
            .event(call, DialogEvent::Admitted(Box::new(invite)));
        // 100 Trying at once: the carrier leg takes a while.
        self.respond_invite(call, Reply::new(100), now);
        None
    }

    /// The dialog of an admitted INVITE: we answer it.
    fn answering_dialog(
        &mut self,
        id: TxId,
        trunk: String,
        req: &Request,
        info: &RequestInfo,
        src: SocketAddr,
    ) -> Dialog {
        let local_tag = self.new_tag();
        let to_value = req.headers.get("To").unwrap_or_default();
        // The route set of a UAS dialog is the Record-Route list in order. Our requests follow
        // it when a trusted proxy relayed the INVITE; from anyone else they go back to where
        // the INVITE came from (its NAT), whatever it recorded.
        let route_set: Vec<String> = req
            .headers
            .list_items("Record-Route")
            .map(str::to_owned)
            .collect();
        let peer = if self.proxies.contains(src.ip()) {
            route::next_hop(&route_set).unwrap_or(src)
        } else {
            src
        };
        let remote_target = req
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|n| n.uri_text)
            .unwrap_or_else(|| info.from.uri_text.clone());
        Dialog {
            trunk,
            call_id: info.call_id.clone(),
            local: format!("{to_value};tag={local_tag}"),
            local_tag,
            remote: req.headers.get("From").unwrap_or_default().to_string(),
            local_cseq: u32::from(self.rng.gen::<u16>()) + 1,
            remote_cseq: info.cseq.seq,
            remote_target,
            route_set,
            peer,
            phase: Phase::Answering(Box::new(Pending {
                tx: id,
                req: req.clone(),
                info: info.clone(),
                src,
            })),
        }
    }

    /// Answers `a` and tells the transaction user what was refused.
    fn refuse(&mut self, call: CallRef, mut refusal: RefusedInvite, a: Answer) -> Answer {
        refusal.code = a.code;
        refusal.reason = a
            .reason
            .clone()
            .unwrap_or_else(|| crate::sip::message::reason_phrase(a.code).into());
        self.dialogs
            .event(call, DialogEvent::Refused(Box::new(refusal)));
        a
    }
}
