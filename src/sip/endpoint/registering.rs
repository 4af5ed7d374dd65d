//! REGISTER at the endpoint: the registrar's answer as a response, with the Path believed only
//! from a trusted proxy, and the trunk's new registration shared with the other instances.

use std::time::Instant;

use tracing::debug;

use super::answer::Answer;
use super::{Endpoint, Peer};
use crate::sip::message::Request;
use crate::sip::parse::RequestInfo;
use crate::sip::registrar::{RegisterFrom, RegisterOutcome};
use crate::sip::shared::NonceUse;
use crate::sip::stats::SipStats;

impl Endpoint {
    pub(super) fn register(
        &mut self,
        trunk: usize,
        req: &Request,
        info: &RequestInfo,
        peer: Peer,
        nonce: Option<NonceUse>,
        now: Instant,
    ) -> Answer {
        let name = self.auth.trunks()[trunk].name.clone();
        // A Path is believed from a trusted proxy only: from anyone else it would let the
        // sender route the trunk's calls wherever it likes.
        let path = if self.proxies.contains(peer.src.ip()) {
            req.headers.list_items("Path").map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        let from = RegisterFrom {
            source: peer.src,
            pbx: peer.pbx,
            path,
        };
        match self.registrar.register(&name, req, info, &from, now) {
            RegisterOutcome::Ok(contacts) => {
                SipStats::inc(&self.stats.registrations);
                debug!(trunk = %name, src = %peer.src, pbx = %peer.pbx, path = ?from.path,
                       contacts = contacts.len(), "registered");
                if req.headers.get("Contact").is_some() {
                    self.sync_qualify(&name, now);
                    self.share_registration(&name, nonce);
                }
                let mut a = Answer::new(200);
                for (uri, secs) in contacts {
                    a = a.header("Contact", format!("<{uri}>;expires={secs}"));
                }
                a
            }
            RegisterOutcome::IntervalTooBrief(min) => {
                Answer::new(423).header("Min-Expires", min.to_string())
            }
            RegisterOutcome::BadRequest(why) => Answer::new(400).reason(why),
        }
    }
}
