//! Loopback tests of the media engine as the gateway uses it: a gateway engine (shared WebRTC
//! port, the PBX's plain RTP played by a test socket) calling a far-end engine (a WebRTC port
//! per call, echoing), both on 127.0.0.1. What the webrtc 0.21 peer's tests asserted, restated
//! for the str0m engine, plus what the engine itself adds: early audio, strangers on the shared
//! port, many calls on one thread, routing removed on close. Every wait is bounded; every test
//! starts its own engines so engine-wide counters are its own.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::{EngineConfig, FarEnd, LocalMode, MediaCall, MediaEngine};
use crate::media::relay::{PbxMedia, RelayCounters};
use crate::media::rtp::{write_header, RtpHeader};
use crate::media::rtp_leg::RtpLeg;
use crate::media::{AudioFormat, Codec, Direction, PeerError, PeerSettings};

/// Whole-test bound.
const LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for one expected thing (a packet, a counter, a connection): generous, for a
/// loaded 2-core machine; a passing run waits milliseconds.
const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched.
const QUIET: Duration = Duration::from_millis(400);
/// The PBX's own telephone-event number, unlike the WebRTC leg's 101: echoes that come back
/// with it prove the mapping both ways.
const PBX_EVENT_PT: u8 = 96;
/// SSRC of the test PBX's stream.
const PBX_SSRC: u32 = 0x0abc_def0;

fn settings() -> PeerSettings {
    PeerSettings::nearby(Ipv4Addr::LOCALHOST.into())
}

/// An engine on 127.0.0.1; `port_per_call`: a WebRTC port per call, as the simulator's far ends
/// have, instead of the thread's shared one.
fn engine(threads: usize, port_per_call: bool) -> MediaEngine {
    MediaEngine::start(&EngineConfig {
        threads,
        bind: "127.0.0.1:0".parse().expect("address"),
        port_per_call,
        turn_tls: None,
        batch_window: Duration::ZERO,
    })
    .expect("engine")
}

async fn bounded<F: Future>(f: F) -> F::Output {
    timeout(LIMIT, f).await.expect("test timed out")
}

/// Polls `f` until it holds, failing after [`WAIT`].
async fn until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn connected(call: &MediaCall, who: &str) {
    timeout(WAIT, call.wait_connected())
        .await
        .unwrap_or_else(|_| panic!("{who} not connected in time"))
        .unwrap_or_else(|s| panic!("{who} ended in {s:?}"));
}

/// A plain RTP socket standing in for the PBX, attached to `call`'s relay with the PBX's
/// payload types `audio_pt` and [`PBX_EVENT_PT`].
async fn attach_pbx(call: &MediaCall, audio_pt: u8) -> UdpSocket {
    let me = UdpSocket::bind("127.0.0.1:0").await.expect("PBX socket");
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
    let rtcp = std::net::UdpSocket::bind("127.0.0.1:0").expect("RTCP socket");
    rtp.set_nonblocking(true).expect("non-blocking");
    rtcp.set_nonblocking(true).expect("non-blocking");
    let port = rtp.local_addr().expect("RTP address").port();
    me.connect(("127.0.0.1", port)).await.expect("connect");
    let pbx = PbxMedia {
        addr: Some(me.local_addr().expect("PBX address")),
        audio_pt,
        event_pt: Some(PBX_EVENT_PT),
        receives: true,
    };
    call.attach_pbx(RtpLeg { rtp, rtcp, port }, pbx)
        .expect("attach");
    me
}

/// The engines of one test: the gateway's, whose calls share their thread's WebRTC port, and
/// the echoing far ends'. Each step of a call between them is one call here, so that a test
/// states only what it does differently.
#[derive(Clone)]
struct Bench {
    gw: MediaEngine,
    far: MediaEngine,
}

impl Bench {
    /// One gateway thread; far ends with a port per call, as the simulator runs them.
    fn new() -> Bench {
        Bench::with(1, true)
    }

    fn with(gw_threads: usize, far_port_per_call: bool) -> Bench {
        Bench {
            gw: engine(gw_threads, false),
            far: engine(1, far_port_per_call),
        }
    }

    /// The gateway's complete offer for a PBX call with `codecs`.
    async fn offer(&self, codecs: &[Codec]) -> (MediaCall, String) {
        self.gw
            .offer(&settings(), codecs, FarEnd::Pbx)
            .await
            .expect("offer")
    }

    /// An echoing far end's answer to `offer`, choosing `codec` (None: the offer's first).
    async fn answer(
        &self,
        offer: &str,
        codec: Option<Codec>,
    ) -> Result<(MediaCall, String, AudioFormat), PeerError> {
        self.far
            .answer(&settings(), offer, codec, FarEnd::Local(LocalMode::Echo))
            .await
    }

    /// A call offered with `codecs` and answered choosing `codec`, the answer not applied yet.
    async fn offered(&self, codecs: &[Codec], codec: Option<Codec>) -> Offered {
        let (gw, offer) = self.offer(codecs).await;
        let (far, answer, format) = self.answer(&offer, codec).await.expect("answer");
        Offered {
            gw,
            far,
            offer,
            answer,
            format,
        }
    }

    /// One call from the gateway to an echoing far end, connected both sides.
    async fn pair(&self, codecs: &[Codec]) -> Pair {
        self.offered(codecs, None).await.connect(None).await
    }
}

/// A call the gateway offered and a far end answered (`format`: the far end's view); the
/// gateway has not applied the answer yet.
struct Offered {
    gw: MediaCall,
    far: MediaCall,
    offer: String,
    answer: String,
    format: AudioFormat,
}

impl Offered {
    /// Applies the answer, attaches a PBX with the negotiated codec (unless the test attached
    /// one already: `pbx`) and waits for both legs.
    async fn connect(self, pbx: Option<UdpSocket>) -> Pair {
        let format = self
            .gw
            .accept_answer(&self.answer)
            .await
            .expect("answer applies");
        let pbx = match pbx {
            Some(p) => p,
            None => attach_pbx(&self.gw, format.codec.payload_type()).await,
        };
        connected(&self.gw, "gateway").await;
        connected(&self.far, "far end").await;
        Pair {
            gw: self.gw,
            far: self.far,
            pbx,
            offer: self.offer,
            answer: self.answer,
        }
    }
}

/// One call from the gateway to an echoing far end, connected both sides.
struct Pair {
    gw: MediaCall,
    far: MediaCall,
    pbx: UdpSocket,
    offer: String,
    answer: String,
}

impl Pair {
    fn close(&self) {
        self.gw.close();
        self.far.close();
    }
}

/// 160 bytes no other (tag, index) produces: the tag says whose, the index which packet.
fn payload(tag: u8, i: u16) -> Vec<u8> {
    let [hi, lo] = i.to_be_bytes();
    let mut p = vec![tag, hi, lo];
    p.extend((3..160u16).map(|k| (k.wrapping_mul(7).wrapping_add(i)) as u8));
    p
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12 + payload.len()];
    write_header(&mut b, marker, pt, seq, ts, PBX_SSRC);
    b[12..].copy_from_slice(payload);
    b
}

/// An RTP packet as the PBX received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

/// What arrives on `sock` until `n` packets came or `within` passed.
async fn receive(sock: &UdpSocket, n: usize, within: Duration) -> Vec<Got> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    while got.len() < n {
        let Ok(Ok(len)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await else {
            break;
        };
        let h = RtpHeader::parse(&buf[..len]).expect("the PBX receives RTP");
        got.push(Got {
            pt: h.payload_type,
            marker: h.marker,
            seq: h.sequence,
            ts: h.timestamp,
            payload: buf[h.payload_start..h.payload_end].to_vec(),
        });
    }
    got
}

/// Sends audio packets `first..first + n` of `tag` (PCMU or PCMA per `pt`) 10 ms apart and
/// returns their payloads.
async fn send_audio(pbx: &UdpSocket, pt: u8, tag: u8, first: u16, n: u16) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for i in first..first + n {
        let p = payload(tag, i);
        let ts = u32::from(i) * 160;
        pbx.send(&rtp(pt, i == 0, i, ts, &p)).await.expect("send");
        sent.push(p);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// Audio packets `first..first + n` go out and come back byte-exact, in order.
async fn echoes(pbx: &UdpSocket, pt: u8, tag: u8, first: u16, n: u16) {
    let sent = send_audio(pbx, pt, tag, first, n).await;
    let got = receive(pbx, sent.len(), WAIT).await;
    let payloads: Vec<&[u8]> = got.iter().map(|g| &g.payload[..]).collect();
    let want: Vec<&[u8]> = sent.iter().map(|p| &p[..]).collect();
    assert_eq!(payloads, want, "echo of packets {first}..{}", first + n);
    assert!(got.iter().all(|g| g.pt == pt), "{got:?}");
}

fn ice_ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .expect("a=ice-ufrag")
        .to_owned()
}

fn mline(sdp: &str) -> &str {
    sdp.lines()
        .find(|l| l.starts_with("m=audio "))
        .expect("m=audio")
        .trim_end()
}

fn candidates(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .map(str::trim_end)
        .collect()
}

/// The address of an SDP's only host candidate.
fn host_candidate(sdp: &str) -> SocketAddr {
    let c = candidates(sdp);
    assert_eq!(c.len(), 1, "{c:?}");
    let f: Vec<&str> = c[0].split_whitespace().collect();
    // a=candidate:foundation component transport priority address port typ host
    assert_eq!(f.get(6..8), Some(&["typ", "host"][..]), "{f:?}");
    format!("{}:{}", f[4], f[5])
        .parse()
        .expect("candidate address")
}

#[tokio::test]
async fn offer_is_complete_and_loopback_only() {
    bounded(async {
        let b = Bench::new();
        let (call, sdp) = b.offer(&[Codec::Pcmu, Codec::Pcma]).await;
        assert_eq!(
            host_candidate(&sdp),
            b.gw.shared_ports()[0],
            "the host candidate is the thread's shared port on 127.0.0.1"
        );
        assert!(!sdp.contains(".local"), "no mDNS candidates");
        for needle in [
            "a=end-of-candidates",
            "a=setup:actpass",
            "a=fingerprint:sha-256 ",
            "a=rtcp-mux",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=sendrecv",
            "a=ice-ufrag:",
            "a=ice-pwd:",
        ] {
            assert!(sdp.contains(needle), "offer lacks {needle}:\n{sdp}");
        }
        for banned in [
            "a=ice-options:trickle",
            "a=extmap:",
            "transport-cc",
            "goog-remb",
            "m=video",
            "m=application",
        ] {
            assert!(!sdp.contains(banned), "offer has {banned}:\n{sdp}");
        }
        assert!(
            mline(&sdp).ends_with(" UDP/TLS/RTP/SAVPF 0 8 101"),
            "{}",
            mline(&sdp)
        );
        // Complete: the end marker follows the last candidate of the section.
        let end = sdp.find("a=end-of-candidates").expect("end");
        let last = sdp.rfind("a=candidate:").expect("candidate");
        assert!(last < end, "a candidate after a=end-of-candidates:\n{sdp}");
        call.close();
    })
    .await;
}

#[tokio::test]
async fn audio_and_telephone_events_echo_byte_exact_with_the_pbx_event_pt() {
    bounded(async {
        let mut p = Bench::new().pair(&[Codec::Pcmu, Codec::Pcma]).await;
        let format = p.gw.format().expect("negotiated");
        assert_eq!(format.codec, Codec::Pcmu);
        assert_eq!(format.telephone_event_pt, Some(101));
        let mut digits = p.far.take_digits().expect("a local far end reports digits");

        // 50 audio packets, the first with the marker, then RFC 4733 digit 5: start (marker),
        // update, end three times, all with the event's timestamp.
        let mut sent: Vec<(u8, bool, u16, u32, Vec<u8>)> = (0..50u16)
            .map(|i| (0, i == 0, 1000 + i, 160 * u32::from(i), payload(1, i)))
            .collect();
        let events = [
            (0x0a, 160u16),
            (0x0a, 320),
            (0x8a, 480),
            (0x8a, 480),
            (0x8a, 480),
        ];
        for (j, (flags, duration)) in events.into_iter().enumerate() {
            let [d0, d1] = duration.to_be_bytes();
            sent.push((
                PBX_EVENT_PT,
                j == 0,
                1050 + j as u16,
                160 * 50,
                vec![5, flags, d0, d1],
            ));
        }
        for (pt, marker, seq, ts, pl) in &sent {
            p.pbx
                .send(&rtp(*pt, *marker, *seq, *ts, pl))
                .await
                .expect("send");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = receive(&p.pbx, sent.len(), WAIT).await;
        assert_eq!(got.len(), sent.len(), "every packet echoed: {got:?}");
        let (seq0, ts0) = (got[0].seq, got[0].ts);
        for (g, (pt, marker, seq, ts, pl)) in got.iter().zip(&sent) {
            assert_eq!(&g.payload, pl, "payload of the packet sent as {seq}");
            assert_eq!(g.pt, *pt, "PT of {seq} (events keep the PBX's own number)");
            assert_eq!(g.marker, *marker, "marker of {seq}");
            assert_eq!(g.seq.wrapping_sub(seq0), seq - 1000, "sequence of {seq}");
            assert_eq!(g.ts.wrapping_sub(ts0), *ts, "timestamp of {seq}");
        }
        let digit = timeout(WAIT, digits.recv()).await.expect("a digit in time");
        assert_eq!(digit, Some('5'), "the far end decoded the event on PT 101");
        assert!(
            timeout(QUIET, digits.recv()).await.is_err(),
            "one digit for one event"
        );
        let c = p.gw.counters();
        assert_eq!(RelayCounters::get(&c.from_pbx_packets), sent.len() as u64);
        assert_eq!(RelayCounters::get(&c.to_pbx_packets), sent.len() as u64);
        assert_eq!(RelayCounters::get(&c.dropped), 0);
        assert_eq!(RelayCounters::get(&p.far.local_stats().rtp_in), 55);
        p.close();
    })
    .await;
}

#[tokio::test]
async fn codec_order_pcma_first_negotiates_pcma_and_a_missing_codec_is_refused() {
    bounded(async {
        let b = Bench::new();
        let p = b.pair(&[Codec::Pcma, Codec::Pcmu]).await;
        assert!(mline(&p.offer).ends_with(" 8 0 101"), "{}", mline(&p.offer));
        assert_eq!(p.gw.format().map(|f| f.codec), Some(Codec::Pcma));
        assert_eq!(p.far.format().map(|f| f.codec), Some(Codec::Pcma));
        assert!(p.answer.contains("a=rtpmap:8 PCMA/8000"), "{}", p.answer);
        echoes(&p.pbx, 8, 1, 0, 10).await;
        // PCMU is not this call's codec: the relay drops it rather than mislabel it.
        let dropped = RelayCounters::get(&p.gw.counters().dropped);
        p.pbx
            .send(&rtp(0, false, 10, 1600, &payload(1, 10)))
            .await
            .expect("send");
        until("the PCMU packet dropped", || {
            RelayCounters::get(&p.gw.counters().dropped) == dropped + 1
        })
        .await;
        assert!(receive(&p.pbx, 1, QUIET).await.is_empty());

        // The answerer's choice among what is offered wins over the offer's order...
        let o = b
            .offered(&[Codec::Pcmu, Codec::Pcma], Some(Codec::Pcma))
            .await;
        assert_eq!(o.format.codec, Codec::Pcma);
        let f = o.gw.accept_answer(&o.answer).await.expect("answer applies");
        assert_eq!(f.codec, Codec::Pcma, "{}", o.answer);
        // ...but a codec the offer lacks is refused, and no call is left behind.
        let (pcmu_only, offer) = b.offer(&[Codec::Pcmu]).await;
        assert!(!offer.contains("PCMA"), "{offer}");
        let calls = b.far.counters().calls.load(Ordering::Relaxed);
        let r = b.answer(&offer, Some(Codec::Pcma)).await;
        assert!(matches!(r, Err(PeerError::NoCommonCodec)), "{r:?}");
        assert_eq!(b.far.counters().calls.load(Ordering::Relaxed), calls);
        for c in [&p.gw, &p.far, &o.gw, &o.far, &pcmu_only] {
            c.close();
        }
    })
    .await;
}

#[tokio::test]
async fn answerer_follows_the_offered_telephone_event_pt() {
    bounded(async {
        let b = Bench::new();
        let (call, offer) = b.offer(&[Codec::Pcmu, Codec::Pcma]).await;
        // A browser-like offer: telephone-event on 110.
        let offer_110 = offer
            .replace(" 0 8 101\r\n", " 0 8 110\r\n")
            .replace("a=rtpmap:101 ", "a=rtpmap:110 ")
            .replace("a=fmtp:101 ", "a=fmtp:110 ");
        assert!(offer_110.contains("a=rtpmap:110 telephone-event/8000"));
        assert!(!offer_110.contains(":101 "), "{offer_110}");
        let (far_call, answer, f) = b.answer(&offer_110, None).await.expect("answer");
        assert_eq!(f.codec, Codec::Pcmu);
        assert_eq!(f.telephone_event_pt, Some(110), "the offer's PT:\n{answer}");
        assert_eq!(far_call.format(), Some(f));
        assert!(
            answer.contains("a=rtpmap:110 telephone-event/8000"),
            "{answer}"
        );
        assert!(!answer.contains("a=rtpmap:101 "), "{answer}");
        assert!(mline(&answer).ends_with(" 110"), "{}", mline(&answer));
        call.close();
        far_call.close();
    })
    .await;
}

/// Sends packets `first..first + 10` while the far end cannot echo them: they must reach the far
/// end (when `reach`) or not, and nothing may come back.
async fn nothing_comes_back(p: &Pair, first: u16, reach: bool) {
    let before = RelayCounters::get(&p.far.local_stats().rtp_in);
    send_audio(&p.pbx, 0, 2, first, 10).await;
    if reach {
        until("the far end receiving during hold", || {
            RelayCounters::get(&p.far.local_stats().rtp_in) == before + 10
        })
        .await;
    }
    let back = receive(&p.pbx, 1, QUIET).await;
    assert!(back.is_empty(), "audio toward the holder: {back:?}");
    if !reach {
        assert_eq!(
            RelayCounters::get(&p.far.local_stats().rtp_in),
            before,
            "a recvonly gateway sent audio"
        );
    }
}

#[tokio::test]
async fn hold_and_resume_by_reoffer_both_ways() {
    bounded(async {
        let p = Bench::new().pair(&[Codec::Pcmu, Codec::Pcma]).await;
        echoes(&p.pbx, 0, 1, 0, 5).await;

        // The gateway holds: sendonly; the far end answers recvonly and stops sending.
        let hold =
            p.gw.create_reoffer(Direction::SendOnly)
                .await
                .expect("hold");
        assert!(hold.contains("a=sendonly"), "{hold}");
        assert!(
            hold.contains("a=candidate:"),
            "a re-offer keeps its candidates"
        );
        let (answer, f) = p.far.answer_reoffer(&hold).await.expect("hold answer");
        assert!(answer.contains("a=recvonly"), "{answer}");
        assert_eq!(f.codec, Codec::Pcmu);
        p.gw.accept_answer(&answer)
            .await
            .expect("hold answer applies");
        nothing_comes_back(&p, 100, true).await;

        let resume =
            p.gw.create_reoffer(Direction::SendRecv)
                .await
                .expect("resume");
        assert!(resume.contains("a=sendrecv"), "{resume}");
        let (answer, _) = p.far.answer_reoffer(&resume).await.expect("resume answer");
        assert!(answer.contains("a=sendrecv"), "{answer}");
        p.gw.accept_answer(&answer)
            .await
            .expect("resume answer applies");
        echoes(&p.pbx, 0, 1, 200, 10).await;

        // The far end holds: the gateway answers recvonly and sends the PBX's audio no more.
        let hold = p
            .far
            .create_reoffer(Direction::SendOnly)
            .await
            .expect("hold");
        assert!(hold.contains("a=sendonly"), "{hold}");
        let (answer, f) = p.gw.answer_reoffer(&hold).await.expect("hold answer");
        assert!(answer.contains("a=recvonly"), "{answer}");
        assert_eq!(f.codec, Codec::Pcmu);
        p.far
            .accept_answer(&answer)
            .await
            .expect("hold answer applies");
        nothing_comes_back(&p, 300, false).await;

        let resume = p
            .far
            .create_reoffer(Direction::SendRecv)
            .await
            .expect("resume");
        let (answer, _) = p.gw.answer_reoffer(&resume).await.expect("resume answer");
        assert!(answer.contains("a=sendrecv"), "{answer}");
        p.far
            .accept_answer(&answer)
            .await
            .expect("resume answer applies");
        echoes(&p.pbx, 0, 1, 400, 10).await;
        assert_eq!(
            *p.gw.peer_state().borrow(),
            crate::media::PeerState::Connected
        );
        p.close();
    })
    .await;
}

#[tokio::test]
async fn an_answer_with_setup_actpass_is_refused() {
    bounded(async {
        let o = Bench::new().offered(&[Codec::Pcmu], None).await;
        let setup = o
            .answer
            .lines()
            .find(|l| l.starts_with("a=setup:"))
            .expect("a=setup in the answer")
            .trim_end();
        assert_ne!(setup, "a=setup:actpass", "the answerer picked a role");
        for bad in ["a=setup:actpass", "a=setup:ACTPASS"] {
            let r = o.gw.accept_answer(&o.answer.replace(setup, bad)).await;
            assert!(matches!(r, Err(PeerError::BadSdp(_))), "{bad}: {r:?}");
        }
        assert_eq!(o.gw.format(), None, "nothing negotiated");
        // A refused answer costs the call nothing: the offer still waits for a usable one.
        let p = o.connect(None).await;
        echoes(&p.pbx, 0, 1, 0, 5).await;
        let r = p.gw.accept_answer(&p.answer).await;
        assert!(matches!(r, Err(PeerError::NoPendingOffer)), "{r:?}");
        p.close();
    })
    .await;
}

#[tokio::test]
async fn early_audio_from_the_pbx_is_held_and_sent_once_connected() {
    bounded(async {
        let o = Bench::new()
            .offered(&[Codec::Pcmu, Codec::Pcma], None)
            .await;
        // The PBX talks before the carrier's answer is applied (the first words of a callee
        // who answers as the phone is picked up).
        let pbx = attach_pbx(&o.gw, 0).await;
        let mut sent = Vec::new();
        for i in 0..10u16 {
            let p = payload(3, i);
            pbx.send(&rtp(0, i == 0, i, 160 * u32::from(i), &p))
                .await
                .expect("send");
            sent.push(p);
        }
        until("the engine holding the early packets", || {
            RelayCounters::get(&o.gw.counters().early_held) == 10
        })
        .await;
        assert_ne!(
            *o.gw.peer_state().borrow(),
            crate::media::PeerState::Connected
        );
        let p = o.connect(Some(pbx)).await;
        let got = receive(&p.pbx, 10, WAIT).await;
        let payloads: Vec<&Vec<u8>> = got.iter().map(|g| &g.payload).collect();
        assert_eq!(
            payloads,
            sent.iter().collect::<Vec<_>>(),
            "held audio, in order"
        );
        assert!(got[0].marker && got[1..].iter().all(|g| !g.marker));
        assert_eq!(RelayCounters::get(&p.gw.counters().early_dropped), 0);
        assert_eq!(RelayCounters::get(&p.gw.counters().from_pbx_packets), 10);
        p.close();
    })
    .await;
}

/// A STUN Binding request (RFC 8489/8445) naming `username`, with a MESSAGE-INTEGRITY that no
/// password produces.
fn stun_request(username: &str) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, 0x0006, username.as_bytes()); // USERNAME
    attr(&mut attrs, 0x0024, &1_862_270_975u32.to_be_bytes()); // PRIORITY
    attr(&mut attrs, 0x802a, &rand::random::<u64>().to_be_bytes()); // ICE-CONTROLLING
    attr(&mut attrs, 0x0008, &[0x5a; 20]); // MESSAGE-INTEGRITY
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m.extend_from_slice(&attrs);
    m
}

/// A STUN Binding success response: no USERNAME, so only an address could route it.
fn stun_response() -> Vec<u8> {
    let mut m = vec![0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m
}

/// The start of a DTLS 1.2 record carrying a ClientHello.
fn dtls_client_hello(i: u16) -> Vec<u8> {
    let mut m = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&i.to_be_bytes());
    m.extend_from_slice(&50u16.to_be_bytes());
    m.extend_from_slice(&[1, 0, 0, 38, 0, 0, 0, 0, 0, 0, 0, 38, 0xfe, 0xfd]);
    m.extend_from_slice(&rand::random::<[u8; 32]>());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m
}

/// An RTP header, a PCMU-sized payload and an 80-bit tag: SRTP as far as a look can tell.
fn srtp_like(i: u16) -> Vec<u8> {
    let mut m = vec![0u8; 12 + 160 + 10];
    write_header(&mut m, false, 0, i, u32::from(i) * 160, 0x5eed_5eed);
    for b in &mut m[12..] {
        *b = rand::random();
    }
    m
}

/// Datagrams that fit no class of RFC 7983 (first byte 64-127 or 192-255).
fn garbage(i: u16) -> Vec<u8> {
    let first = if i.is_multiple_of(2) { 0x47 } else { 0xf0 };
    let mut m = vec![first];
    m.extend((0..(i % 90)).map(|_| rand::random::<u8>()));
    m
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Drops {
    garbage: u64,
    stun_unknown_ufrag: u64,
    unknown_source: u64,
    refused: u64,
}

fn total(d: Drops) -> u64 {
    d.garbage + d.stun_unknown_ufrag + d.unknown_source + d.refused
}

fn drops(e: &MediaEngine) -> Drops {
    let d = &e.counters().demux;
    Drops {
        garbage: d.garbage.load(Ordering::Relaxed),
        stun_unknown_ufrag: d.stun_unknown_ufrag.load(Ordering::Relaxed),
        unknown_source: d.unknown_source.load(Ordering::Relaxed),
        refused: d.refused.load(Ordering::Relaxed),
    }
}

#[tokio::test]
async fn strangers_datagrams_are_counted_and_disturb_no_call() {
    bounded(async {
        let b = Bench::new();
        let gw = &b.gw;
        let p = b.pair(&[Codec::Pcmu, Codec::Pcma]).await;
        echoes(&p.pbx, 0, 1, 0, 5).await;
        let port = gw.shared_ports()[0];
        let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("stranger");
        // The call's real credentials' names, but not its password.
        let real = format!("{}:{}", ice_ufrag(&p.offer), ice_ufrag(&p.answer));
        let before = drops(gw);
        let delivered = gw.counters().demux.delivered.load(Ordering::Relaxed);

        // 50 rounds: 40 strangers' datagrams, then one audio packet of the call.
        let mut sent = Vec::new();
        for round in 0..50u16 {
            for k in 0..40u16 {
                let i = round * 40 + k;
                let d = match k % 5 {
                    0 => garbage(i),
                    1 if k < 30 => stun_request(&format!("nobody:{i}")),
                    1 => stun_response(),
                    2 => stun_request(&real),
                    3 => dtls_client_hello(i),
                    _ => srtp_like(i),
                };
                stranger.send_to(&d, port).await.expect("stranger sends");
            }
            let pl = payload(4, round);
            p.pbx
                .send(&rtp(0, false, 100 + round, 160 * u32::from(round), &pl))
                .await
                .expect("send");
            sent.push(pl);
            // One round in flight at most: the flood never outgrows a socket buffer (the shared
            // port asks for 4 MiB, but net.core.rmem_max may grant far less), so any loss or
            // miscount is the engine's.
            let counted = 40 * u64::from(round + 1);
            until("the round counted", || {
                total(drops(gw)) - total(before) >= counted
            })
            .await;
        }
        let want = Drops {
            garbage: before.garbage + 400,
            stun_unknown_ufrag: before.stun_unknown_ufrag + 400,
            unknown_source: before.unknown_source + 800,
            refused: before.refused + 400,
        };
        until("every stranger's datagram counted", || drops(gw) == want).await;
        let got = receive(&p.pbx, sent.len(), WAIT).await;
        let payloads: Vec<&Vec<u8>> = got.iter().map(|g| &g.payload).collect();
        assert_eq!(
            payloads,
            sent.iter().collect::<Vec<_>>(),
            "echo during the flood"
        );
        // Nothing answered a stranger (no reflection, no amplification), nothing more counted.
        let mut buf = [0u8; 1500];
        let r = timeout(QUIET, stranger.recv_from(&mut buf)).await;
        assert!(r.is_err(), "the engine answered a stranger: {r:?}");
        assert_eq!(drops(gw), want);
        assert!(
            gw.counters().demux.delivered.load(Ordering::Relaxed) >= delivered + 50,
            "the call's own datagrams were delivered"
        );
        assert_eq!(RelayCounters::get(&p.gw.counters().dropped), 0);
        p.close();
    })
    .await;
}

#[tokio::test]
async fn twenty_concurrent_calls_echo_without_cross_talk() {
    bounded(async {
        // Two media threads: calls are sharded over two shared ports.
        let b = Bench::with(2, true);
        assert_eq!(b.gw.shared_ports().len(), 2);
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for tag in 0..20u8 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let p = b.pair(&[Codec::Pcmu, Codec::Pcma]).await;
                let sent = send_audio(&p.pbx, 0, tag, 0, 25).await;
                // Collect for a moment beyond the 25 echoes: a stray packet would show too.
                let mut got = receive(&p.pbx, sent.len(), WAIT).await;
                got.extend(receive(&p.pbx, 1, Duration::from_millis(100)).await);
                p.close();
                (tag, sent, got, host_candidate(&p.offer))
            }));
        }
        let mut ports = std::collections::HashSet::new();
        for t in tasks {
            let (tag, sent, got, port) = t.await.expect("call task");
            ports.insert(port);
            let foreign: Vec<u8> = got
                .iter()
                .map(|g| g.payload[0])
                .filter(|t| *t != tag)
                .collect();
            assert!(foreign.is_empty(), "call {tag} heard calls {foreign:?}");
            let payloads: Vec<&Vec<u8>> = got.iter().map(|g| &g.payload).collect();
            assert_eq!(payloads, sent.iter().collect::<Vec<_>>(), "call {tag}");
        }
        assert_eq!(ports.len(), 2, "both threads carried calls");
        eprintln!("20 calls set up and echoed in {:?}", t0.elapsed());
    })
    .await;
}

#[tokio::test]
async fn closing_a_call_removes_its_routing_and_its_count() {
    bounded(async {
        let b = Bench::new();
        let (gw, far) = (&b.gw, &b.far);
        let calls = gw.counters().calls.load(Ordering::Relaxed);
        let far_calls = far.counters().calls.load(Ordering::Relaxed);
        let p = b.pair(&[Codec::Pcmu]).await;
        assert_eq!(gw.counters().calls.load(Ordering::Relaxed), calls + 1);
        echoes(&p.pbx, 0, 1, 0, 5).await;

        // The far end goes and a test socket takes over its address, so datagrams can come
        // "from the call's remote".
        let remote = host_candidate(&p.answer);
        p.far.close();
        until("the far end's call gone", || {
            far.counters().calls.load(Ordering::Relaxed) == far_calls
        })
        .await;
        let t0 = Instant::now();
        let impostor = loop {
            match std::net::UdpSocket::bind(remote) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(t0.elapsed() < WAIT, "{remote} not released: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let port = gw.shared_ports()[0];
        let send5 = |first: u16| {
            for i in first..first + 5 {
                impostor.send_to(&srtp_like(i), port).expect("send");
            }
        };
        let reached = |e: &MediaEngine| {
            let d = &e.counters().demux;
            d.delivered.load(Ordering::Relaxed) + d.refused.load(Ordering::Relaxed)
        };

        // While the call lives, its remote's datagrams reach it (its SRTP refuses them).
        let (before, seen) = (drops(gw), reached(gw));
        send5(0);
        until("the live call reached", || reached(gw) == seen + 5).await;
        assert_eq!(drops(gw).unknown_source, before.unknown_source);

        p.gw.close();
        until("the call count back", || {
            gw.counters().calls.load(Ordering::Relaxed) == calls
        })
        .await;
        let (before, seen) = (drops(gw), reached(gw));
        send5(5);
        until("the former remote's datagrams counted", || {
            drops(gw).unknown_source == before.unknown_source + 5
        })
        .await;
        assert_eq!(reached(gw), seen, "a closed call was reached");
        // Closing again (and the drop) neither fails nor counts twice; the call is gone.
        p.gw.close();
        let r = p.gw.create_reoffer(Direction::SendRecv).await;
        assert!(matches!(r, Err(PeerError::EngineGone)), "{r:?}");
        drop(p);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(gw.counters().calls.load(Ordering::Relaxed), calls);
    })
    .await;
}

#[tokio::test]
async fn a_closed_calls_remote_address_is_free_for_the_next_call() {
    bounded(async {
        // A far end on one shared port, as a media server may be: every call to it has the
        // same remote address, which a shared port can route to one live call only. A closed
        // call must give it up, or the next call's media from there goes to the dead one.
        let b = Bench::with(1, false);
        let (gw, far) = (&b.gw, &b.far);
        for round in 0..3u16 {
            let p = b.pair(&[Codec::Pcmu]).await;
            assert_eq!(host_candidate(&p.answer), far.shared_ports()[0]);
            echoes(&p.pbx, 0, 1, round * 10, 10).await;
            p.close();
        }
        until("every call gone", || {
            gw.counters().calls.load(Ordering::Relaxed) == 0
                && far.counters().calls.load(Ordering::Relaxed) == 0
        })
        .await;
    })
    .await;
}
