//! The `[media]`, `[calls]` and `[inbound]` sections: where RTP toward the PBX is bound and
//! advertised, the call limits and timers of the bridge, and how carrier calls are routed to a
//! trunk by their called number (DID).

use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

use super::numbers::OutputFormat;

/// `[media]`: the PBX-side RTP sockets and the WebRTC leg's host candidates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// RTP port range toward the PBX, `"first-last"`; each call takes an even port and the odd
    /// one after it (RTCP).
    pub rtp_ports: String,
    /// Where the PBX-side RTP sockets bind; default: `sip.listen`'s address.
    pub rtp_bind: Option<IpAddr>,
    /// Where the WebRTC leg's host candidates bind; default: `sip.listen`'s address.
    pub webrtc_bind: Option<IpAddr>,
    /// Media threads, each owning a share of the calls (0: one per CPU core).
    pub threads: usize,
    /// First shared WebRTC UDP port: media thread `i` listens on `webrtc_port + i` (0: ports
    /// chosen by the OS).
    pub webrtc_port: u16,
    /// Give every call's WebRTC leg a UDP port of its own instead of its thread's shared port:
    /// for a carrier whose media server uses one address for several sessions (two sessions
    /// cannot share one 5-tuple).
    pub webrtc_port_per_call: bool,
    /// While media flows, each media thread wakes at most once per this window and handles
    /// every packet that arrived meanwhile (0s: wake for each packet). Each pass through the
    /// relay waits at most this long.
    #[serde(with = "humantime_serde")]
    pub batch_window: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ports: "10000-20000".into(),
            rtp_bind: None,
            webrtc_bind: None,
            threads: 0,
            webrtc_port: 0,
            webrtc_port_per_call: false,
            batch_window: Duration::from_micros(500),
        }
    }
}

/// Why `media.rtp_ports` is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    /// Not two numbers joined by `-`.
    #[error("must be \"first-last\", e.g. \"10000-20000\"")]
    Shape,
    /// The first port does not parse.
    #[error("first port is not a number")]
    First,
    /// The last port does not parse.
    #[error("last port is not a number")]
    Last,
    /// A port below 1024.
    #[error("ports below 1024 are privileged: start at 1024 or above")]
    Privileged,
    /// No even/odd pair fits.
    #[error("must hold at least one even/odd port pair")]
    NoPair,
}

impl MediaConfig {
    /// The port range, if it parses and holds at least one even/odd pair.
    pub fn port_range(&self) -> Result<(u16, u16), PortRangeError> {
        let (a, b) = self
            .rtp_ports
            .split_once('-')
            .ok_or(PortRangeError::Shape)?;
        let first: u16 = a.trim().parse().map_err(|_| PortRangeError::First)?;
        let last: u16 = b.trim().parse().map_err(|_| PortRangeError::Last)?;
        if first < 1024 {
            return Err(PortRangeError::Privileged);
        }
        let first_even = first + (first % 2);
        if last <= first_even {
            return Err(PortRangeError::NoPair);
        }
        Ok((first_even, last))
    }
}

/// What a call over a limit is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitResponse {
    /// 486 Busy Here: the PBX tells the caller the line is busy.
    Busy,
    /// 503 Service Unavailable: 3CX and Asterisk fail over to the next trunk.
    Unavailable,
}

impl LimitResponse {
    /// The SIP status code the refusal is sent with.
    pub fn code(self) -> u16 {
        match self {
            LimitResponse::Busy => 486,
            LimitResponse::Unavailable => 503,
        }
    }
}

impl<'de> Deserialize<'de> for LimitResponse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u16::deserialize(d)? {
            486 => Ok(LimitResponse::Busy),
            503 => Ok(LimitResponse::Unavailable),
            other => Err(serde::de::Error::custom(format!(
                "must be 486 or 503, not {other}"
            ))),
        }
    }
}

/// `[calls]`: limits and timers of the bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// Concurrent calls, both directions, all trunks.
    pub max_calls: usize,
    /// 486 or 503 for a call over a limit.
    pub limit_response: LimitResponse,
    /// From the carrier call starting to its answer; then 480 and the carrier session ends.
    #[serde(with = "humantime_serde")]
    pub no_answer_timeout: Duration,
    /// RFC 4028 session interval we ask for and accept at most.
    #[serde(with = "humantime_serde")]
    pub session_expires: Duration,
    /// RFC 4028 smallest session interval we accept (422 below it); at least 90 s.
    #[serde(with = "humantime_serde")]
    pub min_se: Duration,
    /// On SIGTERM: new INVITEs get 503, calls up continue this long, then get BYE on both legs.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// An answered call whose PBX sends no RTP this long (while its SDP says it sends) is ended on
    /// both legs: a PBX that vanished. "0s" turns the check off.
    #[serde(with = "humantime_serde")]
    pub rtp_timeout: Duration,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            max_calls: 500,
            limit_response: LimitResponse::Unavailable,
            no_answer_timeout: Duration::from_secs(90),
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
            drain_grace: Duration::from_secs(30),
            rtp_timeout: Duration::from_secs(60),
        }
    }
}

/// One DID route: called numbers matching `did` go to `trunk`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRoute {
    /// An E.164 number (`+97145551234`) or a prefix ending in `*` (`+9714555*`).
    pub did: String,
    /// The `[[trunks]]` name the call goes to.
    pub trunk: String,
}

impl InboundRoute {
    /// Whether a called number in E.164 form is this route's DID, or starts with its prefix.
    pub fn matches(&self, e164: &str) -> bool {
        match self.did.strip_suffix('*') {
            Some(prefix) => e164.starts_with(prefix),
            None => self.did == e164,
        }
    }
}

/// `[inbound]`: carrier calls toward the PBXs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// Routes tried in order; the first match wins.
    pub routes: Vec<InboundRoute>,
    /// Trunk for DIDs no route matches; default: the first trunk.
    pub default_trunk: Option<String>,
    /// How the caller's number is written in From and P-Asserted-Identity toward the PBX.
    pub caller_format: OutputFormat,
    /// How the DID is written in the Request-URI user part and To.
    pub did_format: OutputFormat,
}

impl CallsConfig {
    /// The section's own checks, as (key path, message) pairs; empty when valid.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut e = |k: &str, m: &str| errs.push((format!("calls.{k}"), m.to_string()));
        if self.max_calls == 0 {
            e("max_calls", "must be at least 1");
        }
        if self.no_answer_timeout < Duration::from_secs(1) {
            e("no_answer_timeout", "must be at least 1s");
        }
        if self.min_se < Duration::from_secs(90) {
            e("min_se", "must be at least 90s (RFC 4028)");
        }
        if !self.rtp_timeout.is_zero() && self.rtp_timeout < Duration::from_secs(1) {
            e("rtp_timeout", "must be 0s (off) or at least 1s");
        }
        if self.session_expires < self.min_se {
            e("session_expires", "must not be smaller than calls.min_se");
        }
        errs
    }
}
