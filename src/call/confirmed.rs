//! A confirmed call, either direction, as a sans-IO stage: hang-up from either side, hold and
//! resume from the PBX (re-INVITE → `startCallUpdate`), carrier re-offers (→ re-INVITE), 491
//! and carrier glare retries, RFC 4028 refreshes and expiry, the RTP inactivity check, carrier
//! audit failures, a WebRTC leg that fails, a missing ACK and shutdown. Every wait is a
//! deadline here; the driver only says what happened and when.

use std::time::{Duration, Instant};

use rand::Rng;
use tracing::{debug, info, warn};

use super::base::CallBase;
use super::io::{CarrierOp, CarrierStep, Done, EffectError, Input, MediaOp};
use super::pbx_leg::{pbx_media, PbxLeg};
use super::record::EndedBy;
use super::session_timer::{self, SessionAgreement, SessionTimer, TimerAction};
use crate::carrier::events::{CallEvent, EndCause};
use crate::media::pbx_sdp::{self, MediaLine};
use crate::media::{AudioFormat, Direction, PeerState};
use crate::sip::tu::{reason_header, DialogCommand, DialogEvent, OwnRequest, Reply, TimerHeaders};

/// How often the PBX's RTP is checked for.
const RTP_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The shortest wait before a carrier update is retried after glare.
const MIN_GLARE_WAIT: Duration = Duration::from_millis(100);

/// Where the PBX side's offer/answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbxFlow {
    Answered,
    /// We sent an offer in a 2xx (offerless INVITE or re-INVITE): the answer comes in the ACK.
    AwaitingAckAnswer,
}

/// What the set-up stage hands the confirmed call.
#[derive(Debug, Clone, Copy)]
pub struct Handover {
    /// The WebRTC leg's format.
    pub format: AudioFormat,
    /// The session timer agreed in the INVITE transaction.
    pub agreement: Option<SessionAgreement>,
    /// We were the UAS of that transaction (an outbound call).
    pub we_were_uas: bool,
    pub flow: PbxFlow,
    /// The PBX's direction (what its last SDP said, c=0.0.0.0 read as hold).
    pub pbx_direction: Direction,
    /// When the call was answered.
    pub at: Instant,
}

/// Why our own re-INVITE was sent, to know what its answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnReinvite {
    Refresh,
    /// A carrier re-offer carried to the PBX.
    CarrierOffer,
}

/// The RTP inactivity check: a direction change restarts the wait.
#[derive(Debug)]
struct RtpWatch {
    next_check: Instant,
    expecting_since: Instant,
    direction_seen: Direction,
}

/// A confirmed call.
#[derive(Debug)]
pub struct ConfirmedCall {
    format: AudioFormat,
    timer: Option<SessionTimer>,
    agreement: Option<SessionAgreement>,
    flow: PbxFlow,
    pbx_direction: Direction,
    /// Our re-INVITE in flight.
    own: Option<OwnReinvite>,
    /// RFC 3261 14.1: after a 491 the re-INVITE is tried again 2.1-4 s later (we own no
    /// Call-ID ordering, so the random wait of the non-owner side applies either way).
    reinvite_retry: Option<(Instant, OwnReinvite)>,
    /// The carrier's glare on our update: the direction to offer again, and when.
    glare_retry: Option<(Instant, Direction)>,
    rtp: RtpWatch,
    /// The answer to the PBX's re-INVITE, held until the carrier has our matching update.
    held_reply: Option<Reply>,
    /// The direction of a carrier re-offer being answered, for the re-INVITE that follows.
    carrier_offer: Option<Direction>,
}

impl ConfirmedCall {
    /// The call confirmed as `h` says.
    pub fn new(h: Handover) -> ConfirmedCall {
        ConfirmedCall {
            format: h.format,
            timer: h
                .agreement
                .map(|a| SessionTimer::new(&a, a.we_refresh(h.we_were_uas), h.at)),
            agreement: h.agreement,
            flow: h.flow,
            pbx_direction: h.pbx_direction,
            own: None,
            reinvite_retry: None,
            glare_retry: None,
            rtp: RtpWatch {
                next_check: h.at + RTP_CHECK_EVERY,
                expecting_since: h.at,
                direction_seen: h.pbx_direction,
            },
            held_reply: None,
            carrier_offer: None,
        }
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timer.as_ref().and_then(SessionTimer::poll_timeout),
            self.reinvite_retry.map(|(at, _)| at),
            self.glare_retry.map(|(at, _)| at),
            Some(self.rtp.next_check),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whatever is due at `now`.
    pub fn handle_timeout(&mut self, base: &mut CallBase, now: Instant) {
        match self.timer.as_mut().and_then(|t| t.handle_timeout(now)) {
            Some(TimerAction::SendRefresh) => self.reinvite(base, OwnReinvite::Refresh),
            Some(TimerAction::Expired) => {
                warn!("session timer expired: no refresh");
                let bye = reason_header("SIP", 408, "session expired");
                return self.end_by_gateway(base, Some(bye), "session expired");
            }
            None => {}
        }
        if let Some((_, why)) = self.reinvite_retry.filter(|(at, _)| *at <= now) {
            self.reinvite_retry = None;
            self.reinvite(base, why);
        }
        if let Some((_, direction)) = self.glare_retry.filter(|(at, _)| *at <= now) {
            self.glare_retry = None;
            base.media(MediaOp::Reoffer(direction));
        }
        if self.rtp.next_check <= now {
            self.rtp.next_check = now + RTP_CHECK_EVERY;
            base.media(MediaOp::ReadActivity);
        }
    }

    /// One input.
    pub fn handle(&mut self, base: &mut CallBase, input: Input, now: Instant) {
        match input {
            Input::Carrier(ev) => self.on_carrier(base, ev, now),
            Input::CarrierGone => {
                base.facts.ended_by = EndedBy::Carrier;
                base.bye(None);
                base.finish();
            }
            Input::Dialog(ev) => self.on_dialog(base, ev, now),
            Input::DialogGone => self.pbx_hung_up(base),
            Input::Peer(state) => {
                if matches!(state, PeerState::Failed | PeerState::Closed) {
                    warn!(?state, "WebRTC leg lost");
                    let bye = reason_header("Q.850", 41, "media failure");
                    self.end_by_gateway(base, Some(bye), "media failure");
                }
            }
            Input::Done(done) => self.on_done(base, done, now),
            Input::Failed(e) => self.on_failed(base, e),
        }
    }

    fn on_carrier(&mut self, base: &mut CallBase, ev: CallEvent, now: Instant) {
        match ev {
            CallEvent::Ended {
                code,
                reason,
                cause,
            } => {
                let reason = reason.unwrap_or_default();
                info!(carrier_code = ?code, %reason, ?cause, "carrier ended the call");
                base.facts.carrier_ended(code, &reason);
                let why = match cause {
                    EndCause::Remote => reason_header("Q.850", 16, &reason),
                    _ => reason_header("Q.850", 41, "carrier session lost"),
                };
                base.bye(Some(why));
                base.finish();
            }
            CallEvent::Cancelled => {
                base.facts.ended_by = EndedBy::Carrier;
                base.bye(None);
                base.finish();
            }
            CallEvent::RemoteUpdate { sdp } => {
                self.carrier_offer = Some(crate::media::sdp_direction(&sdp));
                base.media(MediaOp::AnswerReoffer { sdp });
            }
            CallEvent::UpdateAnswered { sdp } => base.media(MediaOp::AcceptAnswer { sdp }),
            CallEvent::UpdateGlare { retry_after } => {
                let wait = retry_after.max(MIN_GLARE_WAIT);
                debug!(?wait, "carrier update glare: trying again");
                self.glare_retry = Some((now + wait, self.pbx_direction));
            }
            other => debug!(event = ?other, "carrier event ignored in a confirmed call"),
        }
    }

    fn on_dialog(&mut self, base: &mut CallBase, ev: DialogEvent, now: Instant) {
        match ev {
            DialogEvent::Bye => self.pbx_hung_up(base),
            DialogEvent::Shutdown => {
                info!("stopping: ending the call");
                let bye = reason_header("Q.850", 41, "gateway shutting down");
                self.end_by_gateway(base, Some(bye), "gateway shutting down");
            }
            DialogEvent::NoAck => {
                let bye = reason_header("SIP", 408, "no ACK");
                self.end_by_gateway(base, Some(bye), "no ACK from the PBX");
            }
            DialogEvent::Ack { sdp } => {
                if self.flow == PbxFlow::AwaitingAckAnswer {
                    self.flow = PbxFlow::Answered;
                    match sdp {
                        Some(s) => self.apply_pbx_answer(base, &s),
                        None => warn!("ACK without the answer to our offer"),
                    }
                }
            }
            DialogEvent::Reinvite { sdp, timer } => self.on_reinvite(base, sdp, &timer, now),
            DialogEvent::Response {
                request: OwnRequest::Reinvite,
                code,
                sdp,
                timer,
                ..
            } => self.on_reinvite_response(base, code, sdp, &timer, now),
            other => debug!(event = ?other, "SIP event ignored in a confirmed call"),
        }
    }

    fn on_reinvite_response(
        &mut self,
        base: &mut CallBase,
        code: u16,
        sdp: Option<String>,
        timer: &TimerHeaders,
        now: Instant,
    ) {
        let why = self.own.take();
        match code {
            200..=299 => {
                if let (Some(OwnReinvite::CarrierOffer), Some(s)) = (why, sdp) {
                    self.apply_pbx_answer(base, &s);
                }
                if let Some(n) = session_timer::on_2xx(timer.session_expires.as_deref()) {
                    self.agreement = Some(n);
                }
                if let Some(t) = self.timer.as_mut() {
                    t.on_refreshed(now);
                }
            }
            408 | 481 => {
                warn!(code, "re-INVITE failed: the dialog is gone");
                self.end_by_gateway(base, None, "PBX dialog gone");
            }
            491 => {
                if let Some(w) = why {
                    let wait = Duration::from_millis(base.rng.gen_range(2100..4000));
                    debug!(?wait, "re-INVITE glare (491): trying again");
                    self.reinvite_retry = Some((now + wait, w));
                }
            }
            _ => debug!(code, "re-INVITE refused; the session continues"),
        }
    }

    fn on_done(&mut self, base: &mut CallBase, done: Done, now: Instant) {
        match done {
            Done::Reoffered { sdp } => base.carrier(CarrierOp::Update { sdp }),
            Done::Carrier(CarrierStep::Update) => self.release_reply(base),
            Done::ReofferAnswered { sdp, format } => {
                self.format = format;
                base.carrier(CarrierOp::RespondUpdate { sdp });
            }
            Done::Carrier(CarrierStep::RespondUpdate) => {
                let Some(direction) = self.carrier_offer.take() else {
                    return;
                };
                match base.leg.line() {
                    Some(line) => {
                        let body = base.leg.render(MediaLine { direction, ..line });
                        let headers = self.refresh_headers();
                        base.sip(|c| DialogCommand::Reinvite(c, body, headers));
                        self.own = Some(OwnReinvite::CarrierOffer);
                    }
                    None => warn!("carrier re-offer failed: no SDP sent to the PBX yet"),
                }
            }
            Done::AnswerAccepted(format) => self.format = format,
            Done::Activity { last_from_pbx } => self.check_rtp(base, last_from_pbx, now),
            other => debug!(done = ?other, "result ignored in a confirmed call"),
        }
    }

    fn on_failed(&mut self, base: &mut CallBase, e: EffectError) {
        match e {
            EffectError::Reoffer(_) | EffectError::Carrier(CarrierStep::Update, _) => {
                warn!(error = %e, "carrier update failed");
                self.release_reply(base);
            }
            EffectError::AnswerReoffer(_) | EffectError::Carrier(CarrierStep::RespondUpdate, _) => {
                warn!(error = %e, "carrier re-offer failed");
                self.carrier_offer = None;
            }
            e => warn!(error = %e, "confirmed call"),
        }
    }

    /// The RTP inactivity check, with the PBX's last packet time.
    fn check_rtp(&mut self, base: &mut CallBase, last_from_pbx: Option<Instant>, now: Instant) {
        // read on each check: a reload reaches calls already up
        let rtp_timeout = base.settings.current().calls.rtp_timeout;
        if rtp_timeout.is_zero() {
            return;
        }
        if self.pbx_direction != self.rtp.direction_seen {
            self.rtp.direction_seen = self.pbx_direction;
            self.rtp.expecting_since = now;
        }
        let pbx_sends = matches!(
            self.pbx_direction,
            Direction::SendRecv | Direction::SendOnly
        );
        let since = self.rtp.expecting_since;
        let last = last_from_pbx.map_or(since, |t| t.max(since));
        let silent = now.saturating_duration_since(last);
        if pbx_sends && silent >= rtp_timeout {
            warn!(
                silent_s = silent.as_secs(),
                "no RTP from the PBX: ending the call"
            );
            let bye = reason_header("Q.850", 41, "RTP timeout");
            self.end_by_gateway(base, Some(bye), "RTP timeout");
        }
    }

    fn pbx_hung_up(&mut self, base: &mut CallBase) {
        info!("the PBX hung up");
        base.facts.ended_by = EndedBy::Pbx;
        base.carrier(CarrierOp::End { reason: "hangup" });
        base.finish();
    }

    /// We end the call: BYE toward the PBX (with `bye`), then the carrier session.
    fn end_by_gateway(&mut self, base: &mut CallBase, bye: Option<String>, why: &'static str) {
        base.facts.ended_by = EndedBy::Gateway;
        base.bye(bye);
        base.carrier(CarrierOp::End { reason: why });
        base.finish();
    }

    /// Our re-INVITE with the SDP last agreed (a refresh, or a 491 retry).
    fn reinvite(&mut self, base: &mut CallBase, why: OwnReinvite) {
        if let Some(line) = base.leg.line() {
            let body = base.leg.render(line);
            let headers = self.refresh_headers();
            base.sip(|c| DialogCommand::Reinvite(c, body, headers));
            self.own = Some(why);
        }
    }

    fn release_reply(&mut self, base: &mut CallBase) {
        if let Some(reply) = self.held_reply.take() {
            base.respond_reinvite(reply);
        }
    }

    fn refresh_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("Supported", "timer".to_string())];
        if let Some(n) = &self.agreement {
            h.push(("Session-Expires", n.session_expires_value()));
        }
        h
    }

    /// A PBX re-INVITE: hold, resume, a new address, or a session refresh.
    fn on_reinvite(
        &mut self,
        base: &mut CallBase,
        sdp: Option<String>,
        timer: &TimerHeaders,
        now: Instant,
    ) {
        let decision = session_timer::on_request(
            &session_timer::TimerRequest {
                session_expires: timer.session_expires.as_deref(),
                min_se: timer.min_se.as_deref(),
                timer_supported: timer.supports_timer,
            },
            &base.settings.current().timer,
        );
        let timer_headers = match decision {
            Ok(session_timer::UasDecision::Reject422 { min_se }) => {
                return base.respond_reinvite(Reply::new(422).header("Min-SE", min_se.to_string()));
            }
            Ok(session_timer::UasDecision::Accept(n)) => {
                // Whoever sent this re-INVITE is the UAS of the new negotiation's view: we are.
                let we_refresh = n.we_refresh(true);
                match self.timer.as_mut() {
                    Some(t) => t.renegotiate(&n, we_refresh, now),
                    None => self.timer = Some(SessionTimer::new(&n, we_refresh, now)),
                }
                self.agreement = Some(n);
                n.response_headers()
            }
            Ok(session_timer::UasDecision::NoTimer) => {
                if let Some(t) = self.timer.as_mut() {
                    t.on_refreshed(now);
                }
                Vec::new()
            }
            Err(e) => return base.respond_reinvite(Reply::new(400).reason(e.to_string())),
        };
        let (body, carrier_update) = match sdp {
            None => {
                // RFC 3261 14.2: offer in the 200, answer in the ACK. Offer everything we do.
                self.flow = PbxFlow::AwaitingAckAnswer;
                let Some(line) = base.leg.line() else {
                    return base.respond_reinvite(Reply::new(500));
                };
                let body = base.leg.render(MediaLine {
                    direction: Direction::SendRecv,
                    ..line
                });
                (body, None)
            }
            Some(s) => match self.answer_pbx_offer(base, &s) {
                Ok(answer) => answer,
                Err(code) => return base.respond_reinvite(Reply::new(code)),
            },
        };
        let mut reply = Reply::new(200).sdp(body);
        for (n, v) in timer_headers {
            reply = reply.header(n, v);
        }
        match carrier_update {
            // The PBX hears back once the carrier has the change, as it always has.
            Some(direction) => {
                self.held_reply = Some(reply);
                base.media(MediaOp::Reoffer(direction));
            }
            None => base.respond_reinvite(reply),
        }
    }

    /// Our answer to a PBX offer in a re-INVITE, and the direction to offer the carrier when
    /// the PBX's changed (hold, resume). Err: the status to refuse it with.
    fn answer_pbx_offer(
        &mut self,
        base: &mut CallBase,
        sdp: &str,
    ) -> Result<(String, Option<Direction>), u16> {
        let offer = pbx_sdp::parse(sdp).map_err(|e| {
            warn!(error = %e, "re-INVITE SDP refused");
            488u16
        })?;
        let neg = pbx_sdp::negotiate(&offer).ok_or(488u16)?;
        let media = pbx_media(&offer, self.format.codec).ok_or_else(|| {
            warn!(codec = ?self.format.codec, "re-INVITE drops the call's codec");
            488u16
        })?;
        base.media(MediaOp::UpdatePbx(media));
        let direction = offer.effective_direction();
        let line = PbxLeg::answer_line(&neg, &self.format, pbx_sdp::answer_direction(direction));
        let body = base.leg.render(line);
        if direction == self.pbx_direction {
            return Ok((body, None));
        }
        info!(from = ?self.pbx_direction, to = ?direction, "PBX media direction changed (hold/resume)");
        self.pbx_direction = direction;
        Ok((body, Some(direction)))
    }

    /// The PBX's answer (in an ACK or a re-INVITE's 2xx) to our offer.
    fn apply_pbx_answer(&mut self, base: &mut CallBase, sdp: &str) {
        let Ok(answer) = pbx_sdp::parse(sdp) else {
            warn!("PBX answer SDP unusable");
            return;
        };
        match pbx_media(&answer, self.format.codec) {
            Some(media) => base.media(MediaOp::UpdatePbx(media)),
            None => warn!("PBX answer without the call's codec"),
        }
    }
}

#[cfg(test)]
#[path = "confirmed_tests.rs"]
mod tests;
