//! The words a call's machine speaks: what it is fed ([`Input`]) and what it asks its driver to
//! do ([`Output`]), with the results of those requests ([`Done`], [`EffectError`]). The SIP
//! core's own `DialogEvent`/`DialogCommand`, the carrier's `CallEvent` and the media engine's
//! types travel inside; nothing here performs anything.
//!
//! The contract with the driver: outputs are executed in order, one at a time; an output that
//! can fail or yields something answers with exactly one [`Input::Done`] or [`Input::Failed`],
//! handed back before any other input. The rest (SIP commands, [`MediaOp::UpdatePbx`],
//! [`Output::Publish`], [`Output::Finished`]) answer nothing.

use std::time::Instant;

use crate::carrier::events::CallEvent;
use crate::carrier::rest::RestError;
use crate::carrier::Unavailable;
use crate::media::relay::PbxMedia;
use crate::media::rtp_leg::RtpLegError;
use crate::media::{AudioFormat, Codec, Direction, PeerError, PeerState};
use crate::sip::tu::{DialogCommand, DialogEvent};

/// What a call's machine is fed.
#[derive(Debug)]
pub enum Input {
    /// The SIP core about the PBX dialog.
    Dialog(DialogEvent),
    /// The SIP core will say nothing more about this call.
    DialogGone,
    /// The carrier about the call's session.
    Carrier(CallEvent),
    /// The carrier session's events ended without a word.
    CarrierGone,
    /// The WebRTC leg's connection state changed.
    Peer(PeerState),
    /// An output succeeded.
    Done(Done),
    /// An output failed.
    Failed(EffectError),
}

/// What a successful output yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// [`Output::Admit`]: the call counts against its trunk on every instance.
    Admitted,
    /// [`Output::Reserve`]: capacity on `account`.
    Reserved { account: String },
    /// [`Output::AllocatePort`]: the PBX-side RTP port.
    PortReady { port: u16 },
    /// [`MediaOp::Offer`]: the WebRTC leg exists; its complete offer.
    Offered { sdp: String },
    /// [`Output::StartCall`]: the carrier session.
    CarrierStarted { session: String, account: String },
    /// [`MediaOp::Answer`]: the WebRTC leg exists; its answer and format.
    MediaAnswered { sdp: String, format: AudioFormat },
    /// [`MediaOp::AcceptAnswer`]: the format the remote answer set.
    AnswerAccepted(AudioFormat),
    /// [`MediaOp::AttachPbx`]: the relay runs.
    Attached,
    /// [`MediaOp::Reoffer`]: the re-offer for the carrier.
    Reoffered { sdp: String },
    /// [`MediaOp::AnswerReoffer`]: our answer to the carrier's re-offer, and the format.
    ReofferAnswered { sdp: String, format: AudioFormat },
    /// [`Output::Carrier`]: the carrier accepted the request.
    Carrier(CarrierStep),
    /// [`MediaOp::ReadActivity`]: when the PBX's last RTP packet arrived (None: none yet).
    Activity { last_from_pbx: Option<Instant> },
}

/// Which carrier request a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarrierStep {
    Ringing,
    Answer,
    Reject,
    End,
    Update,
    RespondUpdate,
}

/// A request on the call's carrier session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierOp {
    /// The called side rings (inbound).
    Ringing,
    /// The called side answered, with our WebRTC answer (inbound).
    Answer { sdp: String },
    /// Refuse an inbound call.
    Reject,
    /// Delete the session: our hang-up, or giving up before answer.
    End { reason: &'static str },
    /// A mid-call offer (hold, resume).
    Update { sdp: String },
    /// Our answer to the carrier's mid-call offer.
    RespondUpdate { sdp: String },
}

impl CarrierOp {
    /// Which request this is.
    pub fn step(&self) -> CarrierStep {
        match self {
            CarrierOp::Ringing => CarrierStep::Ringing,
            CarrierOp::Answer { .. } => CarrierStep::Answer,
            CarrierOp::Reject => CarrierStep::Reject,
            CarrierOp::End { .. } => CarrierStep::End,
            CarrierOp::Update { .. } => CarrierStep::Update,
            CarrierOp::RespondUpdate { .. } => CarrierStep::RespondUpdate,
        }
    }
}

/// A request on the call's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOp {
    /// Create the WebRTC leg as the offerer with these codecs in order (outbound).
    Offer { codecs: Vec<Codec> },
    /// Create the WebRTC leg answering the carrier's offer with `codec` (inbound).
    Answer { offer: String, codec: Codec },
    /// Apply the carrier's answer (to the first offer, early media, or an update).
    AcceptAnswer { sdp: String },
    /// Hand the PBX-side RTP port to the relay, sending as `PbxMedia` says.
    AttachPbx(PbxMedia),
    /// The PBX's media changed (its SDP): the relay follows.
    UpdatePbx(PbxMedia),
    /// A re-offer toward the carrier with this direction (hold, resume).
    Reoffer(Direction),
    /// Answer the carrier's re-offer.
    AnswerReoffer { sdp: String },
    /// Report when the PBX's RTP was last seen (the inactivity check).
    ReadActivity,
}

/// What a call's machine asks of its driver.
#[derive(Debug)]
pub enum Output {
    /// Send to the SIP core.
    Sip(DialogCommand),
    /// Count the call against its trunk's `max_calls` on every instance of a cluster and, for
    /// a PBX's INVITE, spend its digest nonce use cluster-wide (a replay elsewhere is refused).
    /// An emergency call is counted but never refused. Alone, there is nothing to ask.
    Admit { emergency: bool },
    /// Take capacity on a carrier account (emergency calls may exceed `max_calls`).
    Reserve { emergency: bool },
    /// Take an RTP port pair toward the PBX.
    AllocatePort,
    /// `callStart` on the reservation, to `e164`, with our WebRTC offer.
    StartCall { e164: String, sdp: String },
    /// A request on the carrier session.
    Carrier(CarrierOp),
    /// A request on the media.
    Media(MediaOp),
    /// The call's facts changed: the registry's view follows.
    Publish,
    /// The call is over: record it and let go of everything it holds.
    Finished,
}

/// Why an output failed.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// The INVITE's digest nonce count was already used on another instance: a replay.
    #[error("digest nonce already used on another instance")]
    Replayed,
    /// The trunk has `max_calls` calls up across the cluster.
    #[error("the trunk's max_calls ({0}) are up across the cluster")]
    TrunkFull(usize),
    /// No carrier is configured.
    #[error("no carrier is configured")]
    NoCarrier,
    /// No carrier account can take the call.
    #[error("no carrier capacity: {0}")]
    Capacity(Unavailable),
    /// No RTP port is free.
    #[error("no RTP port: {0}")]
    Port(RtpLegError),
    /// The WebRTC offer could not be made.
    #[error("WebRTC offer: {0}")]
    Offer(PeerError),
    /// `callStart` failed.
    #[error("callStart: {0}")]
    StartCall(RestError),
    /// The WebRTC answer to the carrier's offer could not be made.
    #[error("WebRTC answer: {0}")]
    MediaAnswer(PeerError),
    /// The carrier's answer could not be applied.
    #[error("carrier answer unusable: {0}")]
    AcceptAnswer(PeerError),
    /// The media engine refused the PBX side.
    #[error("media engine refused the call: {0}")]
    Attach(PeerError),
    /// The WebRTC re-offer could not be made.
    #[error("WebRTC re-offer: {0}")]
    Reoffer(PeerError),
    /// The carrier's re-offer could not be answered.
    #[error("carrier re-offer unusable: {0}")]
    AnswerReoffer(PeerError),
    /// A carrier request failed.
    #[error("carrier {0:?}: {1}")]
    Carrier(CarrierStep, RestError),
    /// An output needs something an earlier one makes (a machine fault, reported rather
    /// than panicking).
    #[error("{0} asked for before it exists")]
    Missing(&'static str),
}
