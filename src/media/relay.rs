//! The media relay of one call: plain RTP from the PBX socket into the WebRTC track and the
//! track's packets back to the PBX, without transcoding. Payload types are rewritten between
//! the legs' numbers, sequence numbers and timestamps are kept continuous toward each side
//! (`rtp::Continuity`), and the PBX side latches onto the address its RTP really comes from
//! (symmetric RTP, for PBXs behind NAT).
//!
//! Two tasks per call, one per direction, each owning its buffers: no lock is shared between
//! calls and the steady state allocates nothing of its own (payloads toward the WebRTC stack are
//! carved from one reusable arena, because the stack takes owned `Bytes`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use super::rtp::{write_header, Continuity, RtpHeader};
use super::webrtc_peer::{MediaEvent, MediaEvents, MediaPeer, OutRtp, PeerState};

/// What the call has negotiated with the PBX; replaced on every offer/answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbxMedia {
    /// Where the PBX's SDP says to send (None: port 0 or `c=0.0.0.0`).
    pub addr: Option<SocketAddr>,
    /// The PBX's payload type numbers for the audio codec and telephone-event.
    pub audio_pt: u8,
    pub event_pt: Option<u8>,
    /// The PBX's SDP lets it receive (not `sendonly`/`inactive`).
    pub receives: bool,
}

/// Packet counters of one call (read for records and metrics).
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub from_pbx_packets: AtomicU64,
    pub from_pbx_bytes: AtomicU64,
    pub to_pbx_packets: AtomicU64,
    pub to_pbx_bytes: AtomicU64,
    /// From another source once latched, not RTP, or a payload type with no mapping.
    pub dropped: AtomicU64,
    /// Sequence gaps in what arrived from the PBX and from the carrier (RFC 3550 A.3 in spirit:
    /// expected minus received, per source).
    pub lost_from_pbx: AtomicU64,
    pub lost_from_carrier: AtomicU64,
    /// What the PBX's RTCP receiver reports say it lost of what we sent (the latest cumulative
    /// count).
    pub lost_reported_by_pbx: AtomicU64,
    /// Milliseconds after the relay started at which the PBX's last RTP packet arrived (0: none).
    last_from_pbx_ms: AtomicU64,
}

/// Counts sequence gaps of one incoming stream; restarts on a new SSRC.
#[derive(Debug, Default)]
struct GapCounter {
    last: Option<(u32, u16)>,
}

impl GapCounter {
    /// Packets missing before this one (0 for in-order, reordered or duplicate packets).
    fn missing(&mut self, ssrc: u32, seq: u16) -> u64 {
        let gap = match self.last {
            Some((s, last)) if s == ssrc => {
                let d = seq.wrapping_sub(last);
                // forward jumps only; a large one is a restart, not loss
                if (1..3000).contains(&d) {
                    u64::from(d - 1)
                } else {
                    return 0;
                }
            }
            _ => 0,
        };
        self.last = Some((ssrc, seq));
        gap
    }
}

impl RelayCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A running relay; stops when dropped.
pub struct Relay {
    started: std::time::Instant,
    params: watch::Sender<PbxMedia>,
    counters: Arc<RelayCounters>,
    peer_state: watch::Receiver<PeerState>,
    tasks: [JoinHandle<()>; 3],
}

impl Relay {
    /// Starts relaying between `socket` (the PBX's RTP) and `peer`.
    pub fn start(
        socket: Arc<UdpSocket>,
        rtcp: Arc<UdpSocket>,
        peer: Arc<MediaPeer>,
        events: MediaEvents,
        pbx: PbxMedia,
    ) -> Relay {
        let (params, params_rx) = watch::channel(pbx);
        let (latch_tx, latch_rx) = watch::channel(None::<SocketAddr>);
        let (state_tx, peer_state) = watch::channel(events.state());
        let counters = Arc::new(RelayCounters::default());
        let started = std::time::Instant::now();
        let up = tokio::spawn(pbx_to_carrier(
            socket.clone(),
            peer.clone(),
            params_rx.clone(),
            latch_tx,
            counters.clone(),
            started,
        ));
        let down = tokio::spawn(carrier_to_pbx(
            socket,
            peer,
            events,
            params_rx,
            latch_rx,
            state_tx,
            counters.clone(),
        ));
        let reports = tokio::spawn(rtcp_from_pbx(rtcp, counters.clone()));
        Relay {
            started,
            params,
            counters,
            peer_state,
            tasks: [up, down, reports],
        }
    }

    /// New PBX-side parameters (re-INVITE, hold); a changed address re-opens latching.
    pub fn update(&self, pbx: PbxMedia) {
        self.params.send_if_modified(|p| {
            let changed = *p != pbx;
            *p = pbx;
            changed
        });
    }

    /// When the PBX's last RTP packet arrived (None: nothing yet).
    pub fn last_from_pbx(&self) -> Option<std::time::Instant> {
        match self.counters.last_from_pbx_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.started + std::time::Duration::from_millis(ms)),
        }
    }

    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.counters
    }

    /// The WebRTC connection's state as the relay last saw it.
    pub fn peer_state(&self) -> watch::Receiver<PeerState> {
        self.peer_state.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Arena size for payloads handed to the WebRTC stack: about 300 G.711 frames per allocation.
const ARENA: usize = 64 * 1024;

async fn pbx_to_carrier(
    socket: Arc<UdpSocket>,
    peer: Arc<MediaPeer>,
    mut params: watch::Receiver<PbxMedia>,
    latch: watch::Sender<Option<SocketAddr>>,
    counters: Arc<RelayCounters>,
    started: std::time::Instant,
) {
    let mut buf = [0u8; 2048];
    let mut arena = BytesMut::with_capacity(ARENA);
    let mut pbx = *params.borrow_and_update();
    let mut latched: Option<SocketAddr> = None;
    let mut continuity = Continuity::default();
    let mut gaps = GapCounter::default();
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable from an earlier send surfaces here: not fatal.
                debug!(error = %e, "RTP receive error");
                continue;
            }
        };
        if params.has_changed().unwrap_or(false) {
            let new = *params.borrow_and_update();
            if new.addr != pbx.addr {
                latched = None;
            }
            pbx = new;
        }
        match latched {
            Some(l) if l != src => {
                RelayCounters::add(&counters.dropped, 1);
                continue;
            }
            Some(_) => {}
            None => {
                latched = Some(src);
                latch.send_replace(Some(src));
                debug!(%src, "PBX RTP source latched");
            }
        }
        let Some(h) = RtpHeader::parse(&buf[..n]) else {
            RelayCounters::add(&counters.dropped, 1);
            continue;
        };
        let missing = gaps.missing(h.ssrc, h.sequence);
        if missing > 0 {
            RelayCounters::add(&counters.lost_from_pbx, missing);
        }
        // one clock read per packet; max(1) keeps 0 meaning "nothing yet"
        let ms = (started.elapsed().as_millis() as u64).max(1);
        counters.last_from_pbx_ms.store(ms, Ordering::Relaxed);
        let Some(format) = peer.format() else {
            continue; // carrier leg not negotiated yet (early RTP from the PBX)
        };
        let pt = if h.payload_type == pbx.audio_pt {
            format.codec.payload_type()
        } else if Some(h.payload_type) == pbx.event_pt && format.telephone_event_pt.is_some() {
            format.telephone_event_pt.unwrap_or_default()
        } else {
            RelayCounters::add(&counters.dropped, 1);
            continue;
        };
        let (sequence, timestamp, new_source) = continuity.map(h.ssrc, h.sequence, h.timestamp);
        let payload = &buf[h.payload_start..h.payload_end];
        if arena.capacity() < payload.len() {
            arena = BytesMut::with_capacity(ARENA);
        }
        arena.extend_from_slice(payload);
        let bytes = arena.split().freeze();
        let out = OutRtp {
            payload_type: pt,
            marker: h.marker || new_source,
            sequence,
            timestamp,
            payload: &[],
        };
        match peer.send_rtp_bytes(&out, bytes).await {
            Ok(()) => {
                RelayCounters::add(&counters.from_pbx_packets, 1);
                RelayCounters::add(&counters.from_pbx_bytes, payload.len() as u64);
            }
            Err(e) => {
                RelayCounters::add(&counters.dropped, 1);
                debug!(error = %e, "RTP toward the carrier not sent");
            }
        }
    }
}

/// Reads the PBX's RTCP (RTP port + 1) for its receiver reports; nothing is relayed (the
/// WebRTC leg runs its own RTCP).
async fn rtcp_from_pbx(socket: Arc<UdpSocket>, counters: Arc<RelayCounters>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(lost) = super::rtp::rtcp_cumulative_lost(&buf[..n]) {
            counters
                .lost_reported_by_pbx
                .store(u64::from(lost), Ordering::Relaxed);
        }
    }
}

async fn carrier_to_pbx(
    socket: Arc<UdpSocket>,
    peer: Arc<MediaPeer>,
    mut events: MediaEvents,
    mut params: watch::Receiver<PbxMedia>,
    mut latch: watch::Receiver<Option<SocketAddr>>,
    state: watch::Sender<PeerState>,
    counters: Arc<RelayCounters>,
) {
    let mut out = [0u8; 1500];
    let mut pbx = *params.borrow_and_update();
    let mut latched: Option<SocketAddr> = *latch.borrow_and_update();
    let ssrc: u32 = rand::random();
    let mut continuity = Continuity::default();
    let mut gaps = GapCounter::default();
    while let Some(event) = events.recv().await {
        let pkt = match event {
            MediaEvent::State(s) => {
                state.send_replace(s);
                continue;
            }
            MediaEvent::Rtp(p) => p,
        };
        let missing = gaps.missing(pkt.ssrc, pkt.sequence);
        if missing > 0 {
            RelayCounters::add(&counters.lost_from_carrier, missing);
        }
        if params.has_changed().unwrap_or(false) {
            pbx = *params.borrow_and_update();
        }
        if latch.has_changed().unwrap_or(false) {
            latched = *latch.borrow_and_update();
        }
        let Some(dest) = latched.or(pbx.addr) else {
            continue;
        };
        if !pbx.receives {
            continue;
        }
        let Some(format) = peer.format() else {
            continue;
        };
        let pt = if pkt.payload_type == format.codec.payload_type() {
            pbx.audio_pt
        } else if Some(pkt.payload_type) == format.telephone_event_pt && pbx.event_pt.is_some() {
            pbx.event_pt.unwrap_or_default()
        } else {
            RelayCounters::add(&counters.dropped, 1);
            continue;
        };
        let len = 12 + pkt.payload.len();
        if len > out.len() {
            RelayCounters::add(&counters.dropped, 1);
            continue;
        }
        let (sequence, timestamp, new_source) =
            continuity.map(pkt.ssrc, pkt.sequence, pkt.timestamp);
        write_header(
            &mut out,
            pkt.marker || new_source,
            pt,
            sequence,
            timestamp,
            ssrc,
        );
        out[12..len].copy_from_slice(&pkt.payload);
        let sent = match socket.try_send_to(&out[..len], dest) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                socket.send_to(&out[..len], dest).await
            }
            other => other,
        };
        match sent {
            Ok(_) => {
                RelayCounters::add(&counters.to_pbx_packets, 1);
                RelayCounters::add(&counters.to_pbx_bytes, pkt.payload.len() as u64);
            }
            Err(e) => debug!(%dest, error = %e, "RTP toward the PBX not sent"),
        }
    }
    state.send_replace(PeerState::Closed);
}

#[cfg(test)]
mod tests {
    use super::GapCounter;

    #[test]
    fn gaps_count_missing_packets_only() {
        let mut g = GapCounter::default();
        assert_eq!(g.missing(1, 65534), 0);
        assert_eq!(g.missing(1, 65535), 0);
        assert_eq!(g.missing(1, 2), 2); // 0 and 1 missing, across the wrap
        assert_eq!(g.missing(1, 1), 0); // late
        assert_eq!(g.missing(1, 3), 0);
        assert_eq!(g.missing(2, 900), 0); // new source
        assert_eq!(g.missing(2, 40_000), 0); // a restart, not loss
    }
}
