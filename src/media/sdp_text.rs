//! SDP text helpers for the WebRTC leg: reading the direction, codecs, DTLS role and mid of
//! the first audio section and the remote's candidate addresses, and finishing str0m's local descriptions for a complete,
//! non-trickle exchange (no `a=ice-options:trickle`, an `a=end-of-candidates`).

use std::net::{IpAddr, SocketAddr};

#[cfg(test)]
use super::AudioFormat;
use super::{Codec, Direction};

/// Direction attribute of the first audio section (else session level; default sendrecv).
pub fn sdp_audio_direction(sdp: &str) -> Direction {
    let parse = |l: &str| match l.trim_end() {
        "a=sendrecv" => Some(Direction::SendRecv),
        "a=sendonly" => Some(Direction::SendOnly),
        "a=recvonly" => Some(Direction::RecvOnly),
        "a=inactive" => Some(Direction::Inactive),
        _ => None,
    };
    let mut session = None;
    let mut in_audio = false;
    let mut seen_media = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            if in_audio {
                break;
            }
            in_audio = line.starts_with("m=audio ");
            seen_media = true;
        } else if let Some(d) = parse(line) {
            if in_audio {
                return d;
            } else if !seen_media {
                session = Some(d);
            }
        }
    }
    session.unwrap_or(Direction::SendRecv)
}

#[cfg(test)]
/// First G.711 codec in the first `m=audio` line of an SDP (static PTs or rtpmap names).
pub(super) fn first_g711_in_sdp(sdp: &str) -> Option<Codec> {
    g711_in_sdp(sdp).into_iter().next()
}

/// The G.711 codecs of an SDP's first audio section, in its order, without repeats.
pub fn g711_in_sdp(sdp: &str) -> Vec<Codec> {
    let Some(mline) = sdp.lines().find(|l| l.starts_with("m=audio ")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in mline.split_whitespace().skip(3).filter_map(|pt| match pt {
        "0" => Some(Codec::Pcmu),
        "8" => Some(Codec::Pcma),
        _ => {
            let prefix = format!("a=rtpmap:{pt} ");
            let name = sdp
                .lines()
                .find_map(|l| l.trim_end().strip_prefix(prefix.as_str()))?;
            Codec::from_encoding_name(name.split('/').next()?)
        }
    }) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
/// The format an SDP's first audio section names: its first G.711 codec and the PT of its
/// `telephone-event/8000`.
pub fn format_in_sdp(sdp: &str) -> Option<AudioFormat> {
    let codec = first_g711_in_sdp(sdp)?;
    let telephone_event_pt = sdp.lines().find_map(|l| {
        let (pt, name) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        name.trim_end()
            .eq_ignore_ascii_case("telephone-event/8000")
            .then(|| pt.parse().ok())?
    });
    Some(AudioFormat {
        codec,
        telephone_event_pt,
    })
}

/// The `a=setup:` value of the first audio section (or the session), lower-cased.
pub fn setup_role(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=setup:"))
        .map(|v| v.trim().to_ascii_lowercase())
}

/// The `a=mid:` of the first audio section.
pub fn first_audio_mid(sdp: &str) -> Option<String> {
    let mut in_audio = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            if in_audio {
                return None;
            }
            in_audio = line.starts_with("m=audio ");
        } else if in_audio {
            if let Some(mid) = line.trim_end().strip_prefix("a=mid:") {
                return Some(mid.trim().to_owned());
            }
        }
    }
    None
}

/// str0m writes trickle-style descriptions; ours are complete when sent (every candidate
/// gathered), so `a=ice-options:trickle` goes and each media section ends its candidates.
/// `a=extmap-allow-mixed` goes too: no header extension is offered.
pub fn finish_local_sdp(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    let mut pending_end = false;
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end();
        // No header extensions are negotiated, so neither is mixing them.
        if matches!(
            bare,
            "a=ice-options:trickle" | "a=end-of-candidates" | "a=extmap-allow-mixed"
        ) {
            continue;
        }
        if bare.starts_with("m=") && pending_end {
            out.push_str("a=end-of-candidates\r\n");
        }
        if bare.starts_with("m=") {
            pending_end = true;
        }
        out.push_str(bare);
        out.push_str("\r\n");
    }
    if pending_end {
        out.push_str("a=end-of-candidates\r\n");
    }
    out
}

/// The `ip port` of every `a=candidate` line of an SDP: where the remote may send from (the
/// TURN permissions to install before ICE starts).
pub fn remote_candidate_addrs(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        let Some(c) = line.trim_end().strip_prefix("a=candidate:") else {
            continue;
        };
        // foundation component transport priority address port typ ...
        let f: Vec<&str> = c.split_whitespace().collect();
        if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
            continue;
        }
        if let (Ok(ip), Ok(port)) = (f[4].parse::<IpAddr>(), f[5].parse::<u16>()) {
            let a = SocketAddr::new(ip, port);
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=sendrecv\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 96 8 0 101\r\na=rtpmap:96 PCMA/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";

    #[test]
    fn direction_from_audio_section_then_session() {
        assert_eq!(sdp_audio_direction(SDP), Direction::SendOnly);
        assert_eq!(
            sdp_audio_direction(&SDP.replace("a=sendonly\r\n", "")),
            Direction::SendRecv
        );
        let session_inactive = SDP
            .replace("a=sendrecv", "a=inactive")
            .replace("a=sendonly\r\n", "");
        assert_eq!(sdp_audio_direction(&session_inactive), Direction::Inactive);
        assert_eq!(sdp_audio_direction("v=0\r\n"), Direction::SendRecv);
    }

    #[test]
    fn first_g711_uses_rtpmap_names_and_static_pts() {
        assert_eq!(first_g711_in_sdp(SDP), Some(Codec::Pcma));
        let pcmu = "m=audio 9 RTP/SAVPF 101 0\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(first_g711_in_sdp(pcmu), Some(Codec::Pcmu));
        assert_eq!(first_g711_in_sdp("m=audio 9 RTP/SAVPF 111\r\n"), None);
        assert_eq!(first_g711_in_sdp("m=video 9 RTP/SAVPF 0\r\n"), None);
    }

    #[test]
    fn local_sdp_is_complete_and_not_trickle() {
        let raw = "v=0\r\na=ice-options:trickle\r\nm=audio 9 X 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\n";
        let done = finish_local_sdp(raw);
        assert!(!done.contains("trickle"));
        assert!(
            done.ends_with("a=candidate:1 1 udp 1 127.0.0.1 5 typ host\r\na=end-of-candidates\r\n")
        );
        assert_eq!(first_audio_mid(&done).as_deref(), Some("0"));
        assert_eq!(
            setup_role("a=setup:ACTPASS\r\n").as_deref(),
            Some("actpass")
        );
    }

    #[test]
    fn remote_candidates_are_read() {
        let sdp = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
                   a=candidate:2 1 UDP 1 192.0.2.1 6000 typ relay raddr 0.0.0.0 rport 0\r\n\
                   a=candidate:3 1 tcp 1 192.0.2.2 7000 typ host tcptype passive\r\n\
                   a=candidate:bad\r\n";
        assert_eq!(
            remote_candidate_addrs(sdp),
            vec![
                "127.0.0.1:5000".parse().unwrap(),
                "192.0.2.1:6000".parse().unwrap()
            ]
        );
    }

    #[test]
    fn format_names_event_pt() {
        let f = format_in_sdp(SDP).expect("format");
        assert_eq!(f.codec, Codec::Pcma);
        assert_eq!(f.telephone_event_pt, Some(101));
    }
}
