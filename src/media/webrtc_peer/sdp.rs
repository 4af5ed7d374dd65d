//! SDP text helpers and the codec parameters the media engine is given.

use rtc::peer_connection::configuration::media_engine::MIME_TYPE_TELEPHONE_EVENT;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters};

use super::{AudioFormat, Codec, Direction};

pub(super) fn g711(codec: Codec) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: codec.mime().to_owned(),
            clock_rate: 8000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: Vec::new(),
        },
        payload_type: codec.payload_type(),
    }
}

pub(super) fn telephone_event(pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
            clock_rate: 8000,
            channels: 0,
            sdp_fmtp_line: "0-16".to_owned(),
            rtcp_feedback: Vec::new(),
        },
        payload_type: pt,
    }
}

/// Direction attribute of the first audio section (else session level; default sendrecv).
pub(super) fn sdp_audio_direction(sdp: &str) -> Direction {
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
            let name = name.split('/').next()?;
            Codec::from_mime(&format!("audio/{name}"))
        }
    }) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The format an SDP's first audio section names: its first G.711 codec and the PT of its
/// `telephone-event/8000`.
pub(super) fn format_in_sdp(sdp: &str) -> Option<AudioFormat> {
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
    fn format_names_event_pt() {
        let f = format_in_sdp(SDP).expect("format");
        assert_eq!(f.codec, Codec::Pcma);
        assert_eq!(f.telephone_event_pt, Some(101));
    }
}
