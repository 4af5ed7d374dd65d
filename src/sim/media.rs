//! The simulator's media edge: everything about SDP and (later) the WebRTC peer lives here,
//! behind four calls: [`answer_call`], [`make_offer`], [`PendingOffer::accept_answer`] and
//! [`MediaSession::update`] / [`MediaSession::close`].
//!
//! TEMPORARY PLACEHOLDER: this version negotiates SDP only. It builds syntactically valid
//! WebRTC-style SDP (same G.711 / telephone-event codecs as the offer, dummy ICE credentials and
//! a dummy `a=fingerprint`) but opens no socket and moves no media, so the packet counters in
//! [`CallMediaStats`] stay at zero. The real peer (webrtc 0.21: ICE, DTLS-SRTP, echo and tone)
//! replaces the bodies of these functions without changing their signatures.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the SDP has no audio m-line")]
    NoAudio,
    #[error("no common codec (PCMU, PCMA) in the SDP")]
    NoCodec,
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

/// One established media leg. Dropping it without `close` is allowed (placeholder).
#[derive(Debug)]
pub struct MediaSession {
    mode: MediaMode,
    media_ip: IpAddr,
    _stats: Arc<CallMediaStats>,
    closed: bool,
}

impl MediaSession {
    pub fn mode(&self) -> MediaMode {
        self.mode
    }

    /// Answers a re-offer (hold, resume, ICE restart) on the established leg.
    pub async fn update(&mut self, offer: &str) -> Result<String, MediaError> {
        if self.closed {
            return Err(MediaError::Closed);
        }
        let m = parse_offer(offer)?;
        Ok(build_sdp(self.media_ip, &m, Role::Answer))
    }

    pub async fn close(mut self) {
        self.closed = true;
    }
}

/// An offer the simulator made (inbound origination), waiting for the client's answer.
#[derive(Debug)]
pub struct PendingOffer {
    mode: MediaMode,
    media_ip: IpAddr,
    stats: Arc<CallMediaStats>,
    payload_types: Vec<u8>,
}

impl PendingOffer {
    /// Completes the leg with the client's `callAnswer` SDP.
    pub async fn accept_answer(self, answer: &str) -> Result<MediaSession, MediaError> {
        let m = parse_offer(answer)?;
        if !m.codecs.iter().any(|c| self.payload_types.contains(&c.pt)) {
            return Err(MediaError::NoCodec);
        }
        Ok(MediaSession {
            mode: self.mode,
            media_ip: self.media_ip,
            _stats: self.stats,
            closed: false,
        })
    }
}

/// Answers a client's offer: returns the answer SDP and the running leg.
pub async fn answer_call(
    offer: &str,
    mode: MediaMode,
    stats: Arc<CallMediaStats>,
    media_ip: IpAddr,
) -> Result<(String, MediaSession), MediaError> {
    let m = parse_offer(offer)?;
    let sdp = build_sdp(media_ip, &m, Role::Answer);
    Ok((
        sdp,
        MediaSession {
            mode,
            media_ip,
            _stats: stats,
            closed: false,
        },
    ))
}

/// Makes an offer for a call the simulator originates.
pub async fn make_offer(
    mode: MediaMode,
    stats: Arc<CallMediaStats>,
    media_ip: IpAddr,
) -> Result<(String, PendingOffer), MediaError> {
    let m = Media {
        mid: "0".into(),
        setup: "actpass".into(),
        codecs: vec![
            Codec::new(0, "PCMU/8000", None),
            Codec::new(8, "PCMA/8000", None),
            Codec::new(101, "telephone-event/8000", Some("0-16".into())),
        ],
    };
    let sdp = build_sdp(media_ip, &m, Role::Offer);
    Ok((
        sdp,
        PendingOffer {
            mode,
            media_ip,
            stats,
            payload_types: m.codecs.iter().map(|c| c.pt).collect(),
        },
    ))
}

// ---- the SDP-only placeholder ---------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Codec {
    pt: u8,
    rtpmap: String,
    fmtp: Option<String>,
}

impl Codec {
    fn new(pt: u8, rtpmap: &str, fmtp: Option<String>) -> Self {
        Codec {
            pt,
            rtpmap: rtpmap.into(),
            fmtp,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Media {
    mid: String,
    setup: String,
    codecs: Vec<Codec>,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Offer,
    Answer,
}

/// The audio m-section of an SDP, keeping only PCMU, PCMA and telephone-event/8000.
fn parse_offer(sdp: &str) -> Result<Media, MediaError> {
    let mut in_audio = false;
    let mut found = false;
    let mut pts: Vec<u8> = Vec::new();
    let mut rtpmaps: Vec<(u8, String)> = Vec::new();
    let mut fmtps: Vec<(u8, String)> = Vec::new();
    let mut mid = None;
    let mut setup = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            if found {
                in_audio = false;
                continue;
            }
            let mut f = rest.split_whitespace();
            in_audio = f.next() == Some("audio");
            if in_audio {
                found = true;
                pts = f.skip(2).filter_map(|p| p.parse().ok()).collect();
            }
            continue;
        }
        if !in_audio {
            continue;
        }
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if let Some((pt, enc)) = rest.split_once(' ') {
                if let Ok(pt) = pt.parse() {
                    rtpmaps.push((pt, enc.trim().to_string()));
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            if let Some((pt, p)) = rest.split_once(' ') {
                if let Ok(pt) = pt.parse() {
                    fmtps.push((pt, p.trim().to_string()));
                }
            }
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_string());
        } else if let Some(s) = line.strip_prefix("a=setup:") {
            setup = Some(s.to_string());
        }
    }
    if !found {
        return Err(MediaError::NoAudio);
    }
    let mut codecs = Vec::new();
    for pt in pts {
        let rtpmap = rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, e)| e.clone())
            .or(match pt {
                0 => Some("PCMU/8000".to_string()),
                8 => Some("PCMA/8000".to_string()),
                _ => None,
            });
        let Some(rtpmap) = rtpmap else { continue };
        let name = rtpmap.to_ascii_lowercase();
        let wanted = name.starts_with("pcmu/8000")
            || name.starts_with("pcma/8000")
            || name.starts_with("telephone-event/8000");
        if wanted {
            let fmtp = fmtps.iter().find(|(p, _)| *p == pt).map(|(_, f)| f.clone());
            codecs.push(Codec { pt, rtpmap, fmtp });
        }
    }
    if !codecs
        .iter()
        .any(|c| !c.rtpmap.to_ascii_lowercase().starts_with("telephone-event"))
    {
        return Err(MediaError::NoCodec);
    }
    Ok(Media {
        mid: mid.unwrap_or_else(|| "0".into()),
        setup: setup.unwrap_or_else(|| "actpass".into()),
        codecs,
    })
}

fn build_sdp(ip: IpAddr, m: &Media, role: Role) -> String {
    let mut rng = rand::thread_rng();
    let session_id: u64 = rng.gen_range(1..u64::MAX / 2);
    let ufrag: String = (0..8)
        .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
        .collect();
    let pwd: String = (0..24)
        .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
        .collect();
    let fingerprint: Vec<String> = (0..32)
        .map(|_| format!("{:02X}", rng.gen::<u8>()))
        .collect();
    let setup = match (role, m.setup.as_str()) {
        (Role::Offer, _) => "actpass",
        (Role::Answer, "active") => "passive",
        (Role::Answer, _) => "active",
    };
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let pts: Vec<String> = m.codecs.iter().map(|c| c.pt.to_string()).collect();
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push_str("\r\n");
    };
    line("v=0".into());
    line(format!("o=- {session_id} 2 IN {family} {ip}"));
    line("s=trunkgate-sim".into());
    line("t=0 0".into());
    line(format!("a=group:BUNDLE {}", m.mid));
    line("a=msid-semantic: WMS".into());
    line(format!("m=audio 9 UDP/TLS/RTP/SAVPF {}", pts.join(" ")));
    line(format!("c=IN {family} {ip}"));
    line(format!("a=rtcp:9 IN {family} {ip}"));
    line(format!("a=ice-ufrag:{ufrag}"));
    line(format!("a=ice-pwd:{pwd}"));
    line(format!("a=fingerprint:sha-256 {}", fingerprint.join(":")));
    line(format!("a=setup:{setup}"));
    line(format!("a=mid:{}", m.mid));
    line("a=sendrecv".into());
    line("a=rtcp-mux".into());
    for c in &m.codecs {
        line(format!("a=rtpmap:{} {}", c.pt, c.rtpmap));
        if let Some(f) = &c.fmtp {
            line(format!("a=fmtp:{} {f}", c.pt));
        }
    }
    line(format!(
        "a=candidate:1 1 udp 2130706431 {ip} 9 typ host generation 0"
    ));
    line("a=end-of-candidates".into());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 50000 UDP/TLS/RTP/SAVPF 111 0 8 101\r\nc=IN IP4 127.0.0.1\r\n\
        a=mid:audio0\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[tokio::test]
    async fn the_answer_keeps_the_g711_codecs_of_the_offer() {
        let (sdp, session) = answer_call(OFFER, MediaMode::Echo, Arc::default(), ip())
            .await
            .unwrap();
        assert!(
            sdp.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=mid:audio0\r\n"));
        assert!(sdp.contains("a=setup:active\r\n"));
        assert!(sdp.contains("a=fmtp:101 0-15\r\n"));
        assert!(sdp.contains("a=fingerprint:sha-256 "));
        assert!(!sdp.contains("opus"));
        assert_eq!(session.mode(), MediaMode::Echo);
        session.close().await;
    }

    #[tokio::test]
    async fn offers_without_audio_or_g711_are_refused() {
        let video = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(
            answer_call(video, MediaMode::Echo, Arc::default(), ip())
                .await
                .err(),
            Some(MediaError::NoAudio)
        );
        let opus = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(
            answer_call(opus, MediaMode::Echo, Arc::default(), ip())
                .await
                .err(),
            Some(MediaError::NoCodec)
        );
    }

    #[tokio::test]
    async fn an_originated_offer_accepts_a_matching_answer() {
        let (offer, pending) = make_offer(MediaMode::Tone, Arc::default(), ip())
            .await
            .unwrap();
        assert!(offer.contains("a=setup:actpass"));
        let (answer, _) = answer_call(&offer, MediaMode::Echo, Arc::default(), ip())
            .await
            .unwrap();
        let mut session = pending.accept_answer(&answer).await.unwrap();
        assert_eq!(session.mode(), MediaMode::Tone);
        assert!(session.update(OFFER).await.is_ok());
    }
}
