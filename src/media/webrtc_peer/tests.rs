//! Loopback tests of the WebRTC media peer: everything on 127.0.0.1, every wait bounded.

#![cfg(test)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Codec, Direction, InRtp, MediaEvents, MediaPeer, OutRtp, PeerError, PeerSettings};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

fn loopback() -> PeerSettings {
    PeerSettings::nearby(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Echoes every packet the answerer receives back with the same PT/seq/ts/marker.
fn spawn_echo(peer: Arc<MediaPeer>, mut events: MediaEvents) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(p) = events.recv_rtp().await {
            let out = OutRtp {
                payload_type: p.payload_type,
                marker: p.marker,
                sequence: p.sequence,
                timestamp: p.timestamp,
                payload: &p.payload,
            };
            if let Err(e) = peer.send_rtp(&out).await {
                eprintln!("echo send failed: {e}");
            }
            n += 1;
        }
        n
    })
}

struct Call {
    offerer: Arc<MediaPeer>,
    answerer: Arc<MediaPeer>,
    offer_events: MediaEvents,
    echo: tokio::task::JoinHandle<u32>,
    offer_sdp: String,
    answer_sdp: String,
}

async fn connect(codecs: &[Codec]) -> Call {
    let s = loopback();
    let (offerer, offer_sdp, mut offer_events) = MediaPeer::offer(&s, codecs).await.expect("offer");
    let (answerer, answer_sdp, _afmt, mut answer_events) =
        MediaPeer::answer(&s, &offer_sdp).await.expect("answer");
    let answerer = Arc::new(answerer);
    let started = Instant::now();
    offerer
        .accept_answer(&answer_sdp)
        .await
        .expect("accept answer");
    offer_events
        .wait_connected()
        .await
        .expect("offerer connects");
    // The offerer (DTLS server) is Connected a moment before the answerer (client) has its
    // SRTP keys: media sent in that gap is dropped by the answerer. Wait for both.
    answer_events
        .wait_connected()
        .await
        .expect("answerer connects");
    eprintln!("connected {:?} after accept_answer", started.elapsed());
    let echo = spawn_echo(Arc::clone(&answerer), answer_events);
    Call {
        offerer: Arc::new(offerer),
        answerer,
        offer_events,
        echo,
        offer_sdp,
        answer_sdp,
    }
}

fn audio_payload(i: usize) -> Vec<u8> {
    (0..160).map(|k| (i * 7 + k) as u8).collect()
}

/// RFC 4733 payload: event, E|R|volume, duration.
fn dtmf_payload(event: u8, end: bool, duration: u16) -> Vec<u8> {
    let d = duration.to_be_bytes();
    vec![event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}

async fn collect(events: &mut MediaEvents, n: usize, within: Duration) -> Vec<InRtp> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, events.recv_rtp()).await {
            Ok(Some(p)) => got.push(p),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_audio_and_telephone_events() {
    timeout(LIMIT, async {
        let mut call = connect(&[Codec::Pcmu, Codec::Pcma]).await;
        let fmt = call.offerer.format().expect("negotiated");
        assert_eq!(fmt.codec, Codec::Pcmu);
        let te = fmt.telephone_event_pt.expect("telephone-event negotiated");
        assert_eq!(te, 101);

        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..50usize {
            tick.tick().await;
            let payload = audio_payload(i);
            call.offerer
                .send_rtp(&OutRtp {
                    payload_type: 0,
                    marker: i == 0,
                    sequence: 1000 + i as u16,
                    timestamp: 160 * i as u32,
                    payload: &payload,
                })
                .await
                .expect("send audio");
        }
        for j in 0..3usize {
            tick.tick().await;
            let payload = dtmf_payload(5, j == 2, 160 * (j as u16 + 1));
            call.offerer
                .send_rtp(&OutRtp {
                    payload_type: te,
                    marker: j == 0,
                    sequence: 1050 + j as u16,
                    timestamp: 160 * 50,
                    payload: &payload,
                })
                .await
                .expect("send event");
        }

        let got = collect(&mut call.offer_events, 53, Duration::from_secs(3)).await;
        assert_eq!(
            got.len(),
            53,
            "all echoes back (dropped {})",
            call.offer_events.dropped()
        );
        for p in &got {
            let idx = (p.sequence - 1000) as usize;
            if idx < 50 {
                assert_eq!(p.payload_type, 0);
                assert_eq!(
                    &p.payload[..],
                    &audio_payload(idx)[..],
                    "payload of seq {}",
                    p.sequence
                );
                assert_eq!(p.marker, idx == 0);
                assert_eq!(p.timestamp, 160 * idx as u32);
            } else {
                let j = idx - 50;
                assert_eq!(p.payload_type, te, "event keeps its PT");
                assert_eq!(
                    &p.payload[..],
                    &dtmf_payload(5, j == 2, 160 * (j as u16 + 1))[..]
                );
            }
            assert_eq!(p.ssrc, call.answerer.ssrc());
        }

        call.offerer.close().await;
        call.answerer.close().await;
        let echoed = timeout(Duration::from_secs(5), call.echo).await;
        eprintln!("echo task ended: {echoed:?}");
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_is_complete_and_loopback_only() {
    timeout(LIMIT, async {
        let (peer, sdp, _ev) = MediaPeer::offer(&loopback(), &[Codec::Pcmu, Codec::Pcma])
            .await
            .expect("offer");
        eprintln!("{sdp}");
        let cands: Vec<&str> = sdp
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        assert!(!cands.is_empty(), "non-trickle offer carries candidates");
        assert!(cands.iter().all(|c| c.contains(" 127.0.0.1 ")), "{cands:?}");
        assert!(!sdp.contains(".local"), "no mDNS candidates");
        for needle in [
            "a=fingerprint:sha-256 ",
            "a=setup:actpass",
            "a=rtcp-mux",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=sendrecv",
            "a=group:BUNDLE",
        ] {
            assert!(sdp.contains(needle), "offer lacks {needle}");
        }
        let mline = sdp
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .expect("m=audio");
        assert!(mline.ends_with(" 0 8 101"), "{mline}");
        assert!(!sdp.contains("m=video") && !sdp.contains("m=application"));
        peer.close().await;
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_order_pcma_first_negotiates_pcma() {
    timeout(LIMIT, async {
        let mut call = connect(&[Codec::Pcma, Codec::Pcmu]).await;
        let mline = call
            .offer_sdp
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .unwrap_or("");
        assert!(mline.ends_with(" 8 0 101"), "{mline}");
        let fmt = call.offerer.format().expect("negotiated");
        assert_eq!(fmt.codec, Codec::Pcma);
        assert_eq!(call.answerer.format().map(|f| f.codec), Some(Codec::Pcma));
        assert!(call.answer_sdp.contains("a=rtpmap:8 PCMA/8000"));

        let payload = audio_payload(3);
        for i in 0..5u16 {
            call.offerer
                .send_rtp(&OutRtp {
                    payload_type: 8,
                    marker: false,
                    sequence: i,
                    timestamp: 160 * u32::from(i),
                    payload: &payload,
                })
                .await
                .expect("send pcma");
        }
        let got = collect(&mut call.offer_events, 5, Duration::from_secs(3)).await;
        assert_eq!(got.len(), 5);
        assert!(got
            .iter()
            .all(|p| p.payload_type == 8 && p.payload[..] == payload[..]));
        // PCMU is not the negotiated audio PT any more: refused locally, not silently dropped.
        let err = call
            .offerer
            .send_rtp(&OutRtp {
                payload_type: 0,
                marker: false,
                sequence: 9,
                timestamp: 0,
                payload: &payload,
            })
            .await;
        assert!(
            matches!(err, Err(PeerError::PayloadTypeNotNegotiated(0))),
            "{err:?}"
        );
        call.offerer.close().await;
        call.answerer.close().await;
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_fast_on_loopback() {
    timeout(LIMIT, async {
        let s = loopback();
        let t0 = Instant::now();
        let (offerer, offer_sdp, mut oev) = MediaPeer::offer(&s, &[Codec::Pcmu]).await.expect("offer");
        let t_offer = t0.elapsed();
        let (answerer, answer_sdp, _f, mut aev) = MediaPeer::answer(&s, &offer_sdp).await.expect("answer");
        let t_answer = t0.elapsed();
        let t1 = Instant::now();
        offerer.accept_answer(&answer_sdp).await.expect("accept");
        oev.wait_connected().await.expect("offerer connected");
        aev.wait_connected().await.expect("answerer connected");
        let t_conn = t1.elapsed();
        eprintln!("offer ready {t_offer:?}, answer ready {t_answer:?}, connected {t_conn:?} after answer applied");
        assert!(t_conn < Duration::from_millis(1000), "connect took {t_conn:?}");
        offerer.close().await;
        answerer.close().await;
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_before_negotiation_is_refused() {
    timeout(LIMIT, async {
        let (peer, _sdp, _ev) = MediaPeer::offer(&loopback(), &[Codec::Pcmu])
            .await
            .expect("offer");
        let r = peer
            .send_rtp(&OutRtp {
                payload_type: 0,
                marker: false,
                sequence: 1,
                timestamp: 0,
                payload: &[0; 160],
            })
            .await;
        assert!(matches!(r, Err(PeerError::NotNegotiated)), "{r:?}");
        peer.close().await;
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answerer_follows_offered_telephone_event_pt() {
    timeout(LIMIT, async {
        let s = loopback();
        let (offerer, offer_sdp, _ev) = MediaPeer::offer(&s, &[Codec::Pcmu, Codec::Pcma])
            .await
            .expect("offer");
        // A browser-like offer: telephone-event at 126.
        let offer_126 = offer_sdp
            .replace(" 0 8 101\r\n", " 0 8 126\r\n")
            .replace("a=rtpmap:101 ", "a=rtpmap:126 ")
            .replace("a=fmtp:101 ", "a=fmtp:126 ");
        assert!(offer_126.contains("a=rtpmap:126 telephone-event/8000"));
        let (answerer, answer_sdp, fmt, _aev) =
            MediaPeer::answer(&s, &offer_126).await.expect("answer");
        eprintln!("{answer_sdp}");
        assert_eq!(fmt.codec, Codec::Pcmu);
        assert_eq!(
            fmt.telephone_event_pt,
            Some(126),
            "answer must use the offer's PT"
        );
        assert!(answer_sdp.contains("a=rtpmap:126 telephone-event/8000"));
        offerer.close().await;
        answerer.close().await;
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_by_reoffer() {
    timeout(LIMIT, async {
        let mut call = connect(&[Codec::Pcmu, Codec::Pcma]).await;

        // Hold: we go sendonly, the answerer must answer recvonly.
        let hold = call
            .offerer
            .create_reoffer(Direction::SendOnly)
            .await
            .expect("hold offer");
        assert!(hold.contains("a=sendonly"), "{hold}");
        assert!(hold.contains("a=candidate:"), "re-offer keeps candidates");
        let (hold_answer, fmt) = call
            .answerer
            .answer_reoffer(&hold)
            .await
            .expect("hold answer");
        assert!(hold_answer.contains("a=recvonly"), "{hold_answer}");
        assert_eq!(fmt.codec, Codec::Pcmu);
        call.offerer
            .accept_answer(&hold_answer)
            .await
            .expect("apply hold answer");

        // During hold the offerer still sends; the answerer (recvonly) receives but its echo is
        // discarded locally, so nothing comes back.
        let payload = audio_payload(1);
        for i in 0..3u16 {
            call.offerer
                .send_rtp(&OutRtp {
                    payload_type: 0,
                    marker: false,
                    sequence: 300 + i,
                    timestamp: 0,
                    payload: &payload,
                })
                .await
                .expect("send during hold");
        }
        let got = collect(&mut call.offer_events, 1, Duration::from_millis(300)).await;
        assert!(got.is_empty(), "recvonly answerer must not send: {got:?}");

        // Inactive hold must not kill the transceiver (webrtc 0.21 stops it on a remote inactive).
        let inactive = call
            .offerer
            .create_reoffer(Direction::Inactive)
            .await
            .expect("inactive offer");
        assert!(inactive.contains("a=inactive"), "{inactive}");
        let (inactive_answer, _) = call
            .answerer
            .answer_reoffer(&inactive)
            .await
            .expect("inactive answer");
        assert!(inactive_answer.contains("a=inactive"), "{inactive_answer}");
        assert!(
            !inactive_answer.contains("m=audio 0 "),
            "audio section not rejected"
        );
        call.offerer
            .accept_answer(&inactive_answer)
            .await
            .expect("apply inactive answer");
        call.offerer
            .send_rtp(&OutRtp {
                payload_type: 0,
                marker: false,
                sequence: 400,
                timestamp: 0,
                payload: &payload,
            })
            .await
            .expect("send while inactive is discarded");

        // Resume: sendrecv again; media still flows both ways on the same connection.
        let resume = call
            .offerer
            .create_reoffer(Direction::SendRecv)
            .await
            .expect("resume offer");
        assert!(resume.contains("a=sendrecv"));
        let (resume_answer, _) = call
            .answerer
            .answer_reoffer(&resume)
            .await
            .expect("resume answer");
        assert!(resume_answer.contains("a=sendrecv"), "{resume_answer}");
        call.offerer
            .accept_answer(&resume_answer)
            .await
            .expect("apply resume answer");

        let payload = audio_payload(9);
        for i in 0..5u16 {
            call.offerer
                .send_rtp(&OutRtp {
                    payload_type: 0,
                    marker: false,
                    sequence: 500 + i,
                    timestamp: 0,
                    payload: &payload,
                })
                .await
                .expect("send after resume");
        }
        let got = collect(&mut call.offer_events, 5, Duration::from_secs(3)).await;
        assert_eq!(got.len(), 5, "echo after resume");
        call.offerer.close().await;
        call.answerer.close().await;
    })
    .await
    .expect("test within time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_calls_echo() {
    timeout(LIMIT, async {
        let t0 = Instant::now();
        let calls = futures_join_all((0..20).map(|_| connect(&[Codec::Pcmu, Codec::Pcma]))).await;
        eprintln!("20 calls connected in {:?}", t0.elapsed());
        let mut tasks = Vec::new();
        for mut call in calls {
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                for i in 0..25usize {
                    tick.tick().await;
                    let payload = audio_payload(i);
                    call.offerer
                        .send_rtp(&OutRtp {
                            payload_type: 0,
                            marker: false,
                            sequence: i as u16,
                            timestamp: 160 * i as u32,
                            payload: &payload,
                        })
                        .await
                        .expect("send");
                }
                let got = collect(&mut call.offer_events, 25, Duration::from_secs(3)).await;
                call.offerer.close().await;
                call.answerer.close().await;
                got.len()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("call task"), 25);
        }
        eprintln!("20 calls done in {:?}", t0.elapsed());
    })
    .await
    .expect("test within time limit");
}

async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}
