//! One call inside a media thread: its WebRTC peer, its far side (the PBX's RTP sockets and the
//! relay, or a local far end for the simulator), and the glue between them. The thread hands it
//! readable sockets, due timers and commands; it answers with datagrams to send and events for
//! the async side. Per packet it neither allocates nor locks nor hops tasks (str0m's own
//! buffers aside).
//!
//! This module owns the call's state and its timers; the WebRTC leg is `webrtc`, the PBX side
//! `pbx`, a simulated far end `far`, candidates and TURN links `gathering`, and what the async
//! handle reads `shared`.

mod far;
mod gathering;
mod pbx;
mod shared;
mod webrtc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use self::far::LocalSide;
pub use self::pbx::{PbxSide, PBX_BATCH, PBX_DATAGRAM};
pub use self::shared::CallShared;
use self::webrtc::EarlyDtls;
use super::batch::SendBatch;
use super::call_quality::QualityTracker;
use super::demux::{Demux, DemuxCounters};
use super::peer::WebRtcPeer;
use super::turn_link::TurnLink;
use super::CallKey;
use crate::media::{AudioFormat, Codec, PeerError, PeerState};

/// A reply the call owes once its candidates are gathered.
pub enum PendingSdp {
    Offer(oneshot::Sender<Result<String, PeerError>>),
    Answer {
        sdp: String,
        codec: Option<Codec>,
        reply: oneshot::Sender<Result<(String, AudioFormat), PeerError>>,
    },
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
        self.turn_timeouts(now, io);
        self.tone_due(now);
        if now >= self.quality.next_report() {
            self.reports_due(now, io);
        }
        self.poke(now, io);
    }

    /// Ends the call: state Closed, routing forgotten by the caller.
    pub fn close(&mut self) {
        self.closed = true;
        self.peer.rtc().disconnect();
        self.shared.set_quality(self.quality.snapshot());
        self.set_state(PeerState::Closed);
    }
}
