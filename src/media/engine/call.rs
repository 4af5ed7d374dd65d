//! One call inside a media thread: its WebRTC peer, its far side (the PBX's RTP sockets and the
//! relay, or a local far end for the simulator), and the glue between them. The thread hands it
//! readable sockets, due timers and commands; it answers with datagrams to send and events for
//! the async side. Per packet it neither allocates nor locks nor hops tasks (str0m's own
//! buffers aside).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};
use tokio::sync::{mpsc, oneshot, watch};

use super::batch::SendBatch;
use super::call_quality::{CallQuality, QualityTracker};
use super::demux::{Demux, DemuxCounters, Drop as DemuxDrop};
use super::local::{tone_payload, DigitTracker, LocalMode, LocalStats};
use super::peer::WebRtcPeer;
use super::turn_link::{LinkState, TurnLink};
use super::CallKey;
use crate::media::relay::{FromPbx, PbxMedia, Relay, RelayCounters};
use crate::media::sdp_text::remote_candidate_addrs;
use crate::media::turn::{classify, PacketKind, TurnEvent};
use crate::media::{AudioFormat, Codec, PeerError, PeerState};

/// What a call shares with its async handle: counters and figures written by the media
/// thread (atomics; the quality snapshot once per statistics interval), the connection state.
#[derive(Debug)]
pub struct CallShared {
    pub counters: Arc<RelayCounters>,
    pub local: Arc<LocalStats>,
    pub state: watch::Sender<PeerState>,
    format: AtomicU32,
    quality: Mutex<CallQuality>,
    pub started: Instant,
}

const HAS_FORMAT: u32 = 1 << 24;
const HAS_EVENT: u32 = 1 << 16;

impl CallShared {
    pub fn new(now: Instant) -> Self {
        CallShared {
            counters: Arc::default(),
            local: Arc::default(),
            state: watch::channel(PeerState::New).0,
            format: AtomicU32::new(0),
            quality: Mutex::new(CallQuality::default()),
            started: now,
        }
    }

    pub fn format(&self) -> Option<AudioFormat> {
        let v = self.format.load(Ordering::Relaxed);
        if v & HAS_FORMAT == 0 {
            return None;
        }
        let codec = if v & 0xff == 8 {
            Codec::Pcma
        } else {
            Codec::Pcmu
        };
        Some(AudioFormat {
            codec,
            telephone_event_pt: (v & HAS_EVENT != 0).then_some(((v >> 8) & 0xff) as u8),
        })
    }

    fn set_format(&self, f: AudioFormat) {
        let ev = f
            .telephone_event_pt
            .map_or(0, |pt| HAS_EVENT | u32::from(pt) << 8);
        self.format.store(
            HAS_FORMAT | ev | u32::from(f.codec.payload_type()),
            Ordering::Relaxed,
        );
    }

    pub fn quality(&self) -> CallQuality {
        self.quality
            .lock()
            .map(|q| q.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_quality(&self, q: CallQuality) {
        match self.quality.lock() {
            Ok(mut g) => *g = q,
            Err(p) => *p.into_inner() = q,
        }
    }
}

/// A reply the call owes once its candidates are gathered.
pub enum PendingSdp {
    Offer(oneshot::Sender<Result<String, PeerError>>),
    Answer {
        sdp: String,
        codec: Option<Codec>,
        reply: oneshot::Sender<Result<(String, AudioFormat), PeerError>>,
    },
}

/// The PBX side: its RTP and RTCP sockets and the relay.
pub struct PbxSide {
    pub rtp: mio::net::UdpSocket,
    /// quinn-udp's state for batched reads of the RTP socket.
    pub rtp_state: quinn_udp::UdpSocketState,
    pub rtcp: mio::net::UdpSocket,
    pub relay: Relay,
}

/// A simulated far end living in the engine.
pub struct LocalSide {
    pub mode: LocalMode,
    digits: DigitTracker,
    next_tone: Option<Instant>,
    tone_seq: u16,
    tone_ts: u32,
}

impl LocalSide {
    pub fn new(mode: LocalMode) -> Self {
        LocalSide {
            mode,
            digits: DigitTracker::default(),
            next_tone: None,
            tone_seq: rand::random(),
            tone_ts: rand::random(),
        }
    }
}

/// What the thread lends a call for one step.
pub struct Io<'a> {
    pub registry: &'a mio::Registry,
    pub batch: &'a mut SendBatch,
    pub demux: &'a mut Demux<CallKey>,
    pub demux_counters: &'a DemuxCounters,
    pub scratch: &'a mut [u8],
    /// Receive buffers for one `recvmmsg` on a PBX socket.
    pub pbx_bufs: &'a mut [[u8; PBX_DATAGRAM]; PBX_BATCH],
}

/// Datagrams per `recvmmsg` on a PBX RTP socket, and their largest size.
pub const PBX_BATCH: usize = 8;
pub const PBX_DATAGRAM: usize = 1500;

pub struct Call {
    pub key: CallKey,
    /// The call task's span, entered on the paths that log (never per packet).
    pub span: tracing::Span,
    pub peer: WebRtcPeer,
    pub ufrag: String,
    /// A socket of its own for the WebRTC leg (far ends), instead of the thread's shared one.
    pub own_socket: Option<mio::net::UdpSocket>,
    pub local_addr: SocketAddr,
    /// Remote addresses this call owns in the shared port's demultiplexer.
    pub addrs: Vec<SocketAddr>,
    pub pbx: Option<PbxSide>,
    pub far: Option<LocalSide>,
    pub shared: Arc<CallShared>,
    pub digits: Option<mpsc::UnboundedSender<char>>,
    pub pending: Option<PendingSdp>,
    pub gather_deadline: Option<Instant>,
    /// TURN allocations (relay candidates) and reflexive addresses still being gathered.
    pub turns: Vec<TurnLink>,
    pub srflx_waiting: usize,
    pub connected: bool,
    pub closed: bool,
    /// When the leg must be connected (set at negotiation) or back from a disconnection.
    connect_by: Option<Instant>,
    /// When the SDP exchange completed, for the connect time in the log.
    negotiated_at: Option<Instant>,
    /// A DTLS flight that arrived before ICE accepted its source (see `on_webrtc_datagram`).
    early_dtls: Option<EarlyDtls>,
    failed: bool,
    /// When the thread's timer heap will next wake this call.
    pub scheduled: Option<Instant>,
    next_rtc: Instant,
    quality: QualityTracker,
}

/// An early DTLS flight kept for a retry.
struct EarlyDtls {
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

/// Largest early DTLS datagram kept (a flight's datagrams fit str0m's MTU).
const EARLY_DTLS_MAX: usize = 1500;

/// A G.711 packet interval.
const PTIME: Duration = Duration::from_millis(20);
/// After the SDP exchange, ICE and DTLS get this long to connect before the leg is failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connected leg that stays disconnected this long has failed (RFC 7675 consent: 30 s).
const DISCONNECTED_LIMIT: Duration = Duration::from_secs(30);

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: CallKey,
        span: tracing::Span,
        mut peer: WebRtcPeer,
        own_socket: Option<mio::net::UdpSocket>,
        local_addr: SocketAddr,
        far: Option<LocalSide>,
        shared: Arc<CallShared>,
        digits: Option<mpsc::UnboundedSender<char>>,
        now: Instant,
    ) -> Self {
        let ufrag = peer.local_ufrag();
        Call {
            key,
            span,
            peer,
            ufrag,
            own_socket,
            local_addr,
            addrs: Vec::new(),
            pbx: None,
            far,
            shared,
            digits,
            pending: None,
            gather_deadline: None,
            turns: Vec::new(),
            srflx_waiting: 0,
            connected: false,
            closed: false,
            connect_by: None,
            negotiated_at: None,
            early_dtls: None,
            failed: false,
            scheduled: None,
            next_rtc: now,
            quality: QualityTracker::new(now),
        }
    }

    /// The earliest moment the call needs the thread's attention.
    pub fn next_timeout(&self) -> Instant {
        let mut t = self.next_rtc;
        if let Some(d) = self.gather_deadline {
            t = t.min(d);
        }
        if let Some(n) = self.far.as_ref().and_then(|f| f.next_tone) {
            t = t.min(n);
        }
        for l in &self.turns {
            if let Some(n) = l.poll_timeout() {
                t = t.min(n);
            }
        }
        if let Some(c) = self.connect_by {
            t = t.min(c);
        }
        t.min(self.quality.next_report())
    }

    fn set_state(&mut self, s: PeerState) {
        self.shared.state.send_if_modified(|cur| {
            let changed = *cur != s && *cur != PeerState::Closed;
            if changed {
                *cur = s;
            }
            changed
        });
    }

    /// A datagram for this call's WebRTC leg (shared port or its own socket).
    pub fn on_webrtc_datagram(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        now: Instant,
        io: &mut Io<'_>,
    ) {
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, data) else {
            io.demux_counters.count(DemuxDrop::Garbage);
            return;
        };
        let input = Input::Receive(now, recv);
        if !self.peer.rtc().accepts(&input) {
            // A DTLS flight from the far end can overtake our ICE checks (its side nominated
            // first): dropped, it would cost a DTLS retransmission timeout (~1 s of audio).
            // Keep the latest one until ICE accepts its source.
            if !self.connected && classify(data) == PacketKind::Dtls && data.len() <= EARLY_DTLS_MAX
            {
                let buf = self.early_dtls.get_or_insert_with(|| EarlyDtls {
                    source,
                    destination,
                    data: Vec::with_capacity(EARLY_DTLS_MAX),
                });
                buf.source = source;
                buf.destination = destination;
                buf.data.clear();
                buf.data.extend_from_slice(data);
            }
            io.demux_counters.count(DemuxDrop::Refused);
            return;
        }
        let is_stun = classify(data) == PacketKind::Stun;
        if let Err(e) = self.peer.rtc().handle_input(input) {
            tracing::debug!(error = %e, "WebRTC input refused");
            io.demux_counters.count(DemuxDrop::Refused);
        } else {
            io.demux_counters.delivered.fetch_add(1, Ordering::Relaxed);
            if is_stun && !self.connected {
                self.retry_early_dtls(now);
            }
        }
        self.drive(now, io);
    }

    /// Gives a held early DTLS flight another chance once ICE has moved on.
    fn retry_early_dtls(&mut self, now: Instant) {
        let Some(held) = self.early_dtls.as_ref() else {
            return;
        };
        let Ok(recv) = Receive::new(Protocol::Udp, held.source, held.destination, &held.data)
        else {
            self.early_dtls = None;
            return;
        };
        let input = Input::Receive(now, recv);
        let rtc = self.peer.rtc();
        if rtc.accepts(&input) {
            let _ = rtc.handle_input(input);
            self.early_dtls = None;
        }
    }

    /// The PBX's RTP socket is readable: relay (or hold) everything queued on it.
    pub fn on_pbx_rtp(&mut self, now: Instant, io: &mut Io<'_>) {
        let Some(pbx) = self.pbx.as_mut() else { return };
        let mut wrote = false;
        loop {
            let mut metas = [quinn_udp::RecvMeta::default(); PBX_BATCH];
            let n = {
                let mut it = io.pbx_bufs.iter_mut();
                let mut slices: [std::io::IoSliceMut<'_>; PBX_BATCH] = std::array::from_fn(|_| {
                    std::io::IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..]))
                });
                match pbx.rtp_state.recv(
                    quinn_udp::UdpSockRef::from(&pbx.rtp),
                    &mut slices,
                    &mut metas,
                ) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // ICMP port unreachable from an earlier send surfaces here: not fatal.
                    Err(_) => continue,
                }
            };
            let c = &self.shared.counters;
            let format = self.peer.format();
            for (buf, meta) in io.pbx_bufs.iter().zip(&metas).take(n) {
                // GRO may join several datagrams of one source in a buffer, `stride` apart.
                for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                    if !self.connected {
                        pbx.relay.hold(meta.addr, datagram, c, now);
                        continue;
                    }
                    if let Some(p) = pbx.relay.from_pbx(meta.addr, datagram, format, c, now) {
                        wrote |= up(&mut self.peer, &mut self.quality, p, datagram, c, now);
                    }
                }
            }
            // Edge-triggered readiness: a short batch means the socket was drained.
            if n < PBX_BATCH {
                break;
            }
        }
        if wrote {
            self.poke(now, io);
        }
    }

    /// The PBX's RTCP socket is readable: its reports feed the quality figures.
    pub fn on_pbx_rtcp(&mut self, now: Instant, io: &mut Io<'_>) {
        let Some(pbx) = self.pbx.as_mut() else { return };
        loop {
            let n = match pbx.rtcp.recv_from(io.scratch) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            self.quality.on_pbx_rtcp(
                &io.scratch[..n],
                pbx.relay.down_ssrc(),
                &self.shared.counters,
                now,
            );
        }
    }

    /// Drives str0m after a write, so written packets leave now.
    fn poke(&mut self, now: Instant, io: &mut Io<'_>) {
        if let Err(e) = self.peer.rtc().handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "WebRTC timeout handling failed");
        }
        self.drive(now, io);
    }

    /// The SDP exchange is done: the format is published, and ICE and DTLS run against the
    /// clock from now (a re-negotiation of a connected leg leaves the clock alone).
    fn negotiated(&mut self, format: AudioFormat, now: Instant) {
        self.shared.set_format(format);
        if !self.connected && self.connect_by.is_none() {
            self.connect_by = Some(now + CONNECT_TIMEOUT);
            self.negotiated_at = Some(now);
        }
    }

    fn fail(&mut self, why: &str) {
        let span = self.span.clone();
        let _in = span.enter();
        if !self.failed {
            self.failed = true;
            self.connect_by = None;
            tracing::warn!(reason = why, "WebRTC leg failed");
            self.set_state(PeerState::Failed);
        }
    }

    pub fn on_timeout(&mut self, now: Instant, io: &mut Io<'_>) {
        if self.connect_by.is_some_and(|t| t <= now) {
            if self.connected {
                self.fail("disconnected for too long");
            } else {
                self.fail("ICE/DTLS did not connect in time");
            }
        }
        for i in 0..self.turns.len() {
            if self.turns[i].poll_timeout().is_some_and(|t| t <= now) {
                let events = self.turns[i].on_timeout(now, io.registry);
                self.on_turn_events(i, events);
            }
        }
        if let Some(far) = self.far.as_mut() {
            if far.mode == LocalMode::Tone && self.connected {
                let due = *far.next_tone.get_or_insert(now);
                if due <= now {
                    let codec = self.peer.format().map_or(Codec::Pcmu, |f| f.codec);
                    let payload = tone_payload(codec);
                    if self.peer.write_rtp(
                        codec.payload_type(),
                        far.tone_seq,
                        far.tone_ts,
                        false,
                        &payload,
                        now,
                    ) {
                        RelayCounters::add(&self.shared.local.rtp_out, 1);
                    }
                    far.tone_seq = far.tone_seq.wrapping_add(1);
                    far.tone_ts = far.tone_ts.wrapping_add(160);
                    far.next_tone = Some(due + PTIME);
                }
            }
        }
        if now >= self.quality.next_report() {
            if let Some(pbx) = self.pbx.as_mut() {
                let dest = pbx.relay.pbx_destination();
                if let Some(len) = self.quality.pbx_report(
                    io.scratch,
                    pbx.relay.down_ssrc(),
                    &self.shared.counters,
                    now,
                ) {
                    if let Some(d) = dest {
                        let rtcp = SocketAddr::new(d.ip(), d.port().wrapping_add(1));
                        let _ = pbx.rtcp.send_to(&io.scratch[..len], rtcp);
                    }
                }
            } else {
                self.quality.skip_report(&self.shared.counters, now);
            }
            self.shared.set_quality(self.quality.snapshot());
        }
        self.poke(now, io);
    }

    /// Runs str0m until it wants time to pass: datagrams out, events handled.
    pub fn drive(&mut self, now: Instant, io: &mut Io<'_>) {
        // Echoed packets and flushed early audio are written while draining: drive again so
        // they leave in this pass (bounded: a pass writes at most what it drained).
        for _ in 0..4 {
            let mut wrote = false;
            loop {
                match self.peer.rtc().poll_output() {
                    Ok(Output::Timeout(t)) => {
                        self.next_rtc = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        self.transmit(t.source, t.destination, t.contents.into(), now, io)
                    }
                    Ok(Output::Event(e)) => wrote |= self.on_event(e, now, io),
                    Err(e) => {
                        self.span
                            .in_scope(|| tracing::warn!(error = %e, "WebRTC leg failed"));
                        self.set_state(PeerState::Failed);
                        self.next_rtc = now + Duration::from_secs(3600);
                        return;
                    }
                }
            }
            if !wrote {
                return;
            }
            if let Err(e) = self.peer.rtc().handle_input(Input::Timeout(now)) {
                tracing::debug!(error = %e, "WebRTC timeout handling failed");
            }
        }
    }

    fn transmit(
        &mut self,
        source: SocketAddr,
        dest: SocketAddr,
        data: Vec<u8>,
        now: Instant,
        io: &mut Io<'_>,
    ) {
        if let Some(link) = self.turns.iter_mut().find(|l| l.relayed() == Some(source)) {
            link.send_to(dest, &data, now, io.registry);
            return;
        }
        if let Some(s) = &self.own_socket {
            let _ = s.send_to(&data, dest);
            return;
        }
        if !self.addrs.contains(&dest) {
            if io.demux.learn_addr(dest, self.key) {
                self.addrs.push(dest);
            } else {
                let _in = self.span.enter();
                tracing::warn!(
                    %dest,
                    "the far end uses one address for two calls on this port: the second cannot \
                     connect (set [media] webrtc_port_per_call = true for this carrier)"
                );
            }
        }
        io.batch.push(dest, data);
    }

    /// Returns true when it wrote RTP that needs another drive.
    fn on_event(&mut self, e: Event, now: Instant, io: &mut Io<'_>) -> bool {
        match e {
            Event::Connected => {
                self.connected = true;
                self.early_dtls = None;
                self.connect_by = None;
                let after = self.negotiated_at.map(|t| now.saturating_duration_since(t));
                self.span.in_scope(|| {
                    tracing::debug!(after_ms = ?after.map(|d| d.as_millis()), "WebRTC leg connected")
                });
                self.set_state(PeerState::Connected);
                return self.flush_early(now, io);
            }
            Event::IceConnectionStateChange(s) => match s {
                IceConnectionState::Checking => self.set_state(PeerState::Connecting),
                IceConnectionState::Disconnected if self.connected => {
                    self.connect_by.get_or_insert(now + DISCONNECTED_LIMIT);
                    self.set_state(PeerState::Disconnected)
                }
                IceConnectionState::Connected | IceConnectionState::Completed if self.connected => {
                    self.connect_by = None;
                    self.set_state(PeerState::Connected)
                }
                _ => {}
            },
            Event::RtpPacket(p) => return self.on_rtp(&p, now, io),
            Event::MediaIngressStats(s) => self.quality.on_ingress(&s),
            Event::MediaEgressStats(s) => self.quality.on_egress(&s),
            Event::Closed => self.set_state(PeerState::Closed),
            _ => {}
        }
        false
    }

    fn flush_early(&mut self, now: Instant, io: &mut Io<'_>) -> bool {
        let Some(pbx) = self.pbx.as_mut() else {
            return false;
        };
        let format = self.peer.format();
        let mut wrote = false;
        let c = &self.shared.counters;
        while let Some(n) = pbx.relay.take_held(io.scratch, c, now) {
            let datagram = &io.scratch[..n];
            if let Some(p) = pbx.relay.from_pbx_checked(datagram, format, c) {
                wrote |= up(&mut self.peer, &mut self.quality, p, datagram, c, now);
            }
        }
        wrote
    }

    fn on_rtp(&mut self, p: &str0m::rtp::RtpPacket, now: Instant, io: &mut Io<'_>) -> bool {
        let pt = *p.header.payload_type;
        let (seq, ts, marker, ssrc) = (
            p.header.sequence_number,
            p.header.timestamp,
            p.header.marker,
            *p.header.ssrc,
        );
        let format = self.peer.format();
        if let Some(pbx) = self.pbx.as_mut() {
            let c = &self.shared.counters;
            self.quality.on_carrier_packet(ssrc, seq, ts, c, now);
            if let Some((len, dest)) = pbx
                .relay
                .to_pbx(pt, marker, seq, ts, ssrc, &p.payload, format, c, io.scratch)
            {
                match pbx.rtp.send_to(&io.scratch[..len], dest) {
                    Ok(_) => {
                        RelayCounters::add(&c.to_pbx_packets, 1);
                        RelayCounters::add(&c.to_pbx_bytes, p.payload.len() as u64);
                        // the timestamp as renumbered toward the PBX, for our sender reports
                        let sent_ts = u32::from_be_bytes([
                            io.scratch[4],
                            io.scratch[5],
                            io.scratch[6],
                            io.scratch[7],
                        ]);
                        self.quality.on_sent_to_pbx(sent_ts, p.payload.len(), now);
                    }
                    Err(e) => tracing::trace!(%dest, error = %e, "RTP toward the PBX not sent"),
                }
            }
            return false;
        }
        let Some(far) = self.far.as_mut() else {
            return false;
        };
        let st = &self.shared.local;
        RelayCounters::add(&st.rtp_in, 1);
        RelayCounters::add(&st.bytes_in, p.payload.len() as u64);
        if format.and_then(|f| f.telephone_event_pt) == Some(pt) {
            if let (Some(d), Some(tx)) = (far.digits.on_event(ts, &p.payload), &self.digits) {
                let _ = tx.send(d);
            }
        }
        if far.mode == LocalMode::Echo && self.peer.write_rtp(pt, seq, ts, marker, &p.payload, now)
        {
            RelayCounters::add(&st.rtp_out, 1);
            return true;
        }
        false
    }

    /// The PBX's sockets arrive (or are replaced).
    pub fn attach_pbx(&mut self, side: PbxSide) {
        self.pbx = Some(side);
    }

    pub fn update_pbx(&mut self, pbx: PbxMedia) {
        if let Some(side) = self.pbx.as_mut() {
            side.relay.update(pbx);
        }
    }

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

    /// The remote's answer to our offer: permissions for its candidates first, then str0m.
    pub fn accept_answer(
        &mut self,
        sdp: &str,
        now: Instant,
        registry: &mio::Registry,
    ) -> Result<AudioFormat, PeerError> {
        self.permit_remote(sdp, now, registry);
        let format = self.peer.accept_answer(sdp)?;
        self.negotiated(format, now);
        Ok(format)
    }

    /// The remote's offer (first or re-offer); permissions for its candidates are the caller's
    /// (before gathering for a first offer, with [`Self::permit_remote`]).
    pub fn accept_offer(
        &mut self,
        sdp: &str,
        codec: Option<Codec>,
        now: Instant,
    ) -> Result<(String, AudioFormat), PeerError> {
        let (answer, format) = self.peer.accept_offer(sdp, codec)?;
        self.negotiated(format, now);
        Ok((answer, format))
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

    /// Ends the call: state Closed, routing forgotten by the caller.
    pub fn close_links(&mut self, now: Instant, registry: &mio::Registry) {
        for l in &mut self.turns {
            l.close(now, registry);
        }
    }

    /// Ends the call: state Closed, routing forgotten by the caller.
    pub fn close(&mut self) {
        self.closed = true;
        self.peer.rtc().disconnect();
        self.shared.set_quality(self.quality.snapshot());
        self.set_state(PeerState::Closed);
    }
}

/// An RTP packet of the PBX's stream (`datagram`, as the relay read it into `p`): counted in the
/// receive statistics, and written toward the carrier when the relay mapped it. True when
/// written.
fn up(
    peer: &mut WebRtcPeer,
    quality: &mut QualityTracker,
    p: FromPbx,
    datagram: &[u8],
    c: &RelayCounters,
    now: Instant,
) -> bool {
    quality.on_pbx_packet(p.ssrc, p.sequence, p.timestamp, c, now);
    let Some(m) = p.forward else {
        return false;
    };
    let Some(payload) = datagram.get(m.payload.0..m.payload.1) else {
        return false;
    };
    peer.write_rtp(
        m.payload_type,
        m.sequence,
        m.timestamp,
        m.marker,
        payload,
        now,
    )
}
