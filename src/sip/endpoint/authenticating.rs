//! Digest authentication at the endpoint: which trunk a request is from, judged on the PBX's
//! address (behind a trusted proxy, the one it stamped), every failure counted by kind and told
//! to the guard.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::answer::Answer;
use super::Endpoint;
use crate::sip::auth::{self, AuthOutcome};
use crate::sip::message::{Method, Request};
use crate::sip::parse::RequestInfo;
use crate::sip::security::FailureKind;
use crate::sip::stats::SipStats;

impl Endpoint {
    /// Authentication shared by REGISTER (401) and other requests (407). Every failure is
    /// counted by kind and told to the guard, which bans and writes the summary line; the
    /// per-request detail (with the username, never a password or response) is debug.
    pub(super) fn authenticate(
        &mut self,
        req: &Request,
        info: &RequestInfo,
        src: SocketAddr,
        now: Instant,
    ) -> Result<usize, Answer> {
        let (code, header) = if req.method == Method::Register {
            (401, "WWW-Authenticate")
        } else {
            (407, "Proxy-Authenticate")
        };
        if !self.auth.source_possible(src.ip()) {
            self.source_refused(src, now);
            debug!(%src, method = %req.method, "request from a source no trunk allows");
            return Err(Answer::new(403).reason("Source Not Allowed"));
        }
        let (failure, answer) = match self.auth.check(req, &info.request_uri, src.ip(), now) {
            AuthOutcome::Authenticated { trunk } => {
                let t = &self.auth.trunks()[trunk];
                if !auth::source_allowed(t, src.ip()) {
                    debug!(%src, trunk = %t.name, "trunk credentials used from a source it does not allow");
                    self.source_refused(src, now);
                    return Err(Answer::new(403).reason("Source Not Allowed"));
                }
                return Ok(trunk);
            }
            AuthOutcome::Challenge { failure, stale } => {
                let mut a = Answer::new(code);
                for c in self.auth.challenges(now, src.ip(), stale) {
                    a = a.header(header, c);
                }
                (failure, a)
            }
            AuthOutcome::Refuse { failure, code } => (
                failure,
                Answer::new(code).reason("Credentials Not For This Request"),
            ),
        };
        if let Some(kind) = failure.kind() {
            if kind != FailureKind::Stale {
                SipStats::inc(&self.stats.auth_failures);
            }
            debug!(%src, method = %req.method, reason = %failure, "authentication failed");
            self.guard.failure(src.ip(), kind, now);
        }
        Err(answer)
    }

    pub(super) fn source_refused(&mut self, src: SocketAddr, now: Instant) {
        SipStats::inc(&self.stats.source_refusals);
        self.guard
            .failure(src.ip(), FailureKind::SourceNotAllowed, now);
    }
}
