//! The PBX's requests in a dialog and our answers to them (RFC 3261 12-15, UAS side): responses
//! to the PBX's INVITE and re-INVITEs built with the dialog's tag, our 2xx retransmitted until
//! the ACK (13.3.1.4), BYE, CANCEL (200, then 487 to the INVITE), in-dialog requests matched
//! (481 otherwise) and checked for order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};

use super::answer::Answer;
use super::dialog::{sdp_of, timer_headers, Pending, Phase, Reinvite, Unacked};
use super::{Endpoint, ALLOW, SUPPORTED};
use crate::sip::grammar::NameAddr;
use crate::sip::message::{Method, Request};
use crate::sip::parse::RequestInfo;
use crate::sip::response;
use crate::sip::stats::SipStats;
use crate::sip::transaction::{Transmit, TxId};
use crate::sip::tu::{CallRef, DialogEvent, Reply};

/// Which of the PBX's INVITEs a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    Invite,
    Reinvite,
}

impl Endpoint {
    pub(super) fn respond_invite(&mut self, call: CallRef, reply: Reply, now: Instant) {
        self.respond(call, Answered::Invite, reply, now);
    }

    pub(super) fn respond_reinvite(&mut self, call: CallRef, reply: Reply, now: Instant) {
        self.respond(call, Answered::Reinvite, reply, now);
    }

    fn respond(&mut self, call: CallRef, which: Answered, reply: Reply, now: Instant) {
        if self.respond_pending(call, which, reply, now).is_none() {
            debug!(
                call = call.0,
                ?which,
                "response for an INVITE no longer pending dropped"
            );
        }
    }

    /// Builds and sends a response to the dialog's pending INVITE (initial or re-INVITE); a
    /// final one moves the dialog on.
    fn respond_pending(
        &mut self,
        call: CallRef,
        which: Answered,
        reply: Reply,
        now: Instant,
    ) -> Option<()> {
        let contact = self.contact();
        let d = self.dialogs.by_ref.get(&call)?;
        let pending = match (&d.phase, which) {
            (Phase::Answering(p), Answered::Invite) => p,
            (Phase::Confirmed(c), Answered::Reinvite) => match &c.reinvite {
                Reinvite::FromPbx(p) => p,
                _ => return None,
            },
            _ => return None,
        };
        let code = reply.code;
        let mut r = response::build(
            &pending.req,
            Some(&pending.info.top_via),
            pending.src,
            code,
            reply.reason.as_deref(),
            Some(&d.local_tag),
            &self.server_header,
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
        let dest = response::response_destination(
            Some(&pending.info.top_via),
            pending.src,
            self.force_rport,
        );
        let (tx, cseq) = (pending.tx, pending.info.cseq.seq);
        if let Some(t) = self.server.respond(tx, code, bytes.clone(), dest, now) {
            SipStats::inc(&self.stats.responses_sent);
            self.traffic.response(code);
            self.out.push_back(t);
        }
        if code < 200 {
            return Some(());
        }
        let unacked = (code < 300).then(|| Unacked {
            bytes,
            dest,
            next: now + self.timers.t1,
            interval: self.timers.t1,
            give_up: now + self.timers.t64(),
            cseq,
            then_bye: false,
        });
        if let Some(u) = &unacked {
            self.dialogs.timers.push(u.next, call);
        }
        let d = self.dialogs.by_ref.get_mut(&call)?;
        match which {
            Answered::Invite => {
                self.dialogs.by_invite_tx.remove(&tx);
                match unacked {
                    Some(u) => {
                        d.phase = Phase::Confirmed(super::dialog::Confirmed {
                            unacked: Some(u),
                            ..Default::default()
                        })
                    }
                    None => d.end(),
                }
            }
            Answered::Reinvite => {
                if let Some(c) = d.confirmed() {
                    c.reinvite = Reinvite::Idle;
                    if unacked.is_some() {
                        c.unacked = unacked;
                    }
                }
            }
        }
        Some(())
    }

    /// Re-INVITE, BYE and other requests from the PBX in a dialog. Returns the answer to send
    /// through the transaction, or `None` when the call will answer.
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
        // Without a route set the PBX is reached where it last spoke from (its NAT may have
        // moved); with one, along it.
        if d.route_set.is_empty() {
            d.peer = src;
        }
        match req.method {
            Method::Bye => {
                // An early dialog keeps its pending INVITE: the call answers it as it ends.
                if matches!(d.phase, Phase::Confirmed(_)) {
                    d.end();
                }
                self.dialogs.event(call, DialogEvent::Bye);
                Some(Answer::new(200))
            }
            Method::Invite => {
                let contact = req
                    .headers
                    .get("Contact")
                    .and_then(|c| NameAddr::parse(c).ok());
                let c = match &mut d.phase {
                    Phase::Confirmed(c) => c,
                    Phase::Ended { .. } => return Some(Answer::new(481)),
                    // an INVITE of ours, or theirs, has no final response yet
                    Phase::Answering(_) | Phase::Calling(_) => return Some(Answer::new(491)),
                };
                match c.reinvite {
                    Reinvite::FromPbx(_) => {
                        return Some(Answer::new(500).header("Retry-After", "2"))
                    }
                    Reinvite::Ours => return Some(Answer::new(491)),
                    Reinvite::Idle => {}
                }
                c.reinvite = Reinvite::FromPbx(Box::new(Pending {
                    tx: id,
                    req: req.clone(),
                    info: info.clone(),
                    src,
                }));
                if let Some(c) = contact {
                    d.remote_target = c.uri_text;
                }
                self.dialogs.event(
                    call,
                    DialogEvent::Reinvite {
                        sdp: sdp_of(&req.body),
                        timer: timer_headers(&req.headers),
                    },
                );
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
        let Some(c) = self
            .dialogs
            .by_ref
            .get_mut(&call)
            .and_then(|d| d.confirmed())
        else {
            return;
        };
        match c.unacked.take() {
            Some(u) if u.cseq == info.cseq.seq => {
                self.dialogs.event(
                    call,
                    DialogEvent::Ack {
                        sdp: sdp_of(&req.body),
                    },
                );
                if u.then_bye {
                    self.send_bye(call, None, now);
                }
            }
            other => {
                c.unacked = other;
                debug!(call = call.0, "retransmitted or stale ACK ignored");
            }
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
                self.dialogs.event(call, DialogEvent::Cancelled);
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
        let t2 = self.timers.t2;
        while let Some((_, call)) = self.dialogs.timers.pop_due(now) {
            let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
                continue;
            };
            let call_id = d.call_id.clone();
            let Some(c) = d.confirmed() else {
                continue;
            };
            let Some(u) = c.unacked.as_mut() else {
                continue;
            };
            if u.next > now {
                continue; // a stale heap entry
            }
            if now >= u.give_up {
                c.unacked = None;
                warn!(call = call.0, %call_id, "no ACK for our 2xx: ending the call");
                self.dialogs.event(call, DialogEvent::NoAck);
                continue;
            }
            self.out.push_back(Transmit {
                dest: u.dest,
                bytes: u.bytes.clone(),
            });
            u.interval = (u.interval * 2).min(t2);
            // never past 64*T1: that is when the call hears NoAck
            u.next = (now + u.interval).min(u.give_up);
            self.dialogs.timers.push(u.next, call);
        }
    }
}
