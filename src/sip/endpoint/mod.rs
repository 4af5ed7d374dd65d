//! The SIP endpoint core: everything that happens to a datagram from the PBX side, without I/O.
//!
//! `handle_datagram` takes bytes, their source and the current `Instant`; what must be sent comes
//! out of `poll_transmit`, and `poll_timeout` / `handle_timeout` drive the timers. The UDP edge
//! (`transport`) only moves bytes and time in and out. Request handling follows RFC 3261 8.2's
//! order: method (405), header inspection (416, 420), content (415, 406), then authentication
//! and the method itself.

mod admission;
mod answer;
mod answering;
mod authenticating;
mod dialog;
#[cfg(test)]
mod dialogs_tests;
#[cfg(test)]
mod guard_tests;
mod originating;
mod our_requests;
#[cfg(test)]
mod pbx_harness;
mod precheck;
#[cfg(test)]
mod proxy_dialog_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod qualify_tests;
mod qualifying;
mod registering;
mod sharing;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{debug, info, warn};

use super::auth::Authenticator;
use super::message::{Method, Request, Response};
use super::parse::{parse, ParseFailure, Parsed, RequestInfo};
use super::qualify::Qualifier;
use super::registrar::{Registrar, RegistrarLimits, Registrations};
use super::response;
use super::route::TrustedProxies;
use super::security::{Guard, SecurityView, Source};
use super::stats::{SipStats, SipTraffic};
use super::transaction::{
    ClientRx, ClientTransactions, ServerRx, ServerTransactions, TransactionTimers, Transmit,
    TxEvent, TxKey,
};
use crate::config::Config;
use crate::numbers::{NumberPolicy, NumbersError};
use crate::sip::shared::{NonceUse, SharedFact};
use crate::sip::tu::{warning_header, CallRef, CallRefs, DialogEvent};
use admission::Authenticated;
use answer::Answer;
use dialog::Dialogs;

/// Methods we answer (RFC 3261 20.5 Allow).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER";
/// Option tags we support: RFC 4028 session timers.
pub(super) const SUPPORTED: &[&str] = &["timer"];

/// The SIP endpoint toward the PBXs: transactions, authentication, the registrar, dialogs and the
/// security guard, driven by datagrams and time and doing no I/O itself.
pub struct Endpoint {
    server: ServerTransactions,
    client: ClientTransactions,
    auth: Authenticator,
    /// Bans, budgets and scanner screening: consulted before anything costs more than a lookup.
    guard: Guard,
    registrar: Registrar,
    stats: Arc<SipStats>,
    traffic: Arc<SipTraffic>,
    out: VecDeque<Transmit>,
    events: Vec<TxEvent>,
    max_message_size: usize,
    force_rport: bool,
    server_header: String,
    /// The destination policy of each trunk (global `[numbers]` plus the trunk's override).
    policies: Vec<NumberPolicy>,
    timers: TransactionTimers,
    /// The calls' dialogs.
    dialogs: Dialogs,
    /// Our address in Via, Contact and toward PBXs.
    advertise: SocketAddr,
    next_call: Arc<CallRefs>,
    max_calls: usize,
    limit_response: u16,
    /// Stopping: new INVITEs get 503.
    draining: bool,
    /// Some carrier account is subscribed (always, without a `[carrier]`: a registrar only).
    carrier_ready: bool,
    /// When each registered contact is sent an OPTIONS, and what it answered.
    qualify: Qualifier,
    /// Proxies whose Via and Path are believed (`[cluster] trusted_proxies`).
    proxies: TrustedProxies,
    /// This instance's name in what it shares.
    node: String,
    /// Some other instance takes what this one shares (`[cluster] redis`): without one no fact
    /// is made.
    sharing: bool,
    /// Facts for the other instances of a cluster, until the edge takes them.
    shared_out: VecDeque<SharedFact>,
    /// Tags, branches, CSeqs and Call-IDs: seeded from the OS, or by a test that wants to
    /// replay a run.
    rng: StdRng,
}

impl Endpoint {
    /// Fails only on a number policy the config validation would already have refused.
    pub fn new(
        config: &Config,
        registrations: Registrations,
        stats: Arc<SipStats>,
        now: Instant,
    ) -> Result<Self, NumbersError> {
        let s = &config.sip;
        let policies = (0..config.trunks.len())
            .map(|i| NumberPolicy::new(&config.trunk_numbers(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let timers = TransactionTimers {
            t1: s.t1,
            t2: s.t2,
            t4: s.t4,
        };
        Ok(Endpoint {
            server: ServerTransactions::new(timers),
            client: ClientTransactions::new(timers),
            auth: Authenticator::new(config, now),
            guard: Guard::new(config),
            registrar: Registrar::new(
                RegistrarLimits {
                    min_expires: s.min_expires,
                    max_expires: s.max_expires,
                    default_expires: s.default_expires,
                    max_contacts: s.max_contacts_per_trunk,
                },
                registrations,
            ),
            stats,
            traffic: Arc::new(SipTraffic::default()),
            out: VecDeque::new(),
            events: Vec::new(),
            max_message_size: s.max_message_size,
            force_rport: s.force_rport,
            server_header: s.server_header.clone(),
            policies,
            timers,
            dialogs: Dialogs::default(),
            advertise: SocketAddr::new(s.advertise.unwrap_or(s.listen.ip()), s.listen.port()),
            next_call: Arc::new(CallRefs::default()),
            max_calls: config.calls.max_calls,
            limit_response: config.calls.limit_response.code(),
            draining: false,
            carrier_ready: config.carrier.is_none(),
            qualify: Qualifier::new(s.qualify_interval),
            proxies: TrustedProxies::new(&config.cluster.trusted_proxies),
            node: config.cluster.node_name(s.listen, s.advertise),
            sharing: config.cluster.redis.is_some(),
            shared_out: VecDeque::new(),
            rng: StdRng::from_entropy(),
        })
    }

    /// Applies a reloaded, validated configuration: trunks and their secrets, the number
    /// policies, registration bounds, call limits. Registrations, transactions and dialogs are
    /// kept. (The listen address and timers need a restart; the daemon says which.)
    pub fn reconfigure(&mut self, config: &Config) {
        let policies = (0..config.trunks.len())
            .map(|i| NumberPolicy::new(&config.trunk_numbers(i)))
            .collect::<Result<Vec<_>, _>>();
        match policies {
            Ok(p) => self.policies = p,
            Err(e) => {
                // validation passed, so this cannot happen; keep everything as it was
                warn!(error = %e, "reload: number policy refused; the running configuration stays");
                return;
            }
        }
        self.auth.reload(config);
        self.guard.reconfigure(config);
        let s = &config.sip;
        self.registrar.set_limits(RegistrarLimits {
            min_expires: s.min_expires,
            max_expires: s.max_expires,
            default_expires: s.default_expires,
            max_contacts: s.max_contacts_per_trunk,
        });
        self.force_rport = s.force_rport;
        self.proxies = TrustedProxies::new(&config.cluster.trusted_proxies);
        self.qualify.set_interval(s.qualify_interval);
        self.server_header = s.server_header.clone();
        self.max_message_size = s.max_message_size;
        self.max_calls = config.calls.max_calls;
        self.limit_response = config.calls.limit_response.code();
        info!(trunks = config.trunks.len(), "SIP core reconfigured");
    }

    /// Replaces the random source of tags, branches, CSeqs and Call-IDs, so a run can be
    /// replayed.
    pub fn seed_rng(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// The address written in our Via and Contact (the bound socket's, when `sip.advertise`
    /// and `sip.listen` leave it open).
    pub fn set_advertise(&mut self, addr: SocketAddr) {
        self.advertise = addr;
    }

    /// Call numbers, shared with the inbound side so both directions draw from one sequence.
    pub fn call_refs(&self) -> Arc<CallRefs> {
        self.next_call.clone()
    }

    /// Calls with a dialog (both directions).
    pub fn active_calls(&self) -> usize {
        self.dialogs.active()
    }

    /// The next dialog event for the transaction user.
    pub fn poll_event(&mut self) -> Option<(CallRef, DialogEvent)> {
        self.dialogs.to_calls.pop_front()
    }

    /// Stopping: new INVITEs get 503 with Retry-After from now on.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Requests by method and responses by code.
    pub(crate) fn traffic(&self) -> &Arc<SipTraffic> {
        &self.traffic
    }

    /// The SIP edge's counters.
    pub fn stats(&self) -> &Arc<SipStats> {
        &self.stats
    }

    /// The trunks' current registrations.
    pub fn registrations(&self) -> &Registrations {
        self.registrar.view()
    }

    /// Bans and the guard's counters, for status and metrics.
    pub fn security(&self) -> &Arc<SecurityView> {
        self.guard.view()
    }

    /// Live server transactions.
    pub fn server_transactions(&self) -> usize {
        self.server.len()
    }

    /// The operator lifts a ban; `false` when `source` was not banned.
    pub fn unban(&mut self, source: Source, now: Instant) -> bool {
        self.guard.unban(source, now)
    }

    /// The next datagram to send, if any; call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When `handle_timeout` is next due (a transaction, registration, dialog or guard timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.server.poll_timeout(),
            self.client.poll_timeout(),
            self.registrar.poll_timeout(),
            self.dialogs.poll_timeout(),
            self.guard.poll_timeout(),
            self.qualify.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether some carrier account is subscribed: OPTIONS says 503 while none is.
    pub fn set_carrier_ready(&mut self, ready: bool) {
        self.carrier_ready = ready;
    }

    /// Runs every timer due at `now`: retransmissions, transaction timeouts, dialog timers, ban
    /// expiries and expired registrations.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut events = std::mem::take(&mut self.events);
        self.server.handle_timeout(now, &mut events);
        self.client.handle_timeout(now, &mut events);
        for e in events.drain(..) {
            match e {
                TxEvent::Transmit(t) => self.out.push_back(t),
                TxEvent::ServerNoAck { id } => {
                    debug!(tx = %id, "no ACK for final response (Timer H)")
                }
                TxEvent::ClientTimeout { id } => {
                    debug!(tx = %id, "client transaction timed out");
                    self.call_client_timeout(id);
                }
            }
        }
        self.events = events;
        self.guard.handle_timeout(now);
        self.dialog_timeouts(now);
        let expired = self.registrar.handle_timeout(now);
        if expired > 0 {
            self.stats
                .registrations_expired
                .fetch_add(expired as u64, std::sync::atomic::Ordering::Relaxed);
            info!(expired, "registration bindings expired");
            self.sync_qualify_all(now);
        }
        self.send_qualify(now);
    }

    /// Handles one datagram from `src` received at `now`; answers and other output come out of
    /// `poll_transmit` and `poll_event`.
    pub fn handle_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        SipStats::inc(&self.stats.datagrams_received);
        // A banned source costs one lookup: not even a parse. A trusted proxy is never banned
        // itself: the PBX behind it is judged once the request is read.
        let proxied = self.proxies.contains(src.ip());
        if !proxied && self.guard.is_banned(src.ip(), now) {
            return;
        }
        match parse(data, self.max_message_size) {
            Ok(Parsed::Request(req, info)) => {
                let peer = self.proxies.pbx_address(&req, src);
                if proxied && self.guard.is_banned(peer.ip(), now) {
                    return;
                }
                let ua = req.headers.get("User-Agent");
                if self.guard.screen_user_agent(peer.ip(), ua, now) {
                    return;
                }
                self.on_request(req, info, Peer { src, pbx: peer }, now)
            }
            Ok(Parsed::Response(resp, info)) => {
                let rx = TxKey::for_response(&info.top_via, &info.cseq)
                    .map(|k| self.client.on_response(&k, resp.code, now))
                    .unwrap_or(ClientRx::Stray);
                self.client_response(rx, &resp, &info, now);
            }
            Err(ParseFailure::Drop(e)) => {
                if !e.is_keepalive() {
                    SipStats::inc(&self.stats.parse_errors);
                    SipStats::inc(&self.stats.dropped);
                    debug!(%src, error = %e, "datagram dropped");
                }
            }
            Err(ParseFailure::Reject {
                code,
                error,
                partial,
            }) => {
                SipStats::inc(&self.stats.parse_errors);
                let peer = self.proxies.pbx_address(&partial, src);
                let ua = partial.headers.get("User-Agent");
                if self.guard.screen_user_agent(peer.ip(), ua, now) {
                    return;
                }
                // Never answer an ACK (RFC 3261 17.2.1: ACK gets no response), nor a source
                // over its budget.
                if partial.method == Method::Ack {
                    SipStats::inc(&self.stats.dropped);
                    return;
                }
                if !self.guard.charge(peer.ip(), now) {
                    return;
                }
                debug!(%src, %peer, error = %error, code, "malformed request rejected");
                let tag = self.new_tag();
                let mut r = response::build(
                    &partial,
                    None,
                    src,
                    code,
                    None,
                    Some(&tag),
                    &self.server_header,
                );
                r.headers
                    .push("Warning", warning_header(399, &error.to_string()));
                self.send_stateless(r, src);
            }
        }
    }

    fn on_request(&mut self, req: Request, info: RequestInfo, peer: Peer, now: Instant) {
        let src = peer.src;
        let key = TxKey::for_request(
            &req.method,
            &info.top_via,
            &info.call_id,
            &info.cseq,
            info.from.tag(),
        );
        let is_ack = req.method == Method::Ack;
        // Retransmissions are absorbed before anything else (authentication included), so a
        // retransmitted authenticated request never spends its nonce twice.
        match self.server.lookup(&key, is_ack, now) {
            Some(ServerRx::Retransmission(t)) => {
                SipStats::inc(&self.stats.retransmissions_absorbed);
                if let Some(t) = t {
                    self.out.push_back(t);
                }
                return;
            }
            Some(ServerRx::AckAbsorbed) => return,
            // the ACK of one of our 2xx, or of a challenge we sent statelessly: no state either way
            Some(ServerRx::AckForTu) | Some(ServerRx::New(_)) => return self.ack(&req, &info, now),
            None if is_ack => return self.ack(&req, &info, now),
            None => {}
        }
        // A request bound to a live dialog (or a CANCEL of a live INVITE) is a known peer's; any
        // other spends the source's budget of unauthenticated requests.
        let bound = self.bound_to_state(&req, &info);
        if !bound && !self.guard.charge(peer.pbx.ip(), now) {
            return;
        }
        SipStats::inc(&self.stats.requests_received);
        self.traffic.request(req.method.as_str());
        if let Err(a) = precheck::precheck(&req, &info) {
            return self.reply_stateless(&req, &info, src, a);
        }
        let work = match req.method {
            Method::Options => {
                let a = match self.unavailable() {
                    Some((reason, retry)) => {
                        Answer::new(503).reason(reason).header("Retry-After", retry)
                    }
                    None => Answer::new(200),
                };
                let a = a
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .header("Supported", SUPPORTED.join(", "));
                return self.reply_stateless(&req, &info, src, a);
            }
            _ if !bound
                && (req.method != Method::Register && !self.is_initial_invite(&req, &info)) =>
            {
                // BYE, re-INVITE or CANCEL for nothing we know
                return self.reply_stateless(&req, &info, src, Answer::new(481));
            }
            _ if self.server.len() >= self.guard.max_transactions() => {
                SipStats::inc(&self.stats.transaction_limit_refusals);
                debug!(%src, limit = self.guard.max_transactions(), "server transaction ceiling reached");
                let a = Answer::new(503)
                    .reason("Overloaded")
                    .header("Retry-After", "5");
                return self.reply_stateless(&req, &info, src, a);
            }
            _ if bound => Work::Bound,
            _ => match self.authenticate(&req, &info, peer.pbx, now) {
                Ok(trunk) => {
                    self.guard.refund(peer.pbx.ip());
                    Work::Authenticated(trunk, self.auth.take_nonce_use())
                }
                Err(a) => return self.reply_stateless(&req, &info, src, a),
            },
        };
        let id = self.server.open(key);
        let answer = match (work, &req.method) {
            (Work::Authenticated(trunk, nonce), Method::Register) => {
                Some(self.register(trunk, &req, &info, peer, nonce, now))
            }
            (Work::Authenticated(trunk, nonce), _) => {
                let caller = Authenticated { trunk, peer, nonce };
                self.new_call(id, caller, &req, &info, now)
            }
            (Work::Bound, Method::Cancel) => Some(self.cancel(&info)),
            (Work::Bound, _) => self.in_dialog(id, &req, &info, src),
        };
        let Some(answer) = answer else {
            return; // the call answers
        };
        let tag = self.new_tag();
        let resp = self.response(&req, &info, src, answer, &tag);
        let dest = response::response_destination(Some(&info.top_via), src, self.force_rport);
        if let Some(t) = self
            .server
            .respond(id, resp.code, resp.to_bytes().into(), dest, now)
        {
            SipStats::inc(&self.stats.responses_sent);
            self.traffic.response(resp.code);
            self.out.push_back(t);
        }
        self.finish_cancel(now);
    }

    /// Why a new call would be refused now, with the Retry-After to give: what OPTIONS tells a
    /// dispatcher probing this instance (RFC 3261 11.2: the answer an INVITE would get).
    fn unavailable(&self) -> Option<(&'static str, &'static str)> {
        if self.draining {
            Some(("Shutting Down", "60"))
        } else if !self.carrier_ready {
            Some(("No Carrier Subscribed", "10"))
        } else if self.dialogs.active() >= self.max_calls {
            Some(("Call Limit Reached", "5"))
        } else {
            None
        }
    }

    /// An INVITE that starts a dialog (no To tag).
    fn is_initial_invite(&self, req: &Request, info: &RequestInfo) -> bool {
        req.method == Method::Invite && info.to.tag().is_none()
    }

    /// In a live dialog, or a CANCEL of an INVITE transaction we hold.
    fn bound_to_state(&self, req: &Request, info: &RequestInfo) -> bool {
        match req.method {
            Method::Cancel => self.server.find(&cancelled_invite(info)).is_some(),
            Method::Register | Method::Options => false,
            Method::Invite if info.to.tag().is_none() => false,
            _ => self.dialogs.find(info).is_some(),
        }
    }

    /// Answers without a transaction: nothing is kept and nothing retransmitted, one datagram
    /// back for one datagram in. The To tag is derived from the request, so a retransmission
    /// gets the same one (RFC 3261 8.2.7).
    fn reply_stateless(&mut self, req: &Request, info: &RequestInfo, src: SocketAddr, a: Answer) {
        let tag = stateless_tag(info);
        let resp = self.response(req, info, src, a, &tag);
        let dest = response::response_destination(Some(&info.top_via), src, self.force_rport);
        self.send_stateless(resp, dest);
    }

    fn send_stateless(&mut self, resp: Response, dest: SocketAddr) {
        SipStats::inc(&self.stats.responses_sent);
        SipStats::inc(&self.stats.stateless_responses);
        self.traffic.response(resp.code);
        self.out.push_back(Transmit {
            dest,
            bytes: resp.to_bytes().into(),
        });
    }

    fn response(
        &self,
        req: &Request,
        info: &RequestInfo,
        src: SocketAddr,
        a: Answer,
        tag: &str,
    ) -> Response {
        let mut r = response::build(
            req,
            Some(&info.top_via),
            src,
            a.code,
            a.reason.as_deref(),
            Some(tag),
            &self.server_header,
        );
        for (n, v) in a.headers {
            r.headers.push(n, v);
        }
        r
    }
}

/// Who sent a request: the address it came from, and the PBX behind it (the same, unless a
/// trusted proxy relayed it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    pub src: SocketAddr,
    pub pbx: SocketAddr,
}

/// What a request that keeps state is: authenticated (as a trunk) or bound to a dialog.
enum Work {
    /// As trunk number n, with the nonce use its digest spent.
    Authenticated(usize, Option<NonceUse>),
    Bound,
}

/// The key of the INVITE transaction a CANCEL names (RFC 3261 9.2: same branch, Call-ID, CSeq
/// number).
fn cancelled_invite(info: &RequestInfo) -> TxKey {
    TxKey::for_request(
        &Method::Invite,
        &info.top_via,
        &info.call_id,
        &info.cseq,
        info.from.tag(),
    )
}

/// The To tag of a stateless response: the same for a retransmission of the same request.
fn stateless_tag(info: &RequestInfo) -> String {
    use std::hash::{Hash, Hasher};
    // DefaultHasher::new() has fixed keys: the tag must be stable, not secret.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    info.call_id.hash(&mut h);
    info.top_via.branch().hash(&mut h);
    info.from.tag().hash(&mut h);
    info.cseq.seq.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}
