//! The simulator's media: a real WebRTC peer per call (ICE, DTLS-SRTP, G.711, RFC 4733; the
//! same `media::webrtc_peer` the gateway uses) behind four calls: [`answer_call`],
//! [`make_offer`], [`PendingOffer::accept_answer`] and [`MediaSession::update`] /
//! [`MediaSession::close`]. It counts what it receives (packets, bytes, DTMF digits) and either
//! echoes every packet back or plays a known tone.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::task::JoinHandle;

use crate::media::webrtc_peer::{
    AudioFormat, Codec, Direction, InRtp, MediaEvents, MediaPeer, OutRtp, PeerError, PeerSettings,
};

#[derive(Debug, Error)]
pub enum MediaError {
    #[error("WebRTC: {0}")]
    Peer(#[from] PeerError),
    #[error("the media session is closed")]
    Closed,
}

/// What the simulated far end does with the audio once answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaMode {
    /// Send back every RTP packet and RFC 4733 event received.
    Echo,
    /// Send a known tone / sequence so a test can check what it receives.
    Tone,
}

/// Per-call media counters, shared between the media task and the control API.
#[derive(Debug, Default)]
pub struct CallMediaStats {
    pub rtp_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub rtp_out: AtomicU64,
    /// RFC 4733 digits received, in order (one char per event: 0-9, *, #, A-D).
    pub dtmf: Mutex<String>,
}

/// A plain copy of [`CallMediaStats`] for reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MediaStatsView {
    pub rtp_packets_in: u64,
    pub rtp_bytes_in: u64,
    pub rtp_packets_out: u64,
    pub dtmf: String,
}

impl CallMediaStats {
    pub fn view(&self) -> MediaStatsView {
        MediaStatsView {
            rtp_packets_in: self.rtp_in.load(Ordering::Relaxed),
            rtp_bytes_in: self.bytes_in.load(Ordering::Relaxed),
            rtp_packets_out: self.rtp_out.load(Ordering::Relaxed),
            dtmf: self
                .dtmf
                .lock()
                .map(|d| d.clone())
                .unwrap_or_else(|e| e.into_inner().clone()),
        }
    }
}

/// One established media leg: the peer and the task that serves it.
pub struct MediaSession {
    mode: MediaMode,
    peer: Arc<MediaPeer>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("mode", &self.mode)
            .finish()
    }
}

impl MediaSession {
    fn start(
        mode: MediaMode,
        peer: MediaPeer,
        events: MediaEvents,
        format: AudioFormat,
        stats: Arc<CallMediaStats>,
    ) -> Self {
        let peer = Arc::new(peer);
        let mut tasks = vec![tokio::spawn(receive(
            peer.clone(),
            events,
            format,
            stats.clone(),
            mode == MediaMode::Echo,
        ))];
        if mode == MediaMode::Tone {
            tasks.push(tokio::spawn(play_tone(peer.clone(), format, stats)));
        }
        MediaSession { mode, peer, tasks }
    }

    pub fn mode(&self) -> MediaMode {
        self.mode
    }

    /// Answers a re-offer (hold, resume, ICE restart) on the established leg.
    pub async fn update(&mut self, offer: &str) -> Result<String, MediaError> {
        let (answer, _format) = self.peer.answer_reoffer(offer).await?;
        Ok(answer)
    }

    /// Our own re-offer (the far end holding with `SendOnly`/`Inactive`, resuming with
    /// `SendRecv`); the client answers it with `respondCallUpdate`.
    pub async fn reoffer(&self, direction: Direction) -> Result<String, MediaError> {
        Ok(self.peer.create_reoffer(direction).await?)
    }

    /// Applies the client's answer to [`Self::reoffer`].
    pub async fn accept_update_answer(&self, answer: &str) -> Result<(), MediaError> {
        self.peer.accept_answer(answer).await?;
        Ok(())
    }

    pub async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.peer.close().await;
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// An offer the simulator made (inbound origination), waiting for the client's answer.
pub struct PendingOffer {
    mode: MediaMode,
    peer: MediaPeer,
    events: MediaEvents,
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
        let format = self.peer.accept_answer(answer).await?;
        Ok(MediaSession::start(
            self.mode,
            self.peer,
            self.events,
            format,
            self.stats,
        ))
    }
}

/// The simulator runs next to the gateway: fast checks keep call set-up short.
fn settings(media_ip: IpAddr) -> PeerSettings {
    PeerSettings::nearby(media_ip)
}

/// Answers a client's offer: returns the answer SDP and the running leg.
pub async fn answer_call(
    offer: &str,
    mode: MediaMode,
    stats: Arc<CallMediaStats>,
    media_ip: IpAddr,
) -> Result<(String, MediaSession), MediaError> {
    let (peer, sdp, format, events) = MediaPeer::answer(&settings(media_ip), offer).await?;
    Ok((sdp, MediaSession::start(mode, peer, events, format, stats)))
}

/// Makes an offer for a call the simulator originates.
pub async fn make_offer(
    mode: MediaMode,
    stats: Arc<CallMediaStats>,
    media_ip: IpAddr,
) -> Result<(String, PendingOffer), MediaError> {
    let (peer, sdp, events) =
        MediaPeer::offer(&settings(media_ip), &[Codec::Pcmu, Codec::Pcma]).await?;
    Ok((
        sdp,
        PendingOffer {
            mode,
            peer,
            events,
            stats,
        },
    ))
}

/// Counts every packet, decodes RFC 4733 digits, and in echo mode sends each packet back.
async fn receive(
    peer: Arc<MediaPeer>,
    mut events: MediaEvents,
    format: AudioFormat,
    stats: Arc<CallMediaStats>,
    echo: bool,
) {
    let mut digits = DigitTracker::default();
    while let Some(p) = events.recv_rtp().await {
        stats.rtp_in.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_in
            .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
        if Some(p.payload_type) == format.telephone_event_pt {
            if let Some(d) = digits.on_event(&p) {
                lock(&stats.dtmf).push(d);
            }
        }
        if echo {
            let out = OutRtp {
                payload_type: p.payload_type,
                marker: p.marker,
                sequence: p.sequence,
                timestamp: p.timestamp,
                payload: &p.payload,
            };
            if peer.send_rtp_bytes(&out, p.payload.clone()).await.is_ok() {
                stats.rtp_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One digit per RFC 4733 event: reported on its first end packet (the end packet is sent
/// three times, all with the event's timestamp).
#[derive(Debug, Default)]
struct DigitTracker {
    last_ended: Option<u32>,
}

impl DigitTracker {
    fn on_event(&mut self, p: &InRtp) -> Option<char> {
        let (&event, &flags) = (p.payload.first()?, p.payload.get(1)?);
        if flags & 0x80 == 0 || self.last_ended == Some(p.timestamp) {
            return None;
        }
        self.last_ended = Some(p.timestamp);
        digit_of(event)
    }
}

fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The tone the simulator plays: 1 kHz (8 samples per cycle at 8 kHz), encoded in the call's
/// G.711 law. Every packet carries the same 160 bytes, so a test can compare exactly.
pub fn tone_payload(codec: Codec) -> [u8; 160] {
    const CYCLE: [i16; 8] = [0, 5792, 8191, 5792, 0, -5792, -8191, -5792];
    let mut out = [0u8; 160];
    for (i, b) in out.iter_mut().enumerate() {
        let s = CYCLE[i % 8];
        *b = match codec {
            Codec::Pcmu => linear_to_ulaw(s),
            Codec::Pcma => linear_to_alaw(s),
        };
    }
    out
}

async fn play_tone(peer: Arc<MediaPeer>, format: AudioFormat, stats: Arc<CallMediaStats>) {
    let payload = bytes::Bytes::copy_from_slice(&tone_payload(format.codec));
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    let (mut seq, mut ts) = (rand::random::<u16>(), rand::random::<u32>());
    loop {
        tick.tick().await;
        let out = OutRtp {
            payload_type: format.codec.payload_type(),
            marker: false,
            sequence: seq,
            timestamp: ts,
            payload: &payload,
        };
        if peer.send_rtp_bytes(&out, payload.clone()).await.is_ok() {
            stats.rtp_out.fetch_add(1, Ordering::Relaxed);
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
    }
}

/// G.711 mu-law of a 16-bit linear sample (ITU-T G.711 segment encoding).
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - ((s as u32) << 17).leading_zeros().min(7)) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

/// G.711 A-law of a 16-bit linear sample.
fn linear_to_alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3;
    let (sign, mag) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let mag = mag.min(0x0fff);
    let code = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let exponent = 31 - (mag as u32).leading_zeros() - 4;
        ((exponent as u8) << 4) | ((mag >> exponent) & 0x0f) as u8
    };
    (code | sign) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_encoders_match_reference_points() {
        // Silence and full scale, from the G.711 tables.
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-8), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xaa);
        assert_eq!(linear_to_alaw(-32768), 0x2a);
    }

    #[test]
    fn the_tone_is_periodic_and_not_silence() {
        let t = tone_payload(Codec::Pcmu);
        assert_eq!(t[0], t[8]);
        assert_ne!(t[0], t[2]);
        assert!(t.iter().any(|&b| b != 0xff));
    }

    fn event(ev: u8, end: bool, ts: u32) -> InRtp {
        InRtp {
            payload_type: 101,
            marker: false,
            sequence: 0,
            timestamp: ts,
            ssrc: 1,
            payload: bytes::Bytes::from(vec![ev, if end { 0x8a } else { 0x0a }, 0, 160]),
        }
    }

    #[test]
    fn one_digit_per_event_despite_repeated_end_packets() {
        let mut t = DigitTracker::default();
        let got: String = [
            event(1, false, 100),
            event(1, true, 100),
            event(1, true, 100),
            event(1, true, 100),
            event(11, false, 900),
            event(11, true, 900),
            event(10, true, 1700),
        ]
        .iter()
        .filter_map(|e| t.on_event(e))
        .collect();
        assert_eq!(got, "1#*");
    }
}
