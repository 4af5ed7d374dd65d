use super::*;
use std::net::Ipv6Addr;

/// A 3CX V18 style offer: its usual codec list, RFC 4733 at 101, CRLF line ends.
const THREECX: &str = "v=0\r\n\
o=3cxPS 98765 12345 IN IP4 192.168.1.20\r\n\
s=3cxPS Audio call\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 7012 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n";

/// An Asterisk 20 (chan_pjsip) style offer with ICE on a plain RTP/AVP stream, rtcp-mux and a
/// dynamic telephone-event type; LF line ends as some proxies rewrite them.
const ASTERISK: &str = "v=0\n\
o=- 1672531200 1672531202 IN IP4 10.0.0.5\n\
s=Asterisk\n\
c=IN IP4 10.0.0.5\n\
t=0 0\n\
m=audio 14562 RTP/AVP 8 0 3 96\n\
a=ice-ufrag:5b1e0a3c\n\
a=ice-pwd:2f6c1a7e4d9b08c35e6f7a1b\n\
a=candidate:Ha00005 1 UDP 2130706431 10.0.0.5 14562 typ host\n\
a=candidate:Ha00005 2 UDP 2130706430 10.0.0.5 14563 typ host\n\
a=rtcp:14563\n\
a=rtcp-mux\n\
a=rtpmap:8 PCMA/8000\n\
a=rtpmap:0 PCMU/8000\n\
a=rtpmap:3 GSM/8000\n\
a=rtpmap:96 telephone-event/8000\n\
a=fmtp:96 0-16\n\
a=ptime:20\n\
a=maxptime:150\n\
a=sendrecv\n";

fn body(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn threecx_offer() {
    let offer = parse(THREECX).unwrap();
    assert_eq!(offer.addr, ip("192.168.1.20"));
    assert_eq!(offer.port, 7012);
    assert_eq!(
        offer.formats.iter().map(|f| f.pt).collect::<Vec<_>>(),
        [0, 8, 9, 18, 101]
    );
    assert_eq!(offer.formats[3].encoding, "G729");
    assert_eq!(offer.formats[3].fmtp.as_deref(), Some("annexb=no"));
    assert_eq!(offer.formats[4].encoding, "telephone-event");
    assert_eq!(offer.formats[4].fmtp.as_deref(), Some("0-16"));
    assert_eq!(offer.direction, Direction::SendRecv);
    assert!(!offer.hold_by_address);
    assert_eq!(offer.ptime, None);
    assert_eq!(
        negotiate(&offer),
        Some(Negotiated {
            codec: Codec::Pcmu,
            audio_pt: 0,
            event_pt: Some(101)
        })
    );
    assert_eq!(codecs_in_order(&offer), [Codec::Pcmu, Codec::Pcma]);
}

#[test]
fn asterisk_offer_with_ice_attributes_and_dynamic_event_type() {
    let offer = parse(ASTERISK).unwrap();
    assert_eq!(offer.addr, ip("10.0.0.5"));
    assert_eq!(offer.port, 14562);
    assert_eq!(offer.ptime, Some(20));
    assert_eq!(offer.formats.len(), 4, "ICE lines add no formats");
    // PCMA first: the PBX's preference wins.
    assert_eq!(
        negotiate(&offer),
        Some(Negotiated {
            codec: Codec::Pcma,
            audio_pt: 8,
            event_pt: Some(96)
        })
    );
    assert_eq!(codecs_in_order(&offer), [Codec::Pcma, Codec::Pcmu]);
}

#[test]
fn rtp_avpf_is_plain_enough() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVPF 0",
    ]);
    assert_eq!(parse(&sdp).unwrap().port, 4000);
}

#[test]
fn secure_transports_are_refused() {
    for proto in ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF"] {
        let m = format!("m=audio 4000 {proto} 0 8");
        let sdp = body(&[
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            &m,
        ]);
        assert_eq!(
            parse(&sdp),
            Err(SdpError::UnsupportedTransport(proto.to_owned())),
            "{proto}"
        );
    }
}

#[test]
fn no_audio_line() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=video 5000 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ]);
    assert_eq!(parse(&sdp), Err(SdpError::NoAudio));
    assert_eq!(parse("v=0\r\n"), Err(SdpError::NoAudio));
}

#[test]
fn missing_connection_line() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
    ]);
    assert_eq!(parse(&sdp), Err(SdpError::MissingConnection));
}

#[test]
fn connection_of_another_media_section_does_not_count() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "t=0 0",
        "m=video 5000 RTP/AVP 96",
        "c=IN IP4 10.0.0.9",
        "m=audio 4000 RTP/AVP 0",
    ]);
    assert_eq!(parse(&sdp), Err(SdpError::MissingConnection));
}

#[test]
fn only_g729_negotiates_nothing() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 18 101",
        "a=rtpmap:18 G729/8000",
        "a=rtpmap:101 telephone-event/8000",
    ]);
    let offer = parse(&sdp).unwrap();
    assert_eq!(negotiate(&offer), None);
    assert!(codecs_in_order(&offer).is_empty());
}

#[test]
fn static_types_without_rtpmap_are_implied() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 18 8 0 97",
    ]);
    let offer = parse(&sdp).unwrap();
    let names: Vec<_> = offer
        .formats
        .iter()
        .map(|f| (f.pt, f.encoding.as_str(), f.clock))
        .collect();
    assert_eq!(
        names,
        [
            (18, "G729", 8000),
            (8, "PCMA", 8000),
            (0, "PCMU", 8000),
            (97, "", 0)
        ]
    );
    let n = negotiate(&offer).unwrap();
    assert_eq!((n.codec, n.audio_pt, n.event_pt), (Codec::Pcma, 8, None));
}

#[test]
fn dynamic_pcmu_and_case_insensitive_names() {
    // An rtpmap may give G.711 a dynamic number; we must send with the PBX's number.
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 110 120",
        "a=rtpmap:110 pcmu/8000",
        "a=rtpmap:120 Telephone-Event/8000",
    ]);
    let n = negotiate(&parse(&sdp).unwrap()).unwrap();
    assert_eq!(
        (n.codec, n.audio_pt, n.event_pt),
        (Codec::Pcmu, 110, Some(120))
    );
}

#[test]
fn wideband_telephone_event_and_stereo_g711_are_not_ours() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 111 0 102",
        "a=rtpmap:111 PCMU/8000/2",
        "a=rtpmap:102 telephone-event/16000",
    ]);
    let n = negotiate(&parse(&sdp).unwrap()).unwrap();
    assert_eq!((n.codec, n.audio_pt, n.event_pt), (Codec::Pcmu, 0, None));
}

#[test]
fn codecs_in_order_deduplicates() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 8 110 0",
        "a=rtpmap:110 PCMA/8000",
    ]);
    assert_eq!(
        codecs_in_order(&parse(&sdp).unwrap()),
        [Codec::Pcma, Codec::Pcmu]
    );
}

fn with_direction(session: Option<&str>, media: Option<&str>, addr: &str) -> AudioOffer {
    let c = format!("c=IN IP4 {addr}");
    let mut lines = vec!["v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", c.as_str(), "t=0 0"];
    if let Some(s) = session {
        lines.push(s);
    }
    lines.push("m=audio 4000 RTP/AVP 0");
    if let Some(m) = media {
        lines.push(m);
    }
    parse(&body(&lines)).unwrap()
}

#[test]
fn holds() {
    let o = with_direction(None, Some("a=sendonly"), "10.0.0.1");
    assert_eq!(o.direction, Direction::SendOnly);
    assert_eq!(o.effective_direction(), Direction::SendOnly);
    assert_eq!(
        answer_direction(o.effective_direction()),
        Direction::RecvOnly
    );

    let o = with_direction(None, Some("a=inactive"), "10.0.0.1");
    assert_eq!(o.effective_direction(), Direction::Inactive);
    assert_eq!(
        answer_direction(o.effective_direction()),
        Direction::Inactive
    );

    // RFC 2543 hold: the address says "don't send to me".
    let o = with_direction(None, None, "0.0.0.0");
    assert!(o.hold_by_address);
    assert_eq!(o.addr, ip("0.0.0.0"));
    assert_eq!(o.direction, Direction::SendRecv);
    assert_eq!(o.effective_direction(), Direction::SendOnly);
    let o = with_direction(None, Some("a=recvonly"), "0.0.0.0");
    assert_eq!(o.effective_direction(), Direction::Inactive);
    let o = with_direction(None, Some("a=sendonly"), "0.0.0.0");
    assert_eq!(o.effective_direction(), Direction::SendOnly);
    let o = with_direction(None, Some("a=inactive"), "0.0.0.0");
    assert_eq!(o.effective_direction(), Direction::Inactive);
}

#[test]
fn session_level_direction_and_media_override() {
    let o = with_direction(Some("a=sendonly"), None, "10.0.0.1");
    assert_eq!(o.direction, Direction::SendOnly);
    let o = with_direction(Some("a=sendonly"), Some("a=sendrecv"), "10.0.0.1");
    assert_eq!(o.direction, Direction::SendRecv);
    let o = with_direction(Some("a=inactive"), Some("a=recvonly"), "10.0.0.1");
    assert_eq!(o.direction, Direction::RecvOnly);
}

#[test]
fn media_connection_overrides_session_connection() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 0.0.0.0",
    ]);
    let o = parse(&sdp).unwrap();
    assert_eq!(o.addr, ip("0.0.0.0"));
    assert!(o.hold_by_address);
}

#[test]
fn ipv6() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::5",
        "s=-",
        "c=IN IP6 2001:db8::5",
        "t=0 0",
        "m=audio 4000 RTP/AVP 8",
    ]);
    let o = parse(&sdp).unwrap();
    assert_eq!(
        o.addr,
        IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap())
    );
    assert!(!o.hold_by_address);
}

#[test]
fn connection_family_must_match_and_be_literal() {
    for c in [
        "c=IN IP4 2001:db8::5",
        "c=IN IP6 10.0.0.1",
        "c=IN IP4 pbx.example.com",
        "c=IN IP4",
        "c=ATM NSAP 47.0005",
    ] {
        let sdp = body(&[
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            c,
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
        ]);
        assert!(
            matches!(parse(&sdp), Err(SdpError::BadConnection(_))),
            "{c}"
        );
    }
    // A multicast TTL suffix is syntax, not an error.
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 233.252.0.1/127",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
    ]);
    assert_eq!(parse(&sdp).unwrap().addr, ip("233.252.0.1"));
}

#[test]
fn port_zero_is_a_disabled_stream() {
    let sdp = body(&[
        "v=0",
        "o=- 1 2 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 0 RTP/AVP 0",
    ]);
    assert_eq!(parse(&sdp).unwrap().port, 0);
}

#[test]
fn only_the_first_audio_section_counts() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 8",
        "a=sendonly",
        "m=audio 4002 RTP/AVP 0",
        "a=rtpmap:8 G726-32/8000",
        "a=inactive",
    ]);
    let o = parse(&sdp).unwrap();
    assert_eq!(o.port, 4000);
    assert_eq!(o.formats[0].encoding, "PCMA");
    assert_eq!(o.direction, Direction::SendOnly);
}

#[test]
fn bad_media_lines() {
    for m in [
        "m=audio",
        "m=audio 4000",
        "m=audio 4000 RTP/AVP",
        "m=audio 70000 RTP/AVP 0",
        "m=audio x RTP/AVP 0",
        "m=audio 4000 RTP/AVP 0 abc",
        "m=audio 4000 RTP/AVP 128",
    ] {
        let sdp = body(&[
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.1",
            "s=-",
            "c=IN IP4 10.0.0.1",
            "t=0 0",
            m,
        ]);
        assert!(matches!(parse(&sdp), Err(SdpError::BadMediaLine(_))), "{m}");
    }
    // A port count (RFC 4566 5.14) is legal.
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000/2 RTP/AVP 0",
    ]);
    assert_eq!(parse(&sdp).unwrap().port, 4000);
}

#[test]
fn malformed_attributes_are_ignored() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0 96",
        "a=rtpmap:0",
        "a=rtpmap:96 opus",
        "a=rtpmap:x PCMU/8000",
        "a=rtpmap:97 PCMA/8000",
        "a=fmtp:96",
        "a=ptime:abc",
        "garbage line without equals",
        "a=",
    ]);
    let o = parse(&sdp).unwrap();
    assert_eq!(o.formats[0].encoding, "PCMU", "static meaning kept");
    assert_eq!(o.formats[1].encoding, "");
    assert_eq!(o.formats.len(), 2);
    assert_eq!(o.ptime, None);
}

#[test]
fn fractional_ptime() {
    let sdp = body(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "a=ptime:30.0",
    ]);
    assert_eq!(parse(&sdp).unwrap().ptime, Some(30));
}

#[test]
fn not_sdp() {
    assert_eq!(parse(""), Err(SdpError::NotSdp));
    assert_eq!(parse("hello"), Err(SdpError::NotSdp));
    assert_eq!(parse("v=1\r\n"), Err(SdpError::NotSdp));
}

#[test]
fn truncations_and_garbage_give_errors_not_panics() {
    // Every prefix of real offers, cut at every char boundary: before the m= line is whole
    // there is no audio (or no SDP), once it is whole the offer is usable. Then noise.
    for sdp in [THREECX, ASTERISK] {
        let m_start = sdp.find("m=audio").unwrap();
        let m_end = m_start + sdp[m_start..].find('\n').unwrap();
        for (cut, _) in sdp.char_indices() {
            let result = parse(&sdp[..cut]);
            if cut < 3 {
                assert_eq!(result, Err(SdpError::NotSdp), "cut at {cut}");
            } else if cut < m_start + 2 {
                assert!(
                    matches!(result, Err(SdpError::NoAudio | SdpError::BadConnection(_))),
                    "cut at {cut}: {result:?}"
                );
            } else if cut >= m_end {
                assert!(result.is_ok(), "cut at {cut}: {result:?}");
            }
        }
    }
    let alphabet = b"v=0mca\r\n :/IP4IP60123456789.RTP/AVP rtpmap fmtp audio sendonly\xc3\xa9";
    let alphabet = String::from_utf8_lossy(alphabet)
        .chars()
        .collect::<Vec<_>>();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        // xorshift64: reproducible noise without a seeded RNG.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 200) as usize;
        let mut s = String::from("v=0\r\n");
        for _ in 0..len {
            s.push(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        let _ = parse(&s);
        // And the noise spliced into a good offer.
        let at = (next() as usize) % THREECX.len();
        if THREECX.is_char_boundary(at) {
            let spliced = format!("{}{}{}", &THREECX[..at], s, &THREECX[at..]);
            let _ = parse(&spliced);
        }
    }
}

fn media(codec: Codec, audio_pt: u8, event_pt: Option<u8>, direction: Direction) -> MediaLine {
    MediaLine {
        codec,
        audio_pt,
        event_pt,
        direction,
        alternative: None,
    }
}

#[test]
fn render_exact_text() {
    let mut local = LocalSdp::with_session_id(ip("203.0.113.10"), 4242);
    let sdp = local.render(
        30000,
        &media(Codec::Pcma, 8, Some(101), Direction::SendRecv),
        false,
    );
    assert_eq!(
        sdp,
        "v=0\r\n\
         o=trunkgate 4242 4242 IN IP4 203.0.113.10\r\n\
         s=trunkgate\r\n\
         c=IN IP4 203.0.113.10\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 8 101\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=maxptime:150\r\n\
         a=sendrecv\r\n"
    );
    let no_events = local.render(
        30000,
        &media(Codec::Pcmu, 0, None, Direction::RecvOnly),
        true,
    );
    assert!(no_events.contains("m=audio 30000 RTP/AVP 0\r\n"));
    assert!(!no_events.contains("telephone-event"));
    assert!(no_events.ends_with("a=recvonly\r\n"));
}

#[test]
fn render_ipv6() {
    let mut local = LocalSdp::with_session_id(ip("2001:db8::10"), 1);
    let sdp = local.render(
        30000,
        &media(Codec::Pcmu, 0, None, Direction::SendRecv),
        false,
    );
    assert!(sdp.contains("o=trunkgate 1 1 IN IP6 2001:db8::10\r\n"));
    assert!(sdp.contains("c=IN IP6 2001:db8::10\r\n"));
    assert_eq!(parse(&sdp).unwrap().addr, ip("2001:db8::10"));
}

#[test]
fn round_trip_render_parse_negotiate() {
    for (codec, pt, ev, dir) in [
        (Codec::Pcmu, 0, Some(101), Direction::SendRecv),
        (Codec::Pcma, 8, Some(96), Direction::SendOnly),
        (Codec::Pcmu, 110, None, Direction::RecvOnly),
        (Codec::Pcma, 8, None, Direction::Inactive),
    ] {
        let mut local = LocalSdp::new(ip("192.0.2.1"));
        let sdp = local.render(40000, &media(codec, pt, ev, dir), false);
        let parsed = parse(&sdp).unwrap();
        assert_eq!(parsed.addr, ip("192.0.2.1"));
        assert_eq!(parsed.port, 40000);
        assert_eq!(parsed.direction, dir);
        assert_eq!(parsed.ptime, Some(20));
        assert_eq!(
            negotiate(&parsed),
            Some(Negotiated {
                codec,
                audio_pt: pt,
                event_pt: ev
            })
        );
        if let Some(ev) = ev {
            assert_eq!(parsed.formats[1].fmtp.as_deref(), Some("0-16"));
            assert_eq!(parsed.formats[1].pt, ev);
        }
    }
}

fn origin(sdp: &str) -> (u64, u64) {
    let o = sdp.lines().find(|l| l.starts_with("o=")).unwrap();
    let f: Vec<_> = o.split(' ').collect();
    (f[1].parse().unwrap(), f[2].parse().unwrap())
}

#[test]
fn version_bumps_only_on_change() {
    let m = media(Codec::Pcmu, 0, Some(101), Direction::SendRecv);
    let mut local = LocalSdp::with_session_id(ip("192.0.2.1"), 1000);
    // The first SDP has nothing to differ from, whatever the caller says.
    assert_eq!(origin(&local.render(40000, &m, true)), (1000, 1000));
    assert_eq!(origin(&local.render(40000, &m, false)), (1000, 1000));
    let hold = media(Codec::Pcmu, 0, Some(101), Direction::SendOnly);
    assert_eq!(origin(&local.render(40000, &hold, true)), (1000, 1001));
    assert_eq!(origin(&local.render(40000, &hold, false)), (1000, 1001));
    assert_eq!(origin(&local.render(40000, &m, true)), (1000, 1002));
    assert_eq!(local.version(), 1002);
}

#[test]
fn random_session_ids_start_the_version_and_leave_headroom() {
    let a = LocalSdp::new(ip("192.0.2.1"));
    let b = LocalSdp::new(ip("192.0.2.1"));
    assert_eq!(a.version(), a.session_id);
    assert!(a.session_id < 1 << 62 && b.session_id < 1 << 62);
    assert_ne!(a.session_id, b.session_id, "two dialogs, two sessions");
}
