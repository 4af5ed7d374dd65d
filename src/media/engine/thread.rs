//! One media thread: a mio poll loop owning a shard of the calls, its shared WebRTC socket
//! (read in batches with quinn-udp's `recvmmsg`, written with `sendmmsg`), every call's own
//! sockets, and a timer heap holding at most one live entry per call. Commands from the async
//! side arrive on a queue with a waker; nothing crosses threads per packet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use str0m::Candidate;

use super::batch::SendBatch;
use super::call::{Call, CallShared, Io, LocalSide, PbxSide, PendingSdp};
use super::demux::{Demux, Drop as DemuxDrop};
use super::peer::{IceTiming, WebRtcPeer};
use super::{CallKey, Command, EngineCounters, FarEnd, Role};
use crate::media::relay::Relay;
use crate::media::PeerError;

pub const WAKER: Token = Token(0);
const SHARED: Token = Token(1);
/// Low bits of a call socket's token: which of the call's sockets.
const KIND_BITS: usize = 2;
const KIND_RTP: usize = 0;
const KIND_RTCP: usize = 1;
const KIND_OWN: usize = 2;

/// Datagrams read per `recvmmsg`.
const RECV_BATCH: usize = 32;
const DATAGRAM: usize = 2048;

fn token(slot: u32, kind: usize) -> Token {
    Token(((slot as usize + 1) << KIND_BITS | kind) + 1)
}

fn untoken(t: Token) -> Option<(u32, usize)> {
    let v = t.0.checked_sub(1)?;
    let slot = (v >> KIND_BITS).checked_sub(1)?;
    Some((slot as u32, v & ((1 << KIND_BITS) - 1)))
}

pub struct MediaThread {
    pub poll: Poll,
    pub commands: Receiver<Command>,
    pub shared: mio::net::UdpSocket,
    pub shared_addr: SocketAddr,
    pub counters: Arc<EngineCounters>,
    calls: Vec<Option<Call>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    demux: Demux<CallKey>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    batch: SendBatch,
    udp_state: UdpSocketState,
    recv_bufs: Box<[[u8; DATAGRAM]; RECV_BATCH]>,
    scratch: Box<[u8; DATAGRAM]>,
    /// Calls that received datagrams in the current batch, to reschedule after it.
    touched: Vec<u32>,
}

impl MediaThread {
    pub fn new(
        poll: Poll,
        commands: Receiver<Command>,
        mut shared: mio::net::UdpSocket,
        counters: Arc<EngineCounters>,
    ) -> std::io::Result<Self> {
        poll.registry()
            .register(&mut shared, SHARED, Interest::READABLE)?;
        let udp_state = UdpSocketState::new(UdpSockRef::from(&shared))?;
        let shared_addr = shared.local_addr()?;
        Ok(MediaThread {
            poll,
            commands,
            shared,
            shared_addr,
            counters,
            calls: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            demux: Demux::default(),
            timers: BinaryHeap::new(),
            batch: SendBatch::default(),
            udp_state,
            recv_bufs: Box::new([[0; DATAGRAM]; RECV_BATCH]),
            scratch: Box::new([0; DATAGRAM]),
            touched: Vec::with_capacity(RECV_BATCH),
        })
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((at, _, _))| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media thread poll failed");
                    return;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    SHARED => self.read_shared(now),
                    t => {
                        if let Some((slot, kind)) = untoken(t) {
                            self.on_call_socket(slot, kind, now);
                        }
                    }
                }
            }
            if !self.drain_commands(now) {
                self.flush();
                return;
            }
            self.run_timers(now);
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let f = self.batch.flush(&self.shared);
            self.counters
                .send_syscalls
                .fetch_add(f.syscalls as u64, Ordering::Relaxed);
            self.counters
                .sent
                .fetch_add(f.sent as u64, Ordering::Relaxed);
        }
    }

    fn read_shared(&mut self, now: Instant) {
        loop {
            let mut metas = [RecvMeta::default(); RECV_BATCH];
            let n = {
                let mut slices: [IoSliceMut<'_>; RECV_BATCH] = {
                    let mut it = self.recv_bufs.iter_mut();
                    std::array::from_fn(|_| {
                        IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..]))
                    })
                };
                match self
                    .udp_state
                    .recv(UdpSockRef::from(&self.shared), &mut slices, &mut metas)
                {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
            };
            self.counters.recv_syscalls.fetch_add(1, Ordering::Relaxed);
            let MediaThread {
                recv_bufs,
                calls,
                demux,
                batch,
                scratch,
                counters,
                shared_addr,
                touched,
                ..
            } = self;
            for (i, meta) in metas.iter().enumerate().take(n) {
                // GRO may pack several datagrams of one source in a buffer: `stride` apart.
                let buf = &recv_bufs[i][..meta.len];
                let stride = meta.stride.max(1);
                for datagram in buf.chunks(stride) {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    let key = match demux.route(meta.addr, datagram) {
                        Ok(k) => k,
                        Err(d) => {
                            counters.demux.count(d);
                            continue;
                        }
                    };
                    let Some(Some(call)) = calls.get_mut(key.slot as usize) else {
                        counters.demux.count(DemuxDrop::UnknownSource);
                        continue;
                    };
                    if call.key != key {
                        counters.demux.count(DemuxDrop::UnknownSource);
                        continue;
                    }
                    let mut io = Io {
                        batch,
                        demux,
                        demux_counters: &counters.demux,
                        scratch: &mut scratch[..],
                    };
                    call.on_webrtc_datagram(meta.addr, *shared_addr, datagram, now, &mut io);
                    touched.push(key.slot);
                }
            }
            let mut list = std::mem::take(&mut self.touched);
            for slot in list.drain(..) {
                if let Some(Some(call)) = self.calls.get(slot as usize) {
                    let next = call.next_timeout();
                    self.schedule(slot, next);
                }
            }
            self.touched = list;
        }
    }

    /// A call and the I/O it may use, borrowed together.
    fn call_mut_split(&mut self, key: CallKey) -> Option<(&mut Call, Io<'_>)> {
        let call = self.calls.get_mut(key.slot as usize)?.as_mut()?;
        if call.key != key {
            return None;
        }
        let io = Io {
            batch: &mut self.batch,
            demux: &mut self.demux,
            demux_counters: &self.counters.demux,
            scratch: &mut self.scratch[..],
        };
        Some((call, io))
    }

    fn current_key(&self, slot: u32) -> Option<CallKey> {
        self.calls.get(slot as usize)?.as_ref().map(|c| c.key)
    }

    fn on_call_socket(&mut self, slot: u32, kind: usize, now: Instant) {
        let Some(key) = self.current_key(slot) else {
            return;
        };
        let Some((call, mut io)) = self.call_mut_split(key) else {
            return;
        };
        match kind {
            KIND_RTP => call.on_pbx_rtp(now, &mut io),
            KIND_RTCP => call.on_pbx_rtcp(now, &mut io),
            KIND_OWN => {
                let local = call.local_addr;
                while let Some(sock) = call.own_socket.as_ref() {
                    let (n, src) = match sock.recv_from(io.scratch) {
                        Ok(r) => r,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    // Copied out so the call may reuse scratch while handling it.
                    let mut tmp = [0u8; DATAGRAM];
                    tmp[..n].copy_from_slice(&io.scratch[..n]);
                    call.on_webrtc_datagram(src, local, &tmp[..n], now, &mut io);
                }
            }
            _ => {}
        }
        let next = call.next_timeout();
        self.schedule(slot, next);
    }

    /// Makes sure the heap wakes `slot` at `at` (an earlier live entry is kept: an early
    /// wake-up costs one poll of str0m).
    fn schedule(&mut self, slot: u32, at: Instant) {
        let Some(Some(call)) = self.calls.get_mut(slot as usize) else {
            return;
        };
        match call.scheduled {
            Some(s) if s <= at => {}
            _ => {
                call.scheduled = Some(at);
                self.timers.push(Reverse((at, slot, call.key.generation)));
            }
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let key = CallKey { slot, generation };
            let Some((call, mut io)) = self.call_mut_split(key) else {
                continue;
            };
            if call.scheduled != Some(at) {
                continue; // superseded by an earlier entry that already ran
            }
            call.scheduled = None;
            if let Some(deadline) = call.gather_deadline {
                if deadline <= now {
                    call.gather_deadline = None;
                    finish_gathering(call);
                }
            }
            call.on_timeout(now, &mut io);
            let next = call.next_timeout();
            self.schedule(slot, next);
        }
    }

    /// Returns false when the engine is shutting down.
    fn drain_commands(&mut self, now: Instant) -> bool {
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
                if let Some((call, mut io)) = self.call_mut_split(key) {
                    let r = call.peer.accept_answer(&sdp);
                    if let Ok(f) = &r {
                        call.set_format(*f);
                    }
                    let _ = reply.send(r);
                    call.drive(now, &mut io);
                    let next = call.next_timeout();
                    self.schedule(key.slot, next);
                } else {
                    let _ = reply.send(Err(PeerError::EngineGone));
                }
            }
            Command::Reoffer {
                key,
                direction,
                reply,
            } => match self.call_mut_split(key) {
                Some((call, _)) => {
                    let _ = reply.send(call.peer.create_offer(direction));
                }
                None => {
                    let _ = reply.send(Err(PeerError::EngineGone));
                }
            },
            Command::AnswerReoffer { key, sdp, reply } => {
                if let Some((call, mut io)) = self.call_mut_split(key) {
                    let r = call.peer.accept_offer(&sdp, None);
                    if let Ok((_, f)) = &r {
                        call.set_format(*f);
                    }
                    let _ = reply.send(r);
                    call.drive(now, &mut io);
                    let next = call.next_timeout();
                    self.schedule(key.slot, next);
                } else {
                    let _ = reply.send(Err(PeerError::EngineGone));
                }
            }
            Command::AttachPbx {
                key,
                rtp,
                rtcp,
                pbx,
            } => {
                let registry = self.poll.registry();
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
                call.attach_pbx(PbxSide { rtp, rtcp, relay });
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
        spec: super::CallSpec,
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
            self.poll
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
        let mut call = Call::new(key, peer, own_socket, local_addr, far, shared, digits, now);
        if call.own_socket.is_none() {
            self.demux.add_ufrag(&call.ufrag, key);
        }
        call.pending = Some(match spec.role {
            Role::Offer { reply, .. } => PendingSdp::Offer(reply),
            Role::Answer { sdp, codec, reply } => PendingSdp::Answer { sdp, codec, reply },
        });
        // Candidates beyond the host one would be gathered here; with none pending the SDP
        // is ready now.
        finish_gathering(&mut call);
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
        call.close();
        self.demux.remove(&call.ufrag, &call.addrs, key);
        let registry = self.poll.registry();
        if let Some(mut s) = call.own_socket.take() {
            let _ = registry.deregister(&mut s);
        }
        if let Some(mut p) = call.pbx.take() {
            let _ = registry.deregister(&mut p.rtp);
            let _ = registry.deregister(&mut p.rtcp);
        }
        self.free.push(key.slot);
        self.counters.calls.fetch_sub(1, Ordering::Relaxed);
        let _ = Duration::ZERO;
    }
}

/// Produces the SDP a call owes (offer or answer) with the candidates it has.
fn finish_gathering(call: &mut Call) {
    let Some(pending) = call.pending.take() else {
        return;
    };
    match pending {
        PendingSdp::Offer(reply) => {
            let _ = reply.send(call.peer.create_offer(crate::media::Direction::SendRecv));
        }
        PendingSdp::Answer { sdp, codec, reply } => {
            let r = call.peer.accept_offer(&sdp, codec);
            if let Ok((_, f)) = &r {
                call.set_format(*f);
            }
            let _ = reply.send(r);
        }
    }
}
