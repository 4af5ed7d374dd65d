//! Fuzz target `sip_datagram`: a few datagrams from a few PBX addresses into an endpoint, with
//! the call side played by the harness; everything the endpoint sends must parse with our own
//! parser, timers must settle, and no dialog or timer may outlive the calls.
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

use crate::config::Config;
use crate::sip::client_auth;
use crate::sip::endpoint::Endpoint;
use crate::sip::grammar::NameAddr;
use crate::sip::message::Headers;
use crate::sip::parse::{self, ParseError, ParseFailure, Parsed};
use crate::sip::registrar::Registrations;
use crate::sip::stats::SipStats;
use crate::sip::transaction::Transmit;
use crate::sip::tu::{CallRef, DialogCommand, DialogEvent, InviteToPbx, OwnRequest, Reply};

use super::origin;

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

pub(super) fn config() -> &'static Config {
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
pub(super) struct Sent {
    headers: Headers,
    /// It was a request (our tag is in From) rather than a response (our tag is in To).
    request: bool,
    /// The last Contact we sent to it, for `[next_url]`.
    contact: Option<String>,
    /// The challenge header values of the last 401/407 to it.
    challenge: Option<(u16, Vec<String>)>,
}

/// The endpoint, virtual time, and the harness playing the calls.
pub(super) struct Harness {
    pub(super) ep: Endpoint,
    pub(super) now: Instant,
    pub(super) sent: HashMap<SocketAddr, Sent>,
    /// Calls in order of creation; the harness acts on the newest live one.
    pub(super) calls: Vec<CallRef>,
    /// Calls told to end (Done sent).
    pub(super) done: Vec<CallRef>,
    /// The datagram being handled is a request our parser rejects (400/505).
    pub(super) answering_rejected: bool,
    /// What went out while handling the current datagram: response codes, `None` for requests.
    pub(super) round: Vec<Option<u16>>,
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

pub(super) fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
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
    pub(super) fn drain(&mut self) {
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
    pub(super) fn expand(&self, payload: &[u8], src: SocketAddr) -> Vec<u8> {
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
pub(super) fn fill_len(message: Vec<u8>) -> Vec<u8> {
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
