//! SDP toward the PBX: plain RTP/AVP audio (RFC 4566 syntax, RFC 3264 offer/answer).
//!
//! This module owns reading what a PBX's SDP (offer or answer) says about its audio stream
//! ([`parse`] into an [`AudioOffer`]), choosing the G.711 codec and the RFC 4733 event payload
//! type from it ([`negotiate`], [`codecs_in_order`]), and writing our own SDP toward the PBX
//! ([`LocalSdp`]), including the `o=` version rules. It is pure: no sockets, no clock; the
//! only impurity is the random session id drawn by [`LocalSdp::new`]. It must not touch the
//! WebRTC side's SDP, which is the media engine's business (`engine::peer`, `sdp_text`).
//!
//! Only the first `m=audio` section is read. Everything the gateway does not use (video,
//! ICE attributes that Asterisk adds even to plain offers, bandwidth lines, crypto...) is
//! ignored rather than refused, because PBXs add such lines freely and a refusal would fail
//! calls that would otherwise work.

use std::net::{IpAddr, Ipv4Addr};

use crate::media::{Codec, Direction};

/// Why a PBX's SDP could not be used. The caller answers 488 for
/// [`SdpError::UnsupportedTransport`] and [`SdpError::NoAudio`], 400 for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body does not start with `v=0`.
    #[error("not an SDP body: the first line is not v=0")]
    NotSdp,
    /// No `m=audio` line at all.
    #[error("no m=audio line")]
    NoAudio,
    /// The audio stream is secure (SAVP/SAVPF/DTLS) or otherwise not plain RTP.
    #[error("unsupported media transport {0:?} (plain RTP/AVP only)")]
    UnsupportedTransport(String),
    /// The `m=audio` line is not `m=audio <port> <proto> <fmt>...`.
    #[error("malformed m= line: {0:?}")]
    BadMediaLine(String),
    /// Neither the audio section nor the session has a `c=` line.
    #[error("no c= line for the audio stream")]
    MissingConnection,
    /// A `c=` line that is not `IN IP4|IP6 <literal address>`.
    #[error("malformed c= line: {0:?}")]
    BadConnection(String),
}

/// One payload format of the PBX's `m=audio` line, with its `rtpmap`/`fmtp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFormat {
    pub pt: u8,
    /// Encoding name as written (compare case-insensitively: RFC 4855 names are not
    /// case-sensitive). Empty for a dynamic payload type without `a=rtpmap`.
    pub encoding: String,
    /// Clock rate in Hz; 0 when unknown (dynamic type without `a=rtpmap`).
    pub clock: u32,
    pub channels: Option<u8>,
    pub fmtp: Option<String>,
}

/// What a PBX's SDP (offer or answer) says about its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOffer {
    /// Media-level `c=` overrides session-level; `0.0.0.0` is kept as is.
    pub addr: IpAddr,
    /// 0 = the stream is rejected or disabled (RFC 3264 5.1, 6).
    pub port: u16,
    /// In `m=` line order; static types without `a=rtpmap` get their RFC 3551 meaning.
    pub formats: Vec<PayloadFormat>,
    /// Media-level attribute overrides session-level; default `SendRecv` (RFC 3264 5.1).
    pub direction: Direction,
    /// `c=IN IP4 0.0.0.0`: RFC 2543 style hold.
    pub hold_by_address: bool,
    pub ptime: Option<u32>,
}

impl AudioOffer {
    /// The direction with an RFC 2543 hold folded in: a `0.0.0.0` address means the remote
    /// cannot receive, so whatever it says, it does not want our media.
    pub fn effective_direction(&self) -> Direction {
        if !self.hold_by_address {
            return self.direction;
        }
        match self.direction {
            Direction::SendRecv => Direction::SendOnly,
            Direction::RecvOnly => Direction::Inactive,
            other => other,
        }
    }
}

/// Static audio payload types of RFC 3551 table 4 that a PBX may list without `a=rtpmap`.
fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

/// Which part of the body the line being read belongs to.
#[derive(PartialEq, Eq)]
enum Section {
    Session,
    /// The first `m=audio` section: the one we read.
    Audio,
    /// Any other media section: its lines are skipped.
    Other,
}

/// Parses a PBX's SDP and returns its first audio stream.
pub fn parse(sdp: &str) -> Result<AudioOffer, SdpError> {
    let mut lines = sdp
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty());
    if lines.next().map(str::trim_end) != Some("v=0") {
        return Err(SdpError::NotSdp);
    }

    let mut section = Section::Session;
    let mut seen_audio = false;
    let mut session_addr = None;
    let mut media_addr = None;
    let mut session_direction = None;
    let mut media_direction = None;
    let mut port = 0;
    let mut formats: Vec<PayloadFormat> = Vec::new();
    let mut ptime = None;

    for line in lines {
        // RFC 4566 5: `<type>=<value>` with a one-letter type; anything else is not ours.
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                if seen_audio || value.split_ascii_whitespace().next() != Some("audio") {
                    section = Section::Other;
                    continue;
                }
                seen_audio = true;
                section = Section::Audio;
                let (p, fmts) = media_line(value)?;
                port = p;
                formats = fmts;
            }
            "c" if section != Section::Other => {
                let addr = connection(value)?;
                match section {
                    Section::Session => session_addr = Some(addr),
                    _ => media_addr = Some(addr),
                }
            }
            "a" if section != Section::Other => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                if let Some(d) = direction_attr(name) {
                    match section {
                        Section::Session => session_direction = Some(d),
                        _ => media_direction = Some(d),
                    }
                    continue;
                }
                if section != Section::Audio {
                    continue;
                }
                match name {
                    "rtpmap" => rtpmap(arg, &mut formats),
                    "fmtp" => fmtp(arg, &mut formats),
                    // Some PBXs write `ptime:20.0`; the integer part is what matters.
                    "ptime" => ptime = arg.trim().split('.').next().and_then(|v| v.parse().ok()),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    if !seen_audio {
        return Err(SdpError::NoAudio);
    }
    let addr = media_addr
        .or(session_addr)
        .ok_or(SdpError::MissingConnection)?;
    Ok(AudioOffer {
        addr,
        port,
        formats,
        direction: media_direction
            .or(session_direction)
            .unwrap_or(Direction::SendRecv),
        hold_by_address: addr == IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ptime,
    })
}

/// `audio <port>[/<count>] <proto> <fmt> ...` (the `m=` already stripped).
fn media_line(value: &str) -> Result<(u16, Vec<PayloadFormat>), SdpError> {
    let bad = || SdpError::BadMediaLine(value.to_owned());
    let mut fields = value.split_ascii_whitespace().skip(1);
    let port_field = fields.next().ok_or_else(bad)?;
    let port_text = port_field.split('/').next().unwrap_or(port_field);
    let port = port_text.parse::<u16>().map_err(|_| bad())?;
    let proto = fields.next().ok_or_else(bad)?;
    if !(proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")) {
        return Err(SdpError::UnsupportedTransport(proto.to_owned()));
    }
    let mut formats = Vec::new();
    for fmt in fields {
        // RTP payload types are 7 bits (RFC 3550 5.1).
        let pt = fmt
            .parse::<u8>()
            .ok()
            .filter(|pt| *pt < 128)
            .ok_or_else(bad)?;
        let (encoding, clock) = static_format(pt).unwrap_or(("", 0));
        formats.push(PayloadFormat {
            pt,
            encoding: encoding.to_owned(),
            clock,
            channels: None,
            fmtp: None,
        });
    }
    if formats.is_empty() {
        return Err(bad());
    }
    Ok((port, formats))
}

/// `IN IP4|IP6 <address>[/<ttl>[/<n>]]`. Only literal addresses: an FQDN would need a
/// resolver, which this layer does not have, and no PBX we serve sends one.
fn connection(value: &str) -> Result<IpAddr, SdpError> {
    let bad = || SdpError::BadConnection(value.to_owned());
    let mut fields = value.split_ascii_whitespace();
    if fields.next() != Some("IN") {
        return Err(bad());
    }
    let family = fields.next().ok_or_else(bad)?;
    let text = fields.next().ok_or_else(bad)?;
    let text = text.split('/').next().unwrap_or(text);
    let addr: IpAddr = text.parse().map_err(|_| bad())?;
    match (family, addr) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(addr),
        _ => Err(bad()),
    }
}

fn direction_attr(name: &str) -> Option<Direction> {
    Some(match name {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => return None,
    })
}

/// `<pt> <encoding>/<clock>[/<channels>]`. A malformed rtpmap is ignored, like any attribute
/// we cannot read: the format then keeps its static meaning or stays unknown.
fn rtpmap(arg: &str, formats: &mut [PayloadFormat]) {
    let Some((pt, map)) = arg.trim().split_once(char::is_whitespace) else {
        return;
    };
    let Some(format) = format_mut(pt, formats) else {
        return;
    };
    let mut parts = map.trim().split('/');
    let encoding = parts.next().unwrap_or("");
    let Some(clock) = parts.next().and_then(|c| c.trim().parse::<u32>().ok()) else {
        return;
    };
    let channels = match parts.next() {
        None => None,
        Some(c) => match c.trim().parse::<u8>() {
            Ok(c) => Some(c),
            Err(_) => return,
        },
    };
    if encoding.is_empty() {
        return;
    }
    format.encoding = encoding.to_owned();
    format.clock = clock;
    format.channels = channels;
}

fn fmtp(arg: &str, formats: &mut [PayloadFormat]) {
    let Some((pt, params)) = arg.trim().split_once(char::is_whitespace) else {
        return;
    };
    if let Some(format) = format_mut(pt, formats) {
        format.fmtp = Some(params.trim().to_owned());
    }
}

/// The format of the `m=` line with this payload type; attributes for types the line does not
/// list are ignored (RFC 4566 6: they describe nothing).
fn format_mut<'a>(pt: &str, formats: &'a mut [PayloadFormat]) -> Option<&'a mut PayloadFormat> {
    let pt: u8 = pt.parse().ok()?;
    formats.iter_mut().find(|f| f.pt == pt)
}

/// The G.711 codec this format is, if it is one at 8000 Hz mono.
pub fn codec_of(format: &PayloadFormat) -> Option<Codec> {
    if format.clock != 8000 || format.channels.is_some_and(|c| c != 1) {
        return None;
    }
    if format.encoding.eq_ignore_ascii_case("PCMU") {
        Some(Codec::Pcmu)
    } else if format.encoding.eq_ignore_ascii_case("PCMA") {
        Some(Codec::Pcma)
    } else {
        None
    }
}

fn is_telephone_event(format: &PayloadFormat) -> bool {
    format.clock == 8000 && format.encoding.eq_ignore_ascii_case("telephone-event")
}

/// What we use of the PBX's audio: the codec, and the PBX's own payload type numbers, which
/// we must send with (RFC 3264 6.1: the answerer uses the offerer's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub audio_pt: u8,
    /// `telephone-event/8000` if the PBX offered it (RFC 4733 DTMF).
    pub event_pt: Option<u8>,
}

/// The first of the PBX's formats, in its preference order, that is PCMU/8000 or PCMA/8000.
/// `None`: no common codec; the caller answers 488. The port is not looked at: a `0` port is
/// a rejected stream, which the caller handles before asking for a codec.
pub fn negotiate(offer: &AudioOffer) -> Option<Negotiated> {
    let (codec, audio_pt) = offer
        .formats
        .iter()
        .find_map(|f| codec_of(f).map(|codec| (codec, f.pt)))?;
    Some(Negotiated {
        codec,
        audio_pt,
        event_pt: telephone_event_pt(offer),
    })
}

/// The PBX's payload type for `telephone-event/8000`, if it lists one (RFC 4733 DTMF).
pub fn telephone_event_pt(offer: &AudioOffer) -> Option<u8> {
    offer
        .formats
        .iter()
        .find(|f| is_telephone_event(f))
        .map(|f| f.pt)
}

/// The G.711 codecs the PBX offered, in its order, each once: the order to offer them to the
/// carrier in, so the PBX's preference carries through the bridge.
pub fn codecs_in_order(offer: &AudioOffer) -> Vec<Codec> {
    let mut codecs = Vec::with_capacity(2);
    for codec in offer.formats.iter().filter_map(codec_of) {
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    codecs
}

/// The direction to answer a remote offer with (RFC 3264 6.1): the mirror image, since we
/// are always willing to both send and receive.
pub fn answer_direction(remote: Direction) -> Direction {
    match remote {
        Direction::SendRecv => Direction::SendRecv,
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        Direction::Inactive => Direction::Inactive,
    }
}

/// The audio stream we describe toward the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLine {
    pub codec: Codec,
    /// The payload type number to write: the PBX's own in an answer, the static one in an offer.
    pub audio_pt: u8,
    pub event_pt: Option<u8>,
    pub direction: Direction,
    /// In an offer only: a second G.711 codec the PBX may choose instead (static type), so the
    /// PBX picks between what the carrier offered.
    pub alternative: Option<Codec>,
}

/// Our SDP toward the PBX for one dialog: the `o=` line identity and its version counter.
#[derive(Debug, Clone)]
pub struct LocalSdp {
    session_id: u64,
    version: u64,
    addr: IpAddr,
    rendered: bool,
}

impl LocalSdp {
    #[cfg(test)]
    /// A new session description with a random session id. The version starts at the id, as
    /// RFC 4566 5.2 suggests; both are kept below 2^62 so that increments stay far from the
    /// overflow of implementations that read them as signed 64-bit numbers.
    pub fn new(addr: IpAddr) -> Self {
        Self::with_session_id(addr, rand::random::<u64>() >> 2)
    }

    /// As [`LocalSdp::new`] with a chosen session id (tests, or a caller that owns the ids).
    pub fn with_session_id(addr: IpAddr, session_id: u64) -> Self {
        LocalSdp {
            session_id,
            version: session_id,
            addr,
            rendered: false,
        }
    }

    /// The `o=` version the next unchanged render will carry.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Renders the SDP. `changed`: this SDP differs from the last one we sent, so the `o=`
    /// version goes up by one (RFC 3264 8); an unchanged SDP sent again (a re-INVITE answered
    /// with the same media, a retransmitted offer) keeps it. The first render never bumps:
    /// there is nothing before it to differ from.
    pub fn render(&mut self, port: u16, media: &MediaLine, changed: bool) -> String {
        if changed && self.rendered {
            self.version = self.version.wrapping_add(1);
        }
        self.rendered = true;
        let family = match self.addr {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let encoding = match media.codec {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        };
        let mut out = String::with_capacity(320);
        let mut line = |text: String| {
            out.push_str(&text);
            out.push_str("\r\n");
        };
        line("v=0".into());
        line(format!(
            "o=trunkgate {} {} IN {family} {}",
            self.session_id, self.version, self.addr
        ));
        line("s=trunkgate".into());
        line(format!("c=IN {family} {}", self.addr));
        line("t=0 0".into());
        let alternative = media.alternative.filter(|c| *c != media.codec);
        let mut formats = media.audio_pt.to_string();
        if let Some(alt) = alternative {
            formats.push_str(&format!(" {}", alt.payload_type()));
        }
        if let Some(ev) = media.event_pt {
            formats.push_str(&format!(" {ev}"));
        }
        line(format!("m=audio {port} RTP/AVP {formats}"));
        line(format!("a=rtpmap:{} {encoding}/8000", media.audio_pt));
        if let Some(alt) = alternative {
            let name = match alt {
                Codec::Pcmu => "PCMU",
                Codec::Pcma => "PCMA",
            };
            line(format!("a=rtpmap:{} {name}/8000", alt.payload_type()));
        }
        if let Some(ev) = media.event_pt {
            line(format!("a=rtpmap:{ev} telephone-event/8000"));
            // RFC 4733 events 0-15 are the DTMF digits, 16 is flash; the carrier relays no more.
            line(format!("a=fmtp:{ev} 0-16"));
        }
        // 20 ms is what the WebRTC side sends; saying so keeps the PBX from picking 30 ms and
        // making the relay repacketise.
        line("a=ptime:20".into());
        line("a=maxptime:150".into());
        line(
            match media.direction {
                Direction::SendRecv => "a=sendrecv",
                Direction::SendOnly => "a=sendonly",
                Direction::RecvOnly => "a=recvonly",
                Direction::Inactive => "a=inactive",
            }
            .into(),
        );
        out
    }
}

#[cfg(test)]
#[path = "pbx_sdp_tests.rs"]
mod tests;
