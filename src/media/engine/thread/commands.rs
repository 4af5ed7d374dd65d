//! The async side's commands to a media thread: calls created (gathering started, the offer or
//! answer owed), negotiated, attached to the PBX's sockets, updated and closed, each in its slot
//! of the thread's call table.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::Interest;
use quinn_udp::{UdpSockRef, UdpSocketState};
use str0m::Candidate;

use super::super::call::{Call, CallShared, LocalSide, PbxSide, PendingSdp};
use super::super::peer::{IceTiming, WebRtcPeer};
use super::super::turn_link::TurnLink;
use super::super::{CallKey, CallSpec, Command, FarEnd, Role};
use super::{finish_gathering, token, MediaThread, KIND_OWN, KIND_RTCP, KIND_RTP, KIND_TURN0};
use crate::media::relay::Relay;
use crate::media::PeerError;

impl MediaThread {
    /// Returns false when the engine is shutting down.
    pub(super) fn drain_commands(&mut self, now: Instant) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(cmd) => {
                    if !self.command(cmd, now) {
                        return false;
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn allocate_slot(&mut self) -> CallKey {
        match self.free.pop() {
            Some(slot) => {
                let g = &mut self.generations[slot as usize];
                *g = g.wrapping_add(1);
                CallKey {
                    slot,
                    generation: *g,
                }
            }
            None => {
                self.calls.push(None);
                self.generations.push(0);
                CallKey {
                    slot: (self.calls.len() - 1) as u32,
                    generation: 0,
                }
            }
        }
    }

    /// Returns false for `Shutdown`.
    fn command(&mut self, cmd: Command, now: Instant) -> bool {
        match cmd {
            Command::Shutdown => return false,
            Command::Create {
                spec,
                shared,
                digits,
                key_reply,
            } => {
                let key = self.allocate_slot();
                match self.create(key, spec, shared, digits, now) {
                    Ok(()) => {
                        let _ = key_reply.send(Ok(key));
                    }
                    Err(e) => {
                        self.free.push(key.slot);
                        let _ = key_reply.send(Err(e));
                    }
                }
            }
            Command::AcceptAnswer { key, sdp, reply } => {
                let r = self.with_call(key, now, |call, io| {
                    call.accept_answer(&sdp, now, io.registry)
                });
                let _ = reply.send(r.unwrap_or(Err(PeerError::EngineGone)));
            }
            Command::Reoffer {
                key,
                direction,
                reply,
            } => {
                let r = self.with_call(key, now, |call, _| call.peer.create_offer(direction));
                let _ = reply.send(r.unwrap_or(Err(PeerError::EngineGone)));
            }
            Command::AnswerReoffer { key, sdp, reply } => {
                let r = self.with_call(key, now, |call, io| {
                    call.permit_remote(&sdp, now, io.registry);
                    call.accept_offer(&sdp, None, now)
                });
                let _ = reply.send(r.unwrap_or(Err(PeerError::EngineGone)));
            }
            Command::AttachPbx {
                key,
                rtp,
                rtcp,
                pbx,
            } => {
                let registry = self.lend.poll.registry();
                let Some(Some(call)) = self.calls.get_mut(key.slot as usize) else {
                    return true;
                };
                if call.key != key {
                    return true;
                }
                let mut rtp = mio::net::UdpSocket::from_std(rtp);
                let mut rtcp = mio::net::UdpSocket::from_std(rtcp);
                let ok = registry
                    .register(&mut rtp, token(key.slot, KIND_RTP), Interest::READABLE)
                    .and_then(|_| {
                        registry.register(&mut rtcp, token(key.slot, KIND_RTCP), Interest::READABLE)
                    });
                if let Err(e) = ok {
                    tracing::warn!(error = %e, "PBX RTP sockets not registered");
                    return true;
                }
                let relay = Relay::new(pbx, rand::random(), call.shared.started);
                let rtp_state = match UdpSocketState::new(UdpSockRef::from(&rtp)) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "PBX RTP socket unusable");
                        return true;
                    }
                };
                call.attach_pbx(PbxSide {
                    rtp,
                    rtp_state,
                    rtcp,
                    relay,
                });
                // Anything the PBX sent before is read now.
                self.on_call_socket(key.slot, KIND_RTP, now);
            }
            Command::UpdatePbx { key, pbx } => {
                if let Some((call, _)) = self.call_mut_split(key) {
                    call.update_pbx(pbx);
                }
            }
            Command::Close { key } => self.close(key),
        }
        true
    }

    fn create(
        &mut self,
        key: CallKey,
        spec: CallSpec,
        shared: Arc<CallShared>,
        digits: Option<tokio::sync::mpsc::UnboundedSender<char>>,
        now: Instant,
    ) -> Result<(), PeerError> {
        let s = &spec.settings;
        let codecs = match &spec.role {
            Role::Offer { codecs, .. } => codecs.clone(),
            Role::Answer { codec: Some(c), .. } => vec![*c],
            // str0m lists an answer's codecs in its own configured order and the offerer
            // takes the answer's first: configured in the offer's order, both ends agree on
            // the offer's first G.711.
            Role::Answer {
                sdp, codec: None, ..
            } => crate::media::g711_in_sdp(sdp),
        };
        let timing = IceTiming {
            initial_rto: s.ice_check_interval,
            max_retransmits: usize::from(s.ice_max_binding_requests),
        };
        let mut peer = WebRtcPeer::new(&codecs, timing, now);
        let (own_socket, local_addr) = if spec.own_port {
            let std = std::net::UdpSocket::bind(SocketAddr::new(s.bind_ip, 0))
                .map_err(|e| PeerError::Io(e.to_string()))?;
            std.set_nonblocking(true)
                .map_err(|e| PeerError::Io(e.to_string()))?;
            let addr = std.local_addr().map_err(|e| PeerError::Io(e.to_string()))?;
            let mut sock = mio::net::UdpSocket::from_std(std);
            self.lend
                .poll
                .registry()
                .register(&mut sock, token(key.slot, KIND_OWN), Interest::READABLE)
                .map_err(|e| PeerError::Io(e.to_string()))?;
            (Some(sock), addr)
        } else {
            (None, self.shared_addr)
        };
        if !s.relay_only {
            let c =
                Candidate::host(local_addr, "udp").map_err(|e| PeerError::WebRtc(e.to_string()))?;
            peer.add_local_candidate(c);
        }
        let far = match spec.far_end {
            FarEnd::Pbx => None,
            FarEnd::Local(mode) => Some(LocalSide::new(mode)),
        };
        let mut call = Call::new(
            key,
            spec.span.clone(),
            peer,
            own_socket,
            local_addr,
            far,
            shared,
            digits,
            now,
        );
        let span = spec.span.clone();
        let _in = span.enter();
        if call.own_socket.is_none() {
            self.lend.demux.add_ufrag(&call.ufrag, key);
        }
        let registry = self.lend.poll.registry();
        for (i, target) in spec.gathering.turn.iter().enumerate() {
            match TurnLink::open(
                target,
                s.bind_ip,
                self.turn_tls.clone(),
                registry,
                token(key.slot, KIND_TURN0 + i),
                now,
            ) {
                Ok(link) => call.turns.push(link),
                Err(e) => {
                    tracing::warn!(url = %target.url, error = %e, "TURN allocation not started")
                }
            }
        }
        if let Role::Answer { sdp, .. } = &spec.role {
            call.permit_remote(sdp, now, registry);
        }
        if call.own_socket.is_none() {
            for server in &spec.gathering.stun {
                self.want_srflx(&mut call, *server, now);
            }
        }
        call.pending = Some(match spec.role {
            Role::Offer { reply, .. } => PendingSdp::Offer(reply),
            Role::Answer { sdp, codec, reply } => PendingSdp::Answer { sdp, codec, reply },
        });
        if call.gathering_done() {
            finish_gathering(&mut call);
        } else {
            call.gather_deadline = Some(now + s.gather_timeout);
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let next = call.next_timeout();
        self.calls[key.slot as usize] = Some(call);
        self.schedule(key.slot, next);
        Ok(())
    }

    fn close(&mut self, key: CallKey) {
        let Some(slot) = self.calls.get_mut(key.slot as usize) else {
            return;
        };
        if slot.as_ref().map(|c| c.key) != Some(key) {
            return;
        }
        let Some(mut call) = slot.take() else { return };
        call.close_links(Instant::now(), self.lend.poll.registry());
        call.close();
        self.lend.demux.remove(&call.ufrag, &call.addrs, key);
        let registry = self.lend.poll.registry();
        if let Some(mut s) = call.own_socket.take() {
            let _ = registry.deregister(&mut s);
        }
        if let Some(mut p) = call.pbx.take() {
            let _ = registry.deregister(&mut p.rtp);
            let _ = registry.deregister(&mut p.rtcp);
        }
        self.free.push(key.slot);
        self.counters.calls.fetch_sub(1, Ordering::Relaxed);
    }
}
