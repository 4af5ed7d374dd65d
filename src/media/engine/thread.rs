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
use super::call::{Call, CallShared, Io, LocalSide, PbxSide, PendingSdp, PBX_BATCH, PBX_DATAGRAM};
use super::demux::{Demux, Drop as DemuxDrop};
use super::peer::{IceTiming, WebRtcPeer};
use super::servers::MAX_TURN;
use super::turn_link::TurnLink;
use super::{CallKey, Command, EngineCounters, FarEnd, Role};
use crate::media::relay::Relay;
use crate::media::turn::{classify, BindingResult, PacketKind, StunBinding};
use crate::media::PeerError;

pub const WAKER: Token = Token(0);
const SHARED: Token = Token(1);
/// Low bits of a call socket's token: which of the call's sockets.
const KIND_BITS: usize = 3;
const KIND_RTP: usize = 0;
const KIND_RTCP: usize = 1;
const KIND_OWN: usize = 2;
/// TURN link `i` of a call: `KIND_TURN0 + i`.
const KIND_TURN0: usize = 3;
const _: () = assert!(KIND_TURN0 + MAX_TURN <= 1 << KIND_BITS);
/// A reflexive address learnt by STUN is trusted this long for new calls.
const SRFLX_FRESH: Duration = Duration::from_secs(300);

/// The reflexive address of the shared port as one STUN server sees it (shared by the calls).
struct Srflx {
    server: SocketAddr,
    binding: Option<StunBinding>,
    mapped: Option<(SocketAddr, Instant)>,
    waiters: Vec<CallKey>,
}

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
    pbx_bufs: Box<[[u8; PBX_DATAGRAM]; PBX_BATCH]>,
    /// Calls that received datagrams in the current batch, to reschedule after it.
    touched: Vec<u32>,
    srflx: Vec<Srflx>,
    turn_tls: Option<Arc<rustls::ClientConfig>>,
    batch_window: Duration,
}

impl MediaThread {
    pub fn new(
        poll: Poll,
        commands: Receiver<Command>,
        mut shared: mio::net::UdpSocket,
        counters: Arc<EngineCounters>,
        turn_tls: Option<Arc<rustls::ClientConfig>>,
        batch_window: Duration,
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
            pbx_bufs: Box::new([[0; PBX_DATAGRAM]; PBX_BATCH]),
            touched: Vec::with_capacity(RECV_BATCH),
            srflx: Vec::new(),
            turn_tls,
            batch_window,
        })
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        // Whether the last pass had datagrams to handle: while media flows, the thread lets a
        // batch window of packets gather between passes instead of waking for each one.
        let mut busy = false;
        loop {
            let next = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let next = self
                .srflx
                .iter()
                .filter_map(|s| s.binding.as_ref()?.poll_timeout())
                .chain(next)
                .min();
            let mut timeout = next.map(|at| at.saturating_duration_since(Instant::now()));
            if busy && !self.batch_window.is_zero() {
                // One sleep per window instead of one wake-up per packet: the kernel's
                // wake-up path costs more than a relayed packet's own work.
                let nap = timeout.map_or(self.batch_window, |t| t.min(self.batch_window));
                std::thread::sleep(nap);
                timeout = Some(Duration::ZERO);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media thread poll failed");
                    return;
                }
            }
            let now = Instant::now();
            busy = false;
            for ev in events.iter() {
                busy |= ev.token() != WAKER;
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
            self.srflx_timers(now);
            self.flush();
        }
    }

    fn srflx_timers(&mut self, now: Instant) {
        let MediaThread {
            srflx,
            calls,
            batch,
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
                    batch.push(s.server, bytes.to_vec());
                }
            }
            settle_srflx(s, calls, touched, now);
        }
        self.after_touched();
    }

    /// Reschedules the calls touched by the last step; those whose gathering just ended owe
    /// their SDP now.
    fn after_touched(&mut self) {
        let mut list = std::mem::take(&mut self.touched);
        for slot in list.drain(..) {
            if let Some(Some(call)) = self.calls.get_mut(slot as usize) {
                if call.pending.is_some() && call.gathering_done() {
                    call.gather_deadline = None;
                    finish_gathering(call);
                }
                let next = call.next_timeout();
                self.schedule(slot, next);
            }
        }
        self.touched = list;
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
                poll,
                recv_bufs,
                calls,
                demux,
                batch,
                scratch,
                pbx_bufs,
                counters,
                shared_addr,
                touched,
                srflx,
                ..
            } = self;
            for (i, meta) in metas.iter().enumerate().take(n) {
                // GRO may pack several datagrams of one source in a buffer: `stride` apart.
                let buf = &recv_bufs[i][..meta.len];
                let stride = meta.stride.max(1);
                for datagram in buf.chunks(stride) {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    if classify(datagram) == PacketKind::Stun {
                        if let Some(s) = srflx
                            .iter_mut()
                            .find(|s| s.server == meta.addr && s.binding.is_some())
                        {
                            if let Some(b) = s.binding.as_mut() {
                                b.handle_input(meta.addr, datagram, now);
                            }
                            settle_srflx(s, calls, touched, now);
                            continue;
                        }
                    }
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
                        registry: poll.registry(),
                        batch,
                        demux,
                        demux_counters: &counters.demux,
                        scratch: &mut scratch[..],
                        pbx_bufs,
                    };
                    call.on_webrtc_datagram(meta.addr, *shared_addr, datagram, now, &mut io);
                    touched.push(key.slot);
                }
            }
            // Edge-triggered readiness: a short batch means the socket was drained.
            let drained = n < RECV_BATCH;
            self.after_touched();
            if drained {
                return;
            }
        }
    }

    /// A call and the I/O it may use, borrowed together.
    fn call_mut_split(&mut self, key: CallKey) -> Option<(&mut Call, Io<'_>)> {
        let call = self.calls.get_mut(key.slot as usize)?.as_mut()?;
        if call.key != key {
            return None;
        }
        let io = Io {
            registry: self.poll.registry(),
            batch: &mut self.batch,
            demux: &mut self.demux,
            demux_counters: &self.counters.demux,
            scratch: &mut self.scratch[..],
            pbx_bufs: &mut self.pbx_bufs,
        };
        Some((call, io))
    }

    /// Runs `f` on a live call, then lets str0m send what it produced and reschedules the
    /// call; None when the call is gone.
    fn with_call<T>(
        &mut self,
        key: CallKey,
        now: Instant,
        f: impl FnOnce(&mut Call, &mut Io<'_>) -> T,
    ) -> Option<T> {
        let (call, mut io) = self.call_mut_split(key)?;
        let out = f(call, &mut io);
        call.drive(now, &mut io);
        let next = call.next_timeout();
        self.schedule(key.slot, next);
        Some(out)
    }

    fn current_key(&self, slot: u32) -> Option<CallKey> {
        self.calls.get(slot as usize)?.as_ref().map(|c| c.key)
    }

    fn on_call_socket(&mut self, slot: u32, kind: usize, now: Instant) {
        let Some(key) = self.current_key(slot) else {
            return;
        };
        if kind == KIND_OWN {
            self.read_own_socket(key, now);
        } else if let Some((call, mut io)) = self.call_mut_split(key) {
            match kind {
                KIND_RTP => call.on_pbx_rtp(now, &mut io),
                KIND_RTCP => call.on_pbx_rtcp(now, &mut io),
                k if k >= KIND_TURN0 => call.on_turn_ready(k - KIND_TURN0, now, &mut io),
                _ => {}
            }
        }
        self.touched.push(slot);
        self.after_touched();
    }

    /// A call's own WebRTC socket is readable. Datagrams are read into the shared port's first
    /// receive buffer (idle outside `read_shared`), so the call keeps its scratch buffer for
    /// what it sends.
    fn read_own_socket(&mut self, key: CallKey, now: Instant) {
        let MediaThread {
            poll,
            calls,
            demux,
            batch,
            scratch,
            pbx_bufs,
            counters,
            recv_bufs,
            ..
        } = self;
        let Some(Some(call)) = calls.get_mut(key.slot as usize) else {
            return;
        };
        let mut io = Io {
            registry: poll.registry(),
            batch,
            demux,
            demux_counters: &counters.demux,
            scratch: &mut scratch[..],
            pbx_bufs,
        };
        let buf = &mut recv_bufs[0];
        let local = call.local_addr;
        while let Some(sock) = call.own_socket.as_ref() {
            let (n, src) = match sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            call.on_webrtc_datagram(src, local, &buf[..n], now, &mut io);
        }
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
            self.touched.push(slot);
            self.after_touched();
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
            self.demux.add_ufrag(&call.ufrag, key);
        }
        let registry = self.poll.registry();
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

    /// The call gets the shared port's reflexive address seen by `server`: known and fresh, or
    /// once a binding (started here if none is in flight) answers.
    fn want_srflx(&mut self, call: &mut Call, server: SocketAddr, now: Instant) {
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
                self.batch.push(server, bytes.to_vec());
            }
            s.binding = Some(b);
        }
        s.waiters.push(call.key);
        call.srflx_waiting += 1;
    }

    fn close(&mut self, key: CallKey) {
        let Some(slot) = self.calls.get_mut(key.slot as usize) else {
            return;
        };
        if slot.as_ref().map(|c| c.key) != Some(key) {
            return;
        }
        let Some(mut call) = slot.take() else { return };
        call.close_links(Instant::now(), self.poll.registry());
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
            let _ = reply.send(call.accept_offer(&sdp, codec, Instant::now()));
        }
    }
}
