//! Fuzz target `pbx_sdp`: the PBX SDP parser and the codec negotiation; the SDP we build from
//! what it read must parse again and mean the same.

use crate::media::pbx_sdp::{self, LocalSdp, MediaLine, Negotiated};
use crate::media::{Codec, Direction, TELEPHONE_EVENT_PT};

/// A PBX's SDP: parse, negotiate, and build our answer and our offer from it; both must parse
/// again and say what we meant.
pub fn pbx_sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(offer) = pbx_sdp::parse(&text) else {
        return;
    };
    assert!(!offer.formats.is_empty());
    assert!(offer.formats.iter().all(|f| f.pt < 128));
    let negotiated = pbx_sdp::negotiate(&offer);
    let codecs = pbx_sdp::codecs_in_order(&offer);
    assert!(codecs.len() <= 2);
    assert_eq!(negotiated.map(|n| n.codec), codecs.first().copied());
    let event_pt = pbx_sdp::telephone_event_pt(&offer);
    if let Some(n) = negotiated {
        assert_eq!(n.event_pt, event_pt);
    }
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let media = crate::call::pbx_leg::pbx_media(&offer, codec);
        assert_eq!(media.is_some(), codecs.contains(&codec));
        if let Some(m) = media {
            assert!(m
                .addr
                .is_none_or(|a| a.port() != 0 && !a.ip().is_unspecified()));
        }
    }
    let direction = pbx_sdp::answer_direction(offer.effective_direction());
    // Our SDP carries the PBX's address family (and address): both families get rendered.
    let mut local = LocalSdp::with_session_id(offer.addr, u64::from(offer.port) << 20);

    if let Some(n) = negotiated {
        for carrier_events in [true, false] {
            let line = MediaLine {
                codec: n.codec,
                audio_pt: n.audio_pt,
                event_pt: n.event_pt.filter(|_| carrier_events),
                direction,
                alternative: None,
            };
            let sdp = render_checked(&mut local, offer.port, &line);
            let back = reparse(&sdp);
            assert_eq!(back.addr, offer.addr, "{sdp}");
            assert_eq!(back.port, offer.port, "{sdp}");
            assert_eq!(back.direction, direction, "{sdp}");
            assert_eq!(
                pbx_sdp::negotiate(&back),
                Some(Negotiated {
                    codec: n.codec,
                    audio_pt: n.audio_pt,
                    event_pt: line.event_pt,
                }),
                "{sdp}"
            );
        }
    }
    if let Some(&first) = codecs.first() {
        // Our offer (an offerless INVITE, a re-offer): static types, the PBX's codec order.
        for direction in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            let line = MediaLine {
                codec: first,
                audio_pt: first.payload_type(),
                event_pt: event_pt.map(|_| TELEPHONE_EVENT_PT),
                direction,
                alternative: codecs.get(1).copied(),
            };
            let sdp = render_checked(&mut local, offer.port, &line);
            let back = reparse(&sdp);
            assert_eq!(back.direction, direction, "{sdp}");
            assert_eq!(pbx_sdp::codecs_in_order(&back), codecs, "{sdp}");
            assert_eq!(pbx_sdp::telephone_event_pt(&back), line.event_pt, "{sdp}");
        }
    }
}

/// Renders twice (unchanged, then changed) and checks the `o=` version rule; returns the SDP.
fn render_checked(local: &mut LocalSdp, port: u16, line: &MediaLine) -> String {
    let before = local.version();
    let first = local.render(port, line, false);
    assert_eq!(
        local.version(),
        before,
        "an unchanged SDP bumped the version"
    );
    let sdp = local.render(port, line, true);
    assert_eq!(local.version(), before.wrapping_add(1));
    assert_eq!(first.replace(&format!(" {before} IN"), ""), {
        let v = local.version();
        sdp.replace(&format!(" {v} IN"), "")
    });
    assert!(
        sdp.contains(&format!("m=audio {port} RTP/AVP ")),
        "port lost: {sdp}"
    );
    sdp
}

fn reparse(sdp: &str) -> pbx_sdp::AudioOffer {
    pbx_sdp::parse(sdp).unwrap_or_else(|e| panic!("our own SDP does not parse ({e}):\n{sdp}"))
}
