//! The simulator's media: a real WebRTC peer per call on the same media engine the gateway
//! uses (ICE, DTLS-SRTP, G.711, RFC 4733), each call on a UDP port of its own as a browser
//! would be, behind four calls: `answer_call`, `make_offer`, `PendingOffer::accept_answer` and
//! `MediaSession::update` / `MediaSession::close` (crate-internal). The
//! engine counts what the far end receives and echoes every packet back or plays a known tone,
//! inside its media threads; the digits received come out here.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::task::JoinHandle;

pub use crate::media::engine::tone_payload;
pub(crate) use crate::media::engine::LocalMode as MediaMode;
use crate::media::engine::{EngineConfig, FarEnd, LocalStats, MediaCall, MediaEngine};
use crate::media::{Codec, Direction, PeerError, PeerSettings};

#[derive(Debug, Error)]
pub(crate) enum MediaError {
    #[error("WebRTC: {0}")]
    Peer(#[from] PeerError),
}

/// Per-call media counters, shared between the engine and the control API.
#[derive(Debug, Default)]
pub(crate) struct CallMediaStats {
    local: OnceLock<Arc<LocalStats>>,
    /// RFC 4733 digits received, in order (one char per event: 0-9, *, #, A-D).
    pub dtmf: Mutex<String>,
}

/// A plain copy of [`CallMediaStats`] for reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct MediaStatsView {
    pub rtp_packets_in: u64,
    pub rtp_bytes_in: u64,
    pub rtp_packets_out: u64,
    pub dtmf: String,
}

impl CallMediaStats {
    pub fn view(&self) -> MediaStatsView {
        let get = |f: fn(&LocalStats) -> &std::sync::atomic::AtomicU64| {
            self.local.get().map_or(0, |l| f(l).load(Ordering::Relaxed))
        };
        MediaStatsView {
            rtp_packets_in: get(|l| &l.rtp_in),
            rtp_bytes_in: get(|l| &l.bytes_in),
            rtp_packets_out: get(|l| &l.rtp_out),
            dtmf: lock(&self.dtmf).clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One established media leg: the engine's call and the task collecting its digits.
pub(crate) struct MediaSession {
    mode: MediaMode,
    call: MediaCall,
    digits: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("mode", &self.mode)
            .finish()
    }
}

impl MediaSession {
    fn start(mode: MediaMode, mut call: MediaCall, stats: Arc<CallMediaStats>) -> Self {
        let _ = stats.local.set(Arc::clone(call.local_stats()));
        let digits = call.take_digits().map(|mut rx| {
            tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    lock(&stats.dtmf).push(d);
                }
            })
        });
        MediaSession { mode, call, digits }
    }

    /// Answers a re-offer (hold, resume, ICE restart) on the established leg.
    pub async fn update(&mut self, offer: &str) -> Result<String, MediaError> {
        let (answer, _format) = self.call.answer_reoffer(offer).await?;
        Ok(answer)
    }

    /// Our own re-offer (the far end holding with `SendOnly`/`Inactive`, resuming with
    /// `SendRecv`); the client answers it with `respondCallUpdate`.
    pub async fn reoffer(&self, direction: Direction) -> Result<String, MediaError> {
        Ok(self.call.create_reoffer(direction).await?)
    }

    /// Applies the client's answer to [`Self::reoffer`].
    pub async fn accept_update_answer(&self, answer: &str) -> Result<(), MediaError> {
        self.call.accept_answer(answer).await?;
        Ok(())
    }

    pub async fn close(self) {
        self.call.close();
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        if let Some(t) = &self.digits {
            t.abort();
        }
    }
}

/// An offer the simulator made (inbound origination), waiting for the client's answer.
pub(crate) struct PendingOffer {
    mode: MediaMode,
    call: MediaCall,
    stats: Arc<CallMediaStats>,
}

impl std::fmt::Debug for PendingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOffer")
            .field("mode", &self.mode)
            .finish()
    }
}

impl PendingOffer {
    /// Completes the leg with the client's `callAnswer` SDP.
    pub async fn accept_answer(self, answer: &str) -> Result<MediaSession, MediaError> {
        self.call.accept_answer(answer).await?;
        Ok(MediaSession::start(self.mode, self.call, self.stats))
    }
}

/// The simulator's engine: started on first use, on the media address of the first call
/// (every call then binds a port of its own there).
fn engine(media_ip: IpAddr, batch_window: Duration) -> Result<MediaEngine, MediaError> {
    static ENGINE: OnceLock<MediaEngine> = OnceLock::new();
    if let Some(e) = ENGINE.get() {
        return Ok(e.clone());
    }
    let started = MediaEngine::start(&EngineConfig {
        threads: 0,
        bind: SocketAddr::new(media_ip, 0),
        port_per_call: true,
        turn_tls: None,
        batch_window,
    })
    .map_err(|e| MediaError::Peer(PeerError::Io(e.to_string())))?;
    Ok(ENGINE.get_or_init(|| started).clone())
}

/// The simulator runs next to the gateway: fast checks keep call set-up short.
fn settings(media_ip: IpAddr) -> PeerSettings {
    PeerSettings::nearby(media_ip)
}

/// Answers a client's offer: returns the answer SDP and the running leg.
pub(crate) async fn answer_call(
    offer: &str,
    mode: MediaMode,
    stats: Arc<CallMediaStats>,
    media_ip: IpAddr,
    batch_window: Duration,
) -> Result<(String, MediaSession), MediaError> {
    let (call, sdp, _format) = engine(media_ip, batch_window)?
        .answer(&settings(media_ip), offer, None, FarEnd::Local(mode))
        .await?;
    Ok((sdp, MediaSession::start(mode, call, stats)))
}

/// Makes an offer for a call the simulator originates.
pub(crate) async fn make_offer(
    mode: MediaMode,
    stats: Arc<CallMediaStats>,
    media_ip: IpAddr,
    batch_window: Duration,
) -> Result<(String, PendingOffer), MediaError> {
    let (call, sdp) = engine(media_ip, batch_window)?
        .offer(
            &settings(media_ip),
            &[Codec::Pcmu, Codec::Pcma],
            FarEnd::Local(mode),
        )
        .await?;
    Ok((sdp, PendingOffer { mode, call, stats }))
}
