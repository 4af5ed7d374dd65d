//! The dialogs of calls (RFC 3261 12-15) inside the endpoint core, still without I/O: the PBX's
//! INVITE turned into a call, responses built with the dialog's tag, our 2xx retransmitted
//! until ACKed (13.3.1.4), in-dialog requests matched (481 otherwise), CANCEL, BYE and
//! re-INVITE, and the requests a call asks for (INVITE toward a trunk, re-INVITE, BYE, CANCEL,
//! ACK) built and handed to client transactions. Calls see only `DialogEvent` / `DialogCommand`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Answer, Endpoint, ALLOW, SUPPORTED};
use crate::numbers::{CallerIdInput, Special, Verdict};
use crate::sip::grammar::{NameAddr, Uri};
use crate::sip::message::{Method, Request, Response};
use crate::sip::parse::{RequestInfo, ResponseInfo};
use crate::sip::response;
use crate::sip::stats::SipStats;
use crate::sip::transaction::{ClientRx, Transmit, TxId, TxKey};
use crate::sip::tu::{
    quotable, reason_header, warning_header, AdmittedInvite, CallRef, DialogCommand, DialogEvent,
    InviteToPbx, OwnRequest, RefusedInvite, Reply, TimerHeaders,
};

/// What the endpoint keeps of one call's dialog toward the PBX.
#[derive(Debug)]
pub(super) struct Dialog {
    /// The trunk's name (indices change on reload).
    trunk: String,
    call_id: String,
    local_tag: String,
    /// From/To header values as we write them in our requests (tags included once known).
    local: String,
    remote: String,
    local_cseq: u32,
    remote_cseq: u32,
    /// Where our in-dialog requests go: the PBX's Contact URI, and the address its signalling
    /// comes from (NAT: the Contact may name a private address).
    remote_target: String,
    route_set: Vec<String>,
    peer: SocketAddr,
    /// The PBX's INVITE while it has no final response (UAS side).
    invite: Option<Pending>,
    /// Our 2xx to the initial INVITE or a re-INVITE, retransmitted until the ACK.
    unacked: Option<Unacked>,
    /// The PBX's re-INVITE waiting for the call's answer.
    reinvite: Option<Pending>,
    /// Our INVITE toward the trunk (UAC side) while it has no final response.
    uac_invite: Option<UacInvite>,
    /// Our ACK to the 2xx of our INVITE, resent on each retransmitted 2xx.
    our_ack: Option<Transmit>,
    /// A re-INVITE of ours is in progress (491 to one from the PBX meanwhile).
    reinvite_out: bool,
    /// The call asked for BYE before the ACK of our 2xx arrived.
    bye_after_ack: bool,
    confirmed: bool,
    ended: bool,
}

/// Who we are and whom we talk to in a new dialog; the rest starts empty.
struct DialogParties {
    trunk: String,
    call_id: String,
    local_tag: String,
    local: String,
    remote: String,
    local_cseq: u32,
    remote_target: String,
    peer: SocketAddr,
}

impl Dialog {
    fn new(p: DialogParties) -> Dialog {
        Dialog {
            trunk: p.trunk,
            call_id: p.call_id,
            local_tag: p.local_tag,
            local: p.local,
            remote: p.remote,
            local_cseq: p.local_cseq,
            remote_cseq: 0,
            remote_target: p.remote_target,
            route_set: Vec::new(),
            peer: p.peer,
            invite: None,
            unacked: None,
            reinvite: None,
            uac_invite: None,
            our_ack: None,
            reinvite_out: false,
            bye_after_ack: false,
            confirmed: false,
            ended: false,
        }
    }
}

#[derive(Debug)]
struct Pending {
    tx: TxId,
    req: Request,
    info: RequestInfo,
    src: SocketAddr,
}

#[derive(Debug)]
struct Unacked {
    bytes: Arc<[u8]>,
    dest: SocketAddr,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    cseq: u32,
}

#[derive(Debug)]
struct UacInvite {
    cseq: u32,
    /// The INVITE as sent, for CANCEL and for a retry with credentials.
    via: String,
    uri: String,
    got_provisional: bool,
    cancel_wanted: bool,
    auth_tried: bool,
    body: String,
    headers: Vec<(&'static str, String)>,
}

/// The calls' share of the endpoint.
#[derive(Debug, Default)]
pub(super) struct Dialogs {
    by_ref: HashMap<CallRef, Dialog>,
    by_call_id: HashMap<String, CallRef>,
    by_invite_tx: HashMap<TxId, CallRef>,
    client_owner: HashMap<TxId, (CallRef, OwnRequest)>,
    timers: BinaryHeap<Reverse<(Instant, CallRef)>>,
    pub(super) to_calls: VecDeque<(CallRef, DialogEvent)>,
    per_trunk: HashMap<String, usize>,
    /// A call whose INVITE gets its 487 once the CANCEL's 200 is out (the order PBXs expect).
    pub(super) cancelled: Option<CallRef>,
}

impl Dialogs {
    pub(super) fn active(&self) -> usize {
        self.by_ref.len()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn insert(&mut self, call: CallRef, d: Dialog) {
        *self.per_trunk.entry(d.trunk.clone()).or_default() += 1;
        self.by_call_id.insert(d.call_id.clone(), call);
        self.by_ref.insert(call, d);
    }

    fn remove(&mut self, call: CallRef) {
        if let Some(d) = self.by_ref.remove(&call) {
            if let Some(n) = self.per_trunk.get_mut(&d.trunk) {
                *n = n.saturating_sub(1);
            }
            if self.by_call_id.get(&d.call_id) == Some(&call) {
                self.by_call_id.remove(&d.call_id);
            }
            if let Some(p) = &d.invite {
                self.by_invite_tx.remove(&p.tx);
            }
        }
        self.client_owner.retain(|_, (c, _)| *c != call);
    }

    /// Tells `call` its `request` failed with `code` without any response from the PBX (glare,
    /// no trunk, a transaction timeout).
    fn fail(&mut self, call: CallRef, request: OwnRequest, code: u16, reason: &str) {
        self.to_calls.push_back((
            call,
            DialogEvent::Response {
                request,
                code,
                reason: reason.into(),
                sdp: None,
                timer: TimerHeaders::default(),
            },
        ));
    }

    /// The dialog an in-dialog request belongs to: Call-ID and both tags must match.
    pub(super) fn find(&self, info: &RequestInfo) -> Option<CallRef> {
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

fn timer_headers(req_headers: &crate::sip::message::Headers) -> TimerHeaders {
    TimerHeaders {
        session_expires: req_headers.get("Session-Expires").map(str::to_owned),
        min_se: req_headers.get("Min-SE").map(str::to_owned),
        supports_timer: req_headers
            .list_items("Supported")
            .chain(req_headers.list_items("Require"))
            .any(|o| o.eq_ignore_ascii_case("timer")),
    }
}

fn sdp_of(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(body).into_owned())
    }
}

/// `uri` (a registered Contact) with its user part replaced by `user`, every parameter kept.
fn with_user(uri: &str, user: &str) -> Option<String> {
    let parsed = Uri::parse(uri).ok()?;
    if !parsed.is_sip() {
        return None;
    }
    let (scheme, rest) = uri.split_once(':')?;
    let host_part = match rest.split_once('@') {
        Some((_, h)) => h,
        None => rest,
    };
    // A registered Contact may carry URI headers (`?Subject=...`); a Request-URI may not
    // (RFC 3261 19.1.5), so they are left out rather than sent where no parser takes them.
    let host_part = host_part.split_once('?').map_or(host_part, |(h, _)| h);
    Some(format!("{scheme}:{user}@{host_part}"))
}

fn branch() -> String {
    format!("z9hG4bK-tg{:016x}", rand::random::<u64>())
}

impl Endpoint {
    /// `host:port` of our Via and Contact.
    fn sent_by(&self) -> String {
        match self.advertise {
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            SocketAddr::V4(a) => a.to_string(),
        }
    }

    fn contact(&self) -> String {
        format!("<sip:trunkgate@{}>", self.sent_by())
    }

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
                if let Some(d) = self.dialogs.by_ref.get(&call) {
                    // A final response the call never sent: the PBX must not wait forever.
                    if d.invite.is_some() {
                        self.respond_invite(call, Reply::new(500), now);
                    }
                }
                self.dialogs.remove(call);
            }
        }
    }

    /// An INVITE without To tag that passed authentication: number policy, limits, then a call.
    pub(super) fn new_call(
        &mut self,
        id: TxId,
        trunk: usize,
        req: &Request,
        info: &RequestInfo,
        src: SocketAddr,
        now: Instant,
    ) -> Option<Answer> {
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
        let mut record = RefusedInvite {
            trunk: name.clone(),
            call_id: info.call_id.clone(),
            dialled: dialled_user.clone(),
            called: None,
            from_uri: info.from.uri_text.clone(),
            code: 0,
            reason: String::new(),
        };
        let refuse = |this: &mut Endpoint, mut record: RefusedInvite, a: Answer| {
            record.code = a.code;
            record.reason = a
                .reason
                .clone()
                .unwrap_or_else(|| crate::sip::message::reason_phrase(a.code).into());
            this.dialogs
                .to_calls
                .push_back((call, DialogEvent::Refused(Box::new(record))));
            Some(a)
        };
        if self.draining {
            return refuse(
                self,
                record,
                Answer::new(503)
                    .reason("Shutting Down")
                    .header("Retry-After", "60"),
            );
        }
        let destination = match self.policies[trunk].check(dialled) {
            Verdict::Refused(r) => {
                SipStats::inc(&self.stats.number_refusals);
                warn!(trunk = %name, call_id = %info.call_id, code = r.code, cause = r.cause.as_str(),
                      reason = %r.reason, "dialled number refused");
                let a = Answer::new(r.code)
                    .header("Warning", warning_header(399, &r.reason))
                    .header("Reason", reason_header("SIP", r.code, &r.reason));
                return refuse(self, record, a);
            }
            Verdict::Allowed(d) => d,
        };
        record.called = Some(destination.e164.clone());
        let trunk_cfg = &self.auth.trunks()[trunk];
        let on_trunk = self.dialogs.per_trunk.get(&name).copied().unwrap_or(0);
        let over_limit = self.dialogs.active() >= self.max_calls
            || trunk_cfg.max_calls.is_some_and(|m| on_trunk >= m);
        // A limit protects the carrier account and the machine; refusing an emergency call to
        // protect them would be the wrong trade.
        let emergency = destination.special == Some(Special::Emergency);
        if over_limit && emergency {
            warn!(trunk = %name, call_id = %info.call_id, active = self.dialogs.active(), on_trunk,
                  "emergency call admitted over the concurrent call limit");
        }
        if over_limit && !emergency {
            SipStats::inc(&self.stats.call_limit_refusals);
            warn!(trunk = %name, call_id = %info.call_id, active = self.dialogs.active(),
                  on_trunk, "call refused: concurrent call limit reached");
            let code = self.limit_response;
            let mut a = Answer::new(code).reason("Call Limit Reached");
            if code == 503 {
                a = a.header("Retry-After", "5");
            }
            return refuse(self, record, a);
        }
        if self.dialogs.by_call_id.contains_key(&info.call_id) {
            // A second INVITE with a new branch but the Call-ID of a live call (a forked or
            // confused PBX): RFC 3261 8.2.2.2 loop/merge detection.
            return refuse(self, record, Answer::new(482));
        }
        let caller = self.policies[trunk].caller_id(
            &CallerIdInput {
                p_asserted_identity: req.headers.get("P-Asserted-Identity"),
                remote_party_id: req.headers.get("Remote-Party-ID"),
                from: req.headers.get("From"),
                privacy: req.headers.get("Privacy"),
            },
            trunk_cfg.default_caller_id.as_deref(),
        );
        let local_tag = response::new_tag();
        let to_value = req.headers.get("To").unwrap_or_default();
        let remote_target = req
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|n| n.uri_text)
            .unwrap_or_else(|| info.from.uri_text.clone());
        let mut dialog = Dialog::new(DialogParties {
            trunk: name.clone(),
            call_id: info.call_id.clone(),
            local: format!("{to_value};tag={local_tag}"),
            local_tag,
            remote: req.headers.get("From").unwrap_or_default().to_string(),
            local_cseq: rand::random::<u16>() as u32 + 1,
            remote_target,
            peer: src,
        });
        dialog.remote_cseq = info.cseq.seq;
        dialog.route_set = req
            .headers
            .get_all("Record-Route")
            .map(str::to_owned)
            .collect();
        dialog.invite = Some(Pending {
            tx: id,
            req: req.clone(),
            info: info.clone(),
            src,
        });
        info!(call = call.0, trunk = %name, call_id = %info.call_id, destination = %destination.e164,
              "outbound call accepted for the carrier");
        self.dialogs.by_invite_tx.insert(id, call);
        self.dialogs.insert(call, dialog);
        self.dialogs.to_calls.push_back((
            call,
            DialogEvent::Admitted(Box::new(AdmittedInvite {
                trunk: name,
                call_id: info.call_id.clone(),
                dialled: dialled_user,
                destination,
                caller,
                from_uri: info.from.uri_text.clone(),
                source: src,
                sdp: sdp_of(&req.body),
                timer: timer_headers(&req.headers),
            })),
        ));
        // 100 Trying at once: the carrier leg takes a while.
        self.respond_invite(call, Reply::new(100), now);
        None
    }

    /// Builds and sends a response to the dialog's pending INVITE (initial or re-INVITE).
    fn respond_pending(
        &mut self,
        call: CallRef,
        reinvite: bool,
        reply: Reply,
        now: Instant,
    ) -> Option<()> {
        let server_header = self.server_header.clone();
        let contact = self.contact();
        let force_rport = self.force_rport;
        let d = self.dialogs.by_ref.get_mut(&call)?;
        let pending = if reinvite {
            d.reinvite.as_ref()?
        } else {
            d.invite.as_ref()?
        };
        let code = reply.code;
        let mut r = response::build(
            &pending.req,
            Some(&pending.info.top_via),
            pending.src,
            code,
            reply.reason.as_deref(),
            Some(&d.local_tag),
            &server_header,
        );
        if code > 100 && code < 300 {
            r.headers.push("Contact", contact);
        }
        if (200..300).contains(&code) {
            r.headers.push("Allow", ALLOW);
            r.headers.push("Supported", SUPPORTED.join(", "));
            for rr in pending.req.headers.get_all("Record-Route") {
                r.headers.push("Record-Route", rr);
            }
        }
        for (n, v) in reply.headers {
            r.headers.push(n, v);
        }
        if let Some(sdp) = reply.sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp.into_bytes();
        }
        let bytes: Arc<[u8]> = r.to_bytes().into();
        let dest =
            response::response_destination(Some(&pending.info.top_via), pending.src, force_rport);
        let tx = pending.tx;
        let cseq = pending.info.cseq.seq;
        if let Some(t) = self.server.respond(tx, code, bytes.clone(), dest, now) {
            SipStats::inc(&self.stats.responses_sent);
            self.traffic.response(code);
            self.out.push_back(t);
        }
        if code >= 200 {
            let d = self.dialogs.by_ref.get_mut(&call)?;
            if reinvite {
                d.reinvite = None;
            } else if let Some(p) = d.invite.take() {
                self.dialogs.by_invite_tx.remove(&p.tx);
            }
            if code < 300 {
                let d = self.dialogs.by_ref.get_mut(&call)?;
                let t1 = self.timers.t1;
                d.unacked = Some(Unacked {
                    bytes,
                    dest,
                    next: now + t1,
                    interval: t1,
                    give_up: now + self.timers.t64(),
                    cseq,
                });
                d.confirmed = true;
                self.dialogs.timers.push(Reverse((now + t1, call)));
            }
        }
        Some(())
    }

    fn respond_invite(&mut self, call: CallRef, reply: Reply, now: Instant) {
        if self.respond_pending(call, false, reply, now).is_none() {
            debug!(
                call = call.0,
                "response for an INVITE that is no longer pending dropped"
            );
        }
    }

    fn respond_reinvite(&mut self, call: CallRef, reply: Reply, now: Instant) {
        if self.respond_pending(call, true, reply, now).is_none() {
            debug!(
                call = call.0,
                "response for a re-INVITE that is no longer pending dropped"
            );
        }
    }

    /// Re-INVITE, BYE, in-dialog ACK and CANCEL from the PBX. Returns the answer to send through
    /// the transaction, or `None` when the call will answer.
    pub(super) fn in_dialog(
        &mut self,
        id: TxId,
        req: &Request,
        info: &RequestInfo,
        src: SocketAddr,
    ) -> Option<Answer> {
        let Some(call) = self.dialogs.find(info) else {
            return Some(Answer::new(481));
        };
        let d = self.dialogs.by_ref.get_mut(&call)?;
        if info.cseq.seq <= d.remote_cseq && req.method != Method::Ack {
            // RFC 3261 12.2.2: lower CSeq in a dialog = out of order
            return Some(Answer::new(500).reason("CSeq Out of Order"));
        }
        d.remote_cseq = info.cseq.seq;
        d.peer = src;
        match req.method {
            Method::Bye => {
                d.ended = true;
                d.unacked = None;
                self.dialogs.to_calls.push_back((call, DialogEvent::Bye));
                Some(Answer::new(200))
            }
            Method::Invite => {
                if d.reinvite.is_some() {
                    return Some(Answer::new(500).header("Retry-After", "2"));
                }
                if d.reinvite_out || d.uac_invite.is_some() || d.invite.is_some() {
                    return Some(Answer::new(491));
                }
                if let Some(c) = req
                    .headers
                    .get("Contact")
                    .and_then(|c| NameAddr::parse(c).ok())
                {
                    d.remote_target = c.uri_text;
                }
                d.reinvite = Some(Pending {
                    tx: id,
                    req: req.clone(),
                    info: info.clone(),
                    src,
                });
                self.dialogs.to_calls.push_back((
                    call,
                    DialogEvent::Reinvite {
                        sdp: sdp_of(&req.body),
                        timer: timer_headers(&req.headers),
                    },
                ));
                None
            }
            _ => Some(Answer::new(200)),
        }
    }

    /// An ACK that matched no server transaction: the ACK of one of our 2xx.
    pub(super) fn ack(&mut self, req: &Request, info: &RequestInfo, now: Instant) {
        let Some(call) = self.dialogs.find(info) else {
            debug!(call_id = %info.call_id, "ACK for no dialog ignored");
            return;
        };
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        match &d.unacked {
            Some(u) if u.cseq == info.cseq.seq => {
                d.unacked = None;
                self.dialogs.to_calls.push_back((
                    call,
                    DialogEvent::Ack {
                        sdp: sdp_of(&req.body),
                    },
                ));
                if d.bye_after_ack {
                    self.send_bye(call, None, now);
                }
            }
            _ => debug!(call = call.0, "retransmitted or stale ACK ignored"),
        }
    }

    /// CANCEL: 200 to it and 487 to the INVITE while that has no final response; else 481.
    pub(super) fn cancel(&mut self, info: &RequestInfo) -> Answer {
        let Some(invite_tx) = self.server.find(&super::cancelled_invite(info)) else {
            return Answer::new(481);
        };
        if let Some(call) = self.dialogs.by_invite_tx.get(&invite_tx).copied() {
            if self.server.is_pending_invite(invite_tx) {
                self.dialogs.cancelled = Some(call);
                if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
                    d.ended = true;
                    d.unacked = None;
                }
                self.dialogs
                    .to_calls
                    .push_back((call, DialogEvent::Cancelled));
            }
        }
        Answer::new(200)
    }

    /// The 487 of a cancelled INVITE, after the CANCEL's own response.
    pub(super) fn finish_cancel(&mut self, now: Instant) {
        if let Some(call) = self.dialogs.cancelled.take() {
            self.respond_invite(call, Reply::new(487), now);
        }
    }

    /// Dialog timers: 2xx retransmission and giving up on the ACK.
    pub(super) fn dialog_timeouts(&mut self, now: Instant) {
        while let Some(Reverse((at, call))) = self.dialogs.timers.peek().copied() {
            if at > now {
                break;
            }
            self.dialogs.timers.pop();
            let t2 = self.timers.t2;
            let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
                continue;
            };
            let Some(u) = d.unacked.as_mut() else {
                continue;
            };
            if u.next > now {
                continue; // a stale heap entry
            }
            if now >= u.give_up {
                d.unacked = None;
                warn!(call = call.0, call_id = %d.call_id, "no ACK for our 2xx: ending the call");
                self.dialogs.to_calls.push_back((call, DialogEvent::NoAck));
                continue;
            }
            self.out.push_back(Transmit {
                dest: u.dest,
                bytes: u.bytes.clone(),
            });
            u.interval = (u.interval * 2).min(t2);
            // never past 64*T1: that is when the call hears NoAck
            u.next = (now + u.interval).min(u.give_up);
            self.dialogs.timers.push(Reverse((u.next, call)));
        }
    }

    /// Builds a request in `call`'s dialog.
    fn dialog_request(
        &self,
        d: &Dialog,
        method: Method,
        cseq: u32,
        via_branch: &str,
        body: Option<&str>,
        extra: &[(&'static str, String)],
    ) -> Request {
        let mut r = Request::new(method.clone(), d.remote_target.clone());
        r.headers.push(
            "Via",
            format!("SIP/2.0/UDP {};branch={via_branch};rport", self.sent_by()),
        );
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
        // The route set of a UAS dialog is the Record-Route list in order; of a UAC, reversed.
        for route in &d.route_set {
            r.headers.push("Route", route.clone());
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

    fn start_client(
        &mut self,
        call: CallRef,
        purpose: OwnRequest,
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
        SipStats::inc(&self.stats.requests_sent);
        self.out.push_back(t);
        self.dialogs.client_owner.insert(id, (call, purpose));
        id
    }

    fn send_bye(&mut self, call: CallRef, reason: Option<String>, now: Instant) {
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        if d.ended {
            return;
        }
        if d.unacked.is_some() {
            // RFC 3261 15: a UAS must not send BYE before the ACK (or its timeout)
            d.bye_after_ack = true;
            return;
        }
        if !d.confirmed {
            debug!(
                call = call.0,
                "BYE asked for a dialog that is not confirmed: ignored"
            );
            return;
        }
        d.ended = true;
        d.local_cseq += 1;
        let cseq = d.local_cseq;
        let peer = d.peer;
        let b = branch();
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
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        if d.ended || !d.confirmed || d.reinvite_out || d.reinvite.is_some() {
            // Glare or a dead dialog: tell the call as a 491 so it retries later.
            self.dialogs
                .fail(call, OwnRequest::Reinvite, 491, "Request Pending");
            return;
        }
        d.reinvite_out = true;
        d.local_cseq += 1;
        let cseq = d.local_cseq;
        let peer = d.peer;
        let b = branch();
        let d = &self.dialogs.by_ref[&call];
        let req = self.dialog_request(d, Method::Invite, cseq, &b, Some(&sdp), &extra);
        self.start_client(call, OwnRequest::Reinvite, &req, &b, peer, now);
    }

    /// An inbound call: INVITE to the trunk's registered contact.
    fn send_invite(&mut self, call: CallRef, inv: InviteToPbx, now: Instant) {
        let fail = |this: &mut Endpoint, code: u16, reason: &str| {
            this.dialogs.fail(call, OwnRequest::Invite, code, reason);
        };
        if self.draining {
            return fail(self, 503, "Shutting Down");
        }
        let Some(trunk) = self.auth.trunks().iter().position(|t| t.name == inv.trunk) else {
            return fail(self, 404, "No Such Trunk");
        };
        let on_trunk = self.dialogs.per_trunk.get(&inv.trunk).copied().unwrap_or(0);
        if self.dialogs.active() >= self.max_calls
            || self.auth.trunks()[trunk]
                .max_calls
                .is_some_and(|m| on_trunk >= m)
        {
            return fail(self, 486, "Call Limit Reached");
        }
        let Some(binding) = self
            .registrar
            .bindings(&inv.trunk)
            .iter()
            .max_by_key(|b| b.expires_at)
            .cloned()
        else {
            return fail(self, 480, "Trunk Not Registered");
        };
        let Some(request_uri) = with_user(&binding.uri, &inv.did) else {
            return fail(self, 480, "Unusable Contact");
        };
        let host = self.sent_by();
        let local_tag = response::new_tag();
        let caller = inv
            .caller_number
            .clone()
            .unwrap_or_else(|| "anonymous".into());
        let display = inv
            .caller_name
            .as_deref()
            .map(|n| format!("\"{}\" ", quotable(n)))
            .unwrap_or_default();
        let local = format!("{display}<sip:{caller}@{host}>;tag={local_tag}");
        let to_host = Uri::parse(&binding.uri).map(|u| u.host).unwrap_or_default();
        let remote = format!("<sip:{}@{}>", inv.did, to_host);
        let call_id = format!("{:032x}@trunkgate", rand::random::<u128>());
        let d = Dialog::new(DialogParties {
            trunk: inv.trunk.clone(),
            call_id: call_id.clone(),
            local_tag,
            local,
            remote,
            local_cseq: 1,
            remote_target: request_uri.clone(),
            peer: binding.source,
        });
        let mut headers = inv.headers.clone();
        if let Some(n) = &inv.caller_number {
            headers.push(("P-Asserted-Identity", format!("{display}<sip:{n}@{host}>")));
        }
        let b = branch();
        let req = self.dialog_request(&d, Method::Invite, 1, &b, Some(&inv.sdp), &headers);
        let via = req.headers.get("Via").unwrap_or_default().to_string();
        info!(call = call.0, trunk = %inv.trunk, %call_id, did = %inv.did, contact = %binding.uri,
              dest = %binding.source, "inbound call offered to the PBX");
        self.dialogs.insert(call, d);
        self.start_client(call, OwnRequest::Invite, &req, &b, binding.source, now);
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            d.uac_invite = Some(UacInvite {
                cseq: 1,
                via,
                uri: request_uri,
                got_provisional: false,
                cancel_wanted: false,
                auth_tried: false,
                body: inv.sdp,
                headers,
            });
        }
    }

    fn cancel_invite(&mut self, call: CallRef, now: Instant) {
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        let Some(u) = d.uac_invite.as_mut() else {
            // already answered: the call ends it with BYE
            return;
        };
        u.cancel_wanted = true;
        if u.got_provisional {
            self.send_cancel(call, now);
        }
    }

    /// CANCEL for our INVITE (RFC 3261 9.1): same Request-URI, Via, From, To, Call-ID, CSeq number.
    fn send_cancel(&mut self, call: CallRef, now: Instant) {
        let Some(d) = self.dialogs.by_ref.get(&call) else {
            return;
        };
        let Some(u) = &d.uac_invite else {
            return;
        };
        let mut r = Request::new(Method::Cancel, u.uri.clone());
        r.headers.push("Via", u.via.clone());
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", d.local.clone());
        let to = d
            .remote
            .split(";tag=")
            .next()
            .unwrap_or(&d.remote)
            .to_string();
        r.headers.push("To", to);
        r.headers.push("Call-ID", d.call_id.clone());
        r.headers.push("CSeq", format!("{} CANCEL", u.cseq));
        let branch = crate::sip::grammar::Via::parse(&u.via)
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let peer = d.peer;
        let key = TxKey::Rfc3261 {
            branch,
            sent_by: self.sent_by().to_ascii_lowercase(),
            method: "CANCEL".into(),
        };
        let (_, t) = self.client.send(key, false, r.to_bytes().into(), peer, now);
        self.out.push_back(t);
    }

    /// A response to one of our requests, matched to its client transaction.
    pub(super) fn call_response(
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
        let timer = timer_headers(&resp.headers);
        let sdp = sdp_of(&resp.body);
        let deliver = |this: &mut Endpoint, sdp: Option<String>| {
            this.dialogs.to_calls.push_back((
                call,
                DialogEvent::Response {
                    request: purpose,
                    code,
                    reason: resp.reason.clone(),
                    sdp,
                    timer: timer.clone(),
                },
            ));
        };
        match purpose {
            OwnRequest::Bye => {}
            OwnRequest::Reinvite => {
                if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
                    if code >= 200 {
                        d.reinvite_out = false;
                    }
                }
                if needs_ack {
                    self.ack_non_2xx(id, call, resp, info);
                } else if (200..300).contains(&code) {
                    self.ack_2xx(call, info.cseq.seq);
                }
                if code >= 200 {
                    deliver(self, sdp);
                }
            }
            OwnRequest::Invite => {
                let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
                    return;
                };
                if let Some(tag) = resp
                    .headers
                    .get("To")
                    .and_then(|t| NameAddr::parse(t).ok())
                    .and_then(|n| n.tag().map(str::to_owned))
                {
                    if !d.remote.contains(";tag=") {
                        d.remote = format!("{};tag={tag}", d.remote);
                    }
                }
                if code < 200 {
                    if code > 100 {
                        if let Some(u) = d.uac_invite.as_mut() {
                            let first = !u.got_provisional;
                            u.got_provisional = true;
                            if first && u.cancel_wanted {
                                self.send_cancel(call, now);
                                return;
                            }
                        }
                        deliver(self, sdp);
                    } else if let Some(u) = d.uac_invite.as_mut() {
                        u.got_provisional = true;
                        if u.cancel_wanted {
                            self.send_cancel(call, now);
                        }
                    }
                    return;
                }
                if (200..300).contains(&code) {
                    if d.confirmed {
                        // a retransmitted 2xx: our ACK again
                        if let Some(t) = d.our_ack.clone() {
                            self.out.push_back(t);
                        }
                        return;
                    }
                    d.confirmed = true;
                    if let Some(c) = resp
                        .headers
                        .get("Contact")
                        .and_then(|c| NameAddr::parse(c).ok())
                    {
                        d.remote_target = c.uri_text;
                    }
                    d.route_set = resp
                        .headers
                        .get_all("Record-Route")
                        .map(str::to_owned)
                        .collect();
                    d.route_set.reverse();
                    let cancelled = d.uac_invite.as_ref().is_some_and(|u| u.cancel_wanted);
                    d.uac_invite = None;
                    self.ack_2xx(call, info.cseq.seq);
                    if cancelled {
                        // 200 crossed our CANCEL: ACK it and hang up (RFC 3261 9.1)
                        self.send_bye(call, None, now);
                    }
                    deliver(self, sdp);
                    return;
                }
                // A non-2xx final: ACK in the transaction; maybe retry with credentials.
                self.ack_non_2xx(id, call, resp, info);
                if matches!(code, 401 | 407) && self.retry_with_credentials(call, resp, now) {
                    return;
                }
                if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
                    d.uac_invite = None;
                    d.ended = true;
                }
                deliver(self, sdp);
            }
        }
    }

    /// A client transaction gave up (Timer B/F): the call hears a 408.
    pub(super) fn call_client_timeout(&mut self, id: TxId) {
        let Some((call, purpose)) = self.dialogs.client_owner.remove(&id) else {
            return;
        };
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            if purpose == OwnRequest::Reinvite {
                d.reinvite_out = false;
            }
            if purpose == OwnRequest::Invite {
                d.uac_invite = None;
                d.ended = true;
            }
        }
        if purpose != OwnRequest::Bye {
            self.dialogs.fail(call, purpose, 408, "Request Timeout");
        }
    }

    fn ack_2xx(&mut self, call: CallRef, cseq: u32) {
        let Some(d) = self.dialogs.by_ref.get(&call) else {
            return;
        };
        let b = branch();
        let req = self.dialog_request(d, Method::Ack, cseq, &b, None, &[]);
        let t = Transmit {
            dest: d.peer,
            bytes: req.to_bytes().into(),
        };
        self.out.push_back(t.clone());
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            d.our_ack = Some(t);
        }
    }

    /// RFC 3261 17.1.1.3: the ACK of a non-2xx final has the INVITE's Via, Request-URI, From,
    /// Call-ID and CSeq number, and the response's To.
    fn ack_non_2xx(&mut self, id: TxId, call: CallRef, resp: &Response, info: &ResponseInfo) {
        let Some(d) = self.dialogs.by_ref.get(&call) else {
            return;
        };
        let (uri, via) = match &d.uac_invite {
            Some(u) => (u.uri.clone(), u.via.clone()),
            None => (
                d.remote_target.clone(),
                resp.headers.get("Via").unwrap_or_default().to_string(),
            ),
        };
        let mut r = Request::new(Method::Ack, uri);
        r.headers.push("Via", via);
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", d.local.clone());
        r.headers
            .push("To", resp.headers.get("To").unwrap_or_default().to_string());
        r.headers.push("Call-ID", d.call_id.clone());
        r.headers.push("CSeq", format!("{} ACK", info.cseq.seq));
        if let Some(t) = self.client.set_ack(id, r.to_bytes().into()) {
            self.out.push_back(t);
        }
    }

    /// The PBX challenged our INVITE: once, answer with the trunk's outbound credentials.
    fn retry_with_credentials(&mut self, call: CallRef, resp: &Response, now: Instant) -> bool {
        let Some(d) = self.dialogs.by_ref.get(&call) else {
            return false;
        };
        let Some(trunk) = self.auth.trunks().iter().find(|t| t.name == d.trunk) else {
            return false;
        };
        let (Some(user), Some(pass)) = (&trunk.outbound_username, &trunk.outbound_password) else {
            warn!(call = call.0, trunk = %trunk.name, code = resp.code,
                  "the PBX challenged our INVITE and the trunk has no outbound_username/outbound_password");
            return false;
        };
        let Some(u) = &d.uac_invite else {
            return false;
        };
        if u.auth_tried {
            warn!(call = call.0, trunk = %trunk.name, "the PBX refused our credentials");
            return false;
        }
        let (header, answer_header) = if resp.code == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(challenge) = resp.headers.get(header) else {
            return false;
        };
        let Some(authorization) = crate::sip::client_auth::authorization(
            challenge,
            user,
            pass.expose(),
            "INVITE",
            &u.uri,
        ) else {
            warn!(
                call = call.0,
                "the PBX's challenge is not a digest we can answer"
            );
            return false;
        };
        let mut headers = u.headers.clone();
        headers.retain(|(n, _)| *n != "Authorization" && *n != "Proxy-Authorization");
        headers.push((answer_header, authorization));
        let body = u.body.clone();
        let uri = u.uri.clone();
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return false;
        };
        d.local_cseq += 1;
        let cseq = d.local_cseq;
        // the new INVITE starts afresh: no remote tag yet
        d.remote = d
            .remote
            .split(";tag=")
            .next()
            .unwrap_or_default()
            .to_string();
        let peer = d.peer;
        let b = branch();
        let d = &self.dialogs.by_ref[&call];
        let req = self.dialog_request(d, Method::Invite, cseq, &b, Some(&body), &headers);
        let via = req.headers.get("Via").unwrap_or_default().to_string();
        self.start_client(call, OwnRequest::Invite, &req, &b, peer, now);
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            d.uac_invite = Some(UacInvite {
                cseq,
                via,
                uri,
                got_provisional: false,
                cancel_wanted: false,
                auth_tried: true,
                body,
                headers,
            });
        }
        true
    }

    /// Routes a client-transaction response to its call, if it belongs to one.
    pub(super) fn client_response(
        &mut self,
        rx: ClientRx,
        resp: &Response,
        info: &ResponseInfo,
        now: Instant,
    ) {
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
                    if let Some(call) = self.dialogs.by_call_id.get(&info.call_id).copied() {
                        if let Some(t) = self
                            .dialogs
                            .by_ref
                            .get(&call)
                            .and_then(|d| d.our_ack.clone())
                        {
                            self.out.push_back(t);
                            return;
                        }
                    }
                }
                SipStats::inc(&self.stats.stray_responses);
                debug!(code = resp.code, "stray response dropped");
            }
        }
    }
}

#[cfg(test)]
#[path = "dialogs_tests.rs"]
mod dialogs_tests;
