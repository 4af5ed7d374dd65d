//! The shared port's server-reflexive addresses: one STUN Binding per server at a time, its
//! result shared by every call that asked while it ran and reused for later calls while fresh.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::call::Call;
use super::super::CallKey;
use super::MediaThread;
use crate::media::turn::{BindingResult, StunBinding};

/// A reflexive address learnt by STUN is trusted this long for new calls.
const SRFLX_FRESH: Duration = Duration::from_secs(300);

/// The reflexive address of the shared port as one STUN server sees it (shared by the calls).
pub(super) struct Srflx {
    server: SocketAddr,
    binding: Option<StunBinding>,
    mapped: Option<(SocketAddr, Instant)>,
    waiters: Vec<CallKey>,
}

impl Srflx {
    /// When its binding next wants time (None: no binding in flight).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.binding.as_ref()?.poll_timeout()
    }

    /// Whether a datagram from `from` is for this binding: from its server, while one is in
    /// flight.
    pub(super) fn awaits(&self, from: SocketAddr) -> bool {
        self.server == from && self.binding.is_some()
    }

    /// The server's answer: once the binding has a result, the waiting calls get it.
    pub(super) fn on_input(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        calls: &mut [Option<Call>],
        touched: &mut Vec<u32>,
    ) {
        if let Some(b) = self.binding.as_mut() {
            b.handle_input(from, datagram, now);
        }
        settle_srflx(self, calls, touched, now);
    }
}

impl MediaThread {
    /// The bindings' retransmissions and time-outs.
    pub(super) fn srflx_timers(&mut self, now: Instant) {
        let MediaThread {
            srflx,
            calls,
            lend,
            touched,
            ..
        } = self;
        for s in srflx.iter_mut() {
            let Some(b) = s.binding.as_mut() else {
                continue;
            };
            if b.poll_timeout().is_some_and(|t| t <= now) {
                b.handle_timeout(now);
                if let Some(bytes) = b.poll_transmit(now) {
                    lend.batch.push(s.server, bytes.to_vec());
                }
            }
            settle_srflx(s, calls, touched, now);
        }
        self.after_touched();
    }

    /// The call gets the shared port's reflexive address seen by `server`: known and fresh, or
    /// once a binding (started here if none is in flight) answers.
    pub(super) fn want_srflx(&mut self, call: &mut Call, server: SocketAddr, now: Instant) {
        let idx = match self.srflx.iter().position(|s| s.server == server) {
            Some(i) => i,
            None => {
                self.srflx.push(Srflx {
                    server,
                    binding: None,
                    mapped: None,
                    waiters: Vec::new(),
                });
                self.srflx.len() - 1
            }
        };
        let s = &mut self.srflx[idx];
        if let Some((a, at)) = s.mapped {
            if now.saturating_duration_since(at) < SRFLX_FRESH && s.binding.is_none() {
                call.add_srflx(a);
                return;
            }
        }
        if s.binding.is_none() {
            let mut b = StunBinding::new(self.shared_addr, server, now);
            if let Some(bytes) = b.poll_transmit(now) {
                self.lend.batch.push(server, bytes.to_vec());
            }
            s.binding = Some(b);
        }
        s.waiters.push(call.key);
        call.srflx_waiting += 1;
    }
}

/// Hands the waiting calls the reflexive address once a binding has a result.
fn settle_srflx(s: &mut Srflx, calls: &mut [Option<Call>], touched: &mut Vec<u32>, now: Instant) {
    let Some(b) = &s.binding else { return };
    let mapped = match b.result() {
        BindingResult::Pending => return,
        BindingResult::Mapped(a) => Some(*a),
        BindingResult::Failed(why) => {
            tracing::warn!(server = %s.server, reason = %why, "no reflexive address from STUN");
            None
        }
    };
    s.binding = None;
    s.mapped = mapped.map(|a| (a, now));
    for key in s.waiters.drain(..) {
        if let Some(Some(call)) = calls.get_mut(key.slot as usize) {
            if call.key == key {
                if let Some(a) = mapped {
                    call.add_srflx(a);
                }
                call.srflx_waiting = call.srflx_waiting.saturating_sub(1);
                touched.push(key.slot);
            }
        }
    }
}
