//! The boundary between the SIP core and the calls: what the core tells a call about its
//! dialog toward the PBX (`ToCall`), and what a call asks the core to send (`CallCmd`). The
//! core keeps transactions, dialog state, retransmissions and tags; a call only ever deals in
//! these events, so a call task never sees a datagram and the core never waits on a carrier.

use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::numbers::{CallerId, Destination};

/// Names one call for its whole life, in both directions.
pub type CallRef = u64;

/// A PBX's INVITE that passed authentication, the number policy and the limits.
#[derive(Debug, Clone)]
pub struct OutboundInvite {
    pub trunk: String,
    pub call_id: String,
    /// The dialled number as the PBX sent it (Request-URI user part, else To's).
    pub dialled: String,
    pub destination: Destination,
    pub caller: CallerId,
    /// The From URI as received.
    pub from_uri: String,
    pub source: SocketAddr,
    /// The SDP offer; `None` for an offerless INVITE (we offer in the 200, it answers in ACK).
    pub sdp: Option<String>,
    pub timer: TimerHeaders,
}

/// The RFC 4028 headers of a request or response, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerHeaders {
    pub session_expires: Option<String>,
    pub min_se: Option<String>,
    /// `timer` is in Supported or Require.
    pub supports_timer: bool,
}

/// From the SIP core to a call.
#[derive(Debug, Clone)]
pub enum ToCall {
    /// A new outbound call; the core has sent 100 Trying.
    Outbound(Box<OutboundInvite>),
    /// The PBX cancelled its INVITE; the core answered 200 to the CANCEL and 487 to the INVITE.
    Cancelled,
    /// The PBX acknowledged our 2xx (the ACK's SDP when it carries the answer).
    Ack { sdp: Option<String> },
    /// Our 2xx was retransmitted for 64*T1 without an ACK (RFC 3261 13.3.1.4): end the call.
    NoAck,
    /// The PBX hung up; the core answered 200.
    Bye,
    /// A re-INVITE from the PBX: answer with `CallCmd::RespondReinvite`.
    Reinvite {
        sdp: Option<String>,
        timer: TimerHeaders,
    },
    /// The daemon is stopping and the grace period is over: end both legs now.
    Shutdown,
    /// A response to a request the call asked for (`Invite`, `Reinvite`, `Bye`). 408 stands in
    /// for a transaction timeout.
    Response {
        request: Request,
        code: u16,
        reason: String,
        sdp: Option<String>,
        timer: TimerHeaders,
    },
}

/// Which of the call's own requests a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Invite,
    Reinvite,
    Bye,
}

/// A carrier call for a trunk's PBX: what the INVITE toward it carries.
#[derive(Debug, Clone)]
pub struct InboundInvite {
    pub trunk: String,
    /// The called number: the user part of the Request-URI (otherwise the trunk's registered
    /// Contact exactly, `rinstance` and all) and of To.
    pub did: String,
    pub caller_number: Option<String>,
    pub caller_name: Option<String>,
    pub sdp: String,
    /// Extra headers (Session-Expires, Supported ...).
    pub headers: Vec<(&'static str, String)>,
}

/// From a call to the SIP core.
#[derive(Debug)]
pub enum CallCmd {
    /// Route the core's events for `call` to this channel (before any other command of it).
    Attach(CallRef, mpsc::UnboundedSender<ToCall>),
    /// A response to the PBX's INVITE (1xx or final; a 2xx is retransmitted until ACKed).
    Respond(CallRef, Reply),
    /// The answer to the PBX's pending re-INVITE.
    RespondReinvite(CallRef, Reply),
    /// Send an INVITE to the trunk's registered contact (an inbound call).
    Invite(CallRef, Box<InboundInvite>),
    /// CANCEL our pending INVITE (sent once a provisional response has arrived).
    Cancel(CallRef),
    /// A re-INVITE in the dialog (hold, resume, session refresh, a carrier re-offer).
    Reinvite(CallRef, String, Vec<(&'static str, String)>),
    /// BYE in the dialog (or, before our 2xx was ACKed, as soon as it is).
    Bye(CallRef, Option<String>),
    /// The call is over: forget its dialog.
    Done(CallRef),
    /// Stopping: refuse new INVITEs with 503 and Retry-After.
    Drain,
    /// The drain's grace period is over: every call ends now.
    HangupAll,
    /// Not a call's: a reloaded configuration for the SIP core, sent through the same queue so
    /// it is ordered with the calls' commands.
    Reconfigure(Box<crate::config::Config>),
}

/// A response a call wants sent.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub code: u16,
    pub reason: Option<String>,
    pub sdp: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn new(code: u16) -> Reply {
        Reply {
            code,
            ..Reply::default()
        }
    }

    pub fn reason(mut self, r: impl Into<String>) -> Reply {
        self.reason = Some(r.into());
        self
    }

    pub fn sdp(mut self, sdp: String) -> Reply {
        self.sdp = Some(sdp);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// Hands out call numbers (shared by both directions).
#[derive(Debug, Default)]
pub struct CallRefs(std::sync::atomic::AtomicU64);

impl CallRefs {
    pub fn next(&self) -> CallRef {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}
