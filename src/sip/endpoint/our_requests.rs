//! What a call asks of its dialog ([`DialogCommand`]) and the requests we send in it: BYE and
//! re-INVITE built on the dialog's route, target, tags and CSeq (RFC 3261 12.2.1), their client
//! transactions, the ACK of a 2xx, and the responses and timeouts routed back to the call.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use tracing::debug;

use super::dialog::{Dialog, Phase, Reinvite};
use super::{Endpoint, ALLOW, SUPPORTED};
use crate::sip::message::{Method, Request, Response};
use crate::sip::parse::ResponseInfo;
use crate::sip::route;
use crate::sip::stats::SipStats;
use crate::sip::transaction::{ClientRx, Transmit, TxId, TxKey};
use crate::sip::tu::{CallRef, DialogCommand, OwnRequest, Reply};

impl Endpoint {
    /// A call's command.
    pub fn handle_command(&mut self, cmd: DialogCommand, now: Instant) {
        match cmd {
            DialogCommand::Respond(call, reply) => self.respond_invite(call, reply, now),
            DialogCommand::RespondReinvite(call, reply) => self.respond_reinvite(call, reply, now),
            DialogCommand::Invite(call, inv) => self.send_invite(call, *inv, now),
            DialogCommand::Cancel(call) => self.cancel_invite(call, now),
            DialogCommand::Reinvite(call, sdp, headers) => {
                self.send_reinvite(call, sdp, headers, now)
            }
            DialogCommand::Bye(call, reason) => self.send_bye(call, reason, now),
            DialogCommand::Forget(call) => {
                let pending = self
                    .dialogs
                    .by_ref
                    .get(&call)
                    .is_some_and(|d| matches!(d.phase, Phase::Answering(_)));
                if pending {
                    // A final response the call never sent: the PBX must not wait forever.
                    self.respond_invite(call, Reply::new(500), now);
                }
                self.dialogs.remove(call);
            }
        }
    }

    /// `host:port` of our Via and Contact.
    pub(super) fn sent_by(&self) -> String {
        match self.advertise {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => a.to_string(),
        }
    }

    pub(super) fn contact(&self) -> String {
        format!("<sip:trunkgate@{}>", self.sent_by())
    }

    /// A fresh Via branch (RFC 3261 8.1.1.7: the magic cookie first).
    pub(super) fn branch(&mut self) -> String {
        format!("z9hG4bK-tg{:016x}", self.rng.gen::<u64>())
    }

    /// A fresh From/To tag.
    pub(super) fn new_tag(&mut self) -> String {
        format!("{:08x}", self.rng.gen::<u32>())
    }

    /// A fresh Call-ID for a request of ours outside any dialog of the PBX's.
    pub(super) fn new_call_id(&mut self) -> String {
        format!("{:032x}@trunkgate", self.rng.gen::<u128>())
    }

    /// Our Via for a request with `branch`.
    pub(super) fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP {};branch={branch};rport", self.sent_by())
    }

    /// Builds a request in `d`'s dialog.
    pub(super) fn dialog_request(
        &self,
        d: &Dialog,
        method: Method,
        cseq: u32,
        via_branch: &str,
        body: Option<&str>,
        extra: &[(&'static str, String)],
    ) -> Request {
        let (uri, routes) = route::apply(&d.remote_target, &d.route_set);
        let mut r = Request::new(method.clone(), uri);
        r.headers.push("Via", self.via(via_branch));
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", d.local.clone());
        r.headers.push("To", d.remote.clone());
        r.headers.push("Call-ID", d.call_id.clone());
        let cseq_method = if method == Method::Ack {
            "ACK".to_string()
        } else {
            method.as_str().to_string()
        };
        r.headers.push("CSeq", format!("{cseq} {cseq_method}"));
        for v in routes {
            r.headers.push("Route", v);
        }
        if matches!(method, Method::Invite) {
            r.headers.push("Contact", self.contact());
            r.headers.push("Allow", ALLOW);
            r.headers.push("Supported", SUPPORTED.join(", "));
        }
        r.headers.push("User-Agent", self.server_header.clone());
        for (n, v) in extra {
            r.headers.push(*n, v.clone());
        }
        if let Some(b) = body {
            r.headers.push("Content-Type", "application/sdp");
            r.body = b.as_bytes().to_vec();
        }
        r
    }

    /// Sends `req` in a new client transaction owned by `call`.
    pub(super) fn start_client(
        &mut self,
        call: CallRef,
        purpose: OwnRequest,
        req: &Request,
        branch: &str,
        dest: SocketAddr,
        now: Instant,
    ) -> TxId {
        let id = self.send_request(req, branch, dest, now);
        SipStats::inc(&self.stats.requests_sent);
        self.dialogs.client_owner.insert(id, (call, purpose));
        id
    }

    /// Sends `req` (its Via carrying `branch`) to `dest` in a new client transaction.
    pub(super) fn send_request(
        &mut self,
        req: &Request,
        branch: &str,
        dest: SocketAddr,
        now: Instant,
    ) -> TxId {
        let key = TxKey::Rfc3261 {
            branch: branch.to_string(),
            sent_by: self.sent_by().to_ascii_lowercase(),
            method: req.method.as_str().to_string(),
        };
        let invite = req.method == Method::Invite;
        let (id, t) = self
            .client
            .send(key, invite, req.to_bytes().into(), dest, now);
        self.out.push_back(t);
        id
    }

    pub(super) fn send_bye(&mut self, call: CallRef, reason: Option<String>, now: Instant) {
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        let Phase::Confirmed(c) = &mut d.phase else {
            if !matches!(d.phase, Phase::Ended { .. }) {
                debug!(
                    call = call.0,
                    "BYE asked for a dialog that is not confirmed: ignored"
                );
            }
            return;
        };
        if let Some(u) = c.unacked.as_mut() {
            // RFC 3261 15: a UAS must not send BYE before the ACK (or its timeout)
            u.then_bye = true;
            return;
        }
        d.end();
        d.local_cseq += 1;
        let (cseq, peer) = (d.local_cseq, d.peer);
        let b = self.branch();
        let extra: Vec<(&'static str, String)> =
            reason.map(|r| vec![("Reason", r)]).unwrap_or_default();
        let d = &self.dialogs.by_ref[&call];
        let req = self.dialog_request(d, Method::Bye, cseq, &b, None, &extra);
        self.start_client(call, OwnRequest::Bye, &req, &b, peer, now);
    }

    fn send_reinvite(
        &mut self,
        call: CallRef,
        sdp: String,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) {
        let b = self.branch();
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        match d.confirmed() {
            Some(c) if matches!(c.reinvite, Reinvite::Idle) => c.reinvite = Reinvite::Ours,
            _ => {
                // Glare or a dead dialog: tell the call as a 491 so it retries later.
                self.dialogs
                    .fail(call, OwnRequest::Reinvite, 491, "Request Pending");
                return;
            }
        }
        d.local_cseq += 1;
        let (cseq, peer) = (d.local_cseq, d.peer);
        let d = &self.dialogs.by_ref[&call];
        let req = self.dialog_request(d, Method::Invite, cseq, &b, Some(&sdp), &extra);
        self.start_client(call, OwnRequest::Reinvite, &req, &b, peer, now);
    }

    /// ACK for a 2xx to our INVITE or re-INVITE, kept for its retransmissions.
    pub(super) fn ack_2xx(&mut self, call: CallRef, cseq: u32) {
        let b = self.branch();
        let Some(d) = self.dialogs.by_ref.get(&call) else {
            return;
        };
        let req = self.dialog_request(d, Method::Ack, cseq, &b, None, &[]);
        let t = Transmit {
            dest: d.peer,
            bytes: req.to_bytes().into(),
        };
        self.out.push_back(t.clone());
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            match &mut d.phase {
                Phase::Confirmed(c) => c.our_ack = Some(t),
                Phase::Ended { our_ack } => *our_ack = Some(t),
                _ => {}
            }
        }
    }

    /// A response to one of our requests, matched to its client transaction.
    fn call_response(
        &mut self,
        id: TxId,
        resp: &Response,
        info: &ResponseInfo,
        needs_ack: bool,
        now: Instant,
    ) {
        let Some((call, purpose)) = self.dialogs.client_owner.get(&id).copied() else {
            return;
        };
        let code = resp.code;
        if code >= 200 {
            self.dialogs.client_owner.remove(&id);
        }
        match purpose {
            OwnRequest::Bye => {}
            OwnRequest::Invite => self.invite_response(id, call, resp, info, now),
            OwnRequest::Reinvite => {
                if code >= 200 {
                    if let Some(c) = self
                        .dialogs
                        .by_ref
                        .get_mut(&call)
                        .and_then(|d| d.confirmed())
                    {
                        c.reinvite = Reinvite::Idle;
                    }
                }
                if needs_ack {
                    self.ack_non_2xx(id, call, resp, info);
                } else if (200..300).contains(&code) {
                    self.ack_2xx(call, info.cseq.seq);
                }
                if code >= 200 {
                    self.deliver_response(call, OwnRequest::Reinvite, resp);
                }
            }
        }
    }

    /// A client transaction gave up (Timer B/F): the call hears a 408.
    pub(super) fn call_client_timeout(&mut self, id: TxId) {
        if self.qualify_timeout(id) {
            return;
        }
        let Some((call, purpose)) = self.dialogs.client_owner.remove(&id) else {
            return;
        };
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            match purpose {
                OwnRequest::Reinvite => {
                    if let Some(c) = d.confirmed() {
                        c.reinvite = Reinvite::Idle;
                    }
                }
                OwnRequest::Invite => d.end(),
                OwnRequest::Bye => {}
            }
        }
        if purpose != OwnRequest::Bye {
            self.dialogs.fail(call, purpose, 408, "Request Timeout");
        }
    }

    /// Routes a client-transaction response to its call, if it belongs to one.
    pub(super) fn client_response(
        &mut self,
        rx: ClientRx,
        resp: &Response,
        info: &ResponseInfo,
        now: Instant,
    ) {
        if let ClientRx::Deliver(id) | ClientRx::DeliverNeedsAck(id) = rx {
            if self.qualify_answer(id, now) {
                return;
            }
        }
        match rx {
            ClientRx::Deliver(id)
                if (200..300).contains(&resp.code)
                    && info.cseq.method == "INVITE"
                    && !self.dialogs.client_owner.contains_key(&id) =>
            {
                // A retransmitted 2xx while our INVITE's transaction is Accepted (the first one
                // took the owner): our ACK again, as for one after the transaction ended.
                self.client_response(ClientRx::Stray, resp, info, now)
            }
            ClientRx::Deliver(id) => self.call_response(id, resp, info, false, now),
            ClientRx::DeliverNeedsAck(id) => self.call_response(id, resp, info, true, now),
            ClientRx::Absorbed(Some(t)) => self.out.push_back(t),
            ClientRx::Absorbed(None) => {}
            ClientRx::Stray => {
                // A retransmitted 2xx to our INVITE after its transaction ended: ACK again.
                if (200..300).contains(&resp.code) && info.cseq.method == "INVITE" {
                    let ack = self
                        .dialogs
                        .by_call_id
                        .get(&info.call_id)
                        .and_then(|call| self.dialogs.by_ref.get(call))
                        .and_then(|d| d.our_ack().cloned());
                    if let Some(t) = ack {
                        self.out.push_back(t);
                        return;
                    }
                }
                SipStats::inc(&self.stats.stray_responses);
                debug!(code = resp.code, "stray response dropped");
            }
        }
    }
}
