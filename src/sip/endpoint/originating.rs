//! The dialog we originate (a carrier call toward the PBX, RFC 3261 13.2 and 17.1): the INVITE
//! to the trunk's registered contact, CANCEL once a provisional response has come (9.1), the
//! PBX's digest challenge answered once with the trunk's outbound credentials, the responses to
//! our INVITE (the remote tag, route set and target from the 2xx; a 2xx that crossed our
//! CANCEL hung up), and the ACKs to them.

use std::time::Instant;

use tracing::{info, warn};

use super::dialog::{Confirmed, Dialog, OurInvite, Phase};
use super::Endpoint;
use crate::sip::grammar::{NameAddr, Uri, Via};
use crate::sip::message::{Method, Request, Response};
use crate::sip::parse::ResponseInfo;
use crate::sip::route;
use crate::sip::transaction::TxId;
use crate::sip::tu::{quotable, CallRef, DialogEvent, InviteToPbx, OwnRequest};

/// `uri` (a registered Contact) with its user part replaced by `user`, every parameter kept.
pub(super) fn with_user(uri: &str, user: &str) -> Option<String> {
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

impl Endpoint {
    /// A carrier call: INVITE to the trunk's registered contact.
    pub(super) fn send_invite(&mut self, call: CallRef, inv: InviteToPbx, now: Instant) {
        let fail = |this: &mut Endpoint, code: u16, reason: &str| {
            this.dialogs.fail(call, OwnRequest::Invite, code, reason);
        };
        if self.draining {
            return fail(self, 503, "Shutting Down");
        }
        let Some(trunk) = self.auth.trunks().iter().position(|t| t.name == inv.trunk) else {
            return fail(self, 404, "No Such Trunk");
        };
        if self.over_limit(trunk) {
            return fail(self, 486, "Call Limit Reached");
        }
        let bindings = self.registrar.bindings(&inv.trunk);
        if bindings.is_empty() {
            return fail(self, 480, "Trunk Not Registered");
        }
        // The most recently refreshed contact that is not known to be gone: a PBX that stopped
        // answering OPTIONS would only let the INVITE time out.
        let Some(binding) = bindings
            .iter()
            .filter(|b| {
                let key = (inv.trunk.clone(), b.uri.clone());
                self.qualify.reach(&key).usable()
            })
            .max_by_key(|b| b.expires_at)
            .cloned()
        else {
            return fail(self, 480, "PBX Unreachable");
        };
        let Some(request_uri) = with_user(&binding.uri, &inv.did) else {
            return fail(self, 480, "Unusable Contact");
        };
        let host = self.sent_by();
        let local_tag = self.new_tag();
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
        let call_id = self.new_call_id();
        let mut d = Dialog {
            trunk: inv.trunk.clone(),
            call_id: call_id.clone(),
            local_tag,
            local,
            remote: format!("<sip:{}@{}>", inv.did, to_host),
            local_cseq: 1,
            remote_cseq: 0,
            remote_target: request_uri.clone(),
            // Until the 2xx brings the dialog's own, the route is the registration's Path.
            route_set: binding.path.clone(),
            peer: binding.next_hop(),
            phase: Phase::Ended { our_ack: None },
        };
        let mut headers = inv.headers.clone();
        if let Some(n) = &inv.caller_number {
            headers.push(("P-Asserted-Identity", format!("{display}<sip:{n}@{host}>")));
        }
        let b = self.branch();
        let req = self.dialog_request(&d, Method::Invite, 1, &b, Some(&inv.sdp), &headers);
        d.phase = Phase::Calling(OurInvite {
            cseq: 1,
            via: req.headers.get("Via").unwrap_or_default().to_string(),
            uri: req.uri.clone(),
            got_provisional: false,
            cancel_wanted: false,
            auth_tried: false,
            body: inv.sdp,
            headers,
        });
        info!(call = call.0, trunk = %inv.trunk, %call_id, did = %inv.did, contact = %binding.uri,
              dest = %d.peer, route = ?d.route_set, "inbound call offered to the PBX");
        let dest = d.peer;
        self.dialogs.insert(call, d);
        self.start_client(call, OwnRequest::Invite, &req, &b, dest, now);
    }

    /// The call gives up on its INVITE: CANCEL now, or once a provisional response has come.
    pub(super) fn cancel_invite(&mut self, call: CallRef, now: Instant) {
        let Some(d) = self.dialogs.by_ref.get_mut(&call) else {
            return;
        };
        // already answered: the call ends it with BYE
        let Phase::Calling(u) = &mut d.phase else {
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
        let Phase::Calling(u) = &d.phase else {
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
        // RFC 3261 9.1: the CANCEL takes the INVITE's route.
        for v in route::apply(&d.remote_target, &d.route_set).1 {
            r.headers.push("Route", v);
        }
        let branch = Via::parse(&u.via)
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let peer = d.peer;
        self.send_request(&r, &branch, peer, now);
    }

    /// A response to our INVITE (`id` is its client transaction).
    pub(super) fn invite_response(
        &mut self,
        id: TxId,
        call: CallRef,
        resp: &Response,
        info: &ResponseInfo,
        now: Instant,
    ) {
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
        let code = resp.code;
        if code < 200 {
            let mut deliver = code > 100;
            if let Phase::Calling(u) = &mut d.phase {
                let first = !u.got_provisional;
                u.got_provisional = true;
                if u.cancel_wanted && (first || code == 100) {
                    self.send_cancel(call, now);
                    deliver = false;
                }
            }
            if deliver {
                self.deliver_response(call, OwnRequest::Invite, resp);
            }
            return;
        }
        if (200..300).contains(&code) {
            let cancelled = match &d.phase {
                Phase::Calling(u) => u.cancel_wanted,
                _ => {
                    // a retransmitted 2xx: our ACK again
                    if let Some(t) = d.our_ack().cloned() {
                        self.out.push_back(t);
                    }
                    return;
                }
            };
            if let Some(c) = resp
                .headers
                .get("Contact")
                .and_then(|c| NameAddr::parse(c).ok())
            {
                d.remote_target = c.uri_text;
            }
            // The route set of a UAC dialog is the Record-Route list reversed. Followed when
            // our INVITE went through a trusted proxy; else the PBX stays reached where its
            // registration came from (its NAT).
            d.route_set = resp
                .headers
                .list_items("Record-Route")
                .map(str::to_owned)
                .collect();
            d.route_set.reverse();
            if self.proxies.contains(d.peer.ip()) {
                d.peer = route::next_hop(&d.route_set).unwrap_or(d.peer);
            }
            d.phase = Phase::Confirmed(Confirmed::default());
            self.ack_2xx(call, info.cseq.seq);
            if cancelled {
                // 200 crossed our CANCEL: ACK it and hang up (RFC 3261 9.1)
                self.send_bye(call, None, now);
            }
            self.deliver_response(call, OwnRequest::Invite, resp);
            return;
        }
        // A non-2xx final: ACK in the transaction; maybe retry with credentials.
        self.ack_non_2xx(id, call, resp, info);
        if matches!(code, 401 | 407) && self.retry_with_credentials(call, resp, now) {
            return;
        }
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            d.end();
        }
        self.deliver_response(call, OwnRequest::Invite, resp);
    }

    /// Tells the call about a response to one of its requests.
    pub(super) fn deliver_response(&mut self, call: CallRef, request: OwnRequest, resp: &Response) {
        self.dialogs.event(
            call,
            DialogEvent::Response {
                request,
                code: resp.code,
                reason: resp.reason.clone(),
                sdp: super::dialog::sdp_of(&resp.body),
                timer: super::dialog::timer_headers(&resp.headers),
            },
        );
    }

    /// RFC 3261 17.1.1.3: the ACK of a non-2xx final has the INVITE's Via, Request-URI, From,
    /// Call-ID and CSeq number, and the response's To.
    pub(super) fn ack_non_2xx(
        &mut self,
        id: TxId,
        call: CallRef,
        resp: &Response,
        info: &ResponseInfo,
    ) {
        let Some(d) = self.dialogs.by_ref.get(&call) else {
            return;
        };
        let (uri, via, routes) = match &d.phase {
            // RFC 3261 17.1.1.3: the INVITE's Request-URI and Route
            Phase::Calling(u) => (
                u.uri.clone(),
                u.via.clone(),
                route::apply(&d.remote_target, &d.route_set).1,
            ),
            _ => (
                d.remote_target.clone(),
                resp.headers.get("Via").unwrap_or_default().to_string(),
                Vec::new(),
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
        for v in routes {
            r.headers.push("Route", v);
        }
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
        let Phase::Calling(u) = &d.phase else {
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
        let (body, uri) = (u.body.clone(), u.uri.clone());
        let b = self.branch();
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
        let d = &self.dialogs.by_ref[&call];
        let req = self.dialog_request(d, Method::Invite, cseq, &b, Some(&body), &headers);
        let via = req.headers.get("Via").unwrap_or_default().to_string();
        if let Some(d) = self.dialogs.by_ref.get_mut(&call) {
            d.phase = Phase::Calling(OurInvite {
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
        self.start_client(call, OwnRequest::Invite, &req, &b, peer, now);
        true
    }
}
