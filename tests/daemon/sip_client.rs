//! The one SIP test client: a UDP peer on a loopback address that builds the requests a PBX
//! sends (REGISTER, INVITE, OPTIONS, ACK), sends them to the daemon, waits (bounded) for their
//! answers, reads the daemon's digest challenges and answers them with the crate's own digest
//! client, `trunkgate::sip::client_auth`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use trunkgate::sip::client_auth;
use trunkgate::sip::digest::{self, Algorithm};

/// How long a request waits for a final response that must come.
pub const REPLY_WAIT: Duration = Duration::from_secs(3);

/// A fresh random value for Call-IDs, tags and branches.
pub fn rand_u64() -> u64 {
    rand::random()
}

/// A request as sent: its text, what identifies its transaction and its call.
#[derive(Debug, Clone)]
pub struct Request {
    pub text: String,
    pub branch: String,
    pub uri: String,
    call: Call,
}

/// The headers that place a request in its call.
#[derive(Debug, Clone)]
struct Call {
    id: String,
    tag: String,
    cseq: u32,
}

impl Call {
    /// A new call (Call-ID and From tag), CSeq 1.
    fn new(what: &str) -> Call {
        Call {
            id: format!("{:x}@{what}", rand_u64()),
            tag: format!("{:x}", rand_u64()),
            cseq: 1,
        }
    }
}

/// The request line's method and URI, and the From and To addresses.
struct Start {
    method: &'static str,
    uri: String,
    from: String,
    to: String,
}

impl Start {
    fn new(method: &'static str, uri: String, from: &str, to: &str) -> Start {
        Start {
            method,
            uri,
            from: from.to_string(),
            to: to.to_string(),
        }
    }
}

impl Request {
    /// The very same bytes as a new transaction: only the top Via branch differs.
    pub fn with_new_branch(&self) -> Request {
        let branch = new_branch();
        Request {
            text: self.text.replacen(&self.branch, &branch, 1),
            branch,
            ..self.clone()
        }
    }
}

fn new_branch() -> String {
    format!("z9hG4bK-{:x}", rand_u64())
}

/// A PBX (or an attacker) on one loopback address talking to one daemon. Its REGISTERs share a
/// Call-ID and count CSeq up, as one registration does; each INVITE starts a new call.
pub struct SipClient {
    pub socket: UdpSocket,
    pub daemon: SocketAddr,
    call_id: String,
    tag: String,
    cseq: AtomicU32,
}

impl SipClient {
    pub fn new(daemon: SocketAddr) -> SipClient {
        SipClient::bind([127, 0, 0, 1], daemon)
    }

    /// A client on an ephemeral port of another loopback address (127.0.0.x): a peer the
    /// daemon tells apart from the others by its source address.
    pub fn bind(ip: [u8; 4], daemon: SocketAddr) -> SipClient {
        assert_eq!(ip[0], 127, "test peers stay on loopback");
        let socket = UdpSocket::bind((Ipv4Addr::from(ip), 0))
            .unwrap_or_else(|e| panic!("bind a client on {ip:?}: {e}"));
        SipClient {
            socket,
            daemon,
            call_id: format!("{:x}@reg", rand_u64()),
            tag: format!("{:x}", rand_u64()),
            cseq: AtomicU32::new(0),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    // ------------------------------------------------------------------ building requests

    pub fn register_uri(&self) -> String {
        format!("sip:{}", self.daemon)
    }

    pub fn invite_uri(&self, dialled: &str) -> String {
        format!("sip:{dialled}@{}", self.daemon)
    }

    /// The contact a REGISTER from this client binds for `user`.
    pub fn contact(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.addr())
    }

    /// A REGISTER of `user` (From, To and Contact), with `headers` (credentials, User-Agent).
    pub fn register(&self, user: &str, headers: &[(&str, &str)]) -> Request {
        let cseq = self.cseq.fetch_add(1, Ordering::Relaxed) + 1;
        let aor = format!("<sip:{user}@{}>", self.daemon);
        let own = format!("Contact: <{}>\r\nExpires: 600\r\n", self.contact(user));
        let call = Call {
            id: self.call_id.clone(),
            tag: self.tag.clone(),
            cseq,
        };
        let start = Start::new("REGISTER", self.register_uri(), &aor, &aor);
        self.build(start, call, &own, headers, "")
    }

    /// An INVITE to `dialled` with an SDP offer (PCMA, PCMU), as a new call.
    pub fn invite(&self, dialled: &str, headers: &[(&str, &str)]) -> Request {
        self.invite_in(self.invite_uri(dialled), Call::new("invite"), headers)
    }

    /// `invite` again in the same call (CSeq + 1, new branch) with `headers`: how a PBX answers
    /// a challenge.
    pub fn retry(&self, invite: &Request, headers: &[(&str, &str)]) -> Request {
        let call = Call {
            cseq: invite.call.cseq + 1,
            ..invite.call.clone()
        };
        self.invite_in(invite.uri.clone(), call, headers)
    }

    fn invite_in(&self, uri: String, call: Call, headers: &[(&str, &str)]) -> Request {
        let me = self.addr();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 0\r\n\
             a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
            ip = me.ip()
        );
        let own = format!("Contact: <sip:100@{me}>\r\n");
        let start = Start::new(
            "INVITE",
            uri.clone(),
            &format!("<sip:100@{}>", self.daemon),
            &format!("<{uri}>"),
        );
        self.build(start, call, &own, headers, &sdp)
    }

    /// An OPTIONS to the daemon, with `headers` (a User-Agent, say).
    pub fn options(&self, headers: &[(&str, &str)]) -> Request {
        let uri = self.register_uri();
        let from = format!("<sip:probe@{}>", self.addr());
        let start = Start::new("OPTIONS", uri.clone(), &from, &format!("<{uri}>"));
        self.build(start, Call::new("options"), "", headers, "")
    }

    /// The request line and the headers every request has, the method's `own` header lines,
    /// `headers`, and an SDP `body` if not empty.
    fn build(
        &self,
        s: Start,
        call: Call,
        own: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request {
        let branch = new_branch();
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let Start {
            method,
            uri,
            from,
            to,
        } = s;
        let text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: {from};tag={}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n{own}{extra}\
             {content_type}Content-Length: {}\r\n\r\n{body}",
            self.addr(),
            call.tag,
            call.id,
            call.cseq,
            body.len()
        );
        Request {
            text,
            branch,
            uri,
            call,
        }
    }

    /// ACKs a non-2xx final response to `invite` (same branch as the response's Via).
    pub fn ack(&self, invite: &Request, resp: &str) {
        let h = |n: &str| {
            header_values(resp, n)
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        let cseq = h("CSeq");
        let number = cseq.split_whitespace().next().unwrap_or("1");
        let ack = format!(
            "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
             CSeq: {number} ACK\r\nContent-Length: 0\r\n\r\n",
            invite.uri,
            h("Via"),
            h("From"),
            h("To"),
            h("Call-ID")
        );
        self.send_raw(ack.as_bytes());
    }

    // -------------------------------------------------------------- sending and receiving

    pub fn send(&self, req: &Request) {
        self.send_raw(req.text.as_bytes());
    }

    pub fn send_raw(&self, data: &[u8]) {
        self.socket.send_to(data, self.daemon).expect("send");
    }

    /// The next datagram within `wait`, as text.
    pub fn recv(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).ok()?;
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Every datagram within `wait` (at most 20).
    pub fn everything(&self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while got.len() < 20 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.recv(left) {
                Some(r) => got.push(r),
                None => break,
            }
        }
        got
    }

    /// The first final (non-1xx) response within `wait`; of the transaction `branch` when given
    /// (answers to earlier transactions are skipped).
    pub fn final_response(&self, branch: Option<&str>, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let r = self.recv(left)?;
            let ours = branch.is_none_or(|b| top_branch(&r).as_deref() == Some(b));
            if !r.starts_with("SIP/2.0 1") && ours {
                return Some(r);
            }
        }
        None
    }

    /// Sends `req` once; its final response within `wait`.
    pub fn exchange_within(&self, req: &Request, wait: Duration) -> Option<String> {
        self.send(req);
        self.final_response(Some(&req.branch), wait)
    }

    /// Sends `req` once; its final response within [`REPLY_WAIT`].
    pub fn exchange(&self, req: &Request) -> Option<String> {
        self.exchange_within(req, REPLY_WAIT)
    }

    /// [`SipClient::exchange`] for a response that must come.
    pub fn request(&self, req: &Request) -> String {
        self.exchange(req)
            .unwrap_or_else(|| panic!("no final response within {REPLY_WAIT:?} to:\n{}", req.text))
    }

    /// Sends the INVITE `req` once; its final response within [`REPLY_WAIT`], ACKed.
    pub fn exchange_invite(&self, req: &Request) -> Option<String> {
        let r = self.exchange(req)?;
        self.ack(req, &r);
        Some(r)
    }

    /// As a UA over a lossy network: sends `req` every 500 ms (at most `tries` times) until its
    /// final response comes, then waits a last second.
    pub fn exchange_retransmitting(&self, req: &Request, tries: usize) -> Option<String> {
        for _ in 0..tries {
            if let Some(r) = self.exchange_within(req, Duration::from_millis(500)) {
                return Some(r);
            }
        }
        self.final_response(Some(&req.branch), Duration::from_secs(1))
    }

    // ------------------------------------------------------------ what a PBX does in full

    /// A trunk registration as a PBX does it: REGISTER, 401, REGISTER answering the MD5
    /// challenge, each retransmitted like a UA on UDP. The final response to the authenticated
    /// REGISTER, or what went wrong.
    pub fn register_trunk(&self, user: &str, password: &str) -> Result<String, String> {
        let first = self.register(user, &[]);
        let r = self
            .exchange_retransmitting(&first, 8)
            .ok_or("no answer to the unauthenticated REGISTER")?;
        if status_code(&r) != 401 {
            return Err(format!(
                "unauthenticated REGISTER: expected 401, got {:?}",
                first_line(&r)
            ));
        }
        let challenge = find_challenge(&r, "WWW-Authenticate", Algorithm::Md5)
            .ok_or_else(|| format!("no MD5 challenge in\n{r}"))?;
        let creds = challenge.answer(user, password, "REGISTER", &first.uri);
        let second = self.register(user, &[("Authorization", &creds)]);
        self.exchange_retransmitting(&second, 8)
            .ok_or_else(|| "no answer to the authenticated REGISTER".to_string())
    }

    /// An INVITE to `dialled`; its 407 ACKed and answered (MD5, no qop, as 3CX answers) in the
    /// same call. The final response to the authenticated INVITE, ACKed.
    pub fn authenticated_invite(&self, dialled: &str, user: &str, password: &str) -> String {
        let first = self.invite(dialled, &[]);
        let r = self
            .exchange_invite(&first)
            .expect("a 407 to the first INVITE");
        assert_eq!(status_code(&r), 407, "{r}");
        let md5 = find_challenge(&r, "Proxy-Authenticate", Algorithm::Md5)
            .unwrap_or_else(|| panic!("no MD5 challenge in\n{r}"));
        let creds = md5
            .without_qop()
            .answer(user, password, "INVITE", &first.uri);
        let second = self.retry(&first, &[("Proxy-Authorization", &creds)]);
        self.exchange_invite(&second)
            .expect("a final response to the authenticated INVITE")
    }
}

// ------------------------------------------------------------------ reading responses

pub fn status_code(resp: &str) -> u16 {
    resp.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0)
}

pub fn first_line(s: &str) -> &str {
    s.split("\r\n").next().unwrap_or("")
}

/// Values of a header (case-insensitive name) in a message.
pub fn header_values(msg: &str, name: &str) -> Vec<String> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The comma-separated items of every value of `name` in a message.
pub fn list_items(msg: &str, name: &str) -> Vec<String> {
    header_values(msg, name)
        .iter()
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `branch` of a message's top Via.
pub fn top_branch(msg: &str) -> Option<String> {
    let via = header_values(msg, "Via").into_iter().next()?;
    let i = via.find("branch=")? + "branch=".len();
    Some(via[i..].split([';', ',', ' ']).next()?.to_string())
}

// ------------------------------------------------------------- challenges and answers

/// One `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    pub algorithm: Algorithm,
    pub realm: String,
    pub nonce: String,
    pub qop: Option<String>,
    pub stale: Option<String>,
}

impl Challenge {
    /// `None` for what is no Digest challenge with a known algorithm, a realm and a nonce.
    pub fn parse(value: &str) -> Option<Challenge> {
        let params = client_auth::challenge_params(value)?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Some(Challenge {
            // RFC 7616: no algorithm parameter means MD5
            algorithm: Algorithm::parse(get("algorithm").as_deref().unwrap_or("MD5"))?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            qop: get("qop"),
            stale: get("stale"),
        })
    }

    pub fn offers_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
    }

    pub fn is_stale(&self) -> bool {
        self.stale
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
    }

    /// The challenge with no qop offered: what a client answers without one (3CX).
    pub fn without_qop(&self) -> Challenge {
        Challenge {
            qop: None,
            ..self.clone()
        }
    }

    /// The header value, as the daemon writes one.
    pub fn header_value(&self) -> String {
        digest::challenge(
            self.algorithm,
            &self.realm,
            &self.nonce,
            self.offers_auth(),
            self.is_stale(),
        )
    }

    /// The `Authorization` / `Proxy-Authorization` value answering this challenge (nonce count 1
    /// with qop).
    pub fn answer(&self, user: &str, password: &str, method: &str, uri: &str) -> String {
        client_auth::authorization(&self.header_value(), user, password, method, uri)
            .unwrap_or_else(|| panic!("the digest client does not answer {self:?}"))
    }

    /// [`Challenge::answer`] with nonce count `nc`: the next request on the same nonce.
    pub fn answer_nc(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
    ) -> String {
        let value = self.answer(user, password, method, uri);
        if nc == 1 {
            return value;
        }
        let mut creds = digest::parse_credentials(&value).expect("the digest client's own value");
        let (Some(first), true) = (creds.nc.clone(), self.offers_auth()) else {
            panic!("a nonce count needs a qop: {self:?}");
        };
        let old_response = creds.response.clone();
        creds.nc = Some(format!("{nc:08x}"));
        let ha1 = digest::ha1(self.algorithm, user, &self.realm, password);
        let response = digest::expected_response(self.algorithm, &ha1, method, &creds)
            .expect("a response for the digest client's own value");
        value
            .replacen(&format!("nc={first}"), &format!("nc={nc:08x}"), 1)
            .replacen(&old_response, &response, 1)
    }
}

/// The challenges of a 401/407 in `header`, in order; panics on one that does not parse.
pub fn challenges(resp: &str, header: &str) -> Vec<Challenge> {
    header_values(resp, header)
        .iter()
        .map(|v| Challenge::parse(v).unwrap_or_else(|| panic!("challenge {v:?} does not parse")))
        .collect()
}

/// The first challenge of `algorithm` in `header`, if any parses.
pub fn find_challenge(resp: &str, header: &str, algorithm: Algorithm) -> Option<Challenge> {
    header_values(resp, header)
        .iter()
        .filter_map(|v| Challenge::parse(v))
        .find(|c| c.algorithm == algorithm)
}
