//! The endpoint's side of qualifying: an OPTIONS to each registered contact when the schedule
//! says so (along the registration's Path, as any request to that PBX), its answer or timeout
//! read back, and what that says published beside the registration.

use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use super::Endpoint;
use crate::sip::message::{Method, Request};
use crate::sip::qualify::{ContactKey, Reach};
use crate::sip::route;
use crate::sip::stats::SipStats;
use crate::sip::transaction::TxId;

impl Endpoint {
    /// `trunk`'s contacts changed (REGISTER, expiry, another instance): the schedule follows.
    pub(super) fn sync_qualify(&mut self, trunk: &str, now: Instant) {
        let uris: Vec<String> = self
            .registrar
            .bindings(trunk)
            .iter()
            .map(|b| b.uri.clone())
            .collect();
        self.qualify.sync(trunk, &uris, now);
    }

    /// Every trunk's contacts, after expiries.
    pub(super) fn sync_qualify_all(&mut self, now: Instant) {
        let trunks: Vec<String> = self.auth.trunks().iter().map(|t| t.name.clone()).collect();
        for t in trunks {
            self.sync_qualify(&t, now);
        }
    }

    /// The OPTIONS that are due.
    pub(super) fn send_qualify(&mut self, now: Instant) {
        for key in self.qualify.due(now) {
            let Some(b) = self
                .registrar
                .bindings(&key.0)
                .iter()
                .find(|b| b.uri == key.1)
                .cloned()
            else {
                continue;
            };
            let branch = self.branch();
            let tag = self.new_tag();
            let target = route::strip_headers(&b.uri);
            let (uri, routes) = route::apply(&target, &b.path);
            let mut r = Request::new(Method::Options, uri);
            r.headers.push("Via", self.via(&branch));
            r.headers.push("Max-Forwards", "70");
            r.headers.push(
                "From",
                format!("<sip:trunkgate@{}>;tag={tag}", self.sent_by()),
            );
            r.headers.push("To", format!("<{target}>"));
            let call_id = self.new_call_id();
            r.headers.push("Call-ID", call_id);
            r.headers.push("CSeq", "1 OPTIONS");
            for v in routes {
                r.headers.push("Route", v);
            }
            r.headers.push("User-Agent", self.server_header.clone());
            let id = self.send_request(&r, &branch, b.next_hop(), now);
            SipStats::inc(&self.stats.qualify_requests);
            self.qualify.sent(key, id, now);
        }
    }

    /// A response to one of our OPTIONS (`true`), or to something else (`false`).
    pub(super) fn qualify_answer(&mut self, id: TxId, now: Instant) -> bool {
        if !self.qualify.owns(id) {
            return false;
        }
        if let Some((key, reach, news)) = self.qualify.answered(id, now) {
            if news {
                info!(trunk = %key.0, contact = %key.1, ?reach, "PBX contact reachable");
            }
            self.publish_reach(&key, reach);
        }
        true
    }

    /// One of our OPTIONS timed out (`true`), or something else did (`false`).
    pub(super) fn qualify_timeout(&mut self, id: TxId) -> bool {
        if !self.qualify.owns(id) {
            return false;
        }
        SipStats::inc(&self.stats.qualify_timeouts);
        if let Some((key, reach)) = self.qualify.timed_out(id, SystemTime::now()) {
            warn!(trunk = %key.0, contact = %key.1,
                  "PBX contact unreachable: no answer to OPTIONS; carrier calls to it are refused at once");
            self.publish_reach(&key, reach);
        }
        true
    }

    fn publish_reach(&self, key: &ContactKey, reach: Reach) {
        self.registrar.view().publish_reach(&key.0, &key.1, reach);
    }
}
