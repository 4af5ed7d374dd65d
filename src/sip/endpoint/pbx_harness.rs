//! A hand-played PBX for the endpoint's unit tests: SIP text in, datagrams and call events
//! out, timers fired by advancing an `Instant` by hand.

#![allow(dead_code)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Endpoint;
use crate::config::Config;
use crate::sip::digest::{self, Algorithm, Credentials};
use crate::sip::grammar::NameAddr;
use crate::sip::message::{Message, Request, Response};
use crate::sip::parse::parse_message;
use crate::sip::registrar::Registrations;
use crate::sip::stats::SipStats;
use crate::sip::tu::{CallRef, DialogCommand, DialogEvent, InviteToPbx, RefusedInvite, Reply};

pub const REALM: &str = "trunk.example.com";
pub const USER: &str = "pbx_user";
pub const PASSWORD: &str = "s3cret";
pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);

pub fn pbx() -> SocketAddr {
    "127.0.0.1:5080".parse().unwrap()
}

pub fn config(calls: &str, trunk_extra: &str) -> Config {
    let text = format!(
        r#"
[sip]
listen = "127.0.0.1:5070"
realm = "{REALM}"
qualify_interval = "0s"

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
pub struct PbxCall {
    pub call_id: String,
    pub branch: String,
    pub from_tag: String,
    pub cseq: u32,
    /// To as the PBX writes it in-dialog (our tag, once known).
    pub to: String,
}

impl PbxCall {
    pub fn new(n: u32) -> PbxCall {
        PbxCall {
            call_id: format!("call-{n}@pbx"),
            branch: format!("z9hG4bK-inv{n}"),
            from_tag: format!("pbxtag{n}"),
            cseq: 10,
            to: "<sip:0501234567@127.0.0.1:5070>".into(),
        }
    }

    pub fn from(&self) -> String {
        format!("\"Alice\" <sip:201@127.0.0.1>;tag={}", self.from_tag)
    }
}

pub struct H {
    pub ep: Endpoint,
    pub now: Instant,
    pub nonce: Option<String>,
    pub seq: u32,
    /// The nonce count of our next qop=auth answer: one nonce serves many requests, as with
    /// Asterisk, each with a higher nc.
    pub nc: std::cell::Cell<u32>,
    /// Answer challenges with qop=auth (Asterisk) or without (3CX).
    pub qop: bool,
    /// INVITEs the endpoint refused itself, kept apart from the calls' events.
    pub refused: std::collections::VecDeque<RefusedInvite>,
}

impl H {
    pub fn new(calls: &str, trunk_extra: &str) -> H {
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
            nc: std::cell::Cell::new(1),
            qop: true,
            refused: Default::default(),
        }
    }

    pub fn std() -> H {
        H::new("max_calls = 10", "")
    }

    pub fn recv(&mut self, text: &str) {
        self.ep.handle_datagram(text.as_bytes(), pbx(), self.now);
    }

    pub fn out(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut v = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            v.push((
                t.dest,
                parse_message(&t.bytes).expect("we send what parses"),
            ));
        }
        v
    }

    pub fn responses(&mut self) -> Vec<Response> {
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

    pub fn one_response(&mut self) -> Response {
        let mut v = self.responses();
        assert_eq!(v.len(), 1, "{:?}", codes(&v));
        v.remove(0)
    }

    pub fn requests(&mut self) -> Vec<(SocketAddr, Request)> {
        self.out()
            .into_iter()
            .map(|(dest, m)| match m {
                Message::Request(r) => (dest, r),
                Message::Response(r) => panic!("expected requests, got {}", r.code),
            })
            .collect()
    }

    pub fn one_request(&mut self) -> (SocketAddr, Request) {
        let mut v = self.requests();
        assert_eq!(
            v.len(),
            1,
            "{:?}",
            v.iter().map(|r| &r.1.method).collect::<Vec<_>>()
        );
        v.remove(0)
    }

    pub fn events(&mut self) -> Vec<(CallRef, DialogEvent)> {
        let mut v = Vec::new();
        while let Some(e) = self.ep.poll_event() {
            match e {
                (_, DialogEvent::Refused(r)) => self.refused.push_back(*r),
                e => v.push(e),
            }
        }
        v
    }

    /// The next INVITE the endpoint refused itself.
    pub fn poll_refused(&mut self) -> Option<RefusedInvite> {
        let events = self.events();
        assert!(events.is_empty(), "{events:?}");
        self.refused.pop_front()
    }

    pub fn cmd(&mut self, c: DialogCommand) {
        self.ep.handle_command(c, self.now);
    }

    /// Fires every timer due up to `now + d`, at its own instant; returns what went out with
    /// its offset from the start. A deadline that stays due after `handle_timeout` would make
    /// the transport spin, so it fails the test.
    pub fn advance(&mut self, d: Duration) -> Vec<(Duration, SocketAddr, Message)> {
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

    pub fn auth_value(&self, method: &str, uri: &str) -> String {
        let nonce = self.nonce.clone().expect("a nonce from a challenge first");
        let (qop, nc, cnonce) = if self.qop {
            let nc = format!("{:08x}", self.nc.get());
            self.nc.set(self.nc.get() + 1);
            (
                Some("auth".to_string()),
                Some(nc),
                Some("c0ffee".to_string()),
            )
        } else {
            (None, None, None)
        };
        let creds = Credentials {
            username: USER.into(),
            realm: REALM.into(),
            nonce: nonce.clone(),
            uri: uri.into(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            qop,
            nc,
            cnonce,
            opaque: None,
        };
        let ha1 = digest::ha1(Algorithm::Md5, USER, REALM, PASSWORD);
        let response = digest::expected_response(Algorithm::Md5, &ha1, method, &creds).unwrap();
        let qop_part = match (&creds.nc, &creds.cnonce) {
            (Some(nc), Some(cn)) => format!(", qop=auth, nc={nc}, cnonce=\"{cn}\""),
            _ => String::new(),
        };
        format!(
            "Digest username=\"{USER}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5{qop_part}"
        )
    }

    pub fn take_nonce(&mut self, challenge: &str) {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("nonce in challenge");
        self.nonce = Some(nonce.to_string());
    }

    /// An INVITE from the PBX to `number`, with credentials when we hold a nonce.
    pub fn invite_text(&self, c: &PbxCall, number: &str, auth: bool, extra: &str) -> String {
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
    pub fn challenge(&mut self) -> Response {
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
    pub fn start_call(&mut self, n: u32) -> (CallRef, PbxCall) {
        self.start_call_with(n, "")
    }

    pub fn start_call_with(&mut self, n: u32, extra: &str) -> (CallRef, PbxCall) {
        if self.nonce.is_none() {
            self.challenge();
        }
        let c = PbxCall::new(n);
        self.recv(&self.invite_text(&c, "0501234567", true, extra));
        let r = self.one_response();
        assert_eq!(r.code, 100);
        let ev = self.events();
        assert_eq!(ev.len(), 1);
        assert!(matches!(ev[0].1, DialogEvent::Admitted(_)));
        (ev[0].0, c)
    }

    /// Call answered with 200 + SDP; returns the 200 and keeps our tag in `c.to`.
    pub fn answer(&mut self, call: CallRef, c: &mut PbxCall) -> Response {
        self.cmd(DialogCommand::Respond(
            call,
            Reply::new(200).sdp(SDP.into()),
        ));
        let r = self.one_response();
        assert_eq!(r.code, 200);
        c.to = r.headers.get("To").unwrap().to_string();
        r
    }

    /// An in-dialog request from the PBX.
    pub fn in_dialog_text(
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

    pub fn ack(&mut self, c: &PbxCall, cseq: u32, branch: &str) {
        self.recv(&self.in_dialog_text(c, "ACK", cseq, branch, ""));
    }

    /// Answered and ACKed.
    pub fn confirmed_call(&mut self, n: u32) -> (CallRef, PbxCall) {
        let (call, mut c) = self.start_call(n);
        self.answer(call, &mut c);
        self.ack(&c, c.cseq, &format!("z9hG4bK-ack{n}"));
        let ev = self.events();
        assert!(matches!(ev[..], [(x, DialogEvent::Ack { .. })] if x == call));
        (call, c)
    }

    /// A carrier call for the trunk to 0501234567, as the call room places one.
    pub fn carrier_call(&mut self) -> CallRef {
        let call = self.ep.call_refs().next();
        self.cmd(DialogCommand::Invite(
            call,
            Box::new(InviteToPbx {
                trunk: "pbx".into(),
                did: "0501234567".into(),
                caller_number: None,
                caller_name: None,
                sdp: SDP.into(),
                headers: Vec::new(),
            }),
        ));
        call
    }

    /// The REGISTER of the trunk (401 first, then with credentials).
    pub fn register(&mut self) {
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

pub fn codes(v: &[Response]) -> Vec<u16> {
    v.iter().map(|r| r.code).collect()
}

pub fn tag_of(header: &str) -> String {
    NameAddr::parse(header).unwrap().tag().unwrap().to_string()
}

pub fn branch_of(req: &Request) -> String {
    let via = req.headers.get("Via").unwrap();
    via.split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

pub fn cseq_of(headers: &crate::sip::message::Headers) -> (u32, String) {
    let v = headers.get("CSeq").unwrap();
    let (n, m) = v.split_once(' ').unwrap();
    (n.parse().unwrap(), m.trim().to_string())
}

/// The PBX's response to one of our requests.
pub fn reply_text(
    req: &Request,
    code: u16,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
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
