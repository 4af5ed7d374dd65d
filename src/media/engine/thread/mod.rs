//! One media thread: a mio poll loop owning a shard of the calls, its shared WebRTC socket
//! (read in batches with quinn-udp's `recvmmsg`, written with `sendmmsg`), every call's own
//! sockets, and a timer heap holding at most one live entry per call. Commands from the async
//! side arrive on a queue with a waker; nothing crosses threads per packet.
//!
//! This module owns the loop, the call table's timers and the I/O the calls borrow; what the
//! sockets bring is `read`, the async side's commands `commands`, the shared port's reflexive
//! addresses `srflx`.

mod commands;
mod read;
mod srflx;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use quinn_udp::{UdpSockRef, UdpSocketState};

use self::srflx::Srflx;
use super::batch::SendBatch;
use super::call::{Call, Io, PendingSdp, PBX_BATCH, PBX_DATAGRAM};
use super::demux::Demux;
use super::servers::MAX_TURN;
use super::{CallKey, Command, EngineCounters};

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

/// The I/O a call borrows for one step ([`Io`]), apart from the call table so that a call and
/// its I/O can be borrowed at once.
struct Lendable {
    poll: Poll,
    batch: SendBatch,
    demux: Demux<CallKey>,
    scratch: Box<[u8; DATAGRAM]>,
    pbx_bufs: Box<[[u8; PBX_DATAGRAM]; PBX_BATCH]>,
}

impl Lendable {
    fn io<'a>(&'a mut self, counters: &'a EngineCounters) -> Io<'a> {
        Io {
            registry: self.poll.registry(),
            batch: &mut self.batch,
            demux: &mut self.demux,
            demux_counters: &counters.demux,
            scratch: &mut self.scratch[..],
            pbx_bufs: &mut self.pbx_bufs,
        }
    }
}

pub struct MediaThread {
    lend: Lendable,
    pub commands: Receiver<Command>,
    pub shared: mio::net::UdpSocket,
    pub shared_addr: SocketAddr,
    pub counters: Arc<EngineCounters>,
    calls: Vec<Option<Call>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    udp_state: UdpSocketState,
    recv_bufs: Box<[[u8; DATAGRAM]; RECV_BATCH]>,
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
            lend: Lendable {
                poll,
                batch: SendBatch::default(),
                demux: Demux::default(),
                scratch: Box::new([0; DATAGRAM]),
                pbx_bufs: Box::new([[0; PBX_DATAGRAM]; PBX_BATCH]),
            },
            commands,
            shared,
            shared_addr,
            counters,
            calls: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            udp_state,
            recv_bufs: Box::new([[0; DATAGRAM]; RECV_BATCH]),
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
                .filter_map(Srflx::poll_timeout)
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
            if let Err(e) = self.lend.poll.poll(&mut events, timeout) {
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
        if !self.lend.batch.is_empty() {
            let f = self.lend.batch.flush(&self.shared);
            self.counters
                .send_syscalls
                .fetch_add(f.syscalls as u64, Ordering::Relaxed);
            self.counters
                .sent
                .fetch_add(f.sent as u64, Ordering::Relaxed);
        }
    }

    /// A call and the I/O it may use, borrowed together.
    fn call_mut_split(&mut self, key: CallKey) -> Option<(&mut Call, Io<'_>)> {
        let call = self.calls.get_mut(key.slot as usize)?.as_mut()?;
        if call.key != key {
            return None;
        }
        Some((call, self.lend.io(&self.counters)))
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
