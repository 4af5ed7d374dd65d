//! Receiving side of the media peer: connection states and received RTP, fed by the
//! peer connection's event handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Received packets buffered per call before new ones are dropped (~5 s at 50 pps).
const RTP_QUEUE: usize = 256;

/// The handler for the peer connection, the caller's [`MediaEvents`], the state sender the
/// peer keeps (to report `Closed` itself) and the gathering-complete flag.
pub(super) fn channels() -> (
    Handler,
    MediaEvents,
    Arc<watch::Sender<PeerState>>,
    watch::Receiver<bool>,
) {
    let (state_tx, state_rx) = watch::channel(PeerState::New);
    let state_tx = Arc::new(state_tx);
    let (gathered_tx, gathered_rx) = watch::channel(false);
    let (rtp_tx, rtp_rx) = mpsc::channel(RTP_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let handler = Handler {
        state: Arc::clone(&state_tx),
        gathered: gathered_tx,
        rtp: rtp_tx,
        dropped: Arc::clone(&dropped),
    };
    let events = MediaEvents {
        rtp: rtp_rx,
        state: state_rx,
        finished: false,
        dropped,
    };
    (handler, events, state_tx, gathered_rx)
}

/// Connection state as the caller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    New,
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// One received (decrypted) RTP packet.
#[derive(Debug, Clone)]
pub struct InRtp {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Bytes,
}

/// What [`MediaEvents::recv`] yields.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// The connection state changed (intermediate states may be coalesced; the latest is kept).
    State(PeerState),
    Rtp(InRtp),
}

/// Receiving side of a peer: connection states and received RTP.
pub struct MediaEvents {
    rtp: mpsc::Receiver<InRtp>,
    state: watch::Receiver<PeerState>,
    finished: bool,
    dropped: Arc<AtomicU64>,
}

impl MediaEvents {
    /// Next event; state changes come before queued packets. After `State(Closed)` (from
    /// [`MediaPeer::close`], its drop, or the stack) it returns `None`.
    pub async fn recv(&mut self) -> Option<MediaEvent> {
        if self.finished {
            return None;
        }
        tokio::select! {
            biased;
            changed = self.state.changed() => {
                let state = match changed {
                    Ok(()) => *self.state.borrow_and_update(),
                    Err(_) => PeerState::Closed,
                };
                self.finished = state == PeerState::Closed;
                Some(MediaEvent::State(state))
            }
            pkt = self.rtp.recv() => pkt.map(MediaEvent::Rtp),
        }
    }

    /// Next received RTP packet, skipping state events (the latest stays readable via
    /// [`Self::state`]); `None` once closed.
    pub async fn recv_rtp(&mut self) -> Option<InRtp> {
        loop {
            if let MediaEvent::Rtp(pkt) = self.recv().await? {
                return Some(pkt);
            }
        }
    }

    /// Latest connection state.
    pub fn state(&self) -> PeerState {
        *self.state.borrow()
    }

    /// Waits until the connection is `Connected`; fails with the state that ended the wait.
    pub async fn wait_connected(&mut self) -> Result<(), PeerState> {
        let result = self
            .state
            .wait_for(|s| {
                matches!(
                    s,
                    PeerState::Connected | PeerState::Failed | PeerState::Closed
                )
            })
            .await
            .map(|s| *s)
            .unwrap_or(PeerState::Closed);
        match result {
            PeerState::Connected => Ok(()),
            other => Err(other),
        }
    }

    /// Received packets dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Receives the peer connection's callbacks (on its driver task: nothing here may block).
pub(super) struct Handler {
    state: Arc<watch::Sender<PeerState>>,
    gathered: watch::Sender<bool>,
    rtp: mpsc::Sender<InRtp>,
    dropped: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathered
            .send_replace(state == RTCIceGatheringState::Complete);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let mapped = match state {
            RTCPeerConnectionState::Connecting => PeerState::Connecting,
            RTCPeerConnectionState::Connected => PeerState::Connected,
            RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
            RTCPeerConnectionState::Failed => PeerState::Failed,
            RTCPeerConnectionState::Closed => PeerState::Closed,
            _ => return,
        };
        tracing::debug!(?mapped, "webrtc peer state");
        self.state.send_replace(mapped);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let tx = self.rtp.clone();
        let dropped = Arc::clone(&self.dropped);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let h = &p.header;
                        let pkt = InRtp {
                            payload_type: h.payload_type,
                            marker: h.marker,
                            sequence: h.sequence_number,
                            timestamp: h.timestamp,
                            ssrc: h.ssrc,
                            payload: p.payload,
                        };
                        match tx.try_send(pkt) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}
