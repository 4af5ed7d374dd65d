//! The dialog layer driven with virtual time: datagrams in, datagrams and call events out,
//! timers fired by advancing an `Instant` by hand. The PBX side is played by hand-written SIP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::Endpoint;
use crate::call::signal::{CallCmd, CallRef, InboundInvite, Reply, Request as CallRequest, ToCall};
use crate::config::Config;
use crate::sip::digest::{self, Algorithm, Credentials};
use crate::sip::grammar::NameAddr;
use crate::sip::message::{Message, Method, Request, Response};
use crate::sip::parse::parse_message;
use crate::sip::registrar::Registrations;
use crate::sip::stats::SipStats;

const REALM: &str = "trunk.example.com";
const USER: &str = "pbx_user";
const PASSWORD: &str = "s3cret";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

fn pbx() -> SocketAddr {
    "127.0.0.1:5080".parse().unwrap()
}

fn config(calls: &str, trunk_extra: &str) -> Config {
    let text = format!(
        r#"
[sip]
listen = "127.0.0.1:5070"
realm = "{REALM}"

[calls]
{calls}

[media]
rtp_ports = "20000-20100"

[[trunks]]
name = "pbx"
auth_username = "{USER}"
password = "{PASSWORD}"
{trunk_extra}
"#
    );
    Config::from_toml(&text).unwrap_or_else(|e| panic!("config: {e:?}"))
}

/// One PBX-side INVITE dialog as the PBX sees it.
#[derive(Clone)]
struct PbxCall {
    call_id: String,
    branch: String,
    from_tag: String,
    cseq: u32,
    /// To as the PBX writes it in-dialog (our tag, once known).
    to: String,
}

impl PbxCall {
    fn new(n: u32) -> PbxCall {
        PbxCall {
            call_id: format!("call-{n}@pbx"),
            branch: format!("z9hG4bK-inv{n}"),
            from_tag: format!("pbxtag{n}"),
            cseq: 10,
            to: "<sip:0501234567@127.0.0.1:5070>".into(),
        }
    }

    fn from(&self) -> String {
        format!("\"Alice\" <sip:201@127.0.0.1>;tag={}", self.from_tag)
    }
}

struct H {
    ep: Endpoint,
    now: Instant,
    nonce: Option<String>,
    seq: u32,
}

impl H {
    fn new(calls: &str, trunk_extra: &str) -> H {
        let now = Instant::now();
        let c = config(calls, trunk_extra);
        let ep = Endpoint::new(
            &c,
            Registrations::default(),
            Arc::new(SipStats::default()),
            now,
        )
        .unwrap();
        H {
            ep,
            now,
            nonce: None,
            seq: 0,
        }
    }

    fn std() -> H {
        H::new("max_calls = 10", "")
    }

    fn recv(&mut self, text: &str) {
        self.ep.handle_datagram(text.as_bytes(), pbx(), self.now);
    }

    fn out(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut v = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            v.push((
                t.dest,
                parse_message(&t.bytes).expect("we send what parses"),
            ));
        }
        v
    }

    fn responses(&mut self) -> Vec<Response> {
        self.out()
            .into_iter()
            .map(|(dest, m)| match m {
                Message::Response(r) => {
                    assert_eq!(dest, pbx());
                    r
                }
                Message::Request(r) => panic!("expected responses, got {} request", r.method),
            })
            .collect()
    }

    fn one_response(&mut self) -> Response {
        let mut v = self.responses();
        assert_eq!(v.len(), 1, "{:?}", codes(&v));
        v.remove(0)
    }

    fn requests(&mut self) -> Vec<(SocketAddr, Request)> {
        self.out()
            .into_iter()
            .map(|(dest, m)| match m {
                Message::Request(r) => (dest, r),
                Message::Response(r) => panic!("expected requests, got {}", r.code),
            })
            .collect()
    }

    fn one_request(&mut self) -> (SocketAddr, Request) {
        let mut v = self.requests();
        assert_eq!(
            v.len(),
            1,
            "{:?}",
            v.iter().map(|r| &r.1.method).collect::<Vec<_>>()
        );
        v.remove(0)
    }

    fn events(&mut self) -> Vec<(CallRef, ToCall)> {
        let mut v = Vec::new();
        while let Some(e) = self.ep.poll_call_event() {
            v.push(e);
        }
        v
    }

    fn cmd(&mut self, c: CallCmd) {
        self.ep.handle_call_command(c, self.now);
    }

    /// Fires every timer due up to `now + d`, at its own instant; returns what went out with
    /// its offset from the start. A deadline that stays due after `handle_timeout` would make
    /// the transport spin, so it fails the test.
    fn advance(&mut self, d: Duration) -> Vec<(Duration, SocketAddr, Message)> {
        let start = self.now;
        let target = self.now + d;
        let mut sent = Vec::new();
        while let Some(at) = self.ep.poll_timeout().filter(|at| *at <= target) {
            self.now = self.now.max(at);
            self.ep.handle_timeout(self.now);
            for (dest, m) in self.out() {
                sent.push((self.now - start, dest, m));
            }
            let next = self.ep.poll_timeout();
            assert!(
                next.is_none_or(|n| n > self.now),
                "poll_timeout stays due after handle_timeout ({:?} after the start)",
                self.now - start
            );
        }
        self.now = target;
        self.ep.handle_timeout(self.now);
        for (dest, m) in self.out() {
            sent.push((self.now - start, dest, m));
        }
        sent
    }

    fn auth_value(&self, method: &str, uri: &str) -> String {
        let nonce = self.nonce.clone().expect("a nonce from a challenge first");
        let creds = Credentials {
            username: USER.into(),
            realm: REALM.into(),
            nonce: nonce.clone(),
            uri: uri.into(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            qop: None,
            nc: None,
            cnonce: None,
            opaque: None,
        };
        let ha1 = digest::ha1(Algorithm::Md5, USER, REALM, PASSWORD);
        let response = digest::expected_response(Algorithm::Md5, &ha1, method, &creds).unwrap();
        format!(
            "Digest username=\"{USER}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5"
        )
    }

    fn take_nonce(&mut self, challenge: &str) {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("nonce in challenge");
        self.nonce = Some(nonce.to_string());
    }

    /// An INVITE from the PBX to `number`, with credentials when we hold a nonce.
    fn invite_text(&self, c: &PbxCall, number: &str, auth: bool, extra: &str) -> String {
        let uri = format!("sip:{number}@127.0.0.1:5070");
        let auth = if auth {
            format!(
                "Proxy-Authorization: {}\r\n",
                self.auth_value("INVITE", &uri)
            )
        } else {
            String::new()
        };
        format!(
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5080;branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {}\r\n\
             To: <sip:{number}@127.0.0.1:5070>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} INVITE\r\n\
             Contact: <sip:201@10.0.0.5:5060>\r\n\
             Supported: timer\r\n\
             Session-Expires: 1800;refresher=uac\r\n\
             Min-SE: 90\r\n\
             {auth}{extra}\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{SDP}",
            c.branch,
            c.from(),
            c.call_id,
            c.cseq,
            SDP.len()
        )
    }

    /// The PBX's first, unauthenticated INVITE: 407, whose nonce we keep; ACKed like a PBX.
    fn challenge(&mut self) -> Response {
        self.seq += 1;
        let c = PbxCall {
            call_id: format!("challenge-{}@pbx", self.seq),
            branch: format!("z9hG4bK-ch{}", self.seq),
            ..PbxCall::new(900 + self.seq)
        };
        self.recv(&self.invite_text(&c, "0501234567", false, ""));
        let r = self.one_response();
        assert_eq!(r.code, 407);
        self.take_nonce(r.headers.get("Proxy-Authenticate").unwrap());
        let ack = format!(
            "ACK sip:0501234567@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5080;branch={};rport\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\n\
             Content-Length: 0\r\n\r\n",
            c.branch,
            c.from(),
            r.headers.get("To").unwrap(),
            c.call_id,
            c.cseq
        );
        self.recv(&ack);
        assert!(self.out().is_empty());
        r
    }

    /// An authenticated INVITE to 0501234567 accepted as call `n`: 100 Trying consumed.
    fn start_call(&mut self, n: u32) -> (CallRef, PbxCall) {
        self.start_call_with(n, "")
    }

    fn start_call_with(&mut self, n: u32, extra: &str) -> (CallRef, PbxCall) {
        if self.nonce.is_none() {
            self.challenge();
        }
        let c = PbxCall::new(n);
        self.recv(&self.invite_text(&c, "0501234567", true, extra));
        let r = self.one_response();
        assert_eq!(r.code, 100);
        let ev = self.events();
        assert_eq!(ev.len(), 1);
        assert!(matches!(ev[0].1, ToCall::Outbound(_)));
        (ev[0].0, c)
    }

    /// Call answered with 200 + SDP; returns the 200 and keeps our tag in `c.to`.
    fn answer(&mut self, call: CallRef, c: &mut PbxCall) -> Response {
        self.cmd(CallCmd::Respond(call, Reply::new(200).sdp(SDP.into())));
        let r = self.one_response();
        assert_eq!(r.code, 200);
        c.to = r.headers.get("To").unwrap().to_string();
        r
    }

    /// An in-dialog request from the PBX.
    fn in_dialog_text(
        &self,
        c: &PbxCall,
        method: &str,
        cseq: u32,
        branch: &str,
        body: &str,
    ) -> String {
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        format!(
            "{method} sip:trunkgate@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:201@10.0.0.5:5060>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            c.from(),
            c.to,
            c.call_id,
            body.len()
        )
    }

    fn ack(&mut self, c: &PbxCall, cseq: u32, branch: &str) {
        self.recv(&self.in_dialog_text(c, "ACK", cseq, branch, ""));
    }

    /// Answered and ACKed.
    fn confirmed_call(&mut self, n: u32) -> (CallRef, PbxCall) {
        let (call, mut c) = self.start_call(n);
        self.answer(call, &mut c);
        self.ack(&c, c.cseq, &format!("z9hG4bK-ack{n}"));
        let ev = self.events();
        assert!(matches!(ev[..], [(x, ToCall::Ack { .. })] if x == call));
        (call, c)
    }

    /// The REGISTER of the trunk (401 first, then with credentials).
    fn register(&mut self) {
        let reg = |auth: &str| {
            format!(
                "REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-reg{};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{USER}@127.0.0.1>;tag=r1\r\n\
                 To: <sip:{USER}@127.0.0.1>\r\nCall-ID: reg-1@pbx\r\nCSeq: {} REGISTER\r\n\
                 Contact: <sip:pbx@127.0.0.1:5080;rinstance=abc>\r\nExpires: 300\r\n\
                 {auth}Content-Length: 0\r\n\r\n",
                auth.len(),
                1 + auth.len().min(1)
            )
        };
        self.recv(&reg(""));
        let r = self.one_response();
        assert_eq!(r.code, 401);
        self.take_nonce(r.headers.get("WWW-Authenticate").unwrap());
        let auth = format!(
            "Authorization: {}\r\n",
            self.auth_value("REGISTER", "sip:127.0.0.1:5070")
        );
        self.recv(&reg(&auth));
        let r = self.one_response();
        assert_eq!(r.code, 200, "{}", r.reason);
    }
}

fn codes(v: &[Response]) -> Vec<u16> {
    v.iter().map(|r| r.code).collect()
}

fn tag_of(header: &str) -> String {
    NameAddr::parse(header).unwrap().tag().unwrap().to_string()
}

fn branch_of(req: &Request) -> String {
    let via = req.headers.get("Via").unwrap();
    via.split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn cseq_of(headers: &crate::sip::message::Headers) -> (u32, String) {
    let v = headers.get("CSeq").unwrap();
    let (n, m) = v.split_once(' ').unwrap();
    (n.parse().unwrap(), m.trim().to_string())
}

/// The PBX's response to one of our requests.
fn reply_text(req: &Request, code: u16, to_tag: Option<&str>, extra: &str, body: &str) -> String {
    let mut to = req.headers.get("To").unwrap().to_string();
    if let Some(t) = to_tag {
        if !to.contains(";tag=") {
            to = format!("{to};tag={t}");
        }
    }
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {code} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        req.headers.get("Via").unwrap(),
        req.headers.get("From").unwrap(),
        req.headers.get("Call-ID").unwrap(),
        req.headers.get("CSeq").unwrap(),
        body.len()
    )
}

// ---- 1. new calls: authentication, numbers, limits ----

#[test]
fn unauthenticated_invite_is_challenged_without_a_call() {
    let mut h = H::std();
    let r = h.challenge();
    assert!(r.headers.get("Proxy-Authenticate").unwrap().contains(REALM));
    assert!(h.events().is_empty());
    assert_eq!(h.ep.active_calls(), 0);
}

#[test]
fn authenticated_invite_becomes_an_outbound_call_with_100_trying() {
    let mut h = H::std();
    h.challenge();
    let c = PbxCall::new(1);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 100);
    let ev = h.events();
    assert_eq!(ev.len(), 1);
    let ToCall::Outbound(o) = &ev[0].1 else {
        panic!("{:?}", ev[0].1)
    };
    assert_eq!(o.trunk, "pbx");
    assert_eq!(o.call_id, c.call_id);
    assert_eq!(o.dialled, "0501234567");
    assert_eq!(o.destination.e164, "+971501234567");
    assert_eq!(o.from_uri, "sip:201@127.0.0.1");
    assert_eq!(o.source, pbx());
    assert_eq!(o.sdp.as_deref(), Some(SDP));
    assert_eq!(
        o.timer.session_expires.as_deref(),
        Some("1800;refresher=uac")
    );
    assert_eq!(o.timer.min_se.as_deref(), Some("90"));
    assert!(o.timer.supports_timer);
    let _ = &o.caller; // derived from From (201), policy-dependent
    assert_eq!(h.ep.active_calls(), 1);
    assert!(h.ep.poll_record().is_none());
}

#[test]
fn invalid_and_disallowed_numbers_are_refused_with_a_record() {
    let mut h = H::std();
    h.challenge();
    let c = PbxCall::new(1);
    h.recv(&h.invite_text(&c, "12", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 484);
    let rec = h.ep.poll_record().expect("record of the refusal");
    assert_eq!(rec.sip_code, 484);
    assert_eq!(rec.sip_call_id.as_deref(), Some(c.call_id.as_str()));

    let c = PbxCall::new(2);
    h.recv(&h.invite_text(&c, "+442079460000", true, ""));
    let r = h.one_response();
    assert_eq!(r.code, 403);
    let rec = h.ep.poll_record().expect("record of the refusal");
    assert_eq!(rec.sip_code, 403);
    assert!(h.events().is_empty());
    assert_eq!(h.ep.active_calls(), 0);
}

fn second_call_refused(calls: &str, trunk: &str) -> Response {
    let mut h = H::new(calls, trunk);
    h.start_call(1);
    let c = PbxCall::new(2);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    let r = h.one_response();
    assert!(h.events().is_empty());
    assert_eq!(h.ep.poll_record().map(|r| r.sip_code), Some(r.code));
    assert_eq!(h.ep.active_calls(), 1);
    r
}

#[test]
fn over_the_global_limit_503_with_retry_after_or_486() {
    let r = second_call_refused("max_calls = 1", "");
    assert_eq!(r.code, 503);
    assert!(r.headers.get("Retry-After").is_some());
    let r = second_call_refused("max_calls = 1\nlimit_response = 486", "");
    assert_eq!(r.code, 486);
    assert!(r.headers.get("Retry-After").is_none());
}

#[test]
fn over_the_trunk_limit_likewise() {
    let r = second_call_refused("max_calls = 10", "max_calls = 1");
    assert_eq!(r.code, 503);
    assert!(r.headers.get("Retry-After").is_some());
    let r = second_call_refused("max_calls = 10\nlimit_response = 486", "max_calls = 1");
    assert_eq!(r.code, 486);
}

// ---- 2. responses and the 2xx retransmission ----

#[test]
fn ringing_carries_the_dialog_tag_and_contact() {
    let mut h = H::std();
    let (call, c) = h.start_call(1);
    h.cmd(CallCmd::Respond(call, Reply::new(180)));
    let r = h.one_response();
    assert_eq!(r.code, 180);
    let tag = tag_of(r.headers.get("To").unwrap());
    assert!(r.headers.get("Contact").unwrap().contains("127.0.0.1:5070"));
    assert_eq!(r.headers.get("Call-ID"), Some(c.call_id.as_str()));
    h.cmd(CallCmd::Respond(call, Reply::new(200).sdp(SDP.into())));
    let r = h.one_response();
    assert_eq!(
        tag_of(r.headers.get("To").unwrap()),
        tag,
        "one tag for the dialog"
    );
}

#[test]
fn our_200_is_retransmitted_until_the_ack() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    let ok = h.answer(call, &mut c);
    assert_eq!(ok.headers.get("Content-Type"), Some("application/sdp"));
    assert_eq!(ok.body, SDP.as_bytes());
    assert!(ok.headers.get("Contact").is_some());
    let sent = h.advance(Duration::from_secs(10));
    let times: Vec<Duration> = sent
        .iter()
        .map(|(at, dest, m)| {
            assert_eq!(*dest, pbx());
            assert!(matches!(m, Message::Response(r) if r.code == 200));
            *at
        })
        .collect();
    assert_eq!(
        times,
        [
            T1,
            T1 + 2 * T1,
            T1 + 2 * T1 + 4 * T1,
            T1 + 2 * T1 + 4 * T1 + T2
        ],
        "T1, 2T1, 4T1, then capped at T2"
    );
    h.ack(&c, c.cseq, "z9hG4bK-ack1");
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, ToCall::Ack { sdp: None })] if *x == call));
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn no_ack_for_64_t1_ends_the_call() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.answer(call, &mut c);
    h.advance(64 * T1 - Duration::from_millis(1));
    assert!(h.events().is_empty(), "not before 64*T1");
    h.advance(Duration::from_millis(1));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::NoAck)] if *x == call),
        "{ev:?}"
    );
    assert!(
        h.advance(Duration::from_secs(10)).is_empty(),
        "retransmission stopped"
    );
}

// ---- 3. retransmitted INVITE, CANCEL ----

#[test]
fn retransmitted_invite_gets_the_last_provisional_and_no_second_call() {
    let mut h = H::std();
    let (call, c) = h.start_call(1);
    h.cmd(CallCmd::Respond(call, Reply::new(180)));
    assert_eq!(h.one_response().code, 180);
    h.recv(&h.invite_text(&c, "0501234567", true, ""));
    assert_eq!(h.one_response().code, 180);
    assert!(h.events().is_empty());
    assert_eq!(h.ep.active_calls(), 1);
}

fn cancel_text(c: &PbxCall, branch: &str) -> String {
    format!(
        "CANCEL sip:0501234567@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: <sip:0501234567@127.0.0.1:5070>\r\n\
         Call-ID: {}\r\nCSeq: {} CANCEL\r\nContent-Length: 0\r\n\r\n",
        c.from(),
        c.call_id,
        c.cseq
    )
}

#[test]
fn cancel_before_the_final_gets_200_and_487() {
    let mut h = H::std();
    let (call, c) = h.start_call(1);
    h.cmd(CallCmd::Respond(call, Reply::new(180)));
    h.out();
    h.recv(&cancel_text(&c, &c.branch));
    let rs = h.responses();
    assert_eq!(
        codes(&rs),
        [200, 487],
        "200 to the CANCEL first, then 487 to the INVITE"
    );
    assert_eq!(cseq_of(&rs[0].headers).1, "CANCEL");
    assert_eq!(cseq_of(&rs[1].headers).1, "INVITE");
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, ToCall::Cancelled)] if *x == call));
    // the call answering late changes nothing
    h.cmd(CallCmd::Respond(call, Reply::new(200).sdp(SDP.into())));
    assert!(h.out().is_empty());
}

#[test]
fn cancel_after_the_200_gets_200_only_and_unknown_cancel_481() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.answer(call, &mut c);
    h.recv(&cancel_text(&c, &c.branch));
    assert_eq!(codes(&h.responses()), [200]);
    assert!(h.events().is_empty());

    let other = PbxCall::new(7);
    h.recv(&cancel_text(&other, "z9hG4bK-nothing"));
    assert_eq!(codes(&h.responses()), [481]);
}

// ---- 4. BYE and re-INVITE from the PBX ----

#[test]
fn bye_in_the_dialog_200_and_wrong_tag_or_call_id_481() {
    let mut h = H::std();
    let (call, c) = h.confirmed_call(1);
    let mut wrong = c.clone();
    wrong.from_tag = "someoneelse".into();
    h.recv(&h.in_dialog_text(&wrong, "BYE", 11, "z9hG4bK-bye-w1", ""));
    assert_eq!(codes(&h.responses()), [481]);
    let mut wrong = c.clone();
    wrong.to = "<sip:0501234567@127.0.0.1:5070>;tag=nottours".into();
    h.recv(&h.in_dialog_text(&wrong, "BYE", 11, "z9hG4bK-bye-w2", ""));
    assert_eq!(codes(&h.responses()), [481]);
    let mut wrong = c.clone();
    wrong.call_id = "other@pbx".into();
    h.recv(&h.in_dialog_text(&wrong, "BYE", 11, "z9hG4bK-bye-w3", ""));
    assert_eq!(codes(&h.responses()), [481]);
    assert!(h.events().is_empty());

    h.recv(&h.in_dialog_text(&c, "BYE", 11, "z9hG4bK-bye1", ""));
    assert_eq!(codes(&h.responses()), [200]);
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, ToCall::Bye)] if *x == call));
}

#[test]
fn reinvite_waits_for_the_call_and_a_second_one_gets_500() {
    let mut h = H::std();
    let (call, c) = h.confirmed_call(1);
    h.recv(&h.in_dialog_text(&c, "INVITE", 11, "z9hG4bK-re1", SDP));
    assert!(h.out().is_empty(), "the call answers");
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Reinvite { sdp: Some(s), .. })] if *x == call && s == SDP),
        "{ev:?}"
    );
    h.recv(&h.in_dialog_text(&c, "INVITE", 12, "z9hG4bK-re2", SDP));
    let r = h.one_response();
    assert_eq!(r.code, 500);
    assert!(r.headers.get("Retry-After").is_some());
    assert!(h.events().is_empty());
    h.ack(&c, 12, "z9hG4bK-re2"); // the PBX ACKs the 500 in its transaction
    assert!(h.out().is_empty() && h.events().is_empty());

    h.cmd(CallCmd::RespondReinvite(
        call,
        Reply::new(200).sdp(SDP.into()),
    ));
    let r = h.one_response();
    assert_eq!(r.code, 200);
    assert_eq!(cseq_of(&r.headers), (11, "INVITE".into()));
    h.ack(&c, 11, "z9hG4bK-reack1");
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, ToCall::Ack { .. })] if *x == call));
    assert!(
        h.advance(Duration::from_secs(5)).is_empty(),
        "ACKed: no retransmission"
    );

    // a re-INVITE with a CSeq below the last one
    h.recv(&h.in_dialog_text(&c, "INVITE", 9, "z9hG4bK-re3", SDP));
    assert_eq!(h.one_response().code, 500);
    assert!(h.events().is_empty());
}

// ---- 5. our BYE ----

#[test]
fn our_bye_goes_to_the_pbx_contact_via_its_source() {
    let mut h = H::std();
    let (call, mut c) = h.start_call_with(1, "Record-Route: <sip:10.0.0.1;lr>\r\n");
    let ok = h.answer(call, &mut c);
    assert_eq!(ok.headers.get("Record-Route"), Some("<sip:10.0.0.1;lr>"));
    let our_tag = tag_of(&c.to);
    h.ack(&c, c.cseq, "z9hG4bK-ack1");
    h.events();
    h.cmd(CallCmd::Bye(call, Some("Q.850;cause=16".into())));
    let (dest, bye) = h.one_request();
    assert_eq!(dest, pbx(), "to where the INVITE came from");
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri, "sip:201@10.0.0.5:5060");
    assert_eq!(bye.headers.get("Route"), Some("<sip:10.0.0.1;lr>"));
    assert_eq!(tag_of(bye.headers.get("From").unwrap()), our_tag);
    assert_eq!(tag_of(bye.headers.get("To").unwrap()), c.from_tag);
    assert_eq!(bye.headers.get("Call-ID"), Some(c.call_id.as_str()));
    assert_eq!(bye.headers.get("Reason"), Some("Q.850;cause=16"));
    let (n, m) = cseq_of(&bye.headers);
    assert_eq!(m, "BYE");
    assert!(n >= 2);
    h.recv(&reply_text(&bye, 200, None, "", ""));
    assert!(h.events().is_empty());
    assert!(h.out().is_empty());
}

#[test]
fn our_bye_before_the_ack_waits_for_it() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.answer(call, &mut c);
    h.cmd(CallCmd::Bye(call, None));
    assert!(h.out().is_empty());
    h.ack(&c, c.cseq, "z9hG4bK-ack1");
    let ev = h.events();
    assert!(matches!(&ev[..], [(_, ToCall::Ack { .. })]));
    let (dest, bye) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(bye.method, Method::Bye);
}

// ---- 6. our re-INVITE ----

fn our_reinvite(h: &mut H, call: CallRef) -> Request {
    h.cmd(CallCmd::Reinvite(
        call,
        SDP.into(),
        vec![("Session-Expires", "1800;refresher=uac".into())],
    ));
    let (dest, req) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(req.method, Method::Invite);
    req
}

#[test]
fn our_reinvite_200_is_acked_and_delivered() {
    let mut h = H::std();
    let (call, c) = h.confirmed_call(1);
    let re = our_reinvite(&mut h, call);
    assert_eq!(re.uri, "sip:201@10.0.0.5:5060");
    assert_eq!(re.headers.get("Content-Type"), Some("application/sdp"));
    assert_eq!(re.body, SDP.as_bytes());
    assert_eq!(tag_of(re.headers.get("To").unwrap()), c.from_tag);
    assert_eq!(
        re.headers.get("Session-Expires"),
        Some("1800;refresher=uac")
    );
    let (n, _) = cseq_of(&re.headers);
    h.recv(&reply_text(
        &re,
        200,
        None,
        "Contact: <sip:201@10.0.0.5:5060>\r\n",
        SDP,
    ));
    let (dest, ack) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(ack.method, Method::Ack);
    assert_ne!(branch_of(&ack), branch_of(&re));
    assert_eq!(cseq_of(&ack.headers), (n, "ACK".into()));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Reinvite, code: 200, sdp: Some(_), .. })] if *x == call),
        "{ev:?}"
    );
    // the next request in the dialog counts on
    h.cmd(CallCmd::Bye(call, None));
    let (_, bye) = h.one_request();
    assert_eq!(cseq_of(&bye.headers).0, n + 1);
}

#[test]
fn our_reinvite_491_is_acked_in_the_transaction() {
    let mut h = H::std();
    let (call, _c) = h.confirmed_call(1);
    let re = our_reinvite(&mut h, call);
    h.recv(&reply_text(&re, 491, None, "", ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(branch_of(&ack), branch_of(&re));
    assert_eq!(
        cseq_of(&ack.headers),
        (cseq_of(&re.headers).0, "ACK".into())
    );
    let ev = h.events();
    assert!(matches!(
        &ev[..],
        [(
            _,
            ToCall::Response {
                request: CallRequest::Reinvite,
                code: 491,
                ..
            }
        )]
    ));
    // and another re-INVITE may follow
    our_reinvite(&mut h, call);
}

#[test]
fn our_reinvite_without_response_is_a_408_after_timer_b() {
    let mut h = H::std();
    let (call, _c) = h.confirmed_call(1);
    our_reinvite(&mut h, call);
    let sent = h.advance(64 * T1 - Duration::from_millis(1));
    assert!(sent
        .iter()
        .all(|(_, _, m)| matches!(m, Message::Request(r) if r.method == Method::Invite)));
    assert!(!sent.is_empty(), "Timer A retransmits");
    assert!(h.events().is_empty());
    h.advance(Duration::from_millis(1));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Reinvite, code: 408, .. })] if *x == call),
        "{ev:?}"
    );
}

// ---- 7. inbound calls toward the PBX ----

fn inbound(did: &str) -> Box<InboundInvite> {
    Box::new(InboundInvite {
        trunk: "pbx".into(),
        did: did.into(),
        caller_number: Some("+97145551234".into()),
        caller_name: Some("Bob".into()),
        sdp: SDP.into(),
        headers: vec![("Session-Expires", "1800".into())],
    })
}

fn offer(h: &mut H) -> (CallRef, Request) {
    let call = h.ep.call_refs().next();
    h.cmd(CallCmd::Invite(call, inbound("0501234567")));
    let (dest, inv) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(inv.method, Method::Invite);
    (call, inv)
}

#[test]
fn inbound_call_rings_answers_and_hangs_up() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    assert_eq!(inv.uri, "sip:0501234567@127.0.0.1:5080;rinstance=abc");
    let from = inv.headers.get("From").unwrap();
    assert!(from.contains("sip:+97145551234@127.0.0.1:5070"), "{from}");
    assert!(from.contains("\"Bob\""), "{from}");
    assert!(inv
        .headers
        .get("P-Asserted-Identity")
        .unwrap()
        .contains("+97145551234"));
    assert_eq!(inv.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(inv.body, SDP.as_bytes());
    assert_eq!(cseq_of(&inv.headers), (1, "INVITE".into()));

    h.recv(&reply_text(&inv, 180, Some("pbx-answer"), "", ""));
    assert!(h.out().is_empty());
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Invite, code: 180, .. })] if *x == call),
        "{ev:?}"
    );
    h.recv(&reply_text(
        &inv,
        200,
        Some("pbx-answer"),
        "Contact: <sip:ext100@127.0.0.1:5080>\r\n",
        SDP,
    ));
    let (dest, ack) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, "sip:ext100@127.0.0.1:5080");
    assert_eq!(cseq_of(&ack.headers), (1, "ACK".into()));
    assert_eq!(tag_of(ack.headers.get("To").unwrap()), "pbx-answer");
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Invite, code: 200, sdp: Some(s), .. })] if *x == call && s == SDP),
        "{ev:?}"
    );
    // a retransmitted 200 gets the same ACK again
    h.recv(&reply_text(
        &inv,
        200,
        Some("pbx-answer"),
        "Contact: <sip:ext100@127.0.0.1:5080>\r\n",
        SDP,
    ));
    let (_, again) = h.one_request();
    assert_eq!(again.method, Method::Ack);
    assert!(h.events().is_empty());

    h.cmd(CallCmd::Bye(call, None));
    let (dest, bye) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri, "sip:ext100@127.0.0.1:5080");
    assert_eq!(tag_of(bye.headers.get("To").unwrap()), "pbx-answer");
    assert_eq!(cseq_of(&bye.headers), (2, "BYE".into()));
}

#[test]
fn a_long_ringing_inbound_call_keeps_the_timers_quiet() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    h.recv(&reply_text(&inv, 180, Some("ring"), "", ""));
    h.events();
    // the PBX rings past Timer B: no timeout (the call's no-answer timer decides), no spinning
    assert!(h.advance(Duration::from_secs(60)).is_empty());
    assert!(h.events().is_empty());
    h.recv(&reply_text(
        &inv,
        200,
        Some("ring"),
        "Contact: <sip:ext100@127.0.0.1:5080>\r\n",
        SDP,
    ));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    let ev = h.events();
    assert!(matches!(&ev[..], [(x, ToCall::Response { code: 200, .. })] if *x == call));
}

#[test]
fn inbound_call_to_an_unregistered_trunk_is_480_without_sending() {
    let mut h = H::std();
    let call = h.ep.call_refs().next();
    h.cmd(CallCmd::Invite(call, inbound("0501234567")));
    assert!(h.out().is_empty());
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Invite, code: 480, .. })] if *x == call),
        "{ev:?}"
    );
    assert_eq!(h.ep.active_calls(), 0);
}

const PBX_CHALLENGE: &str =
    "Proxy-Authenticate: Digest realm=\"3CX\", nonce=\"pbxnonce1\", algorithm=MD5\r\n";

#[test]
fn a_challenge_to_our_invite_is_answered_once_with_the_trunk_credentials() {
    let mut h = H::new(
        "",
        "outbound_username = \"gw\"\noutbound_password = \"gwpass\"",
    );
    h.register();
    let (call, inv) = offer(&mut h);
    h.recv(&reply_text(&inv, 407, Some("t407"), PBX_CHALLENGE, ""));
    let reqs = h.requests();
    assert_eq!(
        reqs.len(),
        2,
        "{:?}",
        reqs.iter().map(|r| &r.1.method).collect::<Vec<_>>()
    );
    let ack = &reqs[0].1;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(branch_of(ack), branch_of(&inv));
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(cseq_of(&ack.headers), (1, "ACK".into()));
    let (dest, retry) = &reqs[1];
    assert_eq!(*dest, pbx());
    assert_eq!(retry.method, Method::Invite);
    assert_ne!(branch_of(retry), branch_of(&inv));
    assert_eq!(cseq_of(&retry.headers), (2, "INVITE".into()));
    assert_eq!(retry.headers.get("Call-ID"), inv.headers.get("Call-ID"));
    let creds =
        digest::parse_credentials(retry.headers.get("Proxy-Authorization").unwrap()).unwrap();
    assert_eq!(creds.username, "gw");
    assert_eq!(creds.uri, inv.uri);
    let ha1 = digest::ha1(Algorithm::Md5, "gw", "3CX", "gwpass");
    assert!(digest::verify(&creds, "INVITE", &ha1));
    assert!(h.events().is_empty());

    // a second challenge is the call's
    h.recv(&reply_text(retry, 407, Some("t407b"), PBX_CHALLENGE, ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Invite, code: 407, .. })] if *x == call),
        "{ev:?}"
    );
}

#[test]
fn a_challenge_without_outbound_credentials_is_delivered() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    h.recv(&reply_text(&inv, 407, Some("t407"), PBX_CHALLENGE, ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Invite, code: 407, .. })] if *x == call),
        "{ev:?}"
    );
}

#[test]
fn our_cancel_waits_for_a_provisional_then_487_is_acked() {
    let mut h = H::std();
    h.register();
    let (call, inv) = offer(&mut h);
    h.cmd(CallCmd::Cancel(call));
    assert!(h.out().is_empty(), "no CANCEL before a provisional");
    h.recv(&reply_text(&inv, 180, Some("ring"), "", ""));
    let (dest, cancel) = h.one_request();
    assert_eq!(dest, pbx());
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(branch_of(&cancel), branch_of(&inv));
    assert_eq!(cseq_of(&cancel.headers), (1, "CANCEL".into()));
    assert!(!cancel.headers.get("To").unwrap().contains("tag="));
    h.recv(&reply_text(&cancel, 200, Some("ring"), "", ""));
    assert!(h.out().is_empty());
    h.recv(&reply_text(&inv, 487, Some("ring"), "", ""));
    let (_, ack) = h.one_request();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(branch_of(&ack), branch_of(&inv));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [(x, ToCall::Response { request: CallRequest::Invite, code: 487, .. })] if *x == call),
        "{ev:?}"
    );
}

// ---- 8. Done ----

#[test]
fn done_before_a_final_sends_500_and_forgets_the_dialog() {
    let mut h = H::std();
    let (call, mut c) = h.start_call(1);
    h.cmd(CallCmd::Respond(call, Reply::new(180)));
    c.to = h.one_response().headers.get("To").unwrap().to_string();
    h.cmd(CallCmd::Done(call));
    let r = h.one_response();
    assert_eq!(r.code, 500);
    assert_eq!(tag_of(r.headers.get("To").unwrap()), tag_of(&c.to));
    assert_eq!(h.ep.active_calls(), 0);
    h.recv(&h.in_dialog_text(&c, "BYE", 11, "z9hG4bK-bye1", ""));
    assert_eq!(codes(&h.responses()), [481]);
    assert!(h.events().is_empty());
}
