//! The interface the SIP core offers its transaction user, the call layer (RFC 3261's "TU"): a
//! handle per call ([`CallRef`]), what the core tells a call about its dialog toward the PBX
//! ([`DialogEvent`]), and what a call asks the core to send ([`DialogCommand`]). The core keeps
//! transactions, dialog state, retransmissions and tags; a call deals only in these, so it never
//! sees a datagram and the core never waits on a carrier.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::numbers::{CallerId, Destination};
use crate::sip::shared::NonceUse;

/// Names one call for its whole life, in both directions (and its record's `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CallRef(pub u64);

impl fmt::Display for CallRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Hands out call numbers; one sequence serves both directions.
#[derive(Debug, Default)]
pub struct CallRefs(AtomicU64);

impl CallRefs {
    /// The next unused number (the first is 1).
    pub fn next(&self) -> CallRef {
        CallRef(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A PBX's INVITE that passed authentication, the number policy and the limits: a new call
/// toward the carrier. The core has sent 100 Trying.
#[derive(Debug, Clone)]
pub struct AdmittedInvite {
    /// The trunk the PBX authenticated as.
    pub trunk: String,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The dialled number as the PBX sent it (Request-URI user part, else To's).
    pub dialled: String,
    /// The dialled number, normalised and allowed by the trunk's policy.
    pub destination: Destination,
    /// The calling number the policy chose.
    pub caller: CallerId,
    /// The From URI as received.
    pub from_uri: String,
    /// The PBX's address (behind a trusted proxy, the one the proxy stamped).
    pub source: SocketAddr,
    /// The digest nonce use that authenticated it: claimed cluster-wide before the carrier
    /// is asked, so a replay on another instance is refused.
    pub nonce: Option<NonceUse>,
    /// The SDP offer; `None` for an offerless INVITE (we offer in the 200, it answers in ACK).
    pub sdp: Option<String>,
    /// Its RFC 4028 headers.
    pub timer: TimerHeaders,
}

/// A PBX's INVITE the core refused itself (draining, the number policy, a limit, a loop): the
/// facts its call record needs.
#[derive(Debug, Clone)]
pub struct RefusedInvite {
    /// The trunk the PBX authenticated as.
    pub trunk: String,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The dialled number as the PBX sent it.
    pub dialled: String,
    /// The dialled number in E.164, when the policy got that far.
    pub called: Option<String>,
    /// The From URI as received.
    pub from_uri: String,
    /// The final response sent.
    pub code: u16,
    /// Its reason phrase.
    pub reason: String,
}

/// The RFC 4028 headers of a request or response, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerHeaders {
    /// Session-Expires (or `x`), raw.
    pub session_expires: Option<String>,
    /// Min-SE, raw.
    pub min_se: Option<String>,
    /// `timer` is in Supported or Require.
    pub supports_timer: bool,
}

/// From the SIP core to a call.
#[derive(Debug, Clone)]
pub enum DialogEvent {
    /// A new call from the PBX; the core has sent 100 Trying.
    Admitted(Box<AdmittedInvite>),
    /// A PBX's INVITE the core refused; nothing follows for this call.
    Refused(Box<RefusedInvite>),
    /// The PBX cancelled its INVITE; the core answered 200 to the CANCEL and 487 to the INVITE.
    Cancelled,
    /// The PBX acknowledged our 2xx (the ACK's SDP when it carries the answer).
    Ack {
        /// The ACK's body.
        sdp: Option<String>,
    },
    /// Our 2xx was retransmitted for 64*T1 without an ACK (RFC 3261 13.3.1.4): end the call.
    NoAck,
    /// The PBX hung up; the core answered 200.
    Bye,
    /// A re-INVITE from the PBX: answer with [`DialogCommand::RespondReinvite`].
    Reinvite {
        /// Its offer, if any.
        sdp: Option<String>,
        /// Its RFC 4028 headers.
        timer: TimerHeaders,
    },
    /// The daemon is stopping and the grace period is over: end both legs now.
    Shutdown,
    /// A response to a request the call asked for. 408 stands in for a transaction timeout.
    Response {
        /// Which request it answers.
        request: OwnRequest,
        /// Its status code.
        code: u16,
        /// Its reason phrase.
        reason: String,
        /// Its body.
        sdp: Option<String>,
        /// Its RFC 4028 headers.
        timer: TimerHeaders,
    },
}

/// Which of the call's own requests a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnRequest {
    /// Our INVITE toward the PBX (a carrier call).
    Invite,
    /// A re-INVITE in the dialog.
    Reinvite,
    /// BYE.
    Bye,
}

/// A carrier call for a trunk's PBX: what the INVITE toward it carries.
#[derive(Debug, Clone)]
pub struct InviteToPbx {
    /// The trunk whose registered contact is called.
    pub trunk: String,
    /// The called number: the user part of the Request-URI (otherwise the trunk's registered
    /// Contact exactly, `rinstance` and all) and of To.
    pub did: String,
    /// The calling number, as the trunk wants it written.
    pub caller_number: Option<String>,
    /// The caller's display name.
    pub caller_name: Option<String>,
    /// Our SDP offer.
    pub sdp: String,
    /// Extra headers (Session-Expires, Supported ...).
    pub headers: Vec<(&'static str, String)>,
}

/// From a call to the SIP core.
#[derive(Debug)]
pub enum DialogCommand {
    /// A response to the PBX's INVITE (1xx or final; a 2xx is retransmitted until ACKed).
    Respond(CallRef, Reply),
    /// The answer to the PBX's pending re-INVITE.
    RespondReinvite(CallRef, Reply),
    /// Send an INVITE to the trunk's registered contact (a carrier call).
    Invite(CallRef, Box<InviteToPbx>),
    /// CANCEL our pending INVITE (sent once a provisional response has arrived).
    Cancel(CallRef),
    /// A re-INVITE in the dialog (hold, resume, session refresh, a carrier re-offer): the SDP
    /// and extra headers.
    Reinvite(CallRef, String, Vec<(&'static str, String)>),
    /// BYE in the dialog (or, before our 2xx was ACKed, as soon as it is), with a Reason.
    Bye(CallRef, Option<String>),
    /// The call is over: forget its dialog (a pending INVITE gets a 500 first).
    Forget(CallRef),
}

/// A response a call wants sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub code: u16,
    /// Reason phrase; the standard one when `None`.
    pub reason: Option<String>,
    /// SDP body.
    pub sdp: Option<String>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A response with `code` and nothing else.
    pub fn new(code: u16) -> Reply {
        Reply {
            code,
            ..Reply::default()
        }
    }

    /// With this reason phrase.
    pub fn reason(mut self, r: impl Into<String>) -> Reply {
        self.reason = Some(r.into());
        self
    }

    /// With this SDP body.
    pub fn sdp(mut self, sdp: String) -> Reply {
        self.sdp = Some(sdp);
        self
    }

    /// With this extra header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The reason phrase sent: the given one, else the standard one for the code.
    pub fn reason_phrase(&self) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| super::message::reason_phrase(self.code).into())
    }
}

/// A Reason header value (RFC 3326) for `protocol` (`SIP` or `Q.850`), `cause` and free
/// `text`, which is stripped of what a quoted string cannot carry.
pub fn reason_header(protocol: &str, cause: u16, text: &str) -> String {
    format!("{protocol};cause={cause};text=\"{}\"", quotable(text))
}

/// `s` without control characters, quotes and backslashes: safe inside a quoted string.
pub fn quotable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect()
}

/// A Warning header value (RFC 3261 20.43) from us with `code` (399: miscellaneous) and `text`.
pub fn warning_header(code: u16, text: &str) -> String {
    format!("{code} trunkgate \"{}\"", quotable(text))
}

/// The layer above the SIP core, as the UDP edge sees it: it takes each dialog event.
pub trait TransactionUser {
    /// Hands `event` to `call`; `false` when no call will ever take it, and the core then
    /// forgets the dialog.
    fn deliver(&mut self, call: CallRef, event: DialogEvent) -> bool;
}
