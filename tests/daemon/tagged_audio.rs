//! Audio a test can recognise packet by packet: PCMA streams whose every payload names its
//! stream and its place in it, written as pcap files for sipp to play, and sipp scenarios
//! (tests/sipp/call_echo.xml with another pcap and hold time) that play them, one stream per
//! call. A shifted, missing, duplicated or foreign packet then shows in the echo.

#![allow(dead_code)]

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::call_support::G711A_PCAP;
use crate::rtp_capture::Rtp;
use crate::sipp::sipp_dir;

/// 20 ms of PCMA.
pub const PTIME: Duration = Duration::from_millis(20);
const SAMPLES: u32 = 160;

/// `count` PCMA packets of stream `tag`: consecutive sequence numbers and timestamps, one SSRC
/// per stream, and a 160-byte payload that starts with the tag and the index (big-endian u16
/// each), which makes every payload of every stream unique, and goes on with bytes derived
/// from both.
pub fn tagged_stream(tag: u16, count: u16) -> Vec<Rtp> {
    (0..count)
        .map(|i| {
            let mut payload = Vec::with_capacity(SAMPLES as usize);
            payload.extend_from_slice(&tag.to_be_bytes());
            payload.extend_from_slice(&i.to_be_bytes());
            let seed = u32::from(tag)
                .wrapping_mul(7919)
                .wrapping_add(u32::from(i).wrapping_mul(104_729));
            payload.extend((4..SAMPLES).map(|j| (seed.wrapping_mul(j + 1) >> 3) as u8));
            Rtp {
                payload_type: 8,
                marker: i == 0,
                sequence: 1000u16.wrapping_add(i),
                timestamp: 8000 + u32::from(i) * SAMPLES,
                ssrc: 0x7467_0000 | u32::from(tag),
                payload,
            }
        })
        .collect()
}

/// (stream tag, index) of a payload made by [`tagged_stream`], if it is one.
pub fn tag_of(payload: &[u8]) -> Option<(u16, u16)> {
    let b = payload.get(..4)?;
    (payload.len() == SAMPLES as usize).then(|| {
        (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        )
    })
}

/// Writes `packets` as a classic pcap (Ethernet, IPv4, UDP) that sipp's `play_pcap_audio`
/// plays: each sent at the time its RTP timestamp says, so a packet left out is a gap in time
/// as well as in sequence numbers.
pub fn write_pcap(path: &Path, packets: &[Rtp]) {
    let first_ts = packets.first().map_or(0, |p| p.timestamp);
    let mut out = Vec::new();
    // magic, version 2.4, zone, sigfigs, snaplen, link type 1 (Ethernet)
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for p in packets {
        let rtp = rtp_bytes(p);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        // ports and checksum: sipp puts in its own
        frame.extend_from_slice(&[0x13, 0x88, 0x13, 0x88]);
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let at = Duration::from_micros(
            u64::from(p.timestamp.wrapping_sub(first_ts)) * 1_000_000 / u64::from(8000u32),
        );
        out.extend_from_slice(&(1_000_000_000u32 + at.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&at.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn rtp_bytes(p: &Rtp) -> Vec<u8> {
    let mut b = vec![0x80, p.payload_type | if p.marker { 0x80 } else { 0 }];
    b.extend_from_slice(&p.sequence.to_be_bytes());
    b.extend_from_slice(&p.timestamp.to_be_bytes());
    b.extend_from_slice(&p.ssrc.to_be_bytes());
    b.extend_from_slice(&p.payload);
    b
}

/// A copy of tests/sipp/call_echo.xml in `dir` that plays `pcaps[n - 1]` in call number `n`
/// (sipp's `-m`/`-l`/`-r` start calls 1, 2, ...) instead of g711a.pcap, then holds the call
/// `hold` before its BYE. With more than one pcap, call `n` offers and plays from its own port,
/// [`per_call_port`]; with one, from sipp's media port. Returns the scenario's path.
pub fn echo_scenario(dir: &Path, pcaps: &[PathBuf], hold: Duration) -> PathBuf {
    assert!(!pcaps.is_empty(), "at least one pcap");
    let template = std::fs::read_to_string(sipp_dir().join("call_echo.xml"))
        .expect("read tests/sipp/call_echo.xml");
    let play = format!(
        "  <nop>\n    <action>\n      <exec play_pcap_audio=\"{G711A_PCAP}\"/>\n    </action>\n  </nop>\n"
    );
    let pause = "<pause milliseconds=\"7800\"/>";
    let m_line = "m=audio [media_port] RTP/AVP";
    for (needle, times) in [(play.as_str(), 1), (pause, 1), (m_line, 2)] {
        assert_eq!(
            template.matches(needle).count(),
            times,
            "call_echo.xml changed: expected {needle:?} {times} time(s)"
        );
    }
    let scenario = if pcaps.len() == 1 {
        template.replace(
            &play,
            &format!(
                "  <nop>\n    <action>\n      <exec play_pcap_audio=\"{}\"/>\n    </action>\n  </nop>\n",
                pcaps[0].display()
            ),
        )
    } else {
        template
            .replace(&play, &per_call_plays(pcaps))
            .replace(m_line, "m=audio [auto_media_port+4] RTP/AVP")
    };
    let scenario = scenario.replace(
        pause,
        &format!("<pause milliseconds=\"{}\"/>", hold.as_millis()),
    );
    let stem = pcaps[0]
        .file_stem()
        .map_or("echo".into(), |s| s.to_string_lossy());
    let path = dir.join(format!("call_echo_{stem}_{}.xml", pcaps.len()));
    std::fs::write(&path, scenario).expect("write the scenario");
    path
}

/// `streams` written as `{name}1.pcap`, `{name}2.pcap`, ... in `dir`, and the
/// [`echo_scenario`] that plays them, one a call.
pub fn streams_scenario(dir: &Path, name: &str, streams: &[Vec<Rtp>], hold: Duration) -> PathBuf {
    let pcaps: Vec<PathBuf> = (1..)
        .zip(streams)
        .map(|(n, s)| {
            let p = dir.join(format!("{name}{n}.pcap"));
            write_pcap(&p, s);
            p
        })
        .collect();
    echo_scenario(dir, &pcaps, hold)
}

/// sipp loads every pcap when it reads the scenario and has no per-call file name, so the
/// call number picks one: a test per number, then a jump to its play.
fn per_call_plays(pcaps: &[PathBuf]) -> String {
    let mut s = String::from(
        "  <nop>\n    <action>\n      <assignstr assign_to=\"callno\" value=\"[call_number]\"/>\n      \
         <todouble assign_to=\"n\" variable=\"callno\"/>\n",
    );
    for i in 1..=pcaps.len() {
        s.push_str(&format!(
            "      <test assign_to=\"is{i}\" variable=\"n\" compare=\"equal\" value=\"{i}\"/>\n"
        ));
    }
    s.push_str("    </action>\n  </nop>\n");
    for i in 1..=pcaps.len() {
        s.push_str(&format!("  <nop next=\"play{i}\" test=\"is{i}\"/>\n"));
    }
    // a call number without a pcap plays nothing (and its echo check fails)
    s.push_str("  <nop next=\"played\"/>\n");
    for (i, pcap) in pcaps.iter().enumerate() {
        s.push_str(&format!(
            "  <label id=\"play{}\"/>\n  <nop next=\"played\">\n    <action>\n      \
             <exec play_pcap_audio=\"{}\"/>\n    </action>\n  </nop>\n",
            i + 1,
            pcap.display()
        ));
    }
    s.push_str("  <label id=\"played\"/>\n");
    s
}

/// The port call `n` (from 1) of an [`echo_scenario`] with several pcaps offers and plays
/// from: sipp's `[auto_media_port]` is its media port + 4 × (n - 1), and the scenario adds 4 to
/// stay clear of the media port and the one 2 above it, which sipp binds itself.
pub fn per_call_port(media_port: u16, n: u16) -> u16 {
    media_port + 4 * n
}

/// Sockets on the per-call ports of `calls` calls, read on a thread until [`PerCallEcho::finish`]
/// or `max`: what the daemon sends to each call's PBX side, kept apart by call. Holding the
/// ports also keeps the daemon's packets from meeting ICMP port-unreachable (sipp binds only
/// its media port; it plays the pcaps through a raw socket).
pub struct PerCallEcho {
    /// sipp's `-mp`: the ports it binds itself (this one and 2 above it) are free.
    pub media_port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Vec<Received>>>>,
}

/// A datagram one call's port received.
#[derive(Debug, Clone)]
pub struct Received {
    pub from_port: u16,
    pub payload: Vec<u8>,
}

impl PerCallEcho {
    /// Finds a media port whose per-call ports for `calls` calls can all be bound (they are
    /// bound here), and whose own ports are free for sipp.
    pub fn bind(calls: u16, max: Duration) -> PerCallEcho {
        let lo = Ipv4Addr::LOCALHOST;
        let span = 4 * calls + 4;
        for _ in 0..100 {
            // an even port in the kernel's ephemeral range, with room for the span
            let media_port =
                (33000 + (rand::random::<u64>() % u64::from(60000 - 33000 - span)) as u16) & !1;
            let sipp_own = [media_port, media_port + 1, media_port + 2]
                .iter()
                .all(|&p| UdpSocket::bind((lo, p)).is_ok());
            if !sipp_own {
                continue;
            }
            let sockets: Vec<UdpSocket> = (1..=calls)
                .map_while(|n| UdpSocket::bind((lo, per_call_port(media_port, n))).ok())
                .collect();
            if sockets.len() != usize::from(calls) {
                continue;
            }
            for s in &sockets {
                s.set_nonblocking(true).expect("non-blocking socket");
            }
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let thread = std::thread::spawn(move || read_all(&sockets, &stop2, max));
            return PerCallEcho {
                media_port,
                stop,
                thread: Some(thread),
            };
        }
        panic!("no free run of {span} loopback ports for {calls} calls");
    }

    /// Stops reading; what each call's port received, call 1 first.
    pub fn finish(mut self) -> Vec<Vec<Received>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("reader thread"))
            .unwrap_or_default()
    }
}

impl Drop for PerCallEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_all(sockets: &[UdpSocket], stop: &AtomicBool, max: Duration) -> Vec<Vec<Received>> {
    let started = Instant::now();
    let mut got: Vec<Vec<Received>> = vec![Vec::new(); sockets.len()];
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < max {
        let mut any = false;
        for (s, out) in sockets.iter().zip(got.iter_mut()) {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                any = true;
                out.push(Received {
                    from_port: from.port(),
                    payload: buf[..n].to_vec(),
                });
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    got
}

#[test]
fn tagged_streams_are_distinct_and_survive_a_pcap_round_trip() {
    let a = tagged_stream(1, 300);
    let b = tagged_stream(2, 300);
    let mut all: Vec<&[u8]> = a.iter().chain(&b).map(|p| p.payload.as_slice()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 600, "every payload of both streams differs");
    assert_eq!(tag_of(&a[299].payload), Some((1, 299)));
    assert_eq!(tag_of(&b[0].payload), Some((2, 0)));
    assert_eq!(tag_of(&[0u8; 12]), None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.pcap");
    // every 10th left out: the gap stays in sequence numbers and in time
    let lossy: Vec<Rtp> = a
        .iter()
        .filter(|p| tag_of(&p.payload).unwrap().1 % 10 != 9)
        .cloned()
        .collect();
    write_pcap(&path, &lossy);
    let read = crate::rtp_capture::read_pcap(&path).unwrap();
    let back: Vec<Rtp> = read.iter().filter_map(|d| Rtp::parse(&d.payload)).collect();
    assert_eq!(back, lossy);
    assert_eq!(read[8].at, Duration::from_millis(160));
    assert_eq!(
        read[9].at,
        Duration::from_millis(200),
        "index 9 left out: 10 comes 40 ms later"
    );
}

#[test]
fn echo_scenario_plays_one_pcap_per_call_number() {
    let dir = tempfile::tempdir().unwrap();
    let pcaps: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("{i}.pcap")))
        .collect();
    let one = std::fs::read_to_string(echo_scenario(
        dir.path(),
        &pcaps[..1],
        Duration::from_millis(1500),
    ))
    .unwrap();
    assert!(one.contains(&format!("play_pcap_audio=\"{}\"", pcaps[0].display())));
    assert!(one.contains("<pause milliseconds=\"1500\"/>"));
    assert!(!one.contains(&format!("play_pcap_audio=\"{G711A_PCAP}\"")));
    let many =
        std::fs::read_to_string(echo_scenario(dir.path(), &pcaps, Duration::from_secs(2))).unwrap();
    assert_eq!(many.matches("[auto_media_port+4]").count(), 2);
    for (i, p) in pcaps.iter().enumerate() {
        let play = many
            .find(&format!("<label id=\"play{}\"/>", i + 1))
            .unwrap();
        let file = many
            .find(&format!("play_pcap_audio=\"{}\"", p.display()))
            .unwrap();
        assert!(file > play, "pcap {} is played under its label", i + 1);
    }
}
