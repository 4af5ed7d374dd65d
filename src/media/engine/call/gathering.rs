//! A call's candidates and its TURN links: whether gathering is over, reflexive and relayed
//! candidates as they are learnt, the links' timers and readiness (media they relay goes into
//! the WebRTC leg), the permissions for the remote's candidates, and the links' close.

use std::net::SocketAddr;
use std::time::Instant;

use super::super::turn_link::LinkState;
use super::{Call, Io};
use crate::media::sdp_text::remote_candidate_addrs;
use crate::media::turn::TurnEvent;

impl Call {
    /// Gathering is over when no TURN allocation and no reflexive address is pending.
    pub fn gathering_done(&self) -> bool {
        self.srflx_waiting == 0 && self.turns.iter().all(|l| l.state != LinkState::Allocating)
    }

    /// A reflexive address of the call's host port was learnt.
    pub fn add_srflx(&mut self, mapped: SocketAddr) {
        match str0m::Candidate::server_reflexive(mapped, self.local_addr, "udp") {
            Ok(c) if mapped != self.local_addr => self.peer.add_local_candidate(c),
            Ok(_) => {}
            Err(e) => tracing::debug!(%mapped, error = %e, "reflexive candidate refused"),
        }
    }

    /// The TURN links whose timers are due.
    pub(super) fn turn_timeouts(&mut self, now: Instant, io: &mut Io<'_>) {
        for i in 0..self.turns.len() {
            if self.turns[i].poll_timeout().is_some_and(|t| t <= now) {
                let events = self.turns[i].on_timeout(now, io.registry);
                self.on_turn_events(i, events);
            }
        }
    }

    fn on_turn_events(&mut self, i: usize, events: Vec<TurnEvent>) {
        if events.is_empty() {
            return;
        }
        let span = self.span.clone();
        let _in = span.enter();
        for e in events {
            match e {
                TurnEvent::Allocated { relayed } => {
                    let local = self.turns[i].local;
                    tracing::debug!(url = %self.turns[i].url, %relayed, "TURN allocation");
                    match str0m::Candidate::relayed(relayed, local, "udp") {
                        Ok(c) => self.peer.add_local_candidate(c),
                        Err(e) => tracing::warn!(%relayed, error = %e, "relay candidate refused"),
                    }
                }
                TurnEvent::Failed(why) => {
                    tracing::warn!(url = %self.turns[i].url, reason = %why, "TURN allocation failed")
                }
                TurnEvent::PermissionFailed { peer } => {
                    tracing::debug!(%peer, "TURN permission refused")
                }
            }
        }
    }

    /// The socket of TURN link `i` is ready.
    pub fn on_turn_ready(&mut self, i: usize, now: Instant, io: &mut Io<'_>) {
        let Some(link) = self.turns.get_mut(i) else {
            return;
        };
        let events = link.on_ready(io.scratch, now, io.registry);
        let relayed = link.relayed();
        let delivered = std::mem::take(&mut link.delivered);
        let arena = std::mem::take(&mut link.arena);
        self.on_turn_events(i, events);
        if let Some(relayed) = relayed {
            for (peer, start, end) in &delivered {
                self.on_webrtc_datagram(*peer, relayed, &arena[*start..*end], now, io);
            }
        }
        if let Some(link) = self.turns.get_mut(i) {
            link.delivered = delivered;
            link.arena = arena;
        }
    }

    /// TURN permissions for every candidate address of the remote's SDP, before ICE checks go.
    pub fn permit_remote(&mut self, sdp: &str, now: Instant, registry: &mio::Registry) {
        if self.turns.is_empty() {
            return;
        }
        for addr in remote_candidate_addrs(sdp) {
            for l in &mut self.turns {
                if l.state != LinkState::Failed {
                    l.add_permission(addr, now, registry);
                }
            }
        }
    }

    /// The call ends: its TURN allocations are released.
    pub fn close_links(&mut self, now: Instant, registry: &mio::Registry) {
        for l in &mut self.turns {
            l.close(now, registry);
        }
    }
}
