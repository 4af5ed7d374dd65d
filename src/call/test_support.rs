//! The call machines' test bench: settings from a small configuration, sample INVITEs and
//! SDPs, and a harness that runs a [`CallMachine`] on virtual time, feeding it inputs and
//! writing each output as one short line (tests compare those lines, in order).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::facts::CallFacts;
use super::io::{CarrierOp, Done, Input, MediaOp, Output};
use super::machine::{CallMachine, CallStart};
use super::record::CallRecord;
use super::settings::{CallSettings, LiveSettings};
use crate::carrier::events::{CallEvent, IncomingCall};
use crate::config::Config;
use crate::media::relay::PbxMedia;
use crate::media::{AudioFormat, Codec};
use crate::numbers::{CallerId, CallerIdSource, Destination, NumberKind};
use crate::sip::tu::{AdmittedInvite, CallRef, DialogCommand, DialogEvent, Reply, TimerHeaders};

/// A PBX offer (3CX style): PCMU, PCMA, telephone-event 101.
pub const PBX_OFFER: &str = "v=0\r\no=3cx 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\n\
t=0 0\r\nm=audio 7012 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

/// The PBX's media as the relay sees [`PBX_OFFER`] for PCMU.
pub const PBX_MEDIA: &str = "192.0.2.20:7012 pt0 ev101 recv";

/// [`PBX_OFFER`] with `a=<direction>` instead of sendrecv.
pub fn pbx_offer(direction: &str) -> String {
    PBX_OFFER.replace("a=sendrecv", &format!("a={direction}"))
}

/// A carrier (WebRTC) SDP with `a=<direction>`, as far as the call layer reads one.
pub fn carrier_sdp(direction: &str) -> String {
    format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n")
}

/// PCMU with telephone-event, as the WebRTC leg reports it.
pub const PCMU: AudioFormat = AudioFormat {
    codec: Codec::Pcmu,
    telephone_event_pt: Some(101),
};

/// The call layer's part of a configuration with one trunk, `pbx`, and these `[calls]` lines.
pub fn call_settings(calls: &str) -> CallSettings {
    let text = format!(
        "[sip]\nrealm = \"r.test\"\n[[trunks]]\nname = \"pbx\"\nauth_username = \"u\"\n\
         password = \"p\"\n[calls]\n{calls}\n"
    );
    let config = Config::from_toml(&text).expect("test configuration");
    CallSettings::new(&config).expect("call settings")
}

/// [`call_settings`] as the live handle calls hold.
pub fn settings(calls: &str) -> LiveSettings {
    LiveSettings::new(call_settings(calls))
}

/// No RTP check: for tests about something else.
pub const NO_RTP_CHECK: &str = "rtp_timeout = \"0s\"";

/// The results of an outbound call's set-up requests, in order: reservation, port, offer,
/// `callStart`, attach.
pub fn set_up_results() -> Vec<Done> {
    vec![
        Done::Admitted,
        Done::Reserved {
            account: "acct".into(),
        },
        Done::PortReady { port: 40000 },
        Done::Offered {
            sdp: "OFFER".into(),
        },
        Done::CarrierStarted {
            session: "S1".into(),
            account: "acct".into(),
        },
        Done::Attached,
    ]
}

/// An outbound call with the PBX's `inv` after the first `n` set-up results.
pub fn outbound_after(inv: &AdmittedInvite, settings: LiveSettings, n: usize) -> Harness {
    let (mut h, _) = Harness::outbound(inv, settings);
    h.feed_all(set_up_results().into_iter().take(n).map(done).collect());
    h
}

/// An outbound call set up and waiting for the carrier's answer.
pub fn set_up_outbound(inv: &AdmittedInvite, settings: LiveSettings) -> Harness {
    outbound_after(inv, settings, 6)
}

/// An outbound call for `inv`, answered by the carrier with PCMU: a confirmed call.
pub fn answered_outbound(inv: &AdmittedInvite, settings: LiveSettings) -> Harness {
    let mut h = set_up_outbound(inv, settings);
    h.feed_all(vec![
        carrier(CallEvent::Answered {
            sdp: carrier_sdp("sendrecv"),
        }),
        done(Done::AnswerAccepted(PCMU)),
    ]);
    h
}

/// A PBX's admitted INVITE to +971501234567 with `sdp` and these RFC 4028 headers.
pub fn invite(sdp: Option<&str>, timer: TimerHeaders) -> AdmittedInvite {
    AdmittedInvite {
        trunk: "pbx".into(),
        call_id: "cid@pbx".into(),
        dialled: "0501234567".into(),
        destination: Destination {
            canonical: "+971501234567".into(),
            e164: "+971501234567".into(),
            kind: NumberKind::Mobile,
            region: "AE".into(),
            special: None,
        },
        caller: CallerId {
            number: Some("+97143000000".into()),
            withheld: false,
            source: CallerIdSource::From,
        },
        from_uri: "sip:100@pbx".into(),
        source: "192.0.2.20:5060".parse().expect("address"),
        nonce: None,
        sdp: sdp.map(str::to_owned),
        timer,
    }
}

/// A carrier call from +971501111111 to the DID +97143456789 offering `offer`.
pub fn incoming(offer: Option<&str>) -> IncomingCall {
    IncomingCall {
        session: "IN1".into(),
        offer: offer.map(str::to_owned),
        caller_name: Some("Ali".into()),
        caller_number: Some("+971501111111".into()),
        callee_number: Some("+97143456789".into()),
    }
}

/// A PBX response to our INVITE.
pub fn invite_response(code: u16, reason: &str, sdp: Option<&str>) -> Input {
    Input::Dialog(DialogEvent::Response {
        request: crate::sip::tu::OwnRequest::Invite,
        code,
        reason: reason.into(),
        sdp: sdp.map(str::to_owned),
        timer: TimerHeaders::default(),
    })
}

/// A PBX response to our re-INVITE.
pub fn reinvite_response(code: u16, sdp: Option<&str>) -> Input {
    Input::Dialog(DialogEvent::Response {
        request: crate::sip::tu::OwnRequest::Reinvite,
        code,
        reason: String::new(),
        sdp: sdp.map(str::to_owned),
        timer: TimerHeaders::default(),
    })
}

/// A re-INVITE from the PBX.
pub fn reinvite(sdp: Option<&str>, timer: TimerHeaders) -> Input {
    Input::Dialog(DialogEvent::Reinvite {
        sdp: sdp.map(str::to_owned),
        timer,
    })
}

/// A carrier event.
pub fn carrier(ev: CallEvent) -> Input {
    Input::Carrier(ev)
}

/// A dialog event.
pub fn dialog(ev: DialogEvent) -> Input {
    Input::Dialog(ev)
}

/// An output's result.
pub fn done(d: Done) -> Input {
    Input::Done(d)
}

/// One machine on virtual time.
pub struct Harness {
    pub machine: CallMachine,
    pub now: Instant,
    /// When the PBX's RTP was last seen: the answer to every activity check, which the
    /// harness gives itself (checks are every second) and leaves out of the lines.
    pub last_rtp: Option<Instant>,
    /// Every output so far, for the details the lines leave out.
    pub outputs: Vec<Output>,
}

impl Harness {
    fn start(facts: CallFacts, settings: LiveSettings) -> CallStart {
        CallStart {
            facts,
            sdp_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            settings,
            rng: StdRng::seed_from_u64(7),
        }
    }

    /// An outbound call for `inv`; the first lines are its outputs at start.
    pub fn outbound(inv: &AdmittedInvite, settings: LiveSettings) -> (Harness, Vec<String>) {
        let now = Instant::now();
        let facts = CallFacts::outbound(CallRef(1), inv, now, SystemTime::UNIX_EPOCH);
        let machine = CallMachine::outbound(Self::start(facts, settings), inv);
        Self::begin(machine, now)
    }

    /// An inbound call for `incoming`.
    pub fn inbound(
        incoming: &IncomingCall,
        settings: LiveSettings,
        draining: bool,
    ) -> (Harness, Vec<String>) {
        let now = Instant::now();
        let facts = CallFacts::inbound(
            CallRef(2),
            incoming,
            "IN1",
            "acct",
            now,
            SystemTime::UNIX_EPOCH,
        );
        let machine = CallMachine::inbound(Self::start(facts, settings), incoming, draining);
        Self::begin(machine, now)
    }

    fn begin(machine: CallMachine, now: Instant) -> (Harness, Vec<String>) {
        let mut h = Harness {
            machine,
            now,
            last_rtp: None,
            outputs: Vec::new(),
        };
        let lines = h.drain();
        (h, lines)
    }

    /// Feeds `input` now; the lines of what followed.
    pub fn feed(&mut self, input: Input) -> Vec<String> {
        self.machine.handle(input, self.now);
        self.drain()
    }

    /// Feeds each input in turn; the lines of all that followed.
    pub fn feed_all(&mut self, inputs: Vec<Input>) -> Vec<String> {
        inputs.into_iter().flat_map(|i| self.feed(i)).collect()
    }

    /// Lets `d` pass, handling every deadline on the way at its time.
    pub fn advance(&mut self, d: Duration) -> Vec<String> {
        let until = self.now + d;
        let mut lines = Vec::new();
        while let Some(at) = self.machine.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.machine.handle_timeout(self.now);
            lines.extend(self.drain());
        }
        self.now = until;
        lines
    }

    /// The record the call would leave now.
    pub fn record(&self) -> CallRecord {
        self.machine.facts().record(self.now, None)
    }

    /// The SDP body of the last output carrying one.
    pub fn last_sdp(&self) -> Option<String> {
        self.outputs.iter().rev().find_map(|o| match o {
            Output::Sip(DialogCommand::Respond(_, r) | DialogCommand::RespondReinvite(_, r)) => {
                r.sdp.clone()
            }
            Output::Sip(DialogCommand::Reinvite(_, sdp, _)) => Some(sdp.clone()),
            Output::Sip(DialogCommand::Invite(_, inv)) => Some(inv.sdp.clone()),
            _ => None,
        })
    }

    fn drain(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(out) = self.machine.poll_output() {
            if let Output::Media(MediaOp::ReadActivity) = out {
                let last_from_pbx = self.last_rtp;
                self.machine
                    .handle(Input::Done(Done::Activity { last_from_pbx }), self.now);
                continue;
            }
            lines.push(describe(&out));
            self.outputs.push(out);
        }
        lines
    }
}

/// One output as a line.
pub fn describe(out: &Output) -> String {
    match out {
        Output::Sip(cmd) => match cmd {
            DialogCommand::Respond(_, r) => format!("respond {}", reply(r)),
            DialogCommand::RespondReinvite(_, r) => format!("reinvite-reply {}", reply(r)),
            DialogCommand::Invite(_, i) => format!(
                "invite {} from {} sdp:{}{}",
                i.did,
                i.caller_number.as_deref().unwrap_or("-"),
                direction(&i.sdp),
                headers(&i.headers)
            ),
            DialogCommand::Cancel(_) => "cancel".into(),
            DialogCommand::Reinvite(_, sdp, h) => {
                format!("reinvite sdp:{}{}", direction(sdp), headers(h))
            }
            DialogCommand::Bye(_, Some(reason)) => format!("bye {reason}"),
            DialogCommand::Bye(_, None) => "bye".into(),
            DialogCommand::Forget(_) => "forget".into(),
        },
        Output::Reserve { emergency: false } => "reserve".into(),
        Output::Reserve { emergency: true } => "reserve emergency".into(),
        Output::AllocatePort => "port".into(),
        Output::Admit { emergency: false } => "admit".into(),
        Output::Admit { emergency: true } => "admit emergency".into(),
        Output::StartCall { e164, sdp } => format!("start-call {e164} {sdp}"),
        Output::Carrier(op) => match op {
            CarrierOp::Ringing => "carrier ringing".into(),
            CarrierOp::Answer { sdp } => format!("carrier answer {sdp}"),
            CarrierOp::Reject => "carrier reject".into(),
            CarrierOp::End { reason } => format!("carrier end {reason}"),
            CarrierOp::Update { sdp } => format!("carrier update {sdp}"),
            CarrierOp::RespondUpdate { sdp } => format!("carrier respond-update {sdp}"),
        },
        Output::Media(op) => match op {
            MediaOp::Offer { codecs } => format!("media offer {codecs:?}"),
            MediaOp::Answer { codec, .. } => format!("media answer {codec:?}"),
            MediaOp::AcceptAnswer { sdp } => format!("media accept {}", direction(sdp)),
            MediaOp::AttachPbx(p) => format!("media attach {}", pbx(p)),
            MediaOp::UpdatePbx(p) => format!("media update-pbx {}", pbx(p)),
            MediaOp::Reoffer(d) => format!("media reoffer {d:?}"),
            MediaOp::AnswerReoffer { sdp } => format!("media answer-reoffer {}", direction(sdp)),
            MediaOp::ReadActivity => "media read-activity".into(),
        },
        Output::Publish => "publish".into(),
        Output::Finished => "finished".into(),
    }
}

fn reply(r: &Reply) -> String {
    let mut s = r.code.to_string();
    if let Some(reason) = &r.reason {
        s.push_str(&format!(" {reason}"));
    }
    s.push_str(&headers(&r.headers));
    if let Some(sdp) = &r.sdp {
        s.push_str(&format!(" sdp:{}", direction(sdp)));
    }
    s
}

fn headers(h: &[(&'static str, String)]) -> String {
    h.iter().map(|(n, v)| format!(" [{n}: {v}]")).collect()
}

/// The direction attribute an SDP ends its audio with.
fn direction(sdp: &str) -> &str {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a="))
        .rfind(|a| matches!(*a, "sendrecv" | "sendonly" | "recvonly" | "inactive"))
        .unwrap_or("-")
}

fn pbx(p: &PbxMedia) -> String {
    format!(
        "{} pt{} ev{} {}",
        p.addr.map_or("-".to_string(), |a| a.to_string()),
        p.audio_pt,
        p.event_pt.map_or("-".to_string(), |e| e.to_string()),
        if p.receives { "recv" } else { "norecv" }
    )
}
