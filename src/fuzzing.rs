//! Entry points of the cargo-fuzz targets in `fuzz/` (one per target, same names), kept in the
//! library so the normal test suite can replay the committed corpora through exactly the code
//! the fuzzer runs (`fuzz/corpus/<target>/`, see the tests at the end).
//!
//! Each function takes arbitrary bytes, drives one part of the daemon with them, and panics when
//! an invariant breaks; a panic is what libFuzzer reports as a crash. They do no I/O, read no
//! clock beyond one fixed `Instant` used as the origin of virtual time, and draw no randomness of
//! their own (the code under test still draws its tags, branches and nonces).
//!
//! - [`sip_datagram`]: a few datagrams from a few PBX addresses into a [`Endpoint`], with the
//!   call side played by the harness; everything the endpoint sends must parse with our own
//!   parser, timers must settle, and no dialog or timer may outlive the calls.
//! - [`pbx_sdp`]: the PBX SDP parser and the codec negotiation; the SDP we build from what it
//!   read must parse again and mean the same.
//! - [`carrier_json`]: every carrier wire type (REST bodies, WebSocket frames) and the pure
//!   interpretation of notifications; whatever parses must survive serialising and parsing back.
//! - [`webrtc_demux`]: datagrams from strangers and peers into a shared WebRTC port's
//!   demultiplexer and the str0m peers behind it.
//! - [`digest_header`]: the digest credential parser, `nc`, verification against a fixed HA1,
//!   and the client side that answers a PBX's challenge.
//!
//! Input format of `sip_datagram`: chunks separated by [`CHUNK_SEPARATOR`]; the first byte of a
//! chunk is a control byte (source address, time step, what the "call" does), the rest is the
//! datagram. The datagram may use the sipp keywords `[last_Via:]` (any header name),
//! `[authentication]`, `[peer_tag_param]`, `[next_url]` and `[len]`, and `[last_To:value]` (the
//! header's value alone); they are expanded from the last datagram the endpoint sent to that
//! address, as sipp does, so that seeds taken from the sipp scenarios in `tests/sipp/` reach
//! authenticated and in-dialog code.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::carrier::events::{classify, CallEvent, Classified, Dedup};
use crate::carrier::lifecycle::{Backoff, Lifecycle, Outcome, Step};
use crate::carrier::protocol::{
    self, CallControlRequest, CallControlRequestBody, CallControlResponseBody,
    CallDispositionRequestBody, ClientPing, ConnAckFrame, ConnCheckFrame, NotificationFrame,
    NotificationMessage, ServerFrame, SubscribeRequestBody, SubscribeResponse,
    SubscribeResponseBody, SubscriptionParams,
};
use crate::config::Config;
use crate::media::pbx_sdp::{self, LocalSdp, MediaLine, Negotiated};
use crate::media::{Codec, Direction, TELEPHONE_EVENT_PT};
use crate::sip::client_auth;
use crate::sip::digest::{self, Algorithm, Credentials};
use crate::sip::endpoint::Endpoint;
use crate::sip::grammar::NameAddr;
use crate::sip::message::Headers;
use crate::sip::parse::{self, ParseError, ParseFailure, Parsed};
use crate::sip::registrar::Registrations;
use crate::sip::stats::SipStats;
use crate::sip::transaction::Transmit;
use crate::sip::tu::{CallRef, DialogCommand, DialogEvent, InviteToPbx, OwnRequest, Reply};

/// The origin of virtual time: one `Instant`, read once; only offsets from it matter.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

// ---- digest_header --------------------------------------------------------------------------

/// Arbitrary stored HA1s (one per algorithm) that parsed credentials are verified against.
const FIXED_HA1_MD5: &str = "0d1cf2e3c1d2bb1f0c1a5b4fd2a7c7e1";
const FIXED_HA1_SHA256: &str = "5f1e0a46ee8b7a3f0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6";

/// One header value, read both as credentials (`Authorization`) and as a challenge from the PBX
/// (`WWW-Authenticate`, answered by the client side).
pub fn digest_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(creds) = digest::parse_credentials(&text) {
        check_credentials(&creds);
        // Our own challenge built from the realm and nonce just read, answered by our client
        // side and checked by our server side: the three must agree.
        // Ours are always answerable: a configured realm has no quotes or backslashes, a nonce
        // is base64url.
        let plain = |s: &str| !s.contains(|c: char| c.is_control() || c == '"' || c == '\\');
        let ours = plain(&creds.realm) && plain(&creds.nonce);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            for qop in [false, true] {
                let challenge = digest::challenge(alg, &creds.realm, &creds.nonce, qop, false);
                answer_challenge(&challenge, ours);
            }
        }
    }
    answer_challenge(&text, false);
}

/// Invariants of parsed credentials.
fn check_credentials(c: &Credentials) {
    let fields = [&c.username, &c.realm, &c.nonce, &c.uri, &c.response]
        .into_iter()
        .chain(c.qop.iter())
        .chain(c.nc.iter())
        .chain(c.cnonce.iter())
        .chain(c.opaque.iter());
    for f in fields {
        assert!(
            !f.contains(['\r', '\n']),
            "a credential field carries a line break: {f:?} in {c:?}"
        );
    }
    for required in [&c.username, &c.realm, &c.nonce, &c.uri, &c.response] {
        assert!(!required.is_empty(), "an empty required field in {c:?}");
    }
    if let Some(n) = c.nc_value() {
        let nc = c.nc.as_deref().unwrap_or_default();
        assert!(
            (1..=8).contains(&nc.len()) && u32::from_str_radix(nc, 16) == Ok(n),
            "nc {nc:?} read as {n}"
        );
    }
    for ha1 in [FIXED_HA1_MD5, FIXED_HA1_SHA256] {
        for method in ["REGISTER", "INVITE"] {
            let ok = digest::verify(c, method, ha1);
            let Ok(expected) = digest::expected_response(c.algorithm, ha1, method, c) else {
                assert!(!ok, "verified without a computable response: {c:?}");
                continue;
            };
            if ok {
                assert!(c.response.eq_ignore_ascii_case(&expected));
            }
            // The right response (in either case) verifies exactly when nc and cnonce are usable.
            let usable = c.qop.is_none() || (c.nc_value().is_some() && c.cnonce.is_some());
            let mut good = c.clone();
            good.response = expected.to_ascii_uppercase();
            assert_eq!(digest::verify(&good, method, ha1), usable, "{good:?}");
        }
    }
}

/// Answers `challenge` as the client side does for a challenged INVITE; what it writes must
/// parse and verify with our own server side. `must_answer`: the challenge is one of ours, so
/// the client side must be able to answer it.
fn answer_challenge(challenge: &str, must_answer: bool) {
    // The client side only sees header values from our parser: never a CR or LF.
    if challenge.contains(['\r', '\n']) {
        return;
    }
    let uri = "sip:100@pbx.example.com";
    let Some(value) = client_auth::authorization(challenge, "gw", "secret", "INVITE", uri) else {
        assert!(
            !must_answer,
            "our own challenge is not answerable: {challenge:?}"
        );
        return;
    };
    assert!(
        !value.contains(['\r', '\n']),
        "our Authorization carries a line break: {value:?}"
    );
    // The client side refuses what it could not write back as a plain quoted-string (empty,
    // over-long, control characters, quotes, backslashes), so whatever it answers must parse
    // and verify with our own server side.
    let creds = match digest::parse_credentials(&value) {
        Ok(c) => c,
        Err(e) => panic!("our Authorization {value:?} (for {challenge:?}) does not parse: {e}"),
    };
    check_credentials(&creds);
    assert_eq!(creds.username, "gw");
    assert_eq!(creds.uri, uri);
    let ha1 = digest::ha1(creds.algorithm, "gw", &creds.realm, "secret");
    assert!(
        digest::verify(&creds, "INVITE", &ha1),
        "our Authorization {value:?} (for {challenge:?}) does not verify"
    );
}

// ---- pbx_sdp --------------------------------------------------------------------------------

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

// ---- carrier_json ---------------------------------------------------------------------------

/// A body or frame from (or to) the carrier, read as every wire type and as a frame; what
/// parses must serialise and parse back, and notifications must classify sensibly.
pub fn carrier_json(data: &[u8]) {
    // serde_json::Value holds floats, which do not round-trip bit-exactly: parse back only.
    let value = round_trip::<serde_json::Value>(data, false);
    round_trip::<SubscribeRequestBody>(data, true);
    let subscribe = round_trip::<SubscribeResponseBody>(data, true);
    round_trip::<SubscriptionParams>(data, true);
    round_trip::<CallControlRequestBody>(data, true);
    round_trip::<CallControlRequest>(data, true);
    round_trip::<Option<CallControlResponseBody>>(data, true);
    round_trip::<CallDispositionRequestBody>(data, true);
    round_trip::<ClientPing>(data, true);
    round_trip::<ConnCheckFrame>(data, true);
    round_trip::<ConnAckFrame>(data, false);
    let frame = round_trip::<NotificationFrame>(data, true);
    round_trip::<NotificationMessage>(data, true);

    if let Some(v) = &value {
        for envelope in [
            "subscribeResponse",
            "callControlResponse",
            "callDispositionResponse",
        ] {
            let _ = crate::carrier::rest::envelope_fields(v, envelope);
        }
    }
    if let Some(body) = subscribe {
        subscription_outcome(&body.subscribe_response);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = protocol::parse_client_frame(text);
    if let Ok(ServerFrame::Notification(msg)) = protocol::parse_server_frame(text) {
        notification(&msg);
    }
    if let Some(f) = frame {
        notification(&f.notification_message);
    }
}

/// Parses `data` as `T`; when it parses, serialising it and parsing that back must work (and,
/// with `exact`, give the same value).
fn round_trip<T>(data: &[u8], exact: bool) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v: T = serde_json::from_slice(data).ok()?;
    let bytes = serde_json::to_vec(&v)
        .unwrap_or_else(|e| panic!("{} does not serialise: {e}: {v:?}", type_name::<T>()));
    let back: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} does not parse back: {e}: {}",
            type_name::<T>(),
            String::from_utf8_lossy(&bytes)
        )
    });
    if exact {
        assert_eq!(back, v, "{} changed on the way back", type_name::<T>());
    }
    Some(v)
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>()
}

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        multiplier: 2.0,
    }
}

/// A subscribe answer through the account's lifecycle, as the account reads it.
fn subscription_outcome(r: &SubscribeResponse) {
    let now = origin();
    let params = r.subscription_params.clone().unwrap_or_default();
    let outcome = if protocol::code::is_success(r.status_code) {
        Outcome::Granted {
            expires: Duration::from_secs(u64::from(params.expires.unwrap_or(3600))),
        }
    } else if r.status_code == protocol::code::UNAVAILABLE {
        Outcome::Overloaded {
            retry_after: r.retry_after.map(Duration::from_millis),
        }
    } else if r.status_code == protocol::code::NO_SUBSCRIPTION {
        Outcome::Gone { retry_after: None }
    } else {
        Outcome::Failed
    };
    let mut lc = Lifecycle::new(now, backoff(), 11);
    assert_eq!(lc.poll(now), Step::Subscribe);
    lc.on_outcome(now, outcome);
    lifecycle_steps(&mut lc, now);
    if let Some(turn) = &params.turn_credentials {
        let urls = [
            "stun:stun.example.com".to_string(),
            "turns:turn.example.com:443".to_string(),
        ];
        let servers = crate::carrier::ice_servers(&urls, Some(turn));
        assert_eq!(servers.len(), 2);
        assert!(servers[0].username.is_none() && servers[0].credential.is_none());
        assert_eq!(servers[1].username.as_deref(), Some(turn.username.as_str()));
    }
}

/// Polls a lifecycle a few times; waits never go back in time.
fn lifecycle_steps(lc: &mut Lifecycle, mut now: Instant) {
    for _ in 0..3 {
        match lc.poll(now) {
            // Not in flight here, so a wait is always a wait into the future.
            Step::Wait(at) => {
                assert!(at > now, "a wait that is already over: {lc:?}");
                now = at;
            }
            Step::Subscribe | Step::Refresh => lc.on_outcome(now, Outcome::Failed),
            Step::Stopped => return,
        }
    }
}

/// A notification as the account handles it: dedup by event id, classify, lifecycle on `gone`.
fn notification(msg: &NotificationMessage) {
    if let Some(id) = &msg.event_id {
        let mut dedup = Dedup::new(2);
        assert!(dedup.first_time(id));
        assert!(!dedup.first_time(id));
    }
    for answered in [false, true] {
        match classify(msg, |_| answered) {
            Classified::Gone { retry_after } => {
                assert_eq!(msg.event_type, "gone");
                let now = origin();
                let mut lc = Lifecycle::new(now, backoff(), 5);
                lc.on_gone(now, retry_after);
                match lc.poll(now) {
                    Step::Subscribe => {
                        assert!(retry_after.unwrap_or_default().is_zero());
                        lc.on_outcome(now, Outcome::Failed);
                    }
                    Step::Wait(at) => assert_eq!(Some(at - now), retry_after),
                    other => panic!("after gone: {other:?}"),
                }
                lifecycle_steps(&mut lc, now);
            }
            Classified::Overridden => assert_eq!(msg.event_type, "websocketOverridden"),
            Classified::IncomingCall(call) => {
                assert_eq!(msg.event_type, "call");
                assert!(!call.session.is_empty());
                assert!(call.offer.is_none_or(|s| !s.trim().is_empty()));
            }
            Classified::ForCall { session, event } => {
                assert!(!session.is_empty());
                // The first answer is `Answered`, every later one `UpdateAnswered`.
                match &event {
                    CallEvent::Answered { .. } => assert!(!answered),
                    CallEvent::UpdateAnswered { .. } => assert!(answered),
                    _ => {}
                }
                match event {
                    CallEvent::Progress { sdp }
                    | CallEvent::Answered { sdp }
                    | CallEvent::UpdateAnswered { sdp }
                    | CallEvent::RemoteUpdate { sdp } => assert!(!sdp.trim().is_empty()),
                    _ => {}
                }
            }
            Classified::Ignored(_) => {}
        }
    }
}

// ---- sip_datagram ---------------------------------------------------------------------------

/// Separates the datagrams (chunks) of one `sip_datagram` input.
pub const CHUNK_SEPARATOR: &[u8] = b"\n~~\n";
/// At most this many chunks of one input are used.
const MAX_CHUNKS: usize = 16;

/// The PBX addresses a chunk can come from (control byte bits 0-1). The second trunk only
/// accepts 127.0.0.3.
const SOURCES: [([u8; 4], u16); 4] = [
    ([127, 0, 0, 1], 5062),
    ([127, 0, 0, 1], 5064),
    ([127, 0, 0, 2], 5060),
    ([127, 0, 0, 3], 5060),
];

/// Virtual time that passes before a chunk (control byte bits 2-3): nothing much, a
/// retransmission interval, a few seconds, past every transaction timer.
const STEPS: [Duration; 4] = [
    Duration::from_millis(10),
    Duration::from_millis(600),
    Duration::from_secs(5),
    Duration::from_secs(40),
];

const CONFIG: &str = r#"
[sip]
listen = "127.0.0.1:5060"
realm = "trunk.example.com"
digest_algorithms = ["MD5", "SHA-256"]
min_expires = 1

[calls]
max_calls = 3

# Small enough for a few datagrams to reach bans, budgets and the transaction ceiling.
[security]
ban_after = 3
ban_time = "10m"
ban_time_max = "40m"
unauthenticated_rate = 2
unauthenticated_burst = 6
never_ban = ["127.0.0.2/32"]
max_transactions = 10
max_tracked_addresses = 16

[[trunks]]
name = "pbx-main"
auth_username = "3cx_trunk"
password = "s3cret"
outbound_username = "gw"
outbound_password = "gwsecret"
max_calls = 2

[[trunks]]
name = "pbx-branch"
auth_username = "branch"
password = "br4nch"
allowed_sources = ["127.0.0.3/32"]
"#;

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("fuzzing config refused: {e:?}"))
    })
}

const ANSWER_SDP: &str = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";
const HOLD_SDP: &str = "v=0\r\no=pbx 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 20000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendonly\r\n";

/// What we last sent to one address, for the sipp keywords.
struct Sent {
    headers: Headers,
    /// It was a request (our tag is in From) rather than a response (our tag is in To).
    request: bool,
    /// The last Contact we sent to it, for `[next_url]`.
    contact: Option<String>,
    /// The challenge header values of the last 401/407 to it.
    challenge: Option<(u16, Vec<String>)>,
}

/// The endpoint, virtual time, and the harness playing the calls.
struct Harness {
    ep: Endpoint,
    now: Instant,
    sent: HashMap<SocketAddr, Sent>,
    /// Calls in order of creation; the harness acts on the newest live one.
    calls: Vec<CallRef>,
    /// Calls told to end (Done sent).
    done: Vec<CallRef>,
    /// The datagram being handled is a request our parser rejects (400/505).
    answering_rejected: bool,
    /// What went out while handling the current datagram: response codes, `None` for requests.
    round: Vec<Option<u16>>,
}

/// Feeds up to [`MAX_CHUNKS`] datagrams (see the module doc for the format) into an endpoint.
pub fn sip_datagram(data: &[u8]) {
    let now = origin();
    let ep = Endpoint::new(
        config(),
        Registrations::default(),
        Arc::new(SipStats::default()),
        now,
    )
    .unwrap_or_else(|e| panic!("endpoint: {e}"));
    let mut h = Harness {
        ep,
        now,
        sent: HashMap::new(),
        calls: Vec::new(),
        done: Vec::new(),
        answering_rejected: false,
        round: Vec::new(),
    };
    for chunk in split(data).take(MAX_CHUNKS) {
        let Some((&ctl, payload)) = chunk.split_first() else {
            continue;
        };
        let (ip, port) = SOURCES[usize::from(ctl & 3)];
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
        h.advance(h.now + STEPS[usize::from((ctl >> 2) & 3)]);
        if !payload.is_empty() {
            let datagram = h.expand(payload, src);
            h.answering_rejected = matches!(
                parse::parse(&datagram, config().sip.max_message_size),
                Err(ParseFailure::Reject { .. })
            );
            let transactions = h.ep.server_transactions();
            h.round.clear();
            h.ep.handle_datagram(&datagram, src, h.now);
            h.drain();
            h.answering_rejected = false;
            // A challenge is stateless: one datagram back, no transaction kept.
            if h.round.iter().any(|c| matches!(c, Some(401 | 407))) {
                assert_eq!(
                    h.round.len(),
                    1,
                    "more than the challenge sent: {:?}",
                    h.round
                );
                assert!(
                    h.ep.server_transactions() <= transactions,
                    "a challenge left a server transaction"
                );
            }
        }
        h.act(ctl >> 4);
    }
    // The calls end, then a long idle: nothing may be left behind.
    for call in h.calls.clone() {
        h.command(DialogCommand::Forget(call));
    }
    h.advance(h.now + Duration::from_secs(2 * 3600));
    assert_eq!(
        h.ep.active_calls(),
        0,
        "dialogs left after every call ended"
    );
    assert_eq!(
        h.ep.poll_timeout(),
        None,
        "a timer is still armed two idle hours after every call ended"
    );
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r
            .windows(CHUNK_SEPARATOR.len())
            .position(|w| w == CHUNK_SEPARATOR)
        {
            Some(i) => {
                rest = Some(&r[i + CHUNK_SEPARATOR.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

impl Harness {
    /// Runs every timer up to `to`, in order, then sets the clock to `to`.
    fn advance(&mut self, to: Instant) {
        let mut fired = 0u32;
        while let Some(at) = self.ep.poll_timeout() {
            if at > to {
                break;
            }
            let at = at.max(self.now);
            self.now = at;
            self.ep.handle_timeout(at);
            self.drain();
            if let Some(next) = self.ep.poll_timeout() {
                assert!(
                    next > at,
                    "a timer due at {at:?} is still due after handle_timeout"
                );
            }
            fired += 1;
            assert!(fired < 100_000, "timers do not settle");
        }
        self.now = self.now.max(to);
    }

    /// Everything the endpoint wants sent, and every event for the calls.
    fn drain(&mut self) {
        loop {
            if let Some(t) = self.ep.poll_transmit() {
                self.check_transmit(&t);
                continue;
            }
            if let Some((call, event)) = self.ep.poll_event() {
                self.on_call_event(call, event);
                continue;
            }
            break;
        }
    }

    /// Every datagram we send must parse with our own parser. One exception: the 400 (or 505)
    /// to a request our parser rejected copies that request's broken Via, From, To, Call-ID or
    /// CSeq (RFC 4475 3.3.1 asks for a 400 even without them), so it may miss or carry a broken
    /// mandatory header; it must still be framed correctly.
    fn check_transmit(&mut self, t: &Transmit) {
        let parsed = match parse::parse(&t.bytes, 65535) {
            Ok(p) => p,
            Err(ParseFailure::Drop(ParseError::MissingHeader(_) | ParseError::BadHeader(_)))
                if self.answering_rejected
                    && (t.bytes.starts_with(b"SIP/2.0 400 ")
                        || t.bytes.starts_with(b"SIP/2.0 505 ")) =>
            {
                check_framing(&t.bytes);
                return;
            }
            Err(e) => panic!(
                "the endpoint sent a datagram its own parser refuses ({e:?}):\n{}",
                String::from_utf8_lossy(&t.bytes)
            ),
        };
        check_framing(&t.bytes);
        let (headers, code) = match parsed {
            Parsed::Request(r, _) => (r.headers, None),
            Parsed::Response(r, _) => (r.headers, Some(r.code)),
        };
        self.round.push(code);
        let previous = self.sent.get(&t.dest);
        let contact = headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .map(|n| n.uri_text)
            .or_else(|| previous.and_then(|s| s.contact.clone()));
        let challenge = match code {
            Some(c @ (401 | 407)) => {
                let name = if c == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                let values: Vec<String> = headers.get_all(name).map(str::to_owned).collect();
                assert!(!values.is_empty(), "a {c} without {name}");
                Some((c, values))
            }
            _ => previous.and_then(|s| s.challenge.clone()),
        };
        let sent = Sent {
            headers,
            request: code.is_none(),
            contact,
            challenge,
        };
        self.sent.insert(t.dest, sent);
    }

    /// What a call task would do on its own: forget calls that are over.
    fn on_call_event(&mut self, call: CallRef, event: DialogEvent) {
        match event {
            DialogEvent::Admitted(_) => self.calls.push(call),
            DialogEvent::Cancelled
            | DialogEvent::Bye
            | DialogEvent::NoAck
            | DialogEvent::Shutdown => self.command(DialogCommand::Forget(call)),
            DialogEvent::Response {
                request: OwnRequest::Invite,
                code,
                ..
            } if code >= 300 => self.command(DialogCommand::Forget(call)),
            DialogEvent::Refused(_)
            | DialogEvent::Ack { .. }
            | DialogEvent::Reinvite { .. }
            | DialogEvent::Response { .. } => {}
        }
    }

    fn command(&mut self, cmd: DialogCommand) {
        if let DialogCommand::Forget(call) = cmd {
            if self.done.contains(&call) {
                return;
            }
            self.done.push(call);
        }
        self.ep.handle_command(cmd, self.now);
        self.drain();
    }

    fn newest(&self) -> Option<CallRef> {
        self.calls
            .iter()
            .rev()
            .find(|c| !self.done.contains(c))
            .copied()
    }

    /// The call side's move after a chunk (control byte bits 4-7).
    fn act(&mut self, action: u8) {
        let alt = action & 8 != 0;
        if action & 7 == 6 {
            // The carrier offers a call to a trunk's PBX.
            let call = self.ep.call_refs().next();
            self.calls.push(call);
            let trunk = if alt { "pbx-branch" } else { "pbx-main" };
            let invite = InviteToPbx {
                trunk: trunk.into(),
                did: "+97143456789".into(),
                caller_number: Some("+971501111111".into()),
                caller_name: Some("Ali \"the caller\"".into()),
                sdp: ANSWER_SDP.into(),
                headers: vec![("Supported", "timer".into())],
            };
            self.command(DialogCommand::Invite(call, Box::new(invite)));
            return;
        }
        let Some(call) = self.newest() else {
            return;
        };
        let with_sdp = |code: u16| Reply::new(code).sdp(ANSWER_SDP.into());
        match action & 7 {
            1 => {
                self.command(DialogCommand::Respond(call, Reply::new(180)));
                self.command(DialogCommand::Respond(call, with_sdp(200)));
                self.command(DialogCommand::RespondReinvite(call, with_sdp(200)));
            }
            2 => {
                self.command(DialogCommand::Respond(
                    call,
                    Reply::new(486)
                        .reason("Busy Here")
                        .header("Retry-After", "5"),
                ));
                self.command(DialogCommand::RespondReinvite(call, Reply::new(488)));
            }
            3 => self.command(DialogCommand::Respond(call, with_sdp(183))),
            4 => self.command(DialogCommand::Bye(call, Some("Q.850;cause=16".into()))),
            5 => self.command(DialogCommand::Reinvite(
                call,
                HOLD_SDP.into(),
                vec![("Session-Expires", "1800;refresher=uac".into())],
            )),
            7 => self.command(DialogCommand::Cancel(call)),
            _ => {}
        }
        if alt {
            self.command(DialogCommand::Forget(call));
        }
    }

    /// Expands the sipp keywords in `payload` from what was last sent to `src`.
    fn expand(&self, payload: &[u8], src: SocketAddr) -> Vec<u8> {
        if !payload.contains(&b'[') {
            return payload.to_vec();
        }
        let sent = self.sent.get(&src);
        let mut out = Vec::with_capacity(payload.len() + 256);
        let mut rest = payload;
        while let Some(open) = rest.iter().position(|b| *b == b'[') {
            out.extend_from_slice(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.iter().take(120).position(|b| *b == b']');
            let Some(close) = close else {
                out.push(b'[');
                rest = after;
                continue;
            };
            let keyword = String::from_utf8_lossy(&after[..close]);
            rest = &after[close + 1..];
            match self.keyword(&keyword, sent, payload) {
                // A keyword alone on its line that expands to nothing takes its line along (as
                // in sipp), or it would end the header block early.
                Some(text) if text.is_empty() && (out.is_empty() || out.ends_with(b"\n")) => {
                    rest = rest
                        .strip_prefix(b"\r\n")
                        .or_else(|| rest.strip_prefix(b"\n"))
                        .unwrap_or(rest);
                }
                Some(text) => out.extend_from_slice(text.as_bytes()),
                None => {
                    out.push(b'[');
                    out.extend_from_slice(&after[..=close]);
                }
            }
        }
        out.extend_from_slice(rest);
        fill_len(out)
    }

    fn keyword(&self, keyword: &str, sent: Option<&Sent>, payload: &[u8]) -> Option<String> {
        if let Some(name) = keyword
            .strip_prefix("last_")
            .and_then(|k| k.strip_suffix(":value"))
        {
            let value = sent.and_then(|s| s.headers.get(name)).unwrap_or_default();
            return Some(value.to_owned());
        }
        if let Some(name) = keyword
            .strip_prefix("last_")
            .and_then(|k| k.strip_suffix(':'))
        {
            let lines: Vec<String> = sent
                .map(|s| {
                    s.headers
                        .get_all(name)
                        .map(|v| format!("{name}: {v}"))
                        .collect()
                })
                .unwrap_or_default();
            return Some(lines.join("\r\n"));
        }
        if keyword == "peer_tag_param" {
            // Our tag: in To of our responses, in From of our requests.
            let tag = sent
                .and_then(|s| s.headers.get(if s.request { "From" } else { "To" }))
                .and_then(|t| NameAddr::parse(t).ok())
                .and_then(|n| n.tag().map(str::to_owned));
            return Some(tag.map(|t| format!(";tag={t}")).unwrap_or_default());
        }
        if keyword == "next_url" {
            let uri = sent.and_then(|s| s.contact.clone());
            return Some(uri.unwrap_or_else(|| "sip:127.0.0.1:5060".into()));
        }
        if keyword == "authentication" || keyword.starts_with("authentication ") {
            return Some(authentication(keyword, sent, payload).unwrap_or_default());
        }
        None
    }
}

/// `[authentication username=.. password=.. algorithm=..]` (all optional: the first trunk's
/// credentials, the first challenge): the header answering the last challenge sent to us.
fn authentication(keyword: &str, sent: Option<&Sent>, payload: &[u8]) -> Option<String> {
    let (code, challenges) = sent?.challenge.as_ref()?;
    let mut username = "3cx_trunk";
    let mut password = "s3cret";
    let mut algorithm = None;
    for param in keyword.split_ascii_whitespace().skip(1) {
        match param.split_once('=') {
            Some(("username", v)) => username = v,
            Some(("password", v)) => password = v,
            Some(("algorithm", v)) => algorithm = Some(v),
            _ => {}
        }
    }
    let challenge = challenges
        .iter()
        .find(|c| algorithm.is_none_or(|a| c.contains(&format!("algorithm={a}"))))?;
    // Method and Request-URI from the request line being sent.
    let text = String::from_utf8_lossy(payload);
    let line = text.trim_start_matches(['\r', '\n']).lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    let value = client_auth::authorization(challenge, username, password, method, uri)?;
    let name = if *code == 401 {
        "Authorization"
    } else {
        "Proxy-Authorization"
    };
    Some(format!("{name}: {value}"))
}

/// A datagram that is framed like a SIP message: CRLF-terminated header lines without stray CR
/// or LF, and one Content-Length that matches the body.
fn check_framing(bytes: &[u8]) {
    let text = || String::from_utf8_lossy(bytes);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of the header block: {:?}", text()));
    let head = String::from_utf8_lossy(&bytes[..end]);
    let body = bytes.len() - end - 4;
    let mut lengths = Vec::new();
    for line in head.split("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "a stray CR or LF: {:?}",
            text()
        );
        if let Some(v) = line.strip_prefix("Content-Length:") {
            lengths.push(v.trim().to_owned());
        }
    }
    assert_eq!(lengths, [body.to_string()], "Content-Length: {:?}", text());
}

/// sipp's `[len]`: the length of the body after the header block.
fn fill_len(message: Vec<u8>) -> Vec<u8> {
    const LEN: &[u8] = b"[len]";
    let Some(at) = message.windows(LEN.len()).position(|w| w == LEN) else {
        return message;
    };
    let body_start = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 2));
    let Some(body_start) = body_start.filter(|b| *b > at) else {
        return message;
    };
    let len = (message.len() - body_start).to_string();
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(&message[..at]);
    out.extend_from_slice(len.as_bytes());
    out.extend_from_slice(&message[at + LEN.len()..]);
    out
}

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;

/// Fuzz target `webrtc_demux`: chunks separated by 0xff, the first byte of each choosing the
/// source address.
pub fn webrtc_demux(data: &[u8]) {
    crate::media::engine::demux::fuzz_datagrams(data);
}
